//! The runtime: one tokio task owns the `RawNode`, ticks it, steps peer messages, and
//! processes each `Ready` in the order the core's contract demands:
//! 1. `messages` go to the transport immediately (the leader replicates while it fsyncs);
//! 2. snapshot/entries/hard state go to the storage thread as one job;
//! 3. when the storage thread reports the job durable: `on_entries_persisted`,
//!    `on_hard_state_persisted`, then that job's `persisted_messages` are sent (votes and
//!    append responses never leave before what they promise is on disk);
//! 4. committed entries resolve the appenders' futures and advance the commit watch.
//!
//! Group commit: each loop iteration drains every queued append before building a Ready, and
//! the storage thread merges all queued jobs into one fsync.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::DLedgerConfig;
use crate::core::{
    self, Entry, EntryKind, HardState, InitialState, Message, MsgKind, NodeId, ProposeError,
    RawNode, Ready, Role,
};
use crate::outbox::{OnDrop, Outbox, Pushed};
use crate::storage::codec::HEADER_SIZE_BYTES;
use crate::storage::file_store::place_entry;
use crate::storage::thread::{
    Event, Job, PersistJob, SnapshotPoint, StorageThread, StorageThreadConfig,
};
use crate::storage::{
    FileStore, FileStoreConfig, HardStateFile, HardStateRecord, StorageError, StoredEntry,
};
use crate::transport::codec::{entry_kind_code, entry_kind_from_code};
use crate::transport::{Envelope, Transport, TransportConfig};

/// Errors returned to the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DLedgerError {
    #[error("not leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("leader not ready for writes yet")]
    NotReady,
    #[error("backpressure: too many appends in flight")]
    Backpressure,
    #[error("node is shut down")]
    Shutdown,
    #[error("storage: {0}")]
    Storage(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("config: {0}")]
    Config(String),
    #[error("transport: {0}")]
    Transport(String),
}

/// Where a committed entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub index: u64,
    /// Physical position of the entry's header; the body (RocketMQ record) is at `pos + 48`.
    pub pos: u64,
}

/// Role as published on the watch channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleState {
    pub role: Role,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    /// Leader whose term NOOP committed: appends are accepted.
    pub ready_for_writes: bool,
}

/// Per-peer replication view (leader only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: NodeId,
    pub match_index: u64,
    /// `last_index - match_index`.
    pub lag: u64,
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Status and metrics of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub peers: Vec<PeerStatus>,
    pub fsyncs: u64,
    pub entries_persisted: u64,
    pub fsync_latency: LatencySummary,
    pub commit_latency: LatencySummary,
    pub msgs_dropped: u64,
    /// Lost acknowledged data at startup and not caught up yet: neither votes nor campaigns.
    pub recovering: bool,
}

#[derive(Debug)]
struct Metrics {
    fsync_us: Histogram<u64>,
    commit_us: Histogram<u64>,
    fsyncs: u64,
    entries_persisted: u64,
}

impl Metrics {
    fn new() -> Metrics {
        // 1 µs .. 60 s with 3 significant digits; construction only fails on bad bounds.
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
        Metrics {
            fsync_us: h(),
            commit_us: h(),
            fsyncs: 0,
            entries_persisted: 0,
        }
    }
}

