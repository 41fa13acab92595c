//! The dedicated storage thread: all blocking writes, fsyncs, file creation and deletion run
//! here, never on tokio executor threads.
//!
//! Group commit: the thread drains every queued job (bounded by `max_batch_jobs`), writes them
//! all, fsyncs once, writes the hard state if its term/vote changed, and only then reports
//! each job as durable, in submission order. A failed fsync (or any I/O error other than a
//! full disk) is fatal: the thread reports `Fatal` and exits, and the store refuses all
//! further writes. A full disk stalls the job (nothing of it is written) and reports
//! `DiskFull`; stalled jobs are retried in order every `disk_full_retry_ms`.

use std::collections::VecDeque;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Durable, FileStore, HardStateFile, HardStateRecord, StorageError, StoredEntry};

/// Where a wiped/lagging follower restarts its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPoint {
    pub index: u64,
    pub term: u64,
    /// Physical position of entry `index + 1` (the leader's).
    pub next_pos: u64,
}

/// One unit of work, normally one `Ready`.
#[derive(Debug, Default)]
pub struct PersistJob {
    pub seq: u64,
    pub snapshot: Option<SnapshotPoint>,
    pub entries: Vec<StoredEntry>,
    pub hard_state: Option<HardStateRecord>,
}

#[derive(Debug)]
pub enum Job {
    Persist(PersistJob),
    /// Delete segment files holding only entries below the store's (logical) first index.
    RemoveCompacted,
}

/// Reports from the storage thread, in job order.
#[derive(Debug)]
pub enum Event {
    Persisted {
        seq: u64,
        /// Durable tail after this job's group (None if the job had no entries/snapshot).
        durable: Option<Durable>,
        /// Last entry of this job (or the snapshot point) for `on_entries_persisted`.
        job_last: Option<(u64, u64)>,
        hard_state: bool,
        /// Duration of the group's fsync(s) in microseconds (one per group; 0 if no sync).
        fsync_us: u64,
        /// Entries in the whole group (for "entries per fsync").
        group_entries: usize,
        group_first_seq: u64,
    },
    DiskFull {
        seq: u64,
        message: String,
    },
    Compacted {
        deleted_segments: usize,
    },
    /// Fail-stop: the node must stop. The store is poisoned.
    Fatal(String),
}

/// Limits of the storage thread.
#[derive(Debug, Clone, Copy)]
pub struct StorageThreadConfig {
    pub max_batch_jobs: usize,
    pub disk_full_retry_ms: u64,
    /// Group-commit delay: how long a group may wait for more jobs before its fsync, and
    /// only while entries arrive fast enough that at least `LINGER_MIN_EXPECTED_ENTRIES`
    /// more are expected in that time (a lone sync sender never waits). 0 = never wait.
    pub fsync_linger_us: u64,
    /// A lingering group stops waiting once it holds this many entry bytes.
    pub fsync_linger_bytes: u64,
}

/// Default group-commit delay (see `DLedgerConfig::fsync_linger_us`).
pub const DEFAULT_FSYNC_LINGER_US: u64 = 500;

/// Upper bound of `StorageThreadConfig::fsync_linger_us` (it adds to every commit).
pub const MAX_FSYNC_LINGER_US: u64 = 10_000;

/// Lingering pays off only if the wait is expected to bring at least this many entries.
const LINGER_MIN_EXPECTED_ENTRIES: u64 = 2;

/// A group this large already spreads its fsync thinly: it never waits (under heavy load
/// groups are large by themselves, and a wait would only add latency).
const LINGER_ENOUGH_ENTRIES: u64 = 8;

/// Shortest window over which the arrival rate is measured.
const RATE_WINDOW: Duration = Duration::from_millis(10);

/// Entries per second reaching the storage thread, measured over windows of at least
/// `RATE_WINDOW` (an idle gap counts, so the rate falls as soon as the load stops).
#[derive(Debug)]
struct ArrivalRate {
    window_start: Instant,
    window_entries: u64,
    entries_per_s: u64,
}

impl ArrivalRate {
    fn new(now: Instant) -> ArrivalRate {
        ArrivalRate {
            window_start: now,
            window_entries: 0,
            entries_per_s: 0,
        }
    }

