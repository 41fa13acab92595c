//! The DLedger-backed [`CommitLog`] (Java `DLedgerCommitLog`): the commitlog is a Raft log
//! replicated by `dledger`. See README.md "## DLedger mode".
//!
//! Layout: each send or batch is ONE DLedger entry whose body is the stored-record bytes
//! (a batch = its records back to back). A record's physical offset is
//! `entry pos + 48 + offset of the record inside the body`; the append hook writes it into
//! PHYSICALOFFSET (and assigns QUEUEOFFSET / STORETIMESTAMP) on the node loop, right before
//! the entry is proposed, so the leader assigns queue offsets in log order (single writer).
//! Java splits a batch into one entry per message (`DLedgerCommitLog.asyncPutMessages`); we
//! keep one entry per batch (issue 4), the per-record offsets stay Java-compatible.
//!
//! Framing for the dispatcher is stateless: at a dispatch position, bytes 4..8 equal to a
//! RocketMQ record magic mean "record" (an entry header has its positive size there, a
//! blank marker its positive remaining length), i32 `1` at 0 is an entry header, `-1` is
//! the end-of-segment blank. NOOP and metadata entries are `Skip`; metadata bodies start
//! with [`METADATA_MAGIC`] (a record's TOTALSIZE can never take that value: it is above any
//! entry size limit) and are handed to the metadata listener in log order.
//!
//! Only committed entries are visible: `committed_offset` is the end position of the commit
//! index (DLedger `committedPos`), reads above it fail. Raft never truncates committed
//! entries, so consume queues (built from committed entries only) never need truncation
//! after a DLedger suffix truncation.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use compact_str::CompactString;
use tokio::sync::{watch, Notify};

use ::dledger::config::DLedgerConfig;
use ::dledger::core::Role;
use ::dledger::node::{
    AppendBodies, AppendHandler, AppendOutcome, DLedgerError, DLedgerNode, NodeStatus, RoleState,
};

use crate::commitlog::dledger_map::SegmentMaps;
use crate::commitlog::{
    AppendFuture, AppendRequest, AppendResult, AppendSlot, CommitLog, Completion, LogRead,
    QueueOffsetTable, RecordVisitor, Watermark,
};
use crate::config::StoreConfig;
use crate::env::Clock;
use crate::error::StoreError;
use crate::message::{patch_record_fields, MAGIC_CODE_V1, MAGIC_CODE_V2};

/// DLedger entry header (`DLedgerEntry.BODY_OFFSET`).
pub const ENTRY_HEADER_BYTES: i64 = 48;
const ENTRY_MAGIC: i32 = 1;
const BLANK_MAGIC: i32 = -1;
/// `kind` (DLedger's `channel` field) of a NOOP entry.
const KIND_NOOP: u32 = 1;
/// First 4 bytes of a metadata entry body ("RMQM").
pub const METADATA_MAGIC: [u8; 4] = *b"RMQM";
/// magic(4) + version(1) + kind(1) + reserved(2).
pub const METADATA_HEADER_BYTES: usize = 8;
const METADATA_VERSION: u8 = 1;
/// Largest metadata payload (a topic table or an offset table snapshot).
pub const MAX_METADATA_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;
/// Largest entry body we hand to DLedger (a batch of records).
const MAX_ENTRY_BYTES: u64 = 32 * 1024 * 1024;
/// How long `open_dledger` waits for the node to start (recovery of its files).
const START_TIMEOUT_MS: u64 = 60_000;
/// dledger's in-memory cache of recent entry bodies in a broker (see `to_dledger_config`).
const BROKER_ENTRY_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// Re-check interval while the commit index is not yet durable locally.
const LOCAL_DURABLE_POLL_MIN_MS: u64 = 1;
const LOCAL_DURABLE_POLL_MAX_MS: u64 = 50;
/// How long `append_metadata` waits for the local listener after the commit.
const META_APPLY_TIMEOUT_MS: u64 = 5_000;
/// How long a clean stop waits for the node to finish its queued writes.
const STOP_TIMEOUT_MS: u64 = 10_000;

/// What a metadata entry carries (u8 code in the entry body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetadataKind {
    TopicConfig,
    SubscriptionGroup,
    ConsumerOffsets,
    DelayOffsets,
    Lock,
    /// Anything else the broker defines (codes 0 and >= 16 are free).
    Custom(u8),
}

impl MetadataKind {
    pub fn code(self) -> u8 {
        match self {
            MetadataKind::TopicConfig => 1,
            MetadataKind::SubscriptionGroup => 2,
            MetadataKind::ConsumerOffsets => 3,
            MetadataKind::DelayOffsets => 4,
            MetadataKind::Lock => 5,
            MetadataKind::Custom(c) => c,
        }
    }
    pub fn from_code(c: u8) -> MetadataKind {
        match c {
            1 => MetadataKind::TopicConfig,
            2 => MetadataKind::SubscriptionGroup,
            3 => MetadataKind::ConsumerOffsets,
            4 => MetadataKind::DelayOffsets,
            5 => MetadataKind::Lock,
            c => MetadataKind::Custom(c),
        }
    }
}

/// Applied on every replica, in log order, on the store's dispatcher thread: (kind, payload,
/// DLedger log index). Must be quick and must not block on the store. On every start the
/// listener sees the whole retained history again (apply idempotently: "set" semantics).
pub type MetadataListener = Arc<dyn Fn(MetadataKind, &[u8], u64) + Send + Sync>;

/// Replica role as the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRole {
    pub is_leader: bool,
    /// Leader AND its term's NOOP committed AND dispatch caught up to it AND queue offsets
    /// rebuilt: puts are accepted.
    pub writable: bool,
    pub term: u64,
    /// DLedger peer name of the leader (e.g. "n0").
    pub leader_id: Option<String>,
    /// Position of this node in the peers list (a slave's brokerId is `self_index + 1`).
    pub self_index: usize,
}

impl StoreRole {
    /// The role of a single-replica (file commitlog) store: always a writable master.
    pub fn standalone() -> StoreRole {
        StoreRole {
            is_leader: true,
            writable: true,
            term: 0,
            leader_id: None,
            self_index: 0,
        }
    }
}

