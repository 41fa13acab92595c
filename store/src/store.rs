//! `MessageStore`: the Java `DefaultMessageStore` equivalent. Owns the commitlog (behind
//! [`CommitLog`]), consume queues, the index, the dispatcher and housekeeping threads.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use compact_str::CompactString;
use dashmap::DashMap;

mod dledger_mode;

use crate::commitlog::dledger::DLedgerCommitLog;
use crate::commitlog::{
    AppendRequest, AppendResult, CommitLog, LogRead, QueueOffsetTable, Watermark,
};
use crate::config::{parse_delay_levels, FlushDiskType, StoreConfig};
use crate::consume_queue::{ConsumeQueue, CqUnit, CQ_UNIT_SIZE};
use crate::env::StoreEnv;
use crate::error::StoreError;
use crate::file_log::FileCommitLog;
use crate::index::{topic_key_hash, IndexService};
use crate::message::{
    create_offset_msg_id, encode_record, encoded_record_length, for_each_property,
    parse_record_meta, property, property_value, set_property, sys_flag, tags_hash, MessageToStore,
    RecordMeta, SCHEDULE_TOPIC,
};
use crate::record_buf;

/// Log bytes behind the dispatcher that stay mapped (hot tail); older pages are dropped from
/// the process's RSS every `MAPPED_LOG_RELEASE_INTERVAL_MS` (`CommitLog::release_mapped_below`).
/// 4 MiB is ~90 ms of a group's 1 KiB sends: consumers at the tail read mapped pages, and
/// the broker keeps ~12 MB less RSS than with 16 MiB (the index's slot table, ~19 MB once
/// every message carries a UNIQ_KEY, needed the room).
const MAPPED_LOG_TAIL_KEEP_BYTES: i64 = 4 * 1024 * 1024;
/// At ~80 MB/s of appends (64 senders, 1 KiB) a 1 s cadence let ~80 MB more stay mapped
/// between passes (single-replica broker RSS up to 189 MB); a pass is one `madvise` per
/// segment touched.
const MAPPED_LOG_RELEASE_INTERVAL_MS: i64 = 200;
/// Cold log bytes (below the last release point) that pulls may map before a release pass
/// starts early: a consumer catching up reads ~700 MB/s, and waiting for the timed pass let
/// RSS grow by 200–300 MiB per broker.
const COLD_READ_RELEASE_BYTES: u64 = 16 * 1024 * 1024;
/// Units scanned per pull at most (Java: max(16000 bytes, maxMsgNums * 20) of units).
const MAX_FILTER_SCAN_BYTES: usize = 16_000;
/// Commitlog segments deleted per retention pass (Java `deleteCommitLogFilesInterval` batch).
const MAX_DELETE_FILES_PER_PASS: usize = 10;
/// Messages per batch put.
pub const MAX_BATCH_MESSAGES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutMessageResult {
    /// Offset message id(s); comma-joined for batches.
    pub msg_id: String,
    /// Queue offset of the (first) message.
    pub queue_offset: i64,
    /// Physical offset of the (first) record.
    pub phys_offset: i64,
    pub wrote_bytes: i32,
    pub store_timestamp_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMessageStatus {
    Found,
    NoMessageInQueue,
    NoMatchedMessage,
    OffsetFoundNull,
    OffsetOverflowBadly,
    OffsetOverflowOne,
    OffsetTooSmall,
    NoMatchedLogicQueue,
    MessageWasRemoving,
}

#[derive(Debug, Clone)]
pub struct GetMessageResult {
    pub status: GetMessageStatus,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    /// Zero-copy record slices (concatenate for the pull body).
    pub messages: Vec<Bytes>,
    /// Queue offsets of `messages` (same order).
    pub message_queue_offsets: Vec<i64>,
    pub suggest_pull_from_slave: bool,
}

impl GetMessageResult {
    pub fn buffer_total_size(&self) -> usize {
        self.messages.iter().map(Bytes::len).sum()
    }
}

/// Consume-queue level filter (tags hash). The broker implements it from a subscription.
pub trait MessageFilter {
    fn is_matched_by_tags_code(&self, tags_code: i64) -> bool;
}

/// Matches everything.
pub struct AcceptAllFilter;

impl MessageFilter for AcceptAllFilter {
    fn is_matched_by_tags_code(&self, _tags_code: i64) -> bool {
        true
    }
}

#[derive(Debug, Clone, Default)]
pub struct QueryMessageResult {
    pub messages: Vec<Bytes>,
    pub index_last_update_timestamp: i64,
    pub index_last_update_phy_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    pub put_message_times_total: u64,
    pub put_message_size_total: u64,
    pub put_message_failed_times: u64,
    pub put_tps: f64,
    pub get_message_times_total: u64,
    pub get_message_found_total: u64,
    /// Flush (msync) batches of the commitlog; < puts under SYNC_FLUSH group commit.
    pub commit_log_fsync_count: u64,
    pub commit_log_min_offset: i64,
    pub commit_log_max_offset: i64,
    pub commit_log_disk_bytes: u64,
    /// Used space of the store's filesystem, percent.
    pub commit_log_disk_ratio: f64,
    pub dispatch_behind_bytes: i64,
    pub disk_full: bool,
}

/// (topic, queue id, next logic offset = queue offset + 1, tags code)
pub type ArrivalListener = Arc<dyn Fn(&str, i32, i64, i64) + Send + Sync>;

#[derive(Default)]
struct Counters {
    put_times: AtomicU64,
    put_bytes: AtomicU64,
    put_failed: AtomicU64,
    get_times: AtomicU64,
    get_found: AtomicU64,
}

/// Shared state behind [`MessageStore`] (threads hold this, never the handle), reached
/// through `Deref`; use the methods, not the type.
#[doc(hidden)]
pub struct StoreCore {
    config: StoreConfig,
    env: StoreEnv,
    log: Arc<dyn CommitLog>,
    queue_offsets: Arc<QueueOffsetTable>,
    cqs: DashMap<String, DashMap<i32, Arc<ConsumeQueue>>>,
    index: RwLock<IndexService>,
    dispatched: Watermark,
    /// Where the checkpoints are in flushing the index slice by slice.
    index_flush: Mutex<IndexFlushCycle>,
    listener: RwLock<Option<ArrivalListener>>,
    delay_levels: Vec<i64>,
    counters: Counters,
    disk_full: AtomicBool,
    disk_used_percent: Mutex<f64>,
    tps_samples: Mutex<VecDeque<(i64, u64)>>,
    stopped: AtomicBool,
    stop: Mutex<bool>,
    /// Wakes the store's threads: on stop, and the housekeeping thread for an early release.
    stop_cv: Condvar,
    /// Set (under `stop`) when pulls mapped `COLD_READ_RELEASE_BYTES` of cold log bytes.
    release_requested: AtomicBool,
    /// `CommitLog::cold_read_bytes` when the last early release was requested.
    cold_read_mark: AtomicU64,
    /// Log bytes below this were dropped from the page cache (`drop_log_page_cache`).
    page_cache_dropped_to: AtomicI64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    lock_file: Mutex<Option<File>>,
    /// Set in DLedger mode (`open_dledger`).
    dledger: std::sync::OnceLock<Arc<DLedgerCommitLog>>,
}

impl std::fmt::Debug for StoreCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("root", &self.config.store_path_root_dir)
            .finish()
    }
}