    fn record(&mut self, entries: u64, now: Instant) {
        self.window_entries = self.window_entries.saturating_add(entries);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            let per_s = u128::from(self.window_entries) * 1_000_000 / elapsed.as_micros().max(1);
            self.entries_per_s = u64::try_from(per_s).unwrap_or(u64::MAX);
            self.window_start = now;
            self.window_entries = 0;
        }
    }

    /// Entries expected to arrive within `wait_us` at the current rate.
    fn expected_within(&self, wait_us: u64) -> u64 {
        let n = u128::from(self.entries_per_s) * u128::from(wait_us) / 1_000_000;
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

/// The group-commit delay: decides whether a group waits for more jobs and gathers them.
#[derive(Debug)]
struct Linger {
    wait_us: u64,
    max_bytes: u64,
    rate: ArrivalRate,
}

impl Linger {
    fn new(cfg: &StorageThreadConfig, now: Instant) -> Linger {
        Linger {
            wait_us: cfg.fsync_linger_us.min(MAX_FSYNC_LINGER_US),
            max_bytes: cfg.fsync_linger_bytes,
            rate: ArrivalRate::new(now),
        }
    }

    /// Whether a group of `entries` is worth waiting for: small, and more are coming soon.
    fn worth_waiting(&self, entries: u64) -> bool {
        self.wait_us > 0
            && entries < LINGER_ENOUGH_ENTRIES
            && self.rate.expected_within(self.wait_us) >= LINGER_MIN_EXPECTED_ENTRIES
    }

    /// Adds jobs to `group` (whose first job arrived at `first_at`) while waiting is worth
    /// it, until the linger's deadline, its byte limit or `max_jobs`. `recv_until` is the
    /// channel's receive with a deadline. Records the group in the arrival rate. Returns
    /// `true` if the channel disconnected.
    fn gather(
        &mut self,
        group: &mut Vec<Job>,
        first_at: Instant,
        max_jobs: usize,
        mut recv_until: impl FnMut(Instant) -> Result<Job, std_mpsc::RecvTimeoutError>,
    ) -> bool {
        let mut entries: u64 = group.iter().map(job_entries).sum();
        let mut disconnected = false;
        if self.worth_waiting(entries) {
            // Bytes matter only while waiting: counted here, not for every group.
            let mut bytes: u64 = group.iter().map(job_bytes).sum();
            let deadline = first_at + Duration::from_micros(self.wait_us);
            while group.len() < max_jobs
                && entries < LINGER_ENOUGH_ENTRIES
                && bytes < self.max_bytes
            {
                match recv_until(deadline) {
                    Ok(j) => {
                        entries += job_entries(&j);
                        bytes += job_bytes(&j);
                        group.push(j);
                    }
                    Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
        }
        self.rate.record(entries, first_at);
        disconnected
    }
}

fn job_entries(job: &Job) -> u64 {
    match job {
        Job::Persist(p) => p.entries.len() as u64,
        Job::RemoveCompacted => 0,
    }
}

fn job_bytes(job: &Job) -> u64 {
    match job {
        Job::Persist(p) => p.entries.iter().map(|e| e.data.len() as u64).sum(),
        Job::RemoveCompacted => 0,
    }
}

/// Handle to the running thread; dropping it lets the thread finish queued jobs and exit
/// (detached); `join` waits for that.
pub struct StorageThread {
    tx: Option<std_mpsc::Sender<Job>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl StorageThread {
    pub fn spawn(
        store: FileStore,
        hard_state: HardStateFile,
        initial_hs: HardStateRecord,
        cfg: StorageThreadConfig,
        events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<StorageThread> {
        let (tx, rx) = std_mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("dledger-storage".into())
            .spawn(move || run(store, hard_state, initial_hs, cfg, rx, events))?;
        Ok(StorageThread {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Queue a job; false if the thread has stopped (fatal error).
    pub fn submit(&self, job: Job) -> bool {
        self.tx.as_ref().is_some_and(|t| t.send(job).is_ok())
    }
}

impl StorageThread {
    /// Stop after the queued jobs and wait for the thread (blocking: call it off the async
    /// executor, e.g. in `spawn_blocking`).
    pub fn join(mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for StorageThread {
    fn drop(&mut self) {
        // Detach: closing the channel makes the thread finish its queued jobs and exit.
        // Dropping may happen on an executor thread (an aborted node task), so no join here.
        self.tx.take();
    }
}

/// (seq, last entry (index, term), had hard state) of a job written in the current group.
type DoneJob = (u64, Option<(u64, u64)>, bool);

struct Worker {
    store: FileStore,
    hs_file: HardStateFile,
    written_hs: HardStateRecord,
    events: mpsc::UnboundedSender<Event>,
    /// Reused by every group (no allocation per fsync group).
    done: Vec<DoneJob>,
}

fn run(
    store: FileStore,
    hs_file: HardStateFile,
    initial_hs: HardStateRecord,
    cfg: StorageThreadConfig,
    rx: std_mpsc::Receiver<Job>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut w = Worker {
        store,
        hs_file,
        written_hs: initial_hs,
        events,
        done: Vec::new(),
    };
    let mut stalled: VecDeque<Job> = VecDeque::new();
    let retry = Duration::from_millis(cfg.disk_full_retry_ms.max(1));
    let max_batch = cfg.max_batch_jobs.max(1);
    let mut linger = Linger::new(&cfg, Instant::now());
    // Reused by every group; `process` leaves it empty.
    let mut group: Vec<Job> = Vec::new();
    loop {
        let mut disconnected = false;
        // Retrying jobs stalled on a full disk: no reason to wait for more.
        let retrying = !stalled.is_empty();
        if !retrying {
            match rx.recv() {
                Ok(j) => group.push(j),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(retry) {
                Ok(j) => stalled.push_back(j),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            group.extend(stalled.drain(..));
        }
        let first_at = Instant::now();
        while group.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => group.push(j),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if !retrying && !disconnected {
            // Group commit: one fsync for what arrives within the linger, not one per job.
            disconnected = linger.gather(&mut group, first_at, max_batch, |deadline| {
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            });
        }
        match w.process(&mut group, &mut stalled) {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, "storage failure; stopping (fail-stop)");
                let _ = w.events.send(Event::Fatal(e.to_string()));
                return;
            }
        }
        if disconnected {
            // The node is gone: nobody waits for stalled jobs any more.
            if !stalled.is_empty() {
                tracing::warn!(
                    jobs = stalled.len(),
                    "dropping jobs stalled on a full disk at shutdown"
                );
            }
            return;
        }
    }
}

impl Worker {
    fn process(
        &mut self,
        group: &mut Vec<Job>,
        stalled: &mut VecDeque<Job>,
    ) -> Result<(), StorageError> {
        let mut done = std::mem::take(&mut self.done);
        done.clear();
        let mut latest_hs: Option<HardStateRecord> = None;
        let mut wrote = false;
        let mut group_entries = 0usize;
        let mut fsync_us = 0u64;
        let mut iter = group.drain(..);
        let mut compactions = 0usize;
        while let Some(job) = iter.next() {
            let p = match job {
                Job::RemoveCompacted => {
                    if wrote {
                        fsync_us += self.sync()?;
                        wrote = false;
                    }
                    compactions += self.store.remove_compacted_segments()?;
                    continue;
                }
                Job::Persist(p) => p,
            };
            let mut job_last = None;
            if let Some(sp) = p.snapshot {
                if wrote {
                    fsync_us += self.sync()?;
                    wrote = false;
                }
                self.store
                    .reset_to_snapshot(sp.index, sp.term, sp.next_pos)?;
                job_last = Some((sp.index, sp.term));
            }
            match self.store.write_entries(&p.entries) {
                Ok(()) => {}
                Err(StorageError::DiskFull(msg)) => {
                    let _ = self.events.send(Event::DiskFull {
                        seq: p.seq,
                        message: msg,
                    });
                    stalled.push_back(Job::Persist(p));
                    stalled.extend(iter);
                    break;
                }
                Err(e) => return Err(e),
            }
            if let Some(last) = p.entries.last() {
                job_last = Some((last.index, last.term));
                wrote = true;
                group_entries += p.entries.len();
            }
            if let Some(hs) = p.hard_state {
                latest_hs = Some(hs);
            }
            done.push((p.seq, job_last, p.hard_state.is_some()));
        }
        if wrote {
            fsync_us += self.sync()?;
        }
        if let Some(hs) = latest_hs {
            // Entries first, then the hard state (the core's contract allows either order
            // as long as both are durable before we report).
            if hs.term != self.written_hs.term || hs.vote != self.written_hs.vote {
                let t0 = Instant::now();
                // A full disk here (the temp file) is fail-stop: the jobs' entries are already
                // durable but the vote cannot be recorded.
                // Never let the durable commit go backwards (a restart derives data loss
                // from a commit beyond the recovered log).
                let hs = HardStateRecord {
                    commit: hs.commit.max(self.written_hs.commit),
                    ..hs
                };
                self.hs_file.store(&hs)?;
                self.written_hs = hs;
                fsync_us += t0.elapsed().as_micros() as u64;
            }
            // A commit-only change is not written: the commit index is recomputed from the
            // quorum after a restart, and skipping it keeps one fsync per group.
        }
        let durable = if done.iter().any(|d| d.1.is_some()) {
            Some(Durable {
                last_index: self.store.last_index(),
                last_term: self.store.term(self.store.last_index()).unwrap_or(0),
            })
        } else {
            None
        };
        let first_seq = done.first().map(|d| d.0).unwrap_or(0);
        for (seq, job_last, hs) in done.drain(..) {
            let _ = self.events.send(Event::Persisted {
                seq,
                durable,
                job_last,
                hard_state: hs,
                fsync_us,
                group_entries,
                group_first_seq: first_seq,
            });
        }
        self.done = done;
        if compactions > 0 {
            let _ = self.events.send(Event::Compacted {
                deleted_segments: compactions,
            });
        }
        // After the events: the acks these syncs allow must not wait for the mark's file.
        if group_entries > 0 {
            self.store.persist_synced_mark_if_due()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<u64, StorageError> {
        let t0 = Instant::now();
        self.store.sync_and_publish()?;
        Ok(t0.elapsed().as_micros() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::VecDeque;

    fn job(seq: u64, entries: usize, entry_bytes: usize) -> Job {
        Job::Persist(PersistJob {
            seq,
            entries: (0..entries)
                .map(|i| StoredEntry {
                    index: seq * 1000 + i as u64,
                    term: 1,
                    kind: 0,
                    data: Bytes::from(vec![7u8; entry_bytes]),
                })
                .collect(),
            ..PersistJob::default()
        })
    }

    fn config(linger_us: u64, linger_bytes: u64) -> StorageThreadConfig {
        StorageThreadConfig {
            max_batch_jobs: 64,
            disk_full_retry_ms: 10,
            fsync_linger_us: linger_us,
            fsync_linger_bytes: linger_bytes,
        }
    }

    /// A linger whose arrival rate says `per_s` entries a second (measured over one window).
    fn linger_at_rate(cfg: &StorageThreadConfig, t0: Instant, per_s: u64) -> Linger {
        let mut l = Linger::new(cfg, t0);
        l.rate.record(per_s / 100, t0 + RATE_WINDOW);
        assert_eq!(l.rate.entries_per_s, per_s);
        l
    }

    type Reply = Result<Job, std_mpsc::RecvTimeoutError>;

    /// Runs `gather` on a group holding `first`, answering receives from `replies`.
    /// Returns (jobs in the group, disconnected, replies left, deadlines asked for).
    fn gather_scripted(
        l: &mut Linger,
        t0: Instant,
        first: Job,
        max_jobs: usize,
        replies: Vec<Reply>,
    ) -> (usize, bool, usize, Vec<Instant>) {
        let mut replies: VecDeque<Reply> = replies.into();
        let mut deadlines = Vec::new();
        let mut group = vec![first];
        let disconnected = l.gather(&mut group, t0, max_jobs, |d| {
            deadlines.push(d);
            replies
                .pop_front()
                .expect("asked for more than was scripted")
        });
        (group.len(), disconnected, replies.len(), deadlines)
    }

    #[test]
    fn arrival_rate_is_measured_per_window_and_falls_after_an_idle_gap() {
        let t0 = Instant::now();
        let mut r = ArrivalRate::new(t0);
        r.record(50, t0 + Duration::from_millis(5));
        assert_eq!(r.entries_per_s, 0, "no rate before a whole window");
        r.record(50, t0 + Duration::from_millis(10));
        assert_eq!(r.entries_per_s, 10_000);
        assert_eq!(r.expected_within(500), 5);
        // One entry after a second of silence: the rate drops at once.
        r.record(1, t0 + Duration::from_millis(1010));
        assert_eq!(r.entries_per_s, 1);
        assert_eq!(r.expected_within(500), 0);
    }

    #[test]
    fn a_lone_sender_never_waits() {
        let t0 = Instant::now();
        // 1,000 entries/s (a sync sender with a 1 ms round trip): < 2 expected in 500 µs…
        let mut l = linger_at_rate(&config(500, 1 << 20), t0, 1_000);
        assert_eq!(gather_scripted(&mut l, t0, job(1, 1, 100), 64, vec![]).0, 1);
        // …and without any rate history nobody waits either, however long the linger.
        let mut fresh = Linger::new(&config(MAX_FSYNC_LINGER_US, 1 << 20), t0);
        assert_eq!(
            gather_scripted(&mut fresh, t0, job(1, 1, 100), 64, vec![]).0,
            1
        );
    }

    #[test]
    fn a_large_group_or_a_linger_of_zero_does_not_wait() {
        let t0 = Instant::now();
        let mut l = linger_at_rate(&config(500, 1 << 20), t0, 100_000);
        let large = job(1, LINGER_ENOUGH_ENTRIES as usize, 100);
        assert_eq!(gather_scripted(&mut l, t0, large, 64, vec![]).0, 1);
        let mut off = linger_at_rate(&config(0, 1 << 20), t0, 1_000_000);
        assert_eq!(
            gather_scripted(&mut off, t0, job(1, 1, 10), 64, vec![]).0,
            1
        );
    }

    #[test]
    fn under_load_a_group_gathers_until_enough_entries_with_one_deadline() {
        let t0 = Instant::now();
        let mut l = linger_at_rate(&config(500, 1 << 20), t0, 20_000);
        let replies = vec![Ok(job(2, 3, 100)), Ok(job(3, 3, 100)), Ok(job(4, 1, 100))];
        let (jobs, disconnected, left, deadlines) =
            gather_scripted(&mut l, t0, job(1, 2, 100), 64, replies);
        // 2 + 3 + 3 = 8 entries: enough, the fourth job is left for the next group.
        assert_eq!((jobs, disconnected, left), (3, false, 1));
        assert!(deadlines
            .iter()
            .all(|d| *d == t0 + Duration::from_micros(500)));
    }

    #[test]
    fn waiting_ends_at_the_deadline_the_byte_limit_the_job_limit_or_a_disconnect() {
        let t0 = Instant::now();
        let cfg = config(500, 1_000);
        let timeout = Err(std_mpsc::RecvTimeoutError::Timeout);
        let gone = Err(std_mpsc::RecvTimeoutError::Disconnected);
        // (case, first job, job limit, receives, (jobs gathered, disconnected, receives left))
        type Case = (&'static str, Job, usize, Vec<Reply>, (usize, bool, usize));
        let cases: [Case; 4] = [
            (
                "deadline",
                job(1, 1, 10),
                64,
                vec![Ok(job(2, 1, 10)), timeout],
                (2, false, 0),
            ),
            // 600 + 600 bytes reach the 1,000-byte limit.
            (
                "bytes",
                job(1, 1, 600),
                64,
                vec![Ok(job(2, 1, 600)), Ok(job(3, 1, 600))],
                (2, false, 1),
            ),
            (
                "jobs",
                job(1, 1, 10),
                2,
                vec![Ok(job(2, 1, 10)), Ok(job(3, 1, 10))],
                (2, false, 1),
            ),
            // Reported, and what was gathered stays in the group.
            (
                "disconnect",
                job(1, 1, 10),
                64,
                vec![Ok(job(2, 1, 10)), gone],
                (2, true, 0),
            ),
        ];
        for (name, first, max_jobs, replies, want) in cases {
            let mut l = linger_at_rate(&cfg, t0, 20_000);
            let (jobs, disconnected, left, _) =
                gather_scripted(&mut l, t0, first, max_jobs, replies);
            assert_eq!((jobs, disconnected, left), want, "{name}");
        }
    }
}