fn summary(h: &Histogram<u64>) -> LatencySummary {
    LatencySummary {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}

/// One result per entry of an append. Inline for the usual single entry: no allocation per
/// append for its answer.
pub type AppendResults = SmallVec<[AppendResult; 1]>;

/// The outcome of an append: one result per entry, or why it failed (outcome unknown for
/// errors after the entries were proposed, like a timeout).
pub type AppendOutcome = Result<AppendResults, DLedgerError>;

/// Entry bodies of a hooked append; inline for the usual single entry.
pub type AppendBodies = SmallVec<[BytesMut; 1]>;

/// Places an append's entries and takes its outcome, both on the node loop (saves the caller
/// the hop through a task of the node's runtime, and one shared object carries both, where a
/// hook closure plus a callback would cost two boxes per append). Both calls must be cheap and
/// must not block.
pub trait AppendHandler: Send + Sync {
    /// Called with each body and the physical position its entry will get (the same on every
    /// replica), right before the entry is proposed. It must not change the body's length.
    fn place(&self, body: &mut [u8], pos: u64);
    /// Called exactly once: with the results once every entry is committed, at once if the
    /// append is refused, or `Shutdown` if the node stops first.
    fn done(&self, outcome: AppendOutcome);
}

/// Where an append's outcome goes. Dropped unanswered (the loop stopped), a handler is
/// answered `Shutdown`, so no caller ever waits forever (a dropped channel sender already
/// wakes its receiver with an error).
struct AppendReply(Option<ReplyTo>);

enum ReplyTo {
    Channel(oneshot::Sender<AppendOutcome>),
    Handler(Arc<dyn AppendHandler>),
}

impl AppendReply {
    fn send(mut self, outcome: AppendOutcome) {
        match self.0.take() {
            // The caller may have stopped waiting: nothing to do then.
            Some(ReplyTo::Channel(tx)) => {
                let _ = tx.send(outcome);
            }
            Some(ReplyTo::Handler(h)) => h.done(outcome),
            None => {}
        }
    }
}

impl Drop for AppendReply {
    fn drop(&mut self) {
        if let Some(ReplyTo::Handler(h)) = self.0.take() {
            h.done(Err(DLedgerError::Shutdown));
        }
    }
}

/// Called on the node loop with an entry body and the physical position the entry will get,
/// before the entry is proposed (DLedger's append hook: the broker writes `pos + 48` into the
/// record's PHYSICALOFFSET field). It must not change the length and must be cheap.
pub type PosHook = Box<dyn FnMut(&mut [u8], u64) + Send>;

/// What places a hooked append's entries.
enum Hook {
    Fn(PosHook),
    Handler(Arc<dyn AppendHandler>),
}

impl Hook {
    fn place(&mut self, body: &mut [u8], pos: u64) {
        match self {
            Hook::Fn(f) => f(body, pos),
            Hook::Handler(h) => h.place(body, pos),
        }
    }
}

/// What an append carries.
enum Payload {
    Plain(Vec<Bytes>),
    Hooked(AppendBodies, Hook),
}

impl Payload {
    fn len(&self) -> usize {
        match self {
            Payload::Plain(v) => v.len(),
            Payload::Hooked(v, _) => v.len(),
        }
    }
}

/// One append waiting for the node loop.
struct PendingAppend {
    data: Payload,
    reply: AppendReply,
}

enum Command {
    /// A burst of appends, proposed in this order (see `outbox`).
    Append(Vec<PendingAppend>),
    Transfer {
        to: NodeId,
        reply: oneshot::Sender<Result<(), DLedgerError>>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    Compact {
        first_index: u64,
        reply: oneshot::Sender<Result<(), DLedgerError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Shared between the handle and the loop.
struct Shared {
    metrics: Mutex<Metrics>,
    fatal: Mutex<Option<String>>,
}

impl Shared {
    /// Why the loop no longer takes commands.
    fn closed_error(&self) -> DLedgerError {
        match self.fatal.lock().ok().and_then(|f| f.clone()) {
            Some(msg) => DLedgerError::Storage(msg),
            None => DLedgerError::Shutdown,
        }
    }
}

/// Hands a burst of appends to the loop; if it cannot take them, returns them with the error
/// to answer them with (outside the outbox lock: answering runs the callers' callbacks).
fn hand_over(
    tx: &mpsc::Sender<Command>,
    shared: &Shared,
    batch: Vec<PendingAppend>,
) -> Option<(Vec<PendingAppend>, DLedgerError)> {
    match tx.try_send(Command::Append(batch)) {
        Ok(()) => None,
        Err(mpsc::error::TrySendError::Full(Command::Append(b))) => {
            Some((b, DLedgerError::Backpressure))
        }
        Err(mpsc::error::TrySendError::Closed(Command::Append(b))) => {
            Some((b, shared.closed_error()))
        }
        Err(_) => None, // only appends are sent here
    }
}

/// Hands everything waiting in the outbox to the loop; answers it if the loop cannot take it.
fn flush_to_loop(outbox: &Outbox<PendingAppend>, tx: &mpsc::Sender<Command>, shared: &Shared) {
    if let Some(Some((batch, e))) = outbox.flush(|b| hand_over(tx, shared, b)) {
        for p in batch {
            p.reply.send(Err(e.clone()));
        }
    }
}

/// A running DLedger node. Dropping it aborts the node (like a crash: nothing is flushed
/// beyond what was already acknowledged); `shutdown` stops it cleanly.
pub struct DLedgerNode {
    cfg: DLedgerConfig,
    id: NodeId,
    cmd_tx: mpsc::Sender<Command>,
    outbox: Arc<Outbox<PendingAppend>>,
    commit_rx: watch::Receiver<u64>,
    role_rx: watch::Receiver<RoleState>,
    store: FileStore,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Drop for DLedgerNode {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The core's read view of the file store.
struct LogStorage {
    store: FileStore,
    initial: InitialState,
}

fn to_core_err(e: StorageError) -> core::StorageError {
    match e {
        StorageError::Compacted { .. } => core::StorageError::Compacted,
        StorageError::Unavailable { .. } => core::StorageError::Unavailable,
        other => core::StorageError::Other(other.to_string()),
    }
}

fn to_core_entry(e: StoredEntry) -> Result<Entry, core::StorageError> {
    let kind = entry_kind_from_code(e.kind)
        .ok_or_else(|| core::StorageError::Other(format!("unknown entry kind {}", e.kind)))?;
    Ok(Entry {
        index: e.index,
        term: e.term,
        kind,
        data: e.data,
    })
}

impl core::Storage for LogStorage {
    fn initial_state(&self) -> InitialState {
        self.initial
    }
    fn first_index(&self) -> u64 {
        self.store.first_index()
    }
    fn last_index(&self) -> u64 {
        self.store.last_index()
    }
    fn term(&self, index: u64) -> Result<u64, core::StorageError> {
        self.store.term(index).map_err(to_core_err)
    }
    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_size_bytes: u64,
    ) -> Result<Vec<Entry>, core::StorageError> {
        self.store
            .entries(lo, hi, max_size_bytes)
            .map_err(to_core_err)?
            .into_iter()
            .map(to_core_entry)
            .collect()
    }
    fn compact(&mut self, first_index_to_keep: u64) -> Result<(), core::StorageError> {
        // Logical only (no I/O here: this runs on the node task); the storage thread deletes
        // the files afterwards (Job::RemoveCompacted).
        self.store.compact(first_index_to_keep).map_err(to_core_err)
    }
}

impl DLedgerNode {
    /// Open the store (recovery runs on a blocking thread), bind the transport, and start
    /// the node loop. Must be called inside a tokio runtime.
    pub async fn start(cfg: DLedgerConfig) -> Result<DLedgerNode, DLedgerError> {
        cfg.validate()
            .map_err(|e| DLedgerError::Config(e.to_string()))?;
        let id = cfg.self_node_id();
        let listen = cfg
            .self_addr()
            .ok_or_else(|| DLedgerError::Config("self_id not in peers".into()))?;
        let node_dir = cfg.node_dir();
        let store_cfg = FileStoreConfig {
            dir: node_dir.join("data"),
            segment_size_bytes: cfg.segment_size_bytes,
            max_entry_size_bytes: cfg.max_entry_size_bytes,
            disk_quota_bytes: cfg.disk_quota_bytes,
            cache_bytes: cfg.entry_cache_bytes,
            zero_ahead_bytes: cfg.zero_ahead_bytes,
        };
        let dir2 = node_dir.clone();
        let (store, hs) = tokio::task::spawn_blocking(move || {
            let store = FileStore::open(store_cfg)?;
            let hs = HardStateFile::new(&dir2).load()?;
            Ok::<_, StorageError>((store, hs))
        })
        .await
        .map_err(|e| DLedgerError::Storage(e.to_string()))?
        .map_err(|e| DLedgerError::Storage(e.to_string()))?;

        let mut core_cfg = core::Config::new(id, cfg.peers.iter().map(|p| p.id).collect());
        core_cfg.election_timeout_ticks = cfg.election_timeout_ticks;
        core_cfg.heartbeat_ticks = cfg.heartbeat_ticks;
        core_cfg.lease_ticks = cfg.lease_ticks;
        core_cfg.max_size_per_msg_bytes = cfg
            .max_msg_size_bytes
            .max(cfg.max_entry_size_bytes as u64 + 64);
        core_cfg.max_uncommitted_bytes = cfg.max_inflight_bytes;
        let initial = InitialState {
            hard_state: HardState {
                term: hs.term,
                vote: (hs.vote != 0).then_some(hs.vote),
                // Unclamped: the core clamps its log commit itself but keeps this value as
                // the durable commit, so every hard state it emits later (e.g. on a term
                // change while recovering) still carries it and a restart sees the loss again.
                commit: hs.commit,
            },
            // A durable commit index beyond the recovered log means acknowledged entries
            // are gone (e.g. a damaged/removed segment); the core then refuses to vote until
            // it has caught up again.
            data_loss: (hs.commit > store.last_index()).then_some(core::DataLoss {
                term_at_loss: hs.term,
                known_last_index: Some(hs.commit),
            }),
        };
        let seed = cfg.rng_seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        });
        let raw = RawNode::new(
            core_cfg,
            LogStorage {
                store: store.clone(),
                initial,
            },
            seed,
        )
        .map_err(|e| DLedgerError::Config(e.to_string()))?;

        let (in_tx, in_rx) = mpsc::channel(cfg.recv_queue_msgs);
        let transport = Transport::start(
            TransportConfig {
                self_id: id,
                group: cfg.group.clone(),
                listen_addr: listen,
                peers: cfg
                    .peers
                    .iter()
                    .filter(|p| p.id != id)
                    .map(|p| (p.id, p.addr))
                    .collect(),
                max_frame_bytes: cfg.max_frame_bytes(),
                send_queue_msgs: cfg.send_queue_msgs,
                recv_queue_msgs: cfg.recv_queue_msgs,
                reconnect_min_ms: cfg.reconnect_min_ms,
                reconnect_max_ms: cfg.reconnect_max_ms,
            },
            in_tx,
        )
        .await
        .map_err(|e| DLedgerError::Transport(e.to_string()))?;

        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let hs_record = HardStateRecord {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        };
        let storage_thread = StorageThread::spawn(
            store.clone(),
            HardStateFile::new(&node_dir),
            hs_record,
            StorageThreadConfig {
                max_batch_jobs: cfg.max_fsync_batch_jobs,
                disk_full_retry_ms: 500,
                fsync_linger_us: cfg.fsync_linger_us,
                fsync_linger_bytes: cfg.fsync_linger_bytes,
            },
            ev_tx,
        )
        .map_err(|e| DLedgerError::Storage(e.to_string()))?;

        let (cmd_tx, cmd_rx) = mpsc::channel(cfg.max_pending_appends);
        let commit0 = raw.committed();
        let (commit_tx, commit_rx) = watch::channel(commit0);
        let (role_tx, role_rx) = watch::channel(RoleState {
            role: raw.role(),
            term: raw.term(),
            leader_id: raw.leader(),
            ready_for_writes: false,
        });
        let shared = Arc::new(Shared {
            metrics: Mutex::new(Metrics::new()),
            fatal: Mutex::new(None),
        });
        let lp = NodeLoop {
            raw,
            store: store.clone(),
            transport,
            storage: Some(storage_thread),
            seq: 0,
            in_flight: VecDeque::new(),
            waiters: VecDeque::new(),
            commit_tx,
            role_tx,
            shared: Arc::clone(&shared),
            snapshot_pos: VecDeque::new(),
            disk_full: None,
            retain_segments: cfg.retain_segments,
            max_batch_entries: cfg.max_batch_entries,
            ticks: 0,
            next_retention_tick: RETENTION_CHECK_TICKS,
            seg_size: cfg.segment_size_bytes,
            planned: VecDeque::new(),
            planned_tail: (store.last_index(), store.end_pos()),
            cursor: store.end_pos(),
            submitted_term_vote: (hs.term, hs.vote),
        };
        let tick = Duration::from_millis(cfg.tick_ms);
        let task = tokio::spawn(lp.run(tick, in_rx, cmd_rx, ev_rx));
        Ok(DLedgerNode {
            outbox: Arc::new(Outbox::new(cfg.max_pending_appends)),
            cfg,
            id,
            cmd_tx,
            commit_rx,
            role_rx,
            store,
            shared,
            task: Some(task),
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn config(&self) -> &DLedgerConfig {
        &self.cfg
    }

    fn closed_error(&self) -> DLedgerError {
        self.shared.closed_error()
    }

    /// Append one entry; resolves once it is committed (durable on a quorum). A quorum of
    /// followers suffices, so the leader's own fsync may still be running: `committed()`
    /// (entries committed AND readable here) can reach the index a moment later.
    pub fn append(
        &self,
        data: Bytes,
    ) -> impl std::future::Future<Output = Result<AppendResult, DLedgerError>> + Send + 'static
    {
        let fut = self.append_batch(vec![data]);
        async move {
            let mut v = fut.await?;
            v.pop()
                .ok_or_else(|| DLedgerError::Invalid("empty append result".into()))
        }
    }

    /// Append several entries (consecutive indices); resolves when all are committed.
    pub fn append_batch(
        &self,
        data: Vec<Bytes>,
    ) -> impl std::future::Future<Output = AppendOutcome> + Send + 'static {
        self.submit(Payload::Plain(data))
    }

    /// Append entries whose bodies need their own position: `hook(body, pos)` runs on each
    /// body right before it is proposed, with the entry's final physical position (the same
    /// on every replica). Resolves when all are committed.
    pub fn append_batch_with_pos<F>(
        &self,
        data: Vec<BytesMut>,
        hook: F,
    ) -> impl std::future::Future<Output = AppendOutcome> + Send + 'static
    where
        F: FnMut(&mut [u8], u64) + Send + 'static,
    {
        self.submit(Payload::Hooked(
            AppendBodies::from_vec(data),
            Hook::Fn(Box::new(hook)),
        ))
    }

    /// Like [`append_batch_with_pos`](Self::append_batch_with_pos), but `handler` places the
    /// entries and takes the outcome, on the node loop (or at once, on this thread, if the
    /// append is refused). A single-entry append allocates nothing here (the burst it joins
    /// on the way to the loop is shared with the appends around it).
    pub fn append_with_handler(&self, data: AppendBodies, handler: Arc<dyn AppendHandler>) {
        self.enqueue(
            Payload::Hooked(data, Hook::Handler(Arc::clone(&handler))),
            AppendReply(Some(ReplyTo::Handler(handler))),
        );
    }

    fn submit(
        &self,
        data: Payload,
    ) -> impl std::future::Future<Output = AppendOutcome> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        self.enqueue(data, AppendReply(Some(ReplyTo::Channel(tx))));
        let shared = Arc::clone(&self.shared);
        async move {
            match rx.await {
                Ok(r) => r,
                Err(_) => Err(shared.closed_error()),
            }
        }
    }

    /// Hands an append to the loop, or answers `reply` at once with why it cannot go.
    fn enqueue(&self, data: Payload, reply: AppendReply) {
        let max = self.cfg.max_entry_size_bytes as usize;
        let too_big = match &data {
            Payload::Plain(v) => v.iter().any(|d| d.len() > max),
            Payload::Hooked(v, _) => v.iter().any(|d| d.len() > max),
        };
        if data.len() == 0 || data.len() > self.cfg.max_batch_entries {
            reply.send(Err(DLedgerError::Invalid(format!(
                "batch must hold 1..={} entries",
                self.cfg.max_batch_entries
            ))));
            return;
        }
        if too_big {
            reply.send(Err(DLedgerError::Invalid(format!(
                "entry over max_entry_size_bytes {max}"
            ))));
            return;
        }
        let item = PendingAppend { data, reply };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to defer on: hand over now, behind anything already waiting.
            if let Pushed::Full(item) = self.outbox.push(item) {
                item.reply.send(Err(DLedgerError::Backpressure));
            }
            flush_to_loop(&self.outbox, &self.cmd_tx, &self.shared);
            return;
        };
        match self.outbox.push(item) {
            Pushed::First => {
                let (outbox, tx, shared) = (
                    Arc::clone(&self.outbox),
                    self.cmd_tx.clone(),
                    Arc::clone(&self.shared),
                );
                let flush = OnDrop(Some(move || flush_to_loop(&outbox, &tx, &shared)));
                // Behind the tasks already runnable on this worker: the rest of the burst.
                rt.spawn(async move {
                    tokio::task::yield_now().await;
                    drop(flush);
                });
            }
            Pushed::Queued => {}
            Pushed::Full(item) => item.reply.send(Err(DLedgerError::Backpressure)),
        }
    }

    /// Commit index watermark (entries `<=` it may be dispatched).
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.commit_rx.clone()
    }

    /// Role/term/leader changes.
    pub fn role(&self) -> watch::Receiver<RoleState> {
        self.role_rx.clone()
    }

    /// A committed entry.
    pub fn read(&self, index: u64) -> Result<Entry, DLedgerError> {
        let mut v = self.read_range(index, index + 1)?;
        v.pop()
            .ok_or_else(|| DLedgerError::Invalid(format!("index {index} not readable")))
    }

    /// Committed entries `[lo, hi)` (`hi` clamped to the commit index + 1).
    pub fn read_range(&self, lo: u64, hi: u64) -> Result<Vec<Entry>, DLedgerError> {
        let commit = *self.commit_rx.borrow();
        let hi = hi.min(commit + 1);
        if lo >= hi {
            return Err(DLedgerError::Invalid(format!(
                "range [{lo}, {hi}) is not committed (commit index {commit})"
            )));
        }
        self.store
            .entries(lo, hi, u64::MAX)
            .map_err(|e| DLedgerError::Storage(e.to_string()))?
            .into_iter()
            .map(|e| to_core_entry(e).map_err(|e| DLedgerError::Storage(e.to_string())))
            .collect()
    }

    /// Bytes at a physical position (e.g. a record at `entry pos + 48`), durable data only.
    pub fn read_at(&self, pos: u64, len_bytes: u64) -> Result<Bytes, DLedgerError> {
        self.store
            .read_at(pos, len_bytes)
            .map_err(|e| DLedgerError::Storage(e.to_string()))
    }

    /// Physical position of entry `index`.
    pub fn entry_pos(&self, index: u64) -> Result<u64, DLedgerError> {
        self.store
            .entry_pos(index)
            .map_err(|e| DLedgerError::Storage(e.to_string()))
    }

    /// Index of the first retained entry (1 until something was compacted).
    pub fn first_index(&self) -> u64 {
        self.store.first_index()
    }

    /// Position of the first retained entry; None while the log holds no entry.
    pub fn first_entry_pos(&self) -> Option<u64> {
        self.store.entry_pos(self.store.first_index()).ok()
    }

    /// Index of the first entry that starts at or after `pos`.
    pub fn first_index_at_or_after(&self, pos: u64) -> Option<u64> {
        self.store.first_index_at_or_after(pos)
    }

    /// Start positions of the segment files, oldest first (retention decides by whole files).
    pub fn segment_bases(&self) -> Vec<u64> {
        self.store.segment_bases()
    }

    /// End position of the committed log (DLedger's `committedPos`; the broker's max offset).
    pub fn committed_end_pos(&self) -> u64 {
        let c = *self.commit_rx.borrow();
        self.store.entry_end_pos(c).unwrap_or_else(|_| {
            if c < self.store.first_index() {
                0
            } else {
                self.store.end_pos()
            }
        })
    }

    /// Ask the leader to hand leadership to `to`.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<(), DLedgerError> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx
            .send(Command::Transfer { to, reply: tx })
            .await
            .map_err(|_| self.closed_error())?;
        rx.await.map_err(|_| self.closed_error())?
    }

    /// Drop entries before `first_index` (retention); they must be committed and applied.
    pub async fn compact(&self, first_index: u64) -> Result<(), DLedgerError> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx
            .send(Command::Compact {
                first_index,
                reply: tx,
            })
            .await
            .map_err(|_| self.closed_error())?;
        rx.await.map_err(|_| self.closed_error())?
    }

    pub async fn status(&self) -> Result<NodeStatus, DLedgerError> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx
            .send(Command::Status { reply: tx })
            .await
            .map_err(|_| self.closed_error())?;
        rx.await.map_err(|_| self.closed_error())
    }

    /// Stop the loop, wait for the storage thread to finish its queued writes, close peers.
    pub async fn shutdown(mut self) {
        let (tx, rx) = oneshot::channel();
        if self
            .cmd_tx
            .send(Command::Shutdown { reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Clear the latency histograms and counters (e.g. between benchmark runs).
    pub fn reset_metrics(&self) {
        let mut m = self
            .shared
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m = Metrics::new();
    }

    /// Testing aid: the next fsync of this node's store fails (EIO), exercising fail-stop.
    #[doc(hidden)]
    pub fn inject_fsync_failure(&self) {
        self.store.inject_fsync_failure();
    }

    /// The fatal storage error that stopped this node, if any.
    pub fn fatal_error(&self) -> Option<String> {
        self.shared.fatal.lock().ok().and_then(|f| f.clone())
    }
}

struct InFlight {
    seq: u64,
    persist_point: Option<(u64, u64)>,
    has_hard_state: bool,
    /// Sent once this and all earlier jobs are durable.
    persisted_messages: Vec<Message>,
}

struct Waiter {
    first: u64,
    last: u64,
    term: u64,
    results: AppendResults,
    /// Positions predicted at propose time (what the append hook saw).
    predicted: SmallVec<[u64; 1]>,
    reply: AppendReply,
    started: Instant,
}

struct NodeLoop {
    raw: RawNode<LogStorage>,
    store: FileStore,
    transport: Transport,
    storage: Option<StorageThread>,
    seq: u64,
    in_flight: VecDeque<InFlight>,
    waiters: VecDeque<Waiter>,
    commit_tx: watch::Sender<u64>,
    role_tx: watch::Sender<RoleState>,
    shared: Arc<Shared>,
    /// (snapshot index, term) → leader position of the next entry, from InstallSnapshot.
    snapshot_pos: VecDeque<(u64, u64, u64)>,
    /// Set while the disk is full: appends are refused with this message.
    disk_full: Option<String>,
    retain_segments: usize,
    max_batch_entries: usize,
    ticks: u64,
    next_retention_tick: u64,
    seg_size: u64,
    /// (index, end position) of handed-out entries not yet known durable.
    planned: VecDeque<(u64, u64)>,
    /// (index, end position) of the last handed-out entry.
    planned_tail: (u64, u64),
    /// End position after the last entry in the leader's log, proposals included.
    cursor: u64,
    /// (term, vote) of the last hard state handed to the storage thread.
    submitted_term_vote: (u64, u64),
}

/// Bound on peer messages / commands handled per loop iteration before building a Ready.
const MAX_DRAIN_PER_ITERATION: usize = 4096;
/// Bound on Readies processed per loop iteration (normally 1–2 are available).
const MAX_READY_PER_ITERATION: usize = 1024;
/// InstallSnapshot positions remembered until the core restores one of them.
const MAX_REMEMBERED_SNAPSHOTS: usize = 8;
/// Retention is checked every this many ticks.
const RETENTION_CHECK_TICKS: u64 = 50;

impl NodeLoop {
    async fn run(
        mut self,
        tick: Duration,
        mut inbound: mpsc::Receiver<Envelope>,
        mut cmds: mpsc::Receiver<Command>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let mut ticker = tokio::time::interval(tick);
        // A late loop must not fire a burst of ticks (that would look like a long silence
        // to the election timer and cause spurious elections).
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown_reply = None;
        loop {
            // Unbiased: under a constant flood of one input the others (ticks!) still run.
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    if !self.on_event(ev) { break; }
                    for _ in 0..MAX_DRAIN_PER_ITERATION {
                        match events.try_recv() {
                            Ok(ev) => if !self.on_event(ev) { return self.stop(None).await; },
                            Err(_) => break,
                        }
                    }
                }
                m = inbound.recv() => {
                    let Some(m) = m else { break };
                    self.on_message(m);
                    for _ in 0..MAX_DRAIN_PER_ITERATION {
                        match inbound.try_recv() {
                            Ok(m) => self.on_message(m),
                            Err(_) => break,
                        }
                    }
                }
                c = cmds.recv() => {
                    let Some(c) = c else { break };
                    if let Some(r) = self.on_command(c) { shutdown_reply = Some(r); break; }
                    let mut stop = false;
                    for _ in 0..MAX_DRAIN_PER_ITERATION {
                        match cmds.try_recv() {
                            Ok(c) => if let Some(r) = self.on_command(c) { shutdown_reply = Some(r); stop = true; break; },
                            Err(_) => break,
                        }
                    }
                    if stop { break; }
                }
                _ = ticker.tick() => {
                    self.raw.tick();
                    self.ticks += 1;
                    if self.retain_segments > 0 && self.ticks >= self.next_retention_tick {
                        self.next_retention_tick = self.ticks + RETENTION_CHECK_TICKS;
                        self.apply_retention();
                    }
                }
            }
            self.drive();
        }
        self.stop(shutdown_reply).await;
    }

    async fn stop(mut self, reply: Option<oneshot::Sender<()>>) {
        self.fail_waiters(DLedgerError::Shutdown);
        // Whoever watches roles (the broker) must stop treating this node as a leader.
        let term = self.raw.term();
        self.role_tx.send_replace(RoleState {
            role: Role::Follower,
            term,
            leader_id: None,
            ready_for_writes: false,
        });
        if let Some(st) = self.storage.take() {
            // Joining the storage thread blocks: do it off the executor.
            let _ = tokio::task::spawn_blocking(move || st.join()).await;
        }
        if let Some(r) = reply {
            let _ = r.send(());
        }
    }

    fn on_message(&mut self, env: Envelope) {
        if let MsgKind::InstallSnapshot { snapshot } = &env.msg.kind {
            if self.snapshot_pos.len() >= MAX_REMEMBERED_SNAPSHOTS {
                self.snapshot_pos.pop_front();
            }
            self.snapshot_pos
                .push_back((snapshot.index, snapshot.term, env.aux));
        }
        if let Err(e) = self.raw.step(env.msg) {
            tracing::debug!(error = %e, "step failed");
        }
    }

    fn on_command(&mut self, c: Command) -> Option<oneshot::Sender<()>> {
        match c {
            Command::Append(batch) => {
                for p in batch {
                    self.propose(p.data, p.reply);
                }
            }
            Command::Transfer { to, reply } => {
                let r = if self.raw.role() != Role::Leader {
                    Err(DLedgerError::NotLeader {
                        leader: self.raw.leader(),
                    })
                } else if !self.raw.config().peers.contains(&to) {
                    Err(DLedgerError::Invalid(format!("unknown peer {to}")))
                } else {
                    self.raw.transfer_leader(to);
                    Ok(())
                };
                let _ = reply.send(r);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Compact { first_index, reply } => {
                let r = self.compact(first_index);
                let _ = reply.send(r);
            }
            Command::Shutdown { reply } => return Some(reply),
        }
        None
    }

    fn propose(&mut self, data: Payload, reply: AppendReply) {
        if let Some(msg) = &self.disk_full {
            reply.send(Err(DLedgerError::Storage(msg.clone())));
            return;
        }
        let n = data.len();
        debug_assert!(n <= self.max_batch_entries);
        let mut first = 0;
        let mut last = 0;
        let mut predicted = SmallVec::with_capacity(n);
        let (plain, mut hooked) = match data {
            Payload::Plain(v) => (v, None),
            Payload::Hooked(v, h) => (Vec::new(), Some((v, h))),
        };
        let mut plain = plain.into_iter();
        for k in 0..n {
            // Position this entry will get: after everything already in the leader's log.
            let (bytes, len) = match &mut hooked {
                None => match plain.next() {
                    Some(b) => {
                        let len = b.len();
                        (b, len)
                    }
                    None => break,
                },
                Some((v, hook)) => {
                    let mut b = std::mem::take(&mut v[k]);
                    let len = b.len();
                    let pos = place_entry(self.seg_size, self.cursor, len);
                    hook.place(&mut b, pos);
                    if b.len() != len {
                        reply.send(Err(DLedgerError::Invalid(
                            "append hook changed the body length".into(),
                        )));
                        return;
                    }
                    (b.freeze(), len)
                }
            };
            let pos = place_entry(self.seg_size, self.cursor, len);
            match self.raw.propose(bytes) {
                Ok(i) => {
                    if k == 0 {
                        first = i;
                    }
                    last = i;
                    predicted.push(pos);
                    self.cursor = pos + (HEADER_SIZE_BYTES + len) as u64;
                }
                Err(e) => {
                    // A partly proposed batch: the proposed prefix may still commit, but the
                    // caller gets an error for the whole batch (unknown outcome, like a
                    // timeout; RocketMQ producers retry).
                    let err = match e {
                        ProposeError::NotLeader { leader_hint } => DLedgerError::NotLeader {
                            leader: leader_hint,
                        },
                        ProposeError::NotReady | ProposeError::Transferring => {
                            DLedgerError::NotReady
                        }
                        ProposeError::Backpressure => DLedgerError::Backpressure,
                        ProposeError::TooLarge { size_bytes } => {
                            DLedgerError::Invalid(format!("entry of {size_bytes} bytes too large"))
                        }
                    };
                    reply.send(Err(err));
                    return;
                }
            }
        }
        self.waiters.push_back(Waiter {
            first,
            last,
            term: self.raw.term(),
            results: SmallVec::with_capacity(n),
            predicted,
            reply,
            started: Instant::now(),
        });
    }

    /// Position just after entry `index`, from the planned (handed-out) entries or the store.
    fn end_after(&self, index: u64) -> u64 {
        if let Some(&(_, e)) = self.planned.iter().rev().find(|(i, _)| *i == index) {
            return e;
        }
        if let Ok(e) = self.store.entry_end_pos(index) {
            return e;
        }
        if index + 1 == self.store.first_index() {
            if let Ok(p) = self.store.entry_pos(index + 1) {
                return p;
            }
        }
        self.store.end_pos()
    }

    /// Track where handed-out entries will land (same rule as the store), so proposals know
    /// their final position before they are written.
    fn plan_positions(&mut self, snapshot: Option<&SnapshotPoint>, entries: &[Entry]) {
        if let Some(sp) = snapshot {
            self.planned.clear();
            self.planned_tail = (sp.index, sp.next_pos);
        }
        let Some(first) = entries.first() else {
            if snapshot.is_some() {
                self.cursor = self.planned_tail.1;
            }
            return;
        };
        let mut end = if first.index == self.planned_tail.0 + 1 {
            self.planned_tail.1
        } else {
            self.end_after(first.index - 1)
        };
        while self.planned.back().is_some_and(|(i, _)| *i >= first.index) {
            self.planned.pop_back();
        }
        for e in entries {
            let at = place_entry(self.seg_size, end, e.data.len());
            end = at + (HEADER_SIZE_BYTES + e.data.len()) as u64;
            self.planned.push_back((e.index, end));
        }
        let last = entries.last().map(|e| e.index).unwrap_or(first.index);
        self.planned_tail = (last, end);
        self.cursor = end;
    }

    fn compact(&mut self, first_index: u64) -> Result<(), DLedgerError> {
        self.raw
            .compact(first_index)
            .map_err(|e| DLedgerError::Invalid(e.to_string()))?;
        if let Some(st) = &self.storage {
            st.submit(Job::RemoveCompacted);
        }
        Ok(())
    }

    fn apply_retention(&mut self) {
        let bases = self.store.segment_bases();
        if bases.len() <= self.retain_segments {
            return;
        }
        let keep_from = bases[bases.len() - self.retain_segments];
        let Some(idx) = self.store.first_index_at_or_after(keep_from) else {
            return;
        };
        let limit = self.raw.applied().min(self.raw.persisted()) + 1;
        let target = idx.min(limit);
        if target > self.store.first_index() {
            if let Err(e) = self.compact(target) {
                tracing::debug!(error = %e, "retention compaction skipped");
            }
        }
    }

    fn status(&self) -> NodeStatus {
        let s = self.raw.status();
        let last = s.last_index;
        let peers = s
            .progress
            .iter()
            .filter(|(id, _, _)| *id != s.id)
            .map(|(id, matched, _)| PeerStatus {
                id: *id,
                match_index: *matched,
                lag: last.saturating_sub(*matched),
            })
            .collect();
        let m = self
            .shared
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        NodeStatus {
            id: s.id,
            role: s.role,
            term: s.term,
            leader: s.leader,
            commit_index: s.commit,
            recovering: self.raw.is_recovering(),
            first_index: s.first_index,
            last_index: last,
            peers,
            fsyncs: m.fsyncs,
            entries_persisted: m.entries_persisted,
            fsync_latency: summary(&m.fsync_us),
            commit_latency: summary(&m.commit_us),
            msgs_dropped: self
                .transport
                .stats()
                .dropped_msgs
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Returns false when the node must stop (fatal storage error).
    fn on_event(&mut self, ev: Event) -> bool {
        match ev {
            Event::Persisted {
                seq,
                job_last: _,
                hard_state: _,
                fsync_us,
                group_entries,
                group_first_seq,
                durable: _,
            } => {
                self.disk_full = None;
                if seq == group_first_seq && fsync_us > 0 {
                    let mut m = self
                        .shared
                        .metrics
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let _ = m.fsync_us.record(fsync_us.max(1));
                    m.fsyncs += 1;
                    m.entries_persisted += group_entries as u64;
                }
                let Some(f) = self.in_flight.pop_front() else {
                    tracing::error!(seq, "storage reported an unknown job");
                    return self.fatal("storage thread reported an unknown job".into());
                };
                assert_eq!(f.seq, seq, "storage jobs complete in order");
                if let Some((i, t)) = f.persist_point {
                    self.raw.on_entries_persisted(i, t);
                    while self.planned.front().is_some_and(|(pi, _)| *pi <= i) {
                        self.planned.pop_front();
                    }
                }
                if f.has_hard_state {
                    self.raw.on_hard_state_persisted();
                }
                for m in f.persisted_messages {
                    self.send(m);
                }
                true
            }
            Event::DiskFull { seq, message } => {
                tracing::error!(seq, %message, "disk full: refusing appends until space is freed");
                let msg = format!("disk full: {message}");
                self.disk_full = Some(msg.clone());
                self.fail_waiters(DLedgerError::Storage(msg));
                true
            }
            Event::Compacted { deleted_segments } => {
                tracing::info!(deleted_segments, "retention removed segments");
                true
            }
            Event::Fatal(msg) => self.fatal(msg),
        }
    }

    fn fatal(&mut self, msg: String) -> bool {
        tracing::error!(%msg, "fatal storage error: stopping node (fail-stop)");
        if let Ok(mut f) = self.shared.fatal.lock() {
            *f = Some(msg.clone());
        }
        self.fail_waiters(DLedgerError::Storage(msg));
        false
    }

    fn fail_waiters(&mut self, e: DLedgerError) {
        for w in self.waiters.drain(..) {
            w.reply.send(Err(e.clone()));
        }
    }

    fn send(&self, m: Message) {
        let aux = match &m.kind {
            MsgKind::InstallSnapshot { snapshot } => self
                .store
                .entry_pos(snapshot.index + 1)
                .unwrap_or_else(|_| self.store.end_pos()),
            _ => 0,
        };
        self.transport.send(Envelope { msg: m, aux });
    }

    /// Process Readies until the core has nothing more.
    fn drive(&mut self) {
        // Bounded: each Ready consumes the core's pending work, so this ends after a few.
        for _ in 0..MAX_READY_PER_ITERATION {
            if !self.raw.has_ready() {
                break;
            }
            let rd = self.raw.ready();
            self.handle_ready(rd);
        }
        self.resolve_acknowledged();
    }

    /// Answers appends that a quorum holds durably although this leader's own fsync of them
    /// has not finished (thesis §10.2.1; `RawNode::acknowledged`). Their positions are the
    /// predicted ones: the leader's log is append-only within its term, so they are final.
    fn resolve_acknowledged(&mut self) {
        let acked = self.raw.acknowledged();
        let term = self.raw.term();
        let now = Instant::now();
        while let Some(w) = self.waiters.front() {
            if w.last > acked || w.term != term {
                return;
            }
            let Some(mut w) = self.waiters.pop_front() else {
                return;
            };
            // `propose` registers a waiter only once every entry of it was proposed.
            assert_eq!(
                w.predicted.len() as u64,
                w.last - w.first + 1,
                "a waiter predicts a position for each of its entries"
            );
            let done = w.results.len();
            for (k, pos) in w.predicted.iter().enumerate().skip(done) {
                w.results.push(AppendResult {
                    index: w.first + k as u64,
                    pos: *pos,
                });
            }
            self.record_commit_latency(now.duration_since(w.started));
            w.reply.send(Ok(w.results));
        }
    }

    fn record_commit_latency(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let mut m = self
            .shared
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let _ = m.commit_us.record(us.max(1));
    }

    fn handle_ready(&mut self, rd: Ready) {
        let persist_point = rd.persist_point();
        let Ready {
            hard_state,
            snapshot,
            entries,
            messages,
            persisted_messages,
            committed_entries,
            role_change,
            ready_for_writes,
        } = rd;
        for m in messages {
            self.send(m);
        }
        // The storage thread writes a hard state only when its term or vote changed (the
        // commit index is recomputed from the quorum after a restart), so a Ready whose only
        // durable content is a new commit index needs no storage job: each one used to cost
        // a wake-up of the storage thread and one of this loop, per commit advance.
        let term_vote_changed =
            hard_state.is_some_and(|h| (h.term, h.vote.unwrap_or(0)) != self.submitted_term_vote);
        let nothing_to_persist = !term_vote_changed && snapshot.is_none() && entries.is_empty();
        if nothing_to_persist {
            // Must still wait for earlier jobs (they may carry the state these depend on).
            match self.in_flight.back_mut() {
                Some(last) => last.persisted_messages.extend(persisted_messages),
                None => {
                    for m in persisted_messages {
                        self.send(m);
                    }
                }
            }
        } else {
            self.seq += 1;
            let snap = snapshot.map(|s| {
                let known = self
                    .snapshot_pos
                    .iter()
                    .rev()
                    .find(|(i, t, _)| *i == s.index && *t == s.term)
                    .map(|x| x.2);
                let next_pos = known.unwrap_or_else(|| {
                    // Cannot happen with this transport (every InstallSnapshot carries it);
                    // positions would then differ from the leader's, so say so loudly.
                    tracing::error!(index = s.index, "snapshot without leader position");
                    self.store.end_pos()
                });
                SnapshotPoint {
                    index: s.index,
                    term: s.term,
                    next_pos,
                }
            });
            self.plan_positions(snap.as_ref(), &entries);
            let job = PersistJob {
                seq: self.seq,
                snapshot: snap,
                entries: entries
                    .into_iter()
                    .map(|e| StoredEntry {
                        index: e.index,
                        term: e.term,
                        kind: entry_kind_code(e.kind),
                        data: e.data,
                    })
                    .collect(),
                hard_state: hard_state.map(|h| HardStateRecord {
                    term: h.term,
                    vote: h.vote.unwrap_or(0),
                    commit: h.commit,
                }),
            };
            if let Some(h) = &hard_state {
                self.submitted_term_vote = (h.term, h.vote.unwrap_or(0));
            }
            self.in_flight.push_back(InFlight {
                seq: self.seq,
                persist_point,
                has_hard_state: hard_state.is_some(),
                persisted_messages,
            });
            let submitted = self
                .storage
                .as_ref()
                .is_some_and(|st| st.submit(Job::Persist(job)));
            if !submitted {
                self.fatal("storage thread stopped".into());
            }
        }
        // Commits first: an entry committed in the same Ready as a step-down succeeded, and
        // a watcher seeing `ready_for_writes` must already see the NOOP's commit.
        if let Some(last) = committed_entries.last() {
            // Publish the watermark first: an appender woken below must see it.
            self.commit_tx.send_replace(last.index);
            self.resolve(&committed_entries);
        }
        // Announce writability only once every committed entry (the term's NOOP included) has
        // been handed out, so watchers of `committed()` see it too.
        let ready_for_writes = ready_for_writes && self.raw.applied() >= self.raw.committed();
        if let Some((role, term, leader)) = role_change {
            if role != Role::Leader {
                self.fail_waiters(DLedgerError::NotLeader { leader });
            }
            self.role_tx.send_replace(RoleState {
                role,
                term,
                leader_id: leader,
                ready_for_writes,
            });
        } else if self.role_tx.borrow().ready_for_writes != ready_for_writes {
            self.role_tx
                .send_modify(|r| r.ready_for_writes = ready_for_writes);
        }
    }

    fn resolve(&mut self, committed: &[Entry]) {
        let now = Instant::now();
        for e in committed {
            while let Some(w) = self.waiters.front_mut() {
                if e.index < w.first {
                    break;
                }
                if e.index > w.last || e.term != w.term || e.kind != EntryKind::Normal {
                    // Our entry was replaced by another leader's: the append failed.
                    if let Some(w) = self.waiters.pop_front() {
                        w.reply.send(Err(DLedgerError::NotLeader {
                            leader: self.raw.leader(),
                        }));
                    }
                    continue;
                }
                let pos = self.store.entry_pos(e.index).unwrap_or(u64::MAX);
                let k = (e.index - w.first) as usize;
                if w.predicted.get(k).is_some_and(|p| *p != pos) {
                    // The hook wrote a wrong position into the body: a bug, never silent.
                    tracing::error!(index = e.index, pos, predicted = ?w.predicted.get(k), "entry position differs from prediction");
                }
                w.results.push(AppendResult {
                    index: e.index,
                    pos,
                });
                if e.index == w.last {
                    if let Some(w) = self.waiters.pop_front() {
                        self.record_commit_latency(now.duration_since(w.started));
                        w.reply.send(Ok(w.results));
                    }
                }
                break;
            }
        }
    }
}

/// Map a core Role to a short string (logs, status pages).
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// The handle is shared across broker tasks.
#[allow(dead_code)]
fn assert_send_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<DLedgerNode>();
}