/// Progress through a cycle of index flushes: each checkpoint flushes the next of `parts`
/// slices of the index (`StoreConfig::flush_interval_index_ms`).
struct IndexFlushCycle {
    /// The slice the next checkpoint flushes.
    next_part: u32,
    /// Dispatch offset when the current cycle's first slice was flushed.
    started_at: i64,
    /// Everything dispatched below this is on disk in the index: the start of the last
    /// complete cycle.
    flushed_to: i64,
}

/// What dispatching a record reads from its properties, found in one pass. The last
/// occurrence wins, as when Java decodes properties into a map.
#[derive(Default)]
struct DispatchProps<'a> {
    tags: Option<&'a str>,
    delay: Option<&'a str>,
    uniq_key: Option<&'a str>,
    keys: Option<&'a str>,
}

impl<'a> DispatchProps<'a> {
    fn scan(properties: &'a str) -> Self {
        let mut p = DispatchProps::default();
        for_each_property(properties, |k, v| match k {
            property::TAGS => p.tags = Some(v),
            property::DELAY => p.delay = Some(v),
            property::UNIQ_KEY => p.uniq_key = Some(v),
            property::KEYS => p.keys = Some(v),
            _ => {}
        });
        p
    }
}

fn checkpoint_path(root: &Path) -> PathBuf {
    root.join("dispatch_checkpoint")
}