/// DLedger settings of a store (Java `dLegerGroup`, `dLegerPeers`, `dLegerSelfId`); dledger's
/// files live under `<storePathRootDir>/dledger-<selfId>/` as in Java. `None` = dledger's
/// default.
#[derive(Clone)]
pub struct DLedgerStoreConfig {
    pub group: String,
    /// `"n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913"`.
    pub peers: String,
    pub self_id: String,
    pub tick_ms: Option<u64>,
    pub heartbeat_ticks: Option<u32>,
    pub election_timeout_ticks: Option<u32>,
    pub lease_ticks: Option<u32>,
    pub rng_seed: Option<u64>,
    /// Group-commit delay of the node's storage thread (`DLedgerConfig::fsync_linger_us`);
    /// None = dledger's default.
    pub fsync_linger_us: Option<u64>,
    /// Worker threads of the node's own tokio runtime (1..=8). One by default: the node
    /// loop is a single task and its I/O runs on the storage thread, so a second worker
    /// mostly adds wake-ups between the two (measured: ~10 % less broker CPU per message
    /// with one). Ignored when `runtime` is set.
    pub runtime_threads: usize,
    /// Run the node's tasks on this runtime instead of one of its own. The broker passes
    /// its request runtime: a send then reaches the node loop, and the loop's answer
    /// reaches the response writer, on the same worker instead of across threads (each
    /// such hop is a wake-up costing tens of µs on a small VM). The node does no blocking
    /// I/O on it (log writes run on its storage thread). The runtime must be multi-threaded
    /// or not driven by the thread calling `start`/`stop_node` (both block on the node).
    pub runtime: Option<tokio::runtime::Handle>,
    /// Uncommitted bytes the store lets into the log at once (below dledger's own limit, so
    /// dledger never refuses an append after its queue offsets were assigned).
    pub max_inflight_bytes: usize,
    /// Registered before the dispatcher starts (same as calling `set_metadata_listener`).
    pub metadata_listener: Option<MetadataListener>,
    /// Retention floor (a DLedger index): time-based retention never deletes the entry at
    /// this index or anything after it. The broker raises it to the first entry of its
    /// latest complete full metadata round, so the retained log always replays to the whole
    /// metadata state. 0 (the default) = retention deletes nothing.
    pub retention_floor: Arc<AtomicU64>,
}

impl fmt::Debug for DLedgerStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DLedgerStoreConfig")
            .field("group", &self.group)
            .field("peers", &self.peers)
            .field("self_id", &self.self_id)
            .field("tick_ms", &self.tick_ms)
            .field("election_timeout_ticks", &self.election_timeout_ticks)
            .finish_non_exhaustive()
    }
}

