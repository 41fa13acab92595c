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
    };
    let mut stalled: VecDeque<Job> = VecDeque::new();
    let retry = Duration::from_millis(cfg.disk_full_retry_ms.max(1));
    let max_batch = cfg.max_batch_jobs.max(1);
    loop {
        let mut group: Vec<Job> = Vec::new();
        let mut disconnected = false;
        if stalled.is_empty() {
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
        match w.process(group, &mut stalled) {
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
        group: Vec<Job>,
        stalled: &mut VecDeque<Job>,
    ) -> Result<(), StorageError> {
        let mut done: Vec<DoneJob> = Vec::with_capacity(group.len());
        let mut latest_hs: Option<HardStateRecord> = None;
        let mut wrote = false;
        let mut group_entries = 0usize;
        let mut fsync_us = 0u64;
        let mut iter = group.into_iter();
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
        for (seq, job_last, hs) in done {
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
        if compactions > 0 {
            let _ = self.events.send(Event::Compacted {
                deleted_segments: compactions,
            });
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<u64, StorageError> {
        let t0 = Instant::now();
        self.store.sync_and_publish()?;
        Ok(t0.elapsed().as_micros() as u64)
    }
}