/// Dispatch checkpoint: i64 offset + crc32c of those 8 bytes. Below this offset the
/// commitlog, consume queues and index are all on disk.
fn read_checkpoint(root: &Path) -> i64 {
    let Ok(b) = std::fs::read(checkpoint_path(root)) else {
        return 0;
    };
    if b.len() != 12 {
        return 0;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    let mut c = [0u8; 4];
    c.copy_from_slice(&b[8..12]);
    if crc32c::crc32c(&v) != u32::from_be_bytes(c) {
        tracing::warn!("dispatch checkpoint crc mismatch; full re-dispatch");
        return 0;
    }
    i64::from_be_bytes(v).max(0)
}

fn write_checkpoint(root: &Path, offset: i64) -> Result<(), StoreError> {
    let path = checkpoint_path(root);
    let tmp = root.join("dispatch_checkpoint.tmp");
    let v = offset.to_be_bytes();
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&v);
    b.extend_from_slice(&crc32c::crc32c(&v).to_be_bytes());
    let mut f = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    f.write_all(&b).map_err(|e| StoreError::io(&tmp, e))?;
    f.sync_data().map_err(|e| StoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    if let Ok(d) = File::open(root) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn lock_dir(root: &Path) -> Result<File, StoreError> {
    let path = root.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    // SAFETY: flock on a valid descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StoreError::Io {
            path,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(f)
}

/// The message store handle (Java `DefaultMessageStore`). Dropping the last handle stops
/// the threads like [`StoreCore::shutdown`] does.
pub struct MessageStore {
    core: Arc<StoreCore>,
}

impl std::ops::Deref for MessageStore {
    type Target = StoreCore;
    fn deref(&self) -> &StoreCore {
        &self.core
    }
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt(f)
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        // Forgetting `shutdown` must not leak threads, the directory lock or unflushed queues.
        self.core.stop_threads(true);
    }
}

impl MessageStore {
    /// Opens with the real clock, `posix_fallocate` and `statvfs`.
    pub fn open(config: StoreConfig) -> Result<Arc<MessageStore>, StoreError> {
        Self::open_with_env(config, StoreEnv::default())
    }

    /// Opens (recovering) the store with a single-replica file commitlog and starts its
    /// threads. Blocking; call from a blocking context.
    pub fn open_with_env(
        config: StoreConfig,
        env: StoreEnv,
    ) -> Result<Arc<MessageStore>, StoreError> {
        config.validate()?;
        let root = config.store_path_root_dir.clone();
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        let lock = lock_dir(&root)?;
        let checkpoint = read_checkpoint(&root);
        let queue_offsets = Arc::new(QueueOffsetTable::default());
        let log =
            FileCommitLog::open(&config, env.clone(), Arc::clone(&queue_offsets), checkpoint)?;
        Self::open_with_log(config, env, log, queue_offsets, Some(lock))
    }

    /// Opens the store over any [`CommitLog`] (e.g. the DLedger one). `queue_offsets` must be
    /// the table the log assigns from.
    pub fn open_with_log(
        config: StoreConfig,
        env: StoreEnv,
        log: Arc<dyn CommitLog>,
        queue_offsets: Arc<QueueOffsetTable>,
        lock_file: Option<File>,
    ) -> Result<Arc<MessageStore>, StoreError> {
        config.validate()?;
        let root = config.store_path_root_dir.clone();
        let mut checkpoint = read_checkpoint(&root);
        if !root.join("consumequeue").exists() {
            // Consume queues were removed: rebuild them from the whole log.
            checkpoint = 0;
        }
        let end = log.committed_offset();
        let start = checkpoint.min(end).max(log.min_offset());
        let delay_levels = parse_delay_levels(&config.message_delay_level)?;
        let index = IndexService::load(&root, config.max_hash_slot_num, config.max_index_num)?;
        let store = Arc::new(StoreCore {
            env,
            log,
            queue_offsets,
            cqs: DashMap::new(),
            index: RwLock::new(index),
            dispatched: Watermark::new(start),
            index_flush: Mutex::new(IndexFlushCycle {
                next_part: 0,
                started_at: start,
                flushed_to: start,
            }),
            listener: RwLock::new(None),
            delay_levels,
            counters: Counters::default(),
            disk_full: AtomicBool::new(false),
            disk_used_percent: Mutex::new(0.0),
            tps_samples: Mutex::new(VecDeque::new()),
            stopped: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            release_requested: AtomicBool::new(false),
            cold_read_mark: AtomicU64::new(0),
            page_cache_dropped_to: AtomicI64::new(0),
            threads: Mutex::new(Vec::new()),
            lock_file: Mutex::new(lock_file),
            dledger: std::sync::OnceLock::new(),
            config,
        });
        store.load_consume_queues(start)?;
        // Rebuild everything after the checkpoint from the log, synchronously.
        let mut reput = start;
        while reput < end {
            reput = match store.dispatch_step(reput, end) {
                Some(n) => n,
                None => break,
            };
        }
        store.dispatched.publish(reput);
        store.rebuild_queue_offset_table();
        store.refresh_disk_state();
        let s = Arc::downgrade(&store);
        let dispatcher = std::thread::Builder::new()
            .name("store-dispatch".into())
            .spawn(move || StoreCore::dispatch_loop(s))
            .map_err(|e| StoreError::io("spawn dispatcher", e))?;
        let s = Arc::downgrade(&store);
        let housekeeping = std::thread::Builder::new()
            .name("store-housekeeping".into())
            .spawn(move || StoreCore::housekeeping_loop(s))
            .map_err(|e| StoreError::io("spawn housekeeping", e))?;
        store
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([dispatcher, housekeeping]);
        tracing::info!(root = %store.config.store_path_root_dir.display(), checkpoint, end, "message store open");
        Ok(Arc::new(MessageStore { core: store }))
    }
}

impl StoreCore {
    fn load_consume_queues(&self, truncate_from: i64) -> Result<(), StoreError> {
        let base = self.config.store_path_root_dir.join("consumequeue");
        let Ok(topics) = std::fs::read_dir(&base) else {
            return Ok(());
        };
        for t in topics.flatten() {
            let Some(topic) = t.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(qs) = std::fs::read_dir(t.path()) else {
                continue;
            };
            for q in qs.flatten() {
                let Some(qid) = q.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let cq = ConsumeQueue::load(
                    &self.config.store_path_root_dir,
                    &topic,
                    qid,
                    self.config.mapped_file_size_consume_queue_units,
                )?;
                cq.truncate_from_phys(truncate_from);
                cq.delete_expired(self.log.min_offset());
                self.cqs
                    .entry(topic.clone())
                    .or_default()
                    .insert(qid, Arc::new(cq));
            }
        }
        Ok(())
    }

    fn all_cqs(&self) -> Vec<Arc<ConsumeQueue>> {
        let mut v = Vec::new();
        for q in self.cqs.iter() {
            v.extend(q.value().iter().map(|c| Arc::clone(c.value())));
        }
        v
    }

    fn find_cq(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.cqs
            .get(topic)?
            .get(&queue_id)
            .map(|c| Arc::clone(c.value()))
    }

    fn get_or_create_cq(
        &self,
        topic: &str,
        queue_id: i32,
    ) -> Result<Arc<ConsumeQueue>, StoreError> {
        if let Some(c) = self.find_cq(topic, queue_id) {
            return Ok(c);
        }
        let cq = Arc::new(ConsumeQueue::load(
            &self.config.store_path_root_dir,
            topic,
            queue_id,
            self.config.mapped_file_size_consume_queue_units,
        )?);
        let topics = self.cqs.entry(topic.to_string()).or_default();
        let c = topics.entry(queue_id).or_insert(cq);
        Ok(Arc::clone(c.value()))
    }

    // ---------------------------------------------------------------- dispatch

    /// Handles the item at `from`; returns the next offset, or None to retry later.
    fn dispatch_step(&self, from: i64, committed: i64) -> Option<i64> {
        let mut visit = |phys: i64, data: &[u8]| self.dispatch_record(phys, data);
        match self.log.read_next(from, committed, &mut visit) {
            LogRead::Record {
                phys,
                next,
                visited,
            } => match visited {
                Ok(()) => Some(next),
                // Transient (no space for a queue/index file, I/O): retry the same record.
                Err(e @ (StoreError::Io { .. } | StoreError::DiskFull { .. })) => {
                    tracing::error!(phys, error = %e, "dispatch failed; will retry");
                    None
                }
                // A record that can never be dispatched must not stall every queue.
                Err(e) => {
                    tracing::error!(phys, error = %e, "undispatchable record skipped");
                    Some(next)
                }
            },
            LogRead::Skip { next } => Some(next),
            LogRead::NotYet => None,
            LogRead::Corrupt { reason, next } => {
                tracing::error!(from, %reason, "corrupt commitlog data below watermark; skipping to next segment");
                Some(next)
            }
        }
    }

    fn delay_millis(&self, level: i32) -> Option<i64> {
        if level <= 0 {
            return None;
        }
        let idx = (level as usize).min(self.delay_levels.len()) - 1;
        self.delay_levels.get(idx).copied()
    }

    fn tags_code_of(&self, meta: &RecordMeta<'_>, props: &DispatchProps<'_>) -> i64 {
        if meta.topic == SCHEDULE_TOPIC {
            if let Some(ms) = props
                .delay
                .and_then(|v| v.parse::<i32>().ok())
                .and_then(|l| self.delay_millis(l))
            {
                return meta.store_timestamp_ms + ms;
            }
        }
        props.tags.map(tags_hash).unwrap_or(0)
    }

    fn dispatch_record(&self, phys: i64, data: &[u8]) -> Result<(), StoreError> {
        let meta = parse_record_meta(data, false)?;
        debug_assert_eq!(meta.physical_offset, phys, "record phys offset mismatch");
        let tx = sys_flag::transaction_value(meta.sys_flag);
        let props = DispatchProps::scan(meta.properties);
        let tags_code = self.tags_code_of(&meta, &props);
        if tx == sys_flag::TRANSACTION_NOT_TYPE || tx == sys_flag::TRANSACTION_COMMIT_TYPE {
            let cq = self.get_or_create_cq(meta.topic, meta.queue_id)?;
            let unit = CqUnit {
                phys,
                size: meta.total_size,
                tags_code,
            };
            let added = cq.put(meta.queue_offset, unit, self.env.allocator.as_ref())?;
            if added {
                let l = self
                    .listener
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let Some(l) = l {
                    l(meta.topic, meta.queue_id, meta.queue_offset + 1, tags_code);
                }
            }
        }
        if tx != sys_flag::TRANSACTION_ROLLBACK_TYPE {
            self.build_index(&meta, phys, &props)?;
        }
        Ok(())
    }

    /// Java `IndexService.buildIndex`: the UNIQ_KEY, then each KEYS token. Allocates
    /// nothing: the index stores `topic#key` hashes, so the joined key is never built.
    fn build_index(
        &self,
        meta: &RecordMeta<'_>,
        phys: i64,
        props: &DispatchProps<'_>,
    ) -> Result<(), StoreError> {
        if props.uniq_key.is_none() && props.keys.is_none() {
            return Ok(());
        }
        let mut idx = self.index.write().unwrap_or_else(|p| p.into_inner());
        if idx.last_phys().is_some_and(|p| phys <= p) {
            return Ok(()); // already indexed (re-dispatch after restart)
        }
        let now = self.env.clock.now_ms();
        let allocator = self.env.allocator.as_ref();
        let mut result = Ok(());
        let mut put = |key: &str| {
            if result.is_ok() {
                let hash = topic_key_hash(meta.topic, key);
                result = idx.put(hash, phys, meta.store_timestamp_ms, now, allocator);
            }
        };
        if let Some(u) = props.uniq_key {
            put(u);
        }
        if let Some(keys) = props.keys {
            keys.split(' ').filter(|s| !s.is_empty()).for_each(&mut put);
        }
        result
    }

    fn stop_requested(&self) -> bool {
        *self.stop.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Threads hold only a `Weak` between iterations, so dropping the last `Arc` of the
    /// store (without `shutdown`) still stops them (see `Drop`).
    fn dispatch_loop(weak: Weak<Self>) {
        let Some(mut reput) = weak.upgrade().map(|s| s.dispatched.get()) else {
            return;
        };
        loop {
            let Some(s) = weak.upgrade() else { break };
            if s.stop_requested() {
                break;
            }
            let committed = s.log.committed_offset();
            if reput >= committed {
                s.log
                    .wait_committed_beyond(reput, Duration::from_millis(200));
                continue;
            }
            let pass_started = Instant::now();
            let mut stalled = false;
            while reput < committed {
                match s.dispatch_step(reput, committed) {
                    Some(n) => reput = n,
                    None => {
                        stalled = true;
                        break;
                    }
                }
            }
            s.dispatched.publish(reput);
            if stalled {
                // Back off before retrying (e.g. no space for a consume-queue file).
                s.pause_unless_stopped(Duration::from_millis(100));
            } else {
                // Pace passes under load: the next one takes everything committed meanwhile.
                let interval = Duration::from_micros(s.config.dispatch_interval_us);
                s.pause_unless_stopped(interval.saturating_sub(pass_started.elapsed()));
            }
        }
    }

    /// Waits `pause` (nothing if zero) or until the store is asked to stop.
    fn pause_unless_stopped(&self, pause: Duration) {
        self.pause_until(pause, || false);
    }

    /// Waits `pause` (nothing if zero), until the store is asked to stop, or until `wake`
    /// (checked under the `stop` lock, so a setter holding it cannot be missed) says so.
    fn pause_until(&self, pause: Duration, wake: impl Fn() -> bool) {
        if pause.is_zero() {
            return;
        }
        let deadline = Instant::now() + pause;
        let mut g = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        while !*g && !wake() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = self
                .stop_cv
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    // ---------------------------------------------------------------- housekeeping

    fn housekeeping_loop(weak: Weak<Self>) {
        let Some(tick_ms) = weak.upgrade().map(|s| {
            s.config
                .flush_interval_consume_queue_ms
                .clamp(10, 1000)
                .min(MAPPED_LOG_RELEASE_INTERVAL_MS as u64)
        }) else {
            return;
        };
        let tick = Duration::from_millis(tick_ms);
        let started = std::time::Instant::now();
        let mut last_flush = 0i64;
        let mut last_clean = 0i64;
        let mut last_sample = 0i64;
        let mut last_release = 0i64;
        loop {
            let Some(s) = weak.upgrade() else { break };
            s.pause_until(tick, || s.release_requested.load(Ordering::Acquire));
            if s.stop_requested() {
                break;
            }
            let now = started.elapsed().as_millis() as i64;
            if now - last_flush >= s.config.flush_interval_consume_queue_ms as i64 {
                last_flush = now;
                if let Err(e) = s.checkpoint(false) {
                    tracing::error!(error = %e, "consume queue flush/checkpoint failed");
                }
            }
            if now - last_sample >= 1000 {
                last_sample = now;
                s.refresh_disk_state();
                s.sample_tps(now);
            }
            let early = s.release_requested.swap(false, Ordering::AcqRel);
            if early || now - last_release >= MAPPED_LOG_RELEASE_INTERVAL_MS {
                last_release = now;
                // Keep the hot tail (consumers reading near it) mapped; drop the rest from RSS.
                s.release_mapped_pages(MAPPED_LOG_TAIL_KEEP_BYTES);
                if let Some(keep) = s.config.log_page_cache_keep_bytes {
                    s.drop_log_page_cache(keep);
                }
            }
            if now - last_clean >= s.config.clean_resource_interval_ms as i64 {
                last_clean = now;
                s.delete_expired_files(false);
            }
        }
    }

    /// Flushes consume queues and the next slice of the index (all of it when `whole`),
    /// then records how far everything is on disk: the checkpoint never passes the start of
    /// the last complete cycle of index slices.
    fn checkpoint(&self, whole: bool) -> Result<(), StoreError> {
        let parts = if whole {
            1
        } else {
            (self.config.flush_interval_index_ms
                / self.config.flush_interval_consume_queue_ms.max(1))
            .clamp(1, u32::MAX as u64) as u32
        };
        let dispatched = self.dispatched.get();
        // Snapshot first: no map shard lock is held across an msync (the dispatcher inserts).
        for c in self.all_cqs() {
            c.flush()?;
        }
        let mut cycle = self.index_flush.lock().unwrap_or_else(|p| p.into_inner());
        let part = cycle.next_part % parts;
        if part == 0 {
            cycle.started_at = dispatched;
        }
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .flush_part(part, parts)?;
        if part + 1 == parts {
            cycle.flushed_to = cycle.flushed_to.max(cycle.started_at);
        }
        cycle.next_part = (part + 1) % parts;
        let cp = dispatched
            .min(self.log.flushed_offset())
            .min(cycle.flushed_to);
        drop(cycle);
        write_checkpoint(&self.config.store_path_root_dir, cp)
    }

    /// Asks the housekeeping thread for a release pass now once pulls have mapped
    /// `COLD_READ_RELEASE_BYTES` of cold log bytes since the last request: one atomic load
    /// per pull otherwise.
    fn note_cold_reads(&self) {
        let read = self.log.cold_read_bytes();
        let mark = self.cold_read_mark.load(Ordering::Relaxed);
        if read.saturating_sub(mark) < COLD_READ_RELEASE_BYTES
            || self
                .cold_read_mark
                .compare_exchange(mark, read, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let _g = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        self.release_requested.store(true, Ordering::Release);
        self.stop_cv.notify_all();
    }

    /// Drops the page mappings of log bytes more than `keep_bytes` behind the dispatcher from
    /// this process's RSS, and those of consume-queue units behind each queue's 64 KiB tail
    /// and of written index entries; reads fault them back in from the page cache. The
    /// housekeeping thread does this every `MAPPED_LOG_RELEASE_INTERVAL_MS` with a 16 MiB
    /// hot tail of the log.
    pub fn release_mapped_pages(&self, keep_bytes: i64) {
        self.log
            .release_mapped_below(self.dispatched.get() - keep_bytes.max(0));
        // The dispatcher's own outputs grow with every message too.
        for c in self.all_cqs() {
            c.release_mapped();
        }
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .release_written_entries();
    }

    /// Drops log bytes more than `keep_bytes` behind the dispatcher, and already on disk,
    /// from the page cache (`StoreConfig::log_page_cache_keep_bytes`). Called by the
    /// housekeeping thread after each release pass, so those pages are no longer mapped by
    /// this process and the kernel can free them.
    pub fn drop_log_page_cache(&self, keep_bytes: u64) {
        const PAGE: i64 = crate::page_release::PAGE_BYTES as i64;
        let keep = i64::try_from(keep_bytes).unwrap_or(i64::MAX);
        let durable = self.dispatched.get().min(self.log.flushed_offset());
        let to = durable.saturating_sub(keep) / PAGE * PAGE;
        let from = self
            .page_cache_dropped_to
            .load(Ordering::Relaxed)
            .max(self.log.min_offset() / PAGE * PAGE);
        if to > from {
            self.log.drop_page_cache(from, to);
            self.page_cache_dropped_to.fetch_max(to, Ordering::Relaxed);
        }
    }

    /// Re-reads disk usage now (the housekeeping thread does this every second).
    pub fn refresh_disk_state(&self) {
        if let Some(p) = self
            .env
            .disk_probe
            .used_percent(&self.config.store_path_root_dir)
        {
            *self
                .disk_used_percent
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = p;
            let full = p >= self.config.disk_space_warning_ratio as f64;
            if full != self.disk_full.swap(full, Ordering::AcqRel) {
                tracing::warn!(used_percent = p, full, "disk space state changed");
            }
        }
    }

    fn sample_tps(&self, now: i64) {
        let mut s = self.tps_samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back((now, self.counters.put_times.load(Ordering::Relaxed)));
        while s.len() > 11 {
            s.pop_front();
        }
    }

    fn is_delete_hour(&self, now_ms: i64) -> bool {
        let hour = (now_ms.div_euclid(3_600_000)).rem_euclid(24);
        self.config
            .delete_when
            .split(';')
            .filter_map(|h| h.trim().parse::<i64>().ok())
            .any(|h| h == hour)
    }

    /// One retention pass. Deletes commitlog segments older than `file_reserved_time_hours`
    /// when it is a `delete_when` hour, the disk is above `disk_max_used_space_ratio`, or
    /// `manual`; above the warning ratio even unexpired segments go. Then drops consume-queue
    /// and index files that only reference deleted data. Returns segments deleted.
    pub fn delete_expired_files(&self, manual: bool) -> usize {
        let now = self.env.clock.now_ms();
        let used = self
            .env
            .disk_probe
            .used_percent(&self.config.store_path_root_dir)
            .unwrap_or(0.0);
        let space_pressure = used >= self.config.disk_max_used_space_ratio as f64;
        let force = used >= self.config.disk_space_warning_ratio as f64;
        let mut deleted = 0;
        if manual || space_pressure || self.is_delete_hour(now) {
            let expire_before = now - (self.config.file_reserved_time_hours as i64) * 3_600_000;
            // Never delete data the dispatcher has not consumed yet.
            let max_phys = self.dispatched.get();
            deleted =
                self.log
                    .delete_expired(expire_before, force, max_phys, MAX_DELETE_FILES_PER_PASS);
        }
        let min_phys = self.log.min_offset();
        for c in self.all_cqs() {
            c.delete_expired(min_phys);
        }
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .delete_expired(min_phys);
        deleted
    }

    // ---------------------------------------------------------------- put

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(StoreError::ShutDown);
        }
        if self.disk_full.load(Ordering::Acquire) {
            return Err(StoreError::DiskFull {
                reason: format!("disk usage above {}%", self.config.disk_space_warning_ratio),
            });
        }
        Ok(())
    }

    /// Java `CommitLog.putMessage` delay handling: a DELAY > 0 on a non-transactional (or
    /// commit) message parks it in SCHEDULE_TOPIC_XXXX, queue level-1.
    fn transform_delay(&self, mut msg: MessageToStore) -> MessageToStore {
        let tx = sys_flag::transaction_value(msg.sys_flag);
        if tx != sys_flag::TRANSACTION_NOT_TYPE && tx != sys_flag::TRANSACTION_COMMIT_TYPE {
            return msg;
        }
        let Some(requested) = property_value(&msg.properties, property::DELAY)
            .and_then(|v| v.trim().parse::<i32>().ok())
        else {
            return msg;
        };
        if requested <= 0 {
            return msg;
        }
        let level = requested.min(self.delay_levels.len() as i32);
        let mut props = set_property(&msg.properties, property::REAL_TOPIC, &msg.topic);
        props = set_property(&props, property::REAL_QID, &msg.queue_id.to_string());
        if level != requested {
            props = set_property(&props, property::DELAY, &level.to_string());
        }
        msg.properties = props;
        msg.topic = CompactString::const_new(SCHEDULE_TOPIC);
        msg.queue_id = level - 1;
        msg
    }

    async fn append(&self, req: AppendRequest) -> Result<AppendResult, StoreError> {
        let fut = self.log.append(req);
        match self.config.flush_disk_type {
            FlushDiskType::SyncFlush => {
                let t = self.config.sync_flush_timeout_ms;
                match tokio::time::timeout(Duration::from_millis(t), fut).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::FlushTimeout { timeout_ms: t }),
                }
            }
            FlushDiskType::AsyncFlush => fut.await,
        }
    }

    fn record_put(&self, r: &Result<AppendResult, StoreError>, count: u64) {
        match r {
            Ok(a) => {
                self.counters.put_times.fetch_add(count, Ordering::Relaxed);
                self.counters
                    .put_bytes
                    .fetch_add(a.wrote_bytes as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.put_failed.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    /// Stores one message. Resolves after the write (ASYNC_FLUSH) or after it is on disk
    /// (SYNC_FLUSH, group commit). Never blocks the executor.
    pub async fn put_message(&self, msg: MessageToStore) -> Result<PutMessageResult, StoreError> {
        self.check_writable()?;
        let msg = self.transform_delay(msg);
        let tx = sys_flag::transaction_value(msg.sys_flag);
        let assign =
            tx == sys_flag::TRANSACTION_NOT_TYPE || tx == sys_flag::TRANSACTION_COMMIT_TYPE;
        let wait_durable = property_value(&msg.properties, property::WAIT) != Some("false");
        let mut buf = record_buf::region(encoded_record_length(&msg));
        encode_record(&msg, self.config.max_message_size_bytes, &mut buf)?;
        let req = AppendRequest {
            records: buf,
            record_count: 1,
            topic: msg.topic,
            queue_id: msg.queue_id,
            assign_queue_offsets: assign,
            wait_durable,
        };
        let r = self.append(req).await;
        self.record_put(&r, 1);
        let a = r?;
        let phys = a.phys_offset;
        Ok(PutMessageResult {
            msg_id: create_offset_msg_id(msg.store_host, phys),
            queue_offset: a.queue_offset,
            phys_offset: phys,
            wrote_bytes: a.wrote_bytes,
            store_timestamp_ms: a.store_timestamp_ms,
        })
    }

    /// Stores a batch for ONE (topic, queue) contiguously with consecutive queue offsets in
    /// one write. Delay levels are not supported in batches (as in Java).
    pub async fn put_messages(
        &self,
        batch: Vec<MessageToStore>,
    ) -> Result<PutMessageResult, StoreError> {
        self.check_writable()?;
        let Some(first) = batch.first() else {
            return Err(StoreError::illegal("empty batch"));
        };
        if batch.len() > MAX_BATCH_MESSAGES {
            return Err(StoreError::illegal(format!(
                "batch larger than {MAX_BATCH_MESSAGES}"
            )));
        }
        let topic = first.topic.clone();
        let queue_id = first.queue_id;
        let store_host = first.store_host;
        let mut buf = BytesMut::new();
        // Where each record starts in `buf`: the log keeps them back to back.
        let mut record_starts = Vec::with_capacity(batch.len());
        for m in &batch {
            if m.topic != topic || m.queue_id != queue_id {
                return Err(StoreError::illegal("batch spans several queues"));
            }
            if property_value(&m.properties, property::DELAY)
                .and_then(|v| v.trim().parse::<i32>().ok())
                .is_some_and(|l| l > 0)
            {
                return Err(StoreError::illegal("batch messages do not support delay"));
            }
            let tx = sys_flag::transaction_value(m.sys_flag);
            if tx != sys_flag::TRANSACTION_NOT_TYPE {
                return Err(StoreError::illegal(
                    "batch messages cannot be transactional",
                ));
            }
            record_starts.push(buf.len() as i64);
            encode_record(m, self.config.max_message_size_bytes, &mut buf)?;
        }
        if buf.len() + 8 > self.config.mapped_file_size_commit_log as usize {
            return Err(StoreError::illegal("batch larger than a commitlog segment"));
        }
        let n = batch.len();
        let req = AppendRequest {
            records: buf,
            record_count: n as u32,
            topic,
            queue_id,
            assign_queue_offsets: true,
            wait_durable: true,
        };
        let r = self.append(req).await;
        self.record_put(&r, n as u64);
        let a = r?;
        let mut ids = String::with_capacity(n * 33);
        for (i, rel) in record_starts.iter().enumerate() {
            if i > 0 {
                ids.push(',');
            }
            ids.push_str(&create_offset_msg_id(store_host, a.phys_offset + rel));
        }
        Ok(PutMessageResult {
            msg_id: ids,
            queue_offset: a.queue_offset,
            phys_offset: a.phys_offset,
            wrote_bytes: a.wrote_bytes,
            store_timestamp_ms: a.store_timestamp_ms,
        })
    }

    // ---------------------------------------------------------------- get

    /// Java `DefaultMessageStore.getMessage` semantics (store-format.md §3).
    pub fn get_message(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msg_nums: i32,
        max_total_bytes: usize,
        filter: &dyn MessageFilter,
    ) -> GetMessageResult {
        self.counters.get_times.fetch_add(1, Ordering::Relaxed);
        let mut r = GetMessageResult {
            status: GetMessageStatus::NoMatchedLogicQueue,
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
            messages: Vec::new(),
            message_queue_offsets: Vec::new(),
            suggest_pull_from_slave: false,
        };
        let Some(cq) = self.find_cq(topic, queue_id) else {
            return r;
        };
        let min = cq.min_offset();
        let max = cq.max_offset();
        r.min_offset = min;
        r.max_offset = max;
        if max == 0 {
            r.status = GetMessageStatus::NoMessageInQueue;
            r.next_begin_offset = 0;
            return r;
        }
        if offset < min {
            r.status = GetMessageStatus::OffsetTooSmall;
            r.next_begin_offset = min;
            return r;
        }
        if offset == max {
            r.status = GetMessageStatus::OffsetOverflowOne;
            r.next_begin_offset = offset;
            return r;
        }
        if offset > max {
            r.status = GetMessageStatus::OffsetOverflowBadly;
            r.next_begin_offset = if min == 0 { min } else { max };
            return r;
        }
        let max_msgs = (max_msg_nums.max(1) as usize)
            .min(self.config.max_transfer_count_on_message_in_memory.max(1));
        let max_bytes = max_total_bytes
            .min(self.config.max_transfer_bytes_on_message_in_memory)
            .max(1);
        let scan_units =
            (MAX_FILTER_SCAN_BYTES.max(max_msg_nums.max(1) as usize * CQ_UNIT_SIZE)) / CQ_UNIT_SIZE;
        let mut units = Vec::new();
        if !cq.units_from(offset, scan_units, &mut units) {
            r.status = GetMessageStatus::OffsetFoundNull;
            // Skip to the start of the next consume-queue file (Java rollNextFile).
            let per_file = self.config.mapped_file_size_consume_queue_units as i64;
            r.next_begin_offset = (offset / per_file + 1) * per_file;
            return r;
        }
        let log_min = self.log.min_offset();
        let mut status = GetMessageStatus::NoMatchedMessage;
        let mut total = 0usize;
        let mut scanned = 0i64;
        let mut skip_below = i64::MIN;
        for u in &units {
            if r.messages.len() >= max_msgs {
                break;
            }
            if !r.messages.is_empty() && total + u.size.max(0) as usize > max_bytes {
                break;
            }
            scanned += 1;
            if u.is_blank() || u.phys < skip_below {
                continue;
            }
            if u.phys < log_min {
                if r.messages.is_empty() {
                    status = GetMessageStatus::MessageWasRemoving;
                }
                skip_below = log_min;
                continue;
            }
            if !filter.is_matched_by_tags_code(u.tags_code) {
                if r.messages.is_empty() {
                    status = GetMessageStatus::NoMatchedMessage;
                }
                continue;
            }
            match self.log.read(u.phys, u.size.max(0) as usize) {
                Some(b) => {
                    total += b.len();
                    r.messages.push(b);
                    r.message_queue_offsets.push(offset + scanned - 1);
                    status = GetMessageStatus::Found;
                }
                None => {
                    if r.messages.is_empty() {
                        status = GetMessageStatus::MessageWasRemoving;
                    }
                }
            }
        }
        r.status = status;
        r.next_begin_offset = offset + scanned;
        if status == GetMessageStatus::Found {
            self.counters.get_found.fetch_add(1, Ordering::Relaxed);
            self.note_cold_reads();
        }
        r
    }

    /// The consume-queue unit at `offset` (e.g. the delivery time of a SCHEDULE_TOPIC_XXXX
    /// message is its `tags_code`).
    pub fn consume_queue_unit(&self, topic: &str, queue_id: i32, offset: i64) -> Option<CqUnit> {
        let cq = self.find_cq(topic, queue_id)?;
        if offset < cq.min_offset() {
            return None;
        }
        cq.unit(offset)
    }

    /// Physical offset of the message at queue `offset`, or 0 (Java `getCommitLogOffsetInQueue`).
    pub fn commit_log_offset_in_queue(&self, topic: &str, queue_id: i32, offset: i64) -> i64 {
        self.consume_queue_unit(topic, queue_id, offset)
            .map_or(0, |u| u.phys)
    }

    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.find_cq(topic, queue_id).map_or(0, |c| c.max_offset())
    }

    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.find_cq(topic, queue_id).map_or(-1, |c| c.min_offset())
    }

    fn store_timestamp_at(&self, phys: i64, size: i32) -> Option<i64> {
        let b = self.log.read(phys, size.max(0) as usize)?;
        parse_record_meta(&b, false)
            .ok()
            .map(|m| m.store_timestamp_ms)
    }

    /// First queue offset whose store time is >= `timestamp_ms`; max offset if all are older
    /// (a consumer starting there sees only new messages), min offset if the queue is empty.
    pub fn offset_in_queue_by_time(&self, topic: &str, queue_id: i32, timestamp_ms: i64) -> i64 {
        let Some(cq) = self.find_cq(topic, queue_id) else {
            return 0;
        };
        let mut lo = cq.min_offset();
        let mut hi = cq.max_offset();
        let log_min = self.log.min_offset();
        // Skip units whose data is gone.
        while lo < hi {
            match cq.unit(lo) {
                Some(u) if u.is_blank() || u.phys < log_min => lo += 1,
                _ => break,
            }
        }
        // Binary search over [lo, hi): store timestamps grow with the queue offset.
        let mut steps = 0;
        while lo < hi && steps < 128 {
            steps += 1;
            let mid = lo + (hi - lo) / 2;
            let ts = cq
                .unit(mid)
                .and_then(|u| self.store_timestamp_at(u.phys, u.size))
                .unwrap_or(i64::MIN);
            if ts < timestamp_ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// 5.x `boundaryType`: `upper == false` is [`Self::offset_in_queue_by_time`] (first
    /// offset stored at or after the time); `upper == true` is the last offset stored at or
    /// before it (the min offset if none).
    pub fn offset_in_queue_by_time_boundary(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
        upper: bool,
    ) -> i64 {
        if !upper {
            return self.offset_in_queue_by_time(topic, queue_id, timestamp_ms);
        }
        let first_after =
            self.offset_in_queue_by_time(topic, queue_id, timestamp_ms.saturating_add(1));
        let min = self.min_offset_in_queue(topic, queue_id).max(0);
        (first_after - 1).max(min)
    }

    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> i64 {
        let min = self.min_offset_in_queue(topic, queue_id);
        if min < 0 {
            return -1;
        }
        self.message_store_timestamp(topic, queue_id, min)
    }

    /// Store timestamp of the message at `offset`, or -1.
    pub fn message_store_timestamp(&self, topic: &str, queue_id: i32, offset: i64) -> i64 {
        self.find_cq(topic, queue_id)
            .and_then(|c| c.unit(offset))
            .and_then(|u| self.store_timestamp_at(u.phys, u.size))
            .unwrap_or(-1)
    }

    /// The record at `phys_offset` (size read from its TOTALSIZE field).
    pub fn look_message_by_offset(&self, phys_offset: i64) -> Option<Bytes> {
        let head = self.log.read(phys_offset, 4)?;
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if size <= 0 || size as usize > self.config.max_record_size_bytes() {
            return None;
        }
        self.look_message_by_offset_with_size(phys_offset, size)
    }

    pub fn look_message_by_offset_with_size(&self, phys_offset: i64, size: i32) -> Option<Bytes> {
        if size <= 0 {
            return None;
        }
        let b = self.log.read(phys_offset, size as usize)?;
        parse_record_meta(&b, false)
            .ok()
            .filter(|m| m.physical_offset == phys_offset)?;
        Some(b)
    }

    /// Records indexed under `topic#key` (KEYS tokens and UNIQ_KEY), newest first; matches
    /// are by hash, so callers (clients) re-check topic and key.
    pub fn query_message(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_ts: i64,
        end_ts: i64,
    ) -> QueryMessageResult {
        let max = max_num.clamp(1, self.config.max_msgs_num_batch.max(1));
        let full = format!("{topic}#{key}");
        let (phys, (ts, phy)) = {
            let idx = self.index.read().unwrap_or_else(|p| p.into_inner());
            (idx.query(&full, max, begin_ts, end_ts), idx.last_update())
        };
        let messages = phys
            .into_iter()
            .filter_map(|p| self.look_message_by_offset(p))
            .collect();
        QueryMessageResult {
            messages,
            index_last_update_timestamp: ts,
            index_last_update_phy_offset: phy,
        }
    }

    pub fn set_message_arrival_listener(&self, f: ArrivalListener) {
        *self.listener.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// Drops the consume queues (and their files) of `topics`; commitlog data stays until
    /// retention.
    pub fn delete_topics(&self, topics: &[String]) {
        for t in topics {
            if let Some((_, qs)) = self.cqs.remove(t.as_str()) {
                for q in qs.iter() {
                    q.value().destroy();
                }
            }
            self.queue_offsets.remove_topic(t);
            let _ = std::fs::remove_dir_all(
                self.config.store_path_root_dir.join("consumequeue").join(t),
            );
        }
    }

    /// Topics and queue ids with a consume queue.
    pub fn queues(&self) -> Vec<(String, i32)> {
        let mut v = Vec::new();
        for q in self.cqs.iter() {
            for c in q.value().iter() {
                v.push((q.key().clone(), *c.key()));
            }
        }
        v.sort();
        v
    }

    /// Resets the next-queue-offset table from the consume queues (after recovery, or when a
    /// DLedger replica becomes leader once dispatch has caught up with the committed log).
    pub fn rebuild_queue_offset_table(&self) {
        let mut t = self.queue_offsets.lock();
        t.clear();
        for q in self.cqs.iter() {
            for c in q.value().iter() {
                t.entry(q.key().clone())
                    .or_default()
                    .insert(*c.key(), c.value().max_offset());
            }
        }
    }

    pub fn commit_log_max_offset(&self) -> i64 {
        self.log.max_offset()
    }

    pub fn commit_log_min_offset(&self) -> i64 {
        self.log.min_offset()
    }

    /// Offset up to which consume queues and the index are built.
    pub fn dispatched_offset(&self) -> i64 {
        self.dispatched.get()
    }

    /// Blocks until the dispatcher reached `phys` or `timeout` passed; true if reached.
    /// (Tests and the leader-switch path use it.)
    pub fn wait_dispatched(&self, phys: i64, timeout: Duration) -> bool {
        self.dispatched.wait_beyond(phys - 1, timeout) >= phys
    }

    pub fn delay_level_millis(&self) -> &[i64] {
        &self.delay_levels
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn runtime_stats(&self) -> StoreStats {
        let put_tps = {
            let s = self.tps_samples.lock().unwrap_or_else(|p| p.into_inner());
            match (s.front(), s.back()) {
                (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 * 1000.0 / (b.0 - a.0) as f64,
                _ => 0.0,
            }
        };
        StoreStats {
            put_message_times_total: self.counters.put_times.load(Ordering::Relaxed),
            put_message_size_total: self.counters.put_bytes.load(Ordering::Relaxed),
            put_message_failed_times: self.counters.put_failed.load(Ordering::Relaxed),
            put_tps,
            get_message_times_total: self.counters.get_times.load(Ordering::Relaxed),
            get_message_found_total: self.counters.get_found.load(Ordering::Relaxed),
            commit_log_fsync_count: self.log.fsync_count(),
            commit_log_min_offset: self.log.min_offset(),
            commit_log_max_offset: self.log.max_offset(),
            commit_log_disk_bytes: self.log.disk_bytes(),
            commit_log_disk_ratio: *self
                .disk_used_percent
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            dispatch_behind_bytes: self.log.committed_offset() - self.dispatched.get(),
            disk_full: self.disk_full.load(Ordering::Acquire),
        }
    }

    /// Clean shutdown: drain appends, flush the commitlog, finish dispatch, flush consume
    /// queues/index and write the checkpoint. Blocking; idempotent.
    pub fn shutdown(&self) {
        self.stop_threads(true);
    }

    /// Stops all threads WITHOUT the final consume-queue flush and checkpoint, as if the
    /// process had died after its last acknowledged write (crash tests).
    pub fn halt(&self) {
        self.stop_threads(false);
    }

    fn stop_threads(&self, clean: bool) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        self.log.shutdown();
        if clean {
            // Let the dispatcher catch up with everything written.
            let end = self.log.committed_offset();
            self.dispatched
                .wait_beyond(end - 1, Duration::from_secs(10));
        }
        {
            let mut g = self.stop.lock().unwrap_or_else(|p| p.into_inner());
            *g = true;
            self.stop_cv.notify_all();
        }
        self.log.shutdown();
        let threads: Vec<JoinHandle<()>> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        let me = std::thread::current().id();
        for t in threads {
            // Drop may run on one of our own threads (it held the last Arc): never self-join.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        if let Some(dl) = self.dledger.get() {
            // Only after the dispatcher stopped: it follows the node's commit watermark.
            dl.stop_node();
        }
        if clean {
            if let Err(e) = self.checkpoint(true) {
                tracing::error!(error = %e, "final checkpoint failed");
            }
        }
        self.lock_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}