impl DLedgerStoreConfig {
    pub fn new(group: &str, peers: &str, self_id: &str) -> DLedgerStoreConfig {
        DLedgerStoreConfig {
            group: group.to_string(),
            peers: peers.to_string(),
            self_id: self_id.to_string(),
            tick_ms: None,
            heartbeat_ticks: None,
            election_timeout_ticks: None,
            lease_ticks: None,
            rng_seed: None,
            fsync_linger_us: None,
            runtime_threads: 1,
            runtime: None,
            max_inflight_bytes: 32 * 1024 * 1024,
            metadata_listener: None,
            retention_floor: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The dledger node config: data under `<store_path_root_dir>/dledger-<self_id>/`,
    /// segments as large as commitlog segments (Java passes `mappedFileSizeCommitLog`).
    pub fn to_dledger_config(&self, store: &StoreConfig) -> Result<DLedgerConfig, StoreError> {
        let bad = |e: &dyn fmt::Display| StoreError::Config {
            reason: format!("dledger: {e}"),
        };
        let mut c = DLedgerConfig::new(
            &self.group,
            &self.peers,
            &self.self_id,
            &store.store_path_root_dir,
        )
        .map_err(|e| bad(&e))?;
        let seg = store.mapped_file_size_commit_log;
        c.segment_size_bytes = seg;
        // An entry (+ header + blank marker) must fit a segment.
        let max_entry = seg
            .saturating_sub((ENTRY_HEADER_BYTES + 8) as u64)
            .min(MAX_ENTRY_BYTES);
        c.max_entry_size_bytes = u32::try_from(max_entry).map_err(|e| bad(&e))?;
        c.max_inflight_bytes = c
            .max_inflight_bytes
            .max(2 * self.max_inflight_bytes as u64)
            .max(max_entry);
        // Recent bodies kept in memory for replication: a follower less than ~0.1 s behind at
        // 40,000 sends/s of 1 KiB is served from it, older reads copy from the mapped
        // segment. Cached bodies pin the buffers they were cut from (a leader's record
        // chunks, a follower's read buffers), so the resident cost is a multiple of this:
        // 16 MiB measured 79–106 MB VmHWM per broker after 10 s at 64 senders × 1 KiB,
        // 4 MiB 67–79 MB, at the same throughput. Part of the broker's RSS budget
        // (dledger's own default, 64 MiB, is meant for a bare node).
        c.entry_cache_bytes = BROKER_ENTRY_CACHE_BYTES;
        if let Some(v) = self.tick_ms {
            c.tick_ms = v;
        }
        if let Some(v) = self.heartbeat_ticks {
            c.heartbeat_ticks = v;
        }
        if let Some(v) = self.election_timeout_ticks {
            c.election_timeout_ticks = v;
        }
        if let Some(v) = self.lease_ticks {
            c.lease_ticks = v;
        }
        if let Some(v) = self.fsync_linger_us {
            c.fsync_linger_us = v;
        }
        c.rng_seed = self.rng_seed;
        c.validate().map_err(|e| bad(&e))?;
        Ok(c)
    }
}

/// One put on its way through the node: what the node loop needs to place its records
/// (`AppendHandler::place`), what placing assigned, and where the sender picks up the result
/// (`AppendSlot`). One allocation per put carries all of it.
struct PendingPut {
    log: Weak<DLedgerCommitLog>,
    table: Arc<QueueOffsetTable>,
    clock: Arc<dyn Clock>,
    topic: CompactString,
    queue_id: i32,
    assign_queue_offsets: bool,
    record_count: usize,
    records_bytes: usize,
    /// The writable term the put was submitted in.
    term: u64,
    hooked: AtomicBool,
    /// Entry position the hook saw (the final cluster-wide one).
    pos: AtomicI64,
    queue_offset: AtomicI64,
    store_timestamp_ms: AtomicI64,
    result: Completion<Result<AppendResult, StoreError>>,
}

impl AppendHandler for PendingPut {
    /// Runs on the node loop in log order: assigns queue offsets and patches them, the
    /// physical offsets and the store time into the records.
    fn place(&self, body: &mut [u8], pos: u64) {
        let now = self.clock.now_ms();
        let base_phys = pos as i64 + ENTRY_HEADER_BYTES;
        let assign = self.assign_queue_offsets;
        let mut t = self.table.lock();
        let base = if assign {
            t.get(self.topic.as_str())
                .and_then(|q| q.get(&self.queue_id))
                .copied()
                .unwrap_or(0)
        } else {
            0
        };
        // Framing was validated in `submit`; the body is unchanged since.
        let mut off = 0usize;
        for i in 0..self.record_count {
            let qo = if assign { base + i as i64 } else { 0 };
            let Some(record) = body.get_mut(off..) else {
                break;
            };
            match patch_record_fields(record, qo, base_phys + off as i64, now) {
                Ok(total) => off += total,
                Err(e) => {
                    tracing::error!(error = %e, "record framing changed after validation");
                    break;
                }
            }
        }
        if assign {
            let next = base + self.record_count as i64;
            // No String allocation on the hot path once the topic is known.
            match t.get_mut(self.topic.as_str()) {
                Some(q) => {
                    q.insert(self.queue_id, next);
                }
                None => {
                    t.entry(self.topic.to_string())
                        .or_default()
                        .insert(self.queue_id, next);
                }
            }
        }
        drop(t);
        self.queue_offset.store(base, Ordering::Release);
        self.pos.store(pos as i64, Ordering::Release);
        self.store_timestamp_ms.store(now, Ordering::Release);
        self.hooked.store(true, Ordering::Release);
        if let Some(l) = self.log.upgrade() {
            if l.writable_term.load(Ordering::Acquire) != self.term {
                // Proposed after a role change: the table it used may be stale.
                tracing::warn!(
                    term = self.term,
                    "put hooked outside its writable term; resync"
                );
                l.request_resync();
            }
        }
    }

    /// Runs on the node loop once the outcome is known (no task of its own: each hop between
    /// threads costs a wake-up per message). The put is accounted for here, so it counts
    /// even if the sender stopped waiting.
    fn done(&self, outcome: AppendOutcome) {
        let Some(l) = self.log.upgrade() else {
            self.result.complete(Err(StoreError::ShutDown));
            return;
        };
        // The entry is committed: make the watermark cover it before answering, so
        // `max_offset` and reads see the acknowledged message.
        l.refresh_committed();
        let out = match outcome {
            Ok(v) => match v.first() {
                Some(a) => {
                    // The position the hook patched into the records (dledger asserts it
                    // equals the final one; its result may not know it before the local
                    // fsync).
                    let hook_pos = self.pos.load(Ordering::Acquire);
                    if a.pos != u64::MAX && a.pos as i64 != hook_pos {
                        tracing::error!(
                            hook_pos,
                            pos = a.pos,
                            "entry position differs from the hook's"
                        );
                    }
                    Ok(AppendResult {
                        phys_offset: hook_pos + ENTRY_HEADER_BYTES,
                        queue_offset: if self.assign_queue_offsets {
                            self.queue_offset.load(Ordering::Acquire)
                        } else {
                            0
                        },
                        wrote_bytes: self.records_bytes as i32,
                        store_timestamp_ms: self.store_timestamp_ms.load(Ordering::Acquire),
                    })
                }
                None => Err(StoreError::ReadOnly {
                    reason: "dledger returned no append result".into(),
                }),
            },
            Err(e) => {
                if self.hooked.load(Ordering::Acquire) {
                    // Queue offsets were assigned to an entry that did not commit here.
                    l.request_resync();
                }
                Err(l.map_err(e))
            }
        };
        l.in_flight_bytes
            .fetch_sub(self.records_bytes, Ordering::AcqRel);
        l.end_in_flight();
        self.result.complete(out);
    }
}

impl AppendSlot for PendingPut {
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<AppendResult, StoreError>> {
        self.result.poll(cx)
    }
}

struct MetaState {
    listener: Option<MetadataListener>,
    /// Metadata entries below this position were delivered (to the listener, if any).
    applied_end: i64,
}

/// Log bytes the metadata replay walks between two drops of their page mappings (a restart
/// replays the whole log once; it must not map all of it at once).
const META_REPLAY_RELEASE_BYTES: i64 = 64 * 1024 * 1024;

/// The DLedger commitlog. Owns the node and its tokio runtime.
pub struct DLedgerCommitLog {
    me: Weak<DLedgerCommitLog>,
    cfg: DLedgerConfig,
    self_index: usize,
    node: RwLock<Option<Arc<DLedgerNode>>>,
    /// The node's own runtime; None once stopped or when it runs on the caller's
    /// (`DLedgerStoreConfig::runtime`).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// Where the node's tasks (and the store's tasks that follow it) run.
    handle: tokio::runtime::Handle,
    /// Zero-copy reads of committed bytes (pulls, dispatch, metadata).
    maps: SegmentMaps,
    seg_size: i64,
    max_entry_bytes: usize,
    max_inflight_bytes: usize,
    committed: Watermark,
    queue_offsets: Arc<QueueOffsetTable>,
    clock: Arc<dyn Clock>,
    /// Term in which puts are accepted; 0 = not writable.
    writable_term: AtomicU64,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
    in_flight_bytes: AtomicUsize,
    idle: Notify,
    resync_needed: AtomicBool,
    resync: Notify,
    role_tx: watch::Sender<StoreRole>,
    meta: Mutex<MetaState>,
    /// The lowest position the dispatcher read from in this process (`read_next`): it has
    /// walked every entry from there on and handed each metadata entry to `deliver_meta`,
    /// so only entries below it ever need a replay.
    walked_from: AtomicI64,
    /// Entries walked by metadata replays (observability; see `replay_meta_locked`).
    meta_replay_steps: AtomicU64,
    /// Monotonic: metadata entries below this position were applied on this replica.
    meta_applied: watch::Sender<i64>,
    /// See `DLedgerStoreConfig::retention_floor`.
    retention_floor: Arc<AtomicU64>,
    /// Start of the retained log as last seen (kept while the node is stopped).
    log_start: AtomicI64,
}

impl fmt::Debug for DLedgerCommitLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DLedgerCommitLog")
            .field("self_id", &self.cfg.self_id)
            .field("committed", &self.committed.get())
            .finish_non_exhaustive()
    }
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    be_i32(b, at) as u32
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Runs `wait` (which waits for a task on the node's runtime) so that it cannot starve that
/// task when the node shares the caller's runtime: on a worker of a multi-threaded runtime,
/// `block_in_place` hands the worker's tasks to another thread first. Elsewhere (a blocking
/// thread, no runtime) it simply runs.
fn block_beside_runtime<R>(wait: impl FnOnce() -> R) -> R {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}

/// What sits at a dispatch position.
enum Item {
    Record {
        size: i64,
    },
    Blank,
    Entry {
        size: i64,
        index: u64,
        kind: u32,
        body_len: i64,
    },
    Bad(String),
}

impl DLedgerCommitLog {
    /// Starts the node (on `dl.runtime`, or a runtime of its own) and returns the log.
    /// Blocking.
    pub fn start(
        store_cfg: &StoreConfig,
        dl: &DLedgerStoreConfig,
        clock: Arc<dyn Clock>,
        queue_offsets: Arc<QueueOffsetTable>,
    ) -> Result<Arc<DLedgerCommitLog>, StoreError> {
        let cfg = dl.to_dledger_config(store_cfg)?;
        let self_index = cfg
            .peers
            .iter()
            .position(|p| p.name == cfg.self_id)
            .ok_or_else(|| StoreError::Config {
                reason: format!("self_id {} not in peers", cfg.self_id),
            })?;
        let (rt, handle) = match &dl.runtime {
            Some(h) => (None, h.clone()),
            None => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(dl.runtime_threads.clamp(1, 8))
                    .thread_name(format!("dledger-{}", cfg.self_id))
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::io("dledger runtime", e))?;
                let h = rt.handle().clone();
                (Some(rt), h)
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let node_cfg = cfg.clone();
        handle.spawn(async move {
            let _ = tx.send(DLedgerNode::start(node_cfg).await);
        });
        // A std channel: this may run on a thread of another runtime (blocking like `open`).
        let started =
            block_beside_runtime(|| rx.recv_timeout(Duration::from_millis(START_TIMEOUT_MS)));
        let node = match started {
            Ok(Ok(n)) => Arc::new(n),
            failed => {
                if let Some(rt) = rt {
                    rt.shutdown_background();
                }
                let reason = match failed {
                    Ok(Err(e)) => format!("dledger start failed: {e}"),
                    _ => "dledger start timed out".into(),
                };
                return Err(StoreError::Config { reason });
            }
        };
        let committed0 = node.committed_end_pos() as i64;
        let seg_size = cfg.segment_size_bytes as i64;
        let data_dir = cfg.node_dir().join("data");
        let max_entry_bytes = cfg.max_entry_size_bytes as usize;
        let (role_tx, _) = watch::channel(StoreRole {
            is_leader: false,
            writable: false,
            term: 0,
            leader_id: None,
            self_index,
        });
        let log = Arc::new_cyclic(|me| DLedgerCommitLog {
            me: me.clone(),
            cfg,
            self_index,
            node: RwLock::new(Some(Arc::clone(&node))),
            runtime: Mutex::new(rt),
            handle,
            maps: SegmentMaps::new(data_dir, seg_size as u64),
            seg_size,
            max_entry_bytes,
            max_inflight_bytes: dl.max_inflight_bytes.max(max_entry_bytes),
            committed: Watermark::new(committed0),
            queue_offsets,
            clock,
            writable_term: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            in_flight_bytes: AtomicUsize::new(0),
            idle: Notify::new(),
            resync_needed: AtomicBool::new(false),
            resync: Notify::new(),
            role_tx,
            meta: Mutex::new(MetaState {
                listener: None,
                applied_end: 0,
            }),
            walked_from: AtomicI64::new(i64::MAX),
            meta_replay_steps: AtomicU64::new(0),
            meta_applied: watch::channel(0).0,
            retention_floor: Arc::clone(&dl.retention_floor),
            log_start: AtomicI64::new(node.first_entry_pos().map_or(0, |p| p as i64)),
        });
        // Commit watermark: follow the node's commit index.
        let weak = Arc::downgrade(&log);
        let mut crx = node.committed();
        log.handle.spawn(async move {
            let mut poll_ms = LOCAL_DURABLE_POLL_MIN_MS;
            loop {
                crx.borrow_and_update();
                let exact = match weak.upgrade() {
                    Some(l) => l.refresh_committed(),
                    None => return,
                };
                if exact {
                    poll_ms = LOCAL_DURABLE_POLL_MIN_MS;
                    if crx.changed().await.is_err() {
                        break;
                    }
                    continue;
                }
                // The commit ran ahead of our own fsync and dledger has no watch for local
                // durability: re-check shortly (backing off), or on the next commit.
                tokio::select! {
                    r = crx.changed() => if r.is_err() { break },
                    _ = tokio::time::sleep(Duration::from_millis(poll_ms)) => {}
                }
                poll_ms = (poll_ms * 2).min(LOCAL_DURABLE_POLL_MAX_MS);
            }
            if let Some(l) = weak.upgrade() {
                l.committed.notify();
            }
        });
        Ok(log)
    }

    fn node(&self) -> Option<Arc<DLedgerNode>> {
        self.node
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Arc::clone)
    }

    /// Publishes the commit watermark: the end of the commit index entry, only once that
    /// entry is durable HERE (if dledger reports a commit before this replica's own fsync,
    /// `committed_end_pos` would fall back to the local end, which may hold an uncommitted,
    /// divergent tail). Returns whether it was published.
    fn refresh_committed(&self) -> bool {
        let g = self.node.read().unwrap_or_else(|p| p.into_inner());
        let Some(n) = g.as_ref() else {
            return true;
        };
        let c = *n.committed().borrow();
        if c != 0 && n.entry_pos(c).is_err() {
            return false;
        }
        self.committed.publish(n.committed_end_pos() as i64);
        true
    }

    /// End of the commit watermark once it covers log index `index` and the commit index
    /// entry is durable locally (then the watermark is exact); None while this replica's
    /// fsync (or dledger's commit watch) lags.
    pub(crate) fn exact_committed_end(&self, index: u64) -> Option<i64> {
        let covered = self
            .node()
            .is_some_and(|n| *n.committed().borrow() >= index);
        (covered && self.refresh_committed()).then(|| self.committed.get())
    }

    /// Runtime handle of the node (tasks that must live as long as the node).
    pub fn runtime_handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// The node's role watch (None once stopped).
    pub fn node_role(&self) -> Option<watch::Receiver<RoleState>> {
        self.node().map(|n| n.role())
    }

    pub fn peer_name(&self, id: u64) -> Option<String> {
        self.cfg.peer_name(id).map(str::to_string)
    }

    pub fn self_id(&self) -> &str {
        &self.cfg.self_id
    }

    /// Role as published to the broker.
    pub fn role(&self) -> watch::Receiver<StoreRole> {
        self.role_tx.subscribe()
    }

    pub fn is_writable(&self) -> bool {
        self.writable_term.load(Ordering::Acquire) != 0 && !self.stopping.load(Ordering::Acquire)
    }

    /// Publishes a non-writable role from the node's state (every role change first).
    pub(crate) fn set_not_writable(&self, rs: &RoleState) {
        self.writable_term.store(0, Ordering::SeqCst);
        let r = StoreRole {
            is_leader: rs.role == Role::Leader,
            writable: false,
            term: rs.term,
            leader_id: rs.leader_id.and_then(|id| self.peer_name(id)),
            self_index: self.self_index,
        };
        self.role_tx.send_if_modified(|cur| {
            if *cur != r {
                *cur = r;
                true
            } else {
                false
            }
        });
    }

    /// Accept puts in `rs.term` (queue offsets were rebuilt for it).
    pub(crate) fn set_writable(&self, rs: &RoleState) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        self.writable_term.store(rs.term.max(1), Ordering::Release);
        self.role_tx.send_replace(StoreRole {
            is_leader: true,
            writable: true,
            term: rs.term,
            leader_id: Some(self.cfg.self_id.clone()),
            self_index: self.self_index,
        });
        tracing::info!(self_id = %self.cfg.self_id, term = rs.term, "dledger store writable");
    }

    /// Assigned queue offsets may have a hole or be stale: stop puts until they are rebuilt.
    pub(crate) fn request_resync(&self) {
        self.resync_needed.store(true, Ordering::Release);
        if self.writable_term.swap(0, Ordering::SeqCst) != 0 {
            self.role_tx.send_modify(|r| r.writable = false);
        }
        self.resync.notify_one();
    }

    pub(crate) fn take_resync(&self) -> bool {
        self.resync_needed.swap(false, Ordering::AcqRel)
    }

    pub(crate) async fn resync_requested(&self) {
        self.resync.notified().await;
    }

    /// Resolves once no put is between its hook and its outcome.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let n = self.idle.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            n.await;
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Raises the commit watermark to `pos` (the store's dispatch checkpoint at startup) when
    /// this replica holds every byte below it. Everything below a checkpoint was committed
    /// in this replica's log, and Raft never changes committed entries, so consume queues up
    /// to it stay servable while the node re-learns the commit index (dledger persists the
    /// commit index only with term/vote changes, so it restarts low).
    pub(crate) fn raise_committed_floor(&self, pos: i64) {
        if pos <= self.committed.get() {
            return;
        }
        let held = self
            .node()
            .is_some_and(|n| n.read_at(pos as u64 - 1, 1).is_ok());
        if held {
            self.committed.publish(pos);
        } else {
            tracing::warn!(pos, "dledger log shorter than the dispatch checkpoint");
        }
    }

    /// End position of the committed log, refreshed from the node.
    pub fn committed_end(&self) -> i64 {
        self.refresh_committed();
        self.committed.get()
    }

    fn not_leader(&self) -> StoreError {
        if self.stopping.load(Ordering::Acquire) {
            return StoreError::ShutDown;
        }
        let r = self.role_tx.borrow();
        StoreError::NotLeader {
            leader: if r.is_leader && !r.writable {
                None
            } else {
                r.leader_id.clone()
            },
        }
    }

    fn map_err(&self, e: DLedgerError) -> StoreError {
        match e {
            DLedgerError::NotLeader { leader } => StoreError::NotLeader {
                leader: leader.and_then(|id| self.peer_name(id)),
            },
            DLedgerError::NotReady => StoreError::NotLeader { leader: None },
            DLedgerError::Backpressure => StoreError::Busy {
                reason: "dledger append queue full".into(),
            },
            DLedgerError::Shutdown => StoreError::ShutDown,
            DLedgerError::Invalid(m) => StoreError::MessageIllegal { reason: m },
            DLedgerError::Storage(m) if m.starts_with("disk full") => {
                StoreError::DiskFull { reason: m }
            }
            other => StoreError::ReadOnly {
                reason: other.to_string(),
            },
        }
    }

    /// Counts the put in flight BEFORE looking at writability (SeqCst on both sides, like
    /// the role watcher's "not writable, then wait for in_flight == 0"): either the watcher
    /// sees this put and waits for its outcome, or the put sees "not writable" and stops.
    /// So a queue-offset rebuild never runs while a hook may still use the old table.
    fn submit(&self, req: AppendRequest) -> Result<AppendFuture, StoreError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let r = self.submit_counted(req);
        if r.is_err() {
            self.end_in_flight();
        }
        r
    }

    fn end_in_flight(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn submit_counted(&self, mut req: AppendRequest) -> Result<AppendFuture, StoreError> {
        let term = self.writable_term.load(Ordering::SeqCst);
        if term == 0 || self.stopping.load(Ordering::Acquire) {
            return Err(self.not_leader());
        }
        let len = req.records.len();
        if len == 0 || len > self.max_entry_bytes {
            return Err(StoreError::illegal(format!(
                "append of {len} bytes exceeds the entry limit {}",
                self.max_entry_bytes
            )));
        }
        // Frame the records now, so the hook (on the node loop) cannot fail.
        let record_count = req.record_count as usize;
        let (mut off, mut n) = (0usize, 0usize);
        while off < len && n < record_count {
            off += patch_record_fields(&mut req.records[off..], 0, 0, 0)?;
            n += 1;
        }
        if off != len || n != record_count {
            return Err(StoreError::illegal("malformed encoded records in append"));
        }
        let used = self.in_flight_bytes.fetch_add(len, Ordering::AcqRel);
        if used + len > self.max_inflight_bytes {
            self.in_flight_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(StoreError::Busy {
                reason: format!("{used} uncommitted bytes in flight"),
            });
        }
        let Some(node) = self.node() else {
            self.in_flight_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(StoreError::ShutDown);
        };
        let put = Arc::new(PendingPut {
            log: self.me.clone(),
            table: Arc::clone(&self.queue_offsets),
            clock: Arc::clone(&self.clock),
            topic: std::mem::take(&mut req.topic),
            queue_id: req.queue_id,
            assign_queue_offsets: req.assign_queue_offsets,
            record_count,
            records_bytes: len,
            term,
            hooked: AtomicBool::new(false),
            pos: AtomicI64::new(0),
            queue_offset: AtomicI64::new(0),
            store_timestamp_ms: AtomicI64::new(0),
            result: Completion::new(),
        });
        node.append_with_handler(
            AppendBodies::from_buf([req.records]),
            Arc::clone(&put) as Arc<dyn AppendHandler>,
        );
        drop(node);
        Ok(AppendFuture::slot(put))
    }

    /// Appends a metadata entry; resolves with its log index once committed AND applied by
    /// this replica's listener (so the leader's own state reflects it when the caller answers), or
    /// `FlushTimeout` if local dispatch does not reach it in time (it is committed and will
    /// still be applied everywhere).
    pub fn append_metadata(
        &self,
        kind: MetadataKind,
        payload: Bytes,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'static {
        let early = (|| {
            if !self.is_writable() {
                return Err(self.not_leader());
            }
            if payload.len() > MAX_METADATA_PAYLOAD_BYTES
                || payload.len() + METADATA_HEADER_BYTES > self.max_entry_bytes
            {
                return Err(StoreError::illegal(format!(
                    "metadata payload of {} bytes too large",
                    payload.len()
                )));
            }
            let node = self.node().ok_or(StoreError::ShutDown)?;
            let body_len = (METADATA_HEADER_BYTES + payload.len()) as i64;
            let mut b = BytesMut::with_capacity(METADATA_HEADER_BYTES + payload.len());
            b.put_slice(&METADATA_MAGIC);
            b.put_u8(METADATA_VERSION);
            b.put_u8(kind.code());
            b.put_u16(0);
            b.put_slice(&payload);
            // The hook only records the entry's final position.
            let pos = Arc::new(AtomicI64::new(-1));
            let seen = Arc::clone(&pos);
            let fut = node.append_batch_with_pos(vec![b], move |_body: &mut [u8], p: u64| {
                seen.store(p as i64, Ordering::Release);
            });
            Ok((fut, body_len, pos))
        })();
        let me = self.me.clone();
        let mut applied = self.meta_applied.subscribe();
        async move {
            let (fut, body_len, pos) = early?;
            let index = match fut.await {
                Ok(v) => match v.first() {
                    Some(a) => a.index,
                    None => {
                        return Err(StoreError::ReadOnly {
                            reason: "dledger returned no append result".into(),
                        })
                    }
                },
                Err(e) => {
                    return Err(match me.upgrade() {
                        Some(l) => l.map_err(e),
                        None => StoreError::ShutDown,
                    })
                }
            };
            let end = pos.load(Ordering::Acquire) + ENTRY_HEADER_BYTES + body_len;
            let wait = Duration::from_millis(META_APPLY_TIMEOUT_MS);
            match tokio::time::timeout(wait, applied.wait_for(|v| *v >= end)).await {
                Ok(Ok(_)) => Ok(index),
                Ok(Err(_)) => Err(StoreError::ShutDown),
                Err(_) => Err(StoreError::FlushTimeout {
                    timeout_ms: META_APPLY_TIMEOUT_MS,
                }),
            }
        }
    }

    /// Sets the metadata listener and replays every metadata entry delivered so far (and up
    /// to `dispatched`) to it, in order; later entries reach it from the dispatcher.
    pub fn set_metadata_listener(&self, f: MetadataListener, dispatched: i64) {
        let mut m = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        m.listener = Some(f);
        let upto = m.applied_end.max(dispatched);
        m.applied_end = self.min_offset();
        self.replay_meta_locked(&mut m, upto);
    }

    /// Delivers metadata entries in `[m.applied_end, upto)` by walking entry headers.
    fn replay_meta_locked(&self, m: &mut MetaState, upto: i64) {
        let mut p = m.applied_end.max(self.min_offset());
        let mut release_at = p + META_REPLAY_RELEASE_BYTES;
        // Bounded: every step advances by at least 8 bytes.
        while p < upto {
            self.meta_replay_steps.fetch_add(1, Ordering::Relaxed);
            if p >= release_at {
                // The walk is behind the dispatcher: nobody needs these pages mapped.
                self.maps.release_before(p as u64);
                release_at = p + META_REPLAY_RELEASE_BYTES;
            }
            let next = match self.item_at(p) {
                Item::Record { size } => p + size,
                Item::Blank => self.next_segment(p),
                Item::Entry {
                    size,
                    index,
                    kind,
                    body_len,
                } => {
                    if kind != KIND_NOOP {
                        if let Some(body) = self.metadata_body(p, body_len) {
                            Self::call_listener(m, index, &body);
                        }
                    }
                    p + size
                }
                Item::Bad(reason) => {
                    tracing::error!(pos = p, %reason, "unreadable entry while replaying metadata");
                    self.next_segment(p)
                }
            };
            p = next.max(p + 8);
        }
        m.applied_end = m.applied_end.max(upto);
        self.publish_meta_applied(m.applied_end);
    }

    /// Entries walked by metadata replays so far.
    pub fn metadata_replay_steps(&self) -> u64 {
        self.meta_replay_steps.load(Ordering::Relaxed)
    }

    fn publish_meta_applied(&self, end: i64) {
        self.meta_applied.send_if_modified(|v| {
            if end > *v {
                *v = end;
                true
            } else {
                false
            }
        });
    }

    fn call_listener(m: &MetaState, index: u64, body: &Bytes) {
        if let Some(l) = &m.listener {
            let kind = MetadataKind::from_code(body[5]);
            l(kind, &body[METADATA_HEADER_BYTES..], index);
        }
    }

    /// The metadata body of the entry at `pos`, if it is one.
    fn metadata_body(&self, pos: i64, body_len: i64) -> Option<Bytes> {
        if body_len < METADATA_HEADER_BYTES as i64 {
            return None;
        }
        let at = (pos + ENTRY_HEADER_BYTES) as u64;
        let (magic, version) = self.maps.peek(at, METADATA_HEADER_BYTES, |h| {
            (h[0..4] == METADATA_MAGIC, h[4])
        })?;
        if !magic {
            return None;
        }
        if version != METADATA_VERSION {
            tracing::error!(pos, version, "unknown metadata entry version; skipped");
            return None;
        }
        self.maps.read(at, body_len as usize)
    }

    /// Whether segment `base` was last written before `expire_before_ms` (Java's
    /// `fileReservedTime` test on the file's modification time). Unknown = not expired.
    fn segment_expired(&self, base: u64, expire_before_ms: i64) -> bool {
        let modified_ms = std::fs::metadata(self.maps.segment_path(base))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        modified_ms.is_some_and(|m| m < expire_before_ms)
    }

    fn next_segment(&self, p: i64) -> i64 {
        (p / self.seg_size + 1) * self.seg_size
    }

    fn item_at(&self, p: i64) -> Item {
        if p % self.seg_size + 8 > self.seg_size {
            return Item::Blank;
        }
        let Some((a, b)) = self
            .maps
            .peek(p as u64, 8, |h| (be_i32(h, 0), be_i32(h, 4)))
        else {
            return Item::Bad(format!("position {p} not readable"));
        };
        if b == MAGIC_CODE_V1 || b == MAGIC_CODE_V2 {
            if a <= 0 {
                return Item::Bad(format!("record size {a}"));
            }
            return Item::Record { size: a as i64 };
        }
        if a == BLANK_MAGIC {
            return Item::Blank;
        }
        if a != ENTRY_MAGIC || (b as i64) < ENTRY_HEADER_BYTES {
            return Item::Bad(format!("no entry at {p}: magic {a} size {b}"));
        }
        let Some((body_len, index, kind)) =
            self.maps.peek(p as u64, ENTRY_HEADER_BYTES as usize, |h| {
                (be_i32(h, 44) as i64, be_u64(h, 8), be_u32(h, 32))
            })
        else {
            return Item::Bad(format!("entry header at {p} not readable"));
        };
        if body_len + ENTRY_HEADER_BYTES != b as i64 {
            return Item::Bad(format!("entry at {p}: size {b} body {body_len}"));
        }
        Item::Entry {
            size: b as i64,
            index,
            kind,
            body_len,
        }
    }

    fn deliver_meta(&self, pos: i64, end: i64, index: u64, body: &Bytes) {
        let mut m = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        if pos < m.applied_end {
            return; // delivered before (re-dispatch after restart or a late listener replay)
        }
        let walked_from = self.walked_from.load(Ordering::Acquire);
        if pos > m.applied_end && m.applied_end < walked_from {
            // Entries before the dispatch start of this process. Those after it were walked
            // by the dispatcher already: walking them again here cost a scan of every entry
            // since the previous metadata entry (seconds of traffic, all mapped into RSS).
            self.replay_meta_locked(&mut m, walked_from.min(pos));
        }
        Self::call_listener(&m, index, body);
        m.applied_end = end;
        self.publish_meta_applied(end);
    }

    /// Stops accepting appends (the node keeps running so dispatch can finish).
    fn stop_appends(&self) {
        self.stopping.store(true, Ordering::Release);
        self.writable_term.store(0, Ordering::Release);
        self.role_tx.send_modify(|r| r.writable = false);
    }

    /// Stops the node cleanly (queued writes finish) and its runtime. Blocking; idempotent.
    pub fn stop_node(&self) {
        self.stop_appends();
        let node = self.node.write().unwrap_or_else(|p| p.into_inner()).take();
        let rt = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(node) = node {
            match Arc::try_unwrap(node) {
                Ok(node) => {
                    let (tx, rx) = std::sync::mpsc::channel();
                    self.handle.spawn(async move {
                        node.shutdown().await;
                        let _ = tx.send(());
                    });
                    let stopped = block_beside_runtime(|| {
                        rx.recv_timeout(Duration::from_millis(STOP_TIMEOUT_MS))
                    });
                    if stopped.is_err() {
                        tracing::warn!("dledger node did not stop in time");
                    }
                }
                // Someone (a transfer/status call) still holds it: dropping aborts the node.
                Err(node) => drop(node),
            }
        }
        if let Some(rt) = rt {
            // Wait for the workers to drop every task (sockets closed, so the ports can be
            // bound again), from a fresh thread: the caller may be inside some runtime.
            let t = std::thread::Builder::new()
                .name("dledger-rt-stop".into())
                .spawn(move || rt.shutdown_timeout(Duration::from_millis(STOP_TIMEOUT_MS)));
            match t {
                Ok(t) => {
                    let _ = t.join();
                }
                Err(e) => tracing::warn!(error = %e, "could not wait for the dledger runtime"),
            }
        }
        self.maps.clear();
        self.committed.notify();
        self.idle.notify_waiters();
        tracing::info!(self_id = %self.cfg.self_id, "dledger node stopped");
    }

    /// Hands leadership to `to` (a peer name), or to the most caught-up peer.
    pub fn transfer_leadership(
        &self,
        to: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let node = self.node();
        let target = to.map(|n| (n.to_string(), self.cfg.peer_id(n)));
        let self_node_id = self.cfg.self_node_id();
        let me = self.me.clone();
        async move {
            let node = node.ok_or(StoreError::ShutDown)?;
            let id = match target {
                Some((_, Some(id))) => id,
                Some((name, None)) => {
                    return Err(StoreError::Config {
                        reason: format!("unknown dledger peer {name}"),
                    })
                }
                None => {
                    let st = node.status().await.map_err(|_| StoreError::ShutDown)?;
                    st.peers
                        .iter()
                        .filter(|p| p.id != self_node_id)
                        .max_by_key(|p| p.match_index)
                        .map(|p| p.id)
                        .ok_or_else(|| StoreError::Config {
                            reason: "no peer to transfer leadership to".into(),
                        })?
                }
            };
            // Stop puts first: while the transfer runs dledger refuses proposals, and a put
            // refused after its queue offsets were assigned must not leave a hole if the
            // transfer is abandoned. If we stay leader, the resync makes us writable again.
            if let Some(l) = me.upgrade() {
                l.request_resync();
            }
            node.transfer_leadership(id)
                .await
                .map_err(|e| match me.upgrade() {
                    Some(l) => l.map_err(e),
                    None => StoreError::ShutDown,
                })
        }
    }

    /// Node status (term, role, commit, per-peer lag, fsync/commit latency).
    pub fn status(&self) -> impl Future<Output = Option<NodeStatus>> + Send + 'static {
        let node = self.node();
        async move { node?.status().await.ok() }
    }
}

impl Drop for DLedgerCommitLog {
    fn drop(&mut self) {
        // May run on any thread (even one of the node's runtime): abort, never wait.
        self.node.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            rt.shutdown_background();
        }
    }
}

impl CommitLog for DLedgerCommitLog {
    fn append(&self, req: AppendRequest) -> AppendFuture {
        match self.submit(req) {
            Ok(f) => f,
            Err(e) => AppendFuture::ready(Err(e)),
        }
    }

    fn committed_offset(&self) -> i64 {
        self.committed.get()
    }

    fn wait_committed_beyond(&self, offset: i64, timeout: Duration) -> i64 {
        self.committed.wait_beyond(offset, timeout)
    }

    fn read_next(&self, from: i64, committed: i64, visit: RecordVisitor<'_>) -> LogRead {
        if from >= committed {
            return LogRead::NotYet;
        }
        if from < self.walked_from.load(Ordering::Relaxed) {
            self.walked_from.fetch_min(from, Ordering::AcqRel);
        }
        let min = self.min_offset();
        if from < min {
            return LogRead::Skip { next: min };
        }
        match self.item_at(from) {
            Item::Record { size } => {
                if from + size > committed {
                    return LogRead::Corrupt {
                        reason: format!("record at {from} of {size} bytes beyond commit"),
                        next: self.next_segment(from),
                    };
                }
                match self
                    .maps
                    .peek(from as u64, size as usize, |data| visit(from, data))
                {
                    Some(visited) => LogRead::Record {
                        phys: from,
                        next: from + size,
                        visited,
                    },
                    None => LogRead::NotYet,
                }
            }
            Item::Blank => LogRead::Skip {
                next: self.next_segment(from),
            },
            Item::Entry {
                size,
                index,
                kind,
                body_len,
            } => {
                if kind == KIND_NOOP {
                    return LogRead::Skip { next: from + size };
                }
                if let Some(body) = self.metadata_body(from, body_len) {
                    self.deliver_meta(from, from + size, index, &body);
                    return LogRead::Skip { next: from + size };
                }
                // A message entry: its records follow the header.
                LogRead::Skip {
                    next: from + ENTRY_HEADER_BYTES,
                }
            }
            Item::Bad(reason) => {
                if self.node().is_none() {
                    return LogRead::NotYet;
                }
                LogRead::Corrupt {
                    reason,
                    next: self.next_segment(from),
                }
            }
        }
    }

    fn cold_read_bytes(&self) -> u64 {
        self.maps.cold_read_bytes()
    }

    fn release_mapped_below(&self, below: i64) {
        if below > 0 {
            self.maps.release_before(below as u64);
        }
    }

    fn drop_page_cache(&self, from: i64, to: i64) {
        if from >= 0 && to > from {
            self.maps.drop_page_cache(from as u64, to as u64);
        }
    }

    fn read(&self, phys: i64, size: usize) -> Option<Bytes> {
        if phys < 0 || size == 0 || phys.checked_add(size as i64)? > self.committed.get() {
            return None;
        }
        self.maps.read(phys as u64, size)
    }

    fn min_offset(&self) -> i64 {
        // The first retained entry, asked live (two uncontended read locks): besides our own
        // retention, an InstallSnapshot moves it, and a stale start would send the
        // dispatcher into deleted segments.
        if let Some(p) = self.node().and_then(|n| n.first_entry_pos()) {
            self.log_start.fetch_max(p as i64, Ordering::AcqRel);
        }
        self.log_start.load(Ordering::Acquire)
    }

    fn max_offset(&self) -> i64 {
        // Java `DLedgerCommitLog.getMaxOffset`: the committed position.
        self.committed_end()
    }

    fn flushed_offset(&self) -> i64 {
        // Committed entries are fsynced on a quorum including this replica.
        self.committed.get()
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn delete_expired(
        &self,
        expire_before_ms: i64,
        force: bool,
        max_phys: i64,
        max_files: usize,
    ) -> usize {
        let Some(node) = self.node() else {
            return 0;
        };
        // Whole segment files go, oldest first, and only when every entry in them is
        // committed, dispatched (`max_phys`) and below the retention floor.
        let floor = self.retention_floor.load(Ordering::Acquire);
        if floor == 0 {
            return 0;
        }
        let floor_pos = match node.entry_pos(floor) {
            Ok(p) => p as i64,
            // Not written yet: the floor does not limit anything below the log's end.
            Err(_) if floor >= node.first_index() => i64::MAX,
            Err(_) => return 0,
        };
        let limit = max_phys.min(self.committed.get()).min(floor_pos);
        let bases = node.segment_bases();
        let mut keep_from = None;
        let mut deleted = 0;
        // The last segment (the one being written) always stays.
        for w in bases.windows(2) {
            let (base, next) = (w[0], w[1]);
            if deleted >= max_files || next as i64 > limit {
                break;
            }
            if !force && !self.segment_expired(base, expire_before_ms) {
                break;
            }
            deleted += 1;
            keep_from = Some(next);
        }
        let Some(keep_from) = keep_from else {
            return 0;
        };
        let Some(first_kept) = node.first_index_at_or_after(keep_from) else {
            return 0;
        };
        tracing::info!(
            segments = deleted,
            first_kept,
            keep_from,
            "retention: compacting the replicated log"
        );
        // The node deletes the files on its storage thread; pulls of older offsets answer
        // OFFSET_TOO_SMALL from the next pass on (`min_offset`).
        self.handle.spawn(async move {
            if let Err(e) = node.compact(first_kept).await {
                tracing::warn!(error = %e, first_kept, "retention compaction refused");
            }
        });
        self.maps.forget_below(keep_from);
        deleted
    }

    fn disk_bytes(&self) -> u64 {
        (self.committed.get() - self.min_offset()).max(0) as u64
    }

    fn shutdown(&self) {
        self.stop_appends();
    }

    fn fsync_count(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_kind_codes_round_trip() {
        for c in 0..=255u8 {
            assert_eq!(MetadataKind::from_code(c).code(), c);
        }
        assert_eq!(MetadataKind::from_code(3), MetadataKind::ConsumerOffsets);
    }

    #[test]
    fn dledger_config_follows_the_store_config() {
        let store = StoreConfig {
            store_path_root_dir: "/tmp/x".into(),
            mapped_file_size_commit_log: 1 << 20,
            ..StoreConfig::default()
        };
        let mut dl = DLedgerStoreConfig::new("g", "n0-127.0.0.1:1;n1-127.0.0.1:2", "n1");
        dl.election_timeout_ticks = Some(50);
        let c = dl.to_dledger_config(&store).unwrap();
        assert_eq!(c.node_dir(), std::path::PathBuf::from("/tmp/x/dledger-n1"));
        assert_eq!(c.segment_size_bytes, 1 << 20);
        assert_eq!(c.max_entry_size_bytes as u64, (1 << 20) - 56);
        assert_eq!(c.election_timeout_ticks, 50);
        assert!(DLedgerStoreConfig::new("g", "n0-127.0.0.1:1", "n7")
            .to_dledger_config(&store)
            .is_err());
    }
}
