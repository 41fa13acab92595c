//! DLedger mode of [`MessageStore`]: opening over a [`DLedgerCommitLog`], the role watcher
//! that makes a new leader writable only once its queue offsets are exact, and the
//! broker-facing role / metadata / leadership API.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use ::dledger::core::Role;
use ::dledger::node::{NodeStatus, RoleState};

use super::{lock_dir, read_checkpoint, MessageStore, StoreCore};
use crate::commitlog::dledger::{
    DLedgerCommitLog, DLedgerStoreConfig, MetadataKind, MetadataListener, StoreRole,
};
use crate::commitlog::{CommitLog, QueueOffsetTable};
use crate::config::StoreConfig;
use crate::env::StoreEnv;
use crate::error::StoreError;

/// One wait of the role watcher for the dispatcher (re-checked for role changes between).
const DISPATCH_WAIT_SLICE_MS: u64 = 100;

impl MessageStore {
    /// Opens the store over a DLedger commitlog and starts the node (data under
    /// `<store_path_root_dir>/dledger-<self_id>/`). Blocking like [`MessageStore::open`];
    /// the node runs on a tokio runtime of its own, or on `dl.runtime` when given.
    pub fn open_dledger(
        config: StoreConfig,
        dl: DLedgerStoreConfig,
    ) -> Result<Arc<MessageStore>, StoreError> {
        Self::open_dledger_with_env(config, dl, StoreEnv::default())
    }

    pub fn open_dledger_with_env(
        config: StoreConfig,
        dl: DLedgerStoreConfig,
        env: StoreEnv,
    ) -> Result<Arc<MessageStore>, StoreError> {
        config.validate()?;
        let root = config.store_path_root_dir.clone();
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        let lock = lock_dir(&root)?;
        let queue_offsets = Arc::new(QueueOffsetTable::default());
        let log = DLedgerCommitLog::start(
            &config,
            &dl,
            Arc::clone(&env.clock),
            Arc::clone(&queue_offsets),
        )?;
        if root.join("consumequeue").exists() {
            log.raise_committed_floor(read_checkpoint(&root));
        }
        let as_log: Arc<dyn CommitLog> = log.clone();
        let store = match Self::open_with_log(config, env, as_log, queue_offsets, Some(lock)) {
            Ok(s) => s,
            Err(e) => {
                log.stop_node();
                return Err(e);
            }
        };
        let _ = store.core.dledger.set(Arc::clone(&log));
        if let Some(l) = dl.metadata_listener {
            store.set_metadata_listener(l);
        }
        if let Some(role_rx) = log.node_role() {
            let core = Arc::downgrade(&store.core);
            let wlog = Arc::downgrade(&log);
            log.runtime_handle().spawn(role_loop(core, wlog, role_rx));
        }
        Ok(store)
    }
}

/// Follows the node's role. A change of role or term makes the store non-writable first; a
/// leader whose term NOOP committed becomes writable once (1) no put of an earlier term is
/// still between its hook and its outcome, (2) the dispatcher reached the committed end (NOOP
/// included), (3) the queue-offset table was rebuilt from the consume queues. A resync
/// request (a put failed after its queue offsets were assigned) repeats (1)–(3) in the same
/// term. (dledger's `ready_for_writes` may flap within a term while commits are applied;
/// only role/term changes count.)
async fn role_loop(
    core: Weak<StoreCore>,
    log: Weak<DLedgerCommitLog>,
    mut rx: watch::Receiver<RoleState>,
) {
    let mut writable_in: Option<u64> = None;
    loop {
        let rs = *rx.borrow_and_update();
        {
            let Some(l) = log.upgrade() else { return };
            let resync = l.take_resync();
            let keep = rs.role == Role::Leader && writable_in == Some(rs.term) && !resync;
            if !keep {
                writable_in = None;
                l.set_not_writable(&rs);
            }
        }
        if writable_in.is_none() && rs.role == Role::Leader && rs.ready_for_writes {
            match become_writable(&core, &log, &mut rx, &rs).await {
                Catchup::Done => writable_in = Some(rs.term),
                Catchup::RoleChanged => {}
                Catchup::Stopped => return,
            }
        }
        let Some(l) = log.upgrade() else { return };
        if l.is_stopping() {
            return;
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = l.resync_requested() => {}
        }
    }
}

enum Catchup {
    Done,
    RoleChanged,
    Stopped,
}

/// The node left the leadership of `rs.term`.
fn moved(rx: &watch::Receiver<RoleState>, rs: &RoleState) -> bool {
    let cur = *rx.borrow();
    cur.role != Role::Leader || cur.term != rs.term
}

async fn become_writable(
    core: &Weak<StoreCore>,
    log: &Weak<DLedgerCommitLog>,
    rx: &mut watch::Receiver<RoleState>,
    rs: &RoleState,
) -> Catchup {
    // (1) puts of an earlier term (or the failed one) resolved: no hook runs behind us.
    {
        let Some(l) = log.upgrade() else {
            return Catchup::Stopped;
        };
        let idle = l.wait_idle();
        tokio::pin!(idle);
        loop {
            tokio::select! {
                _ = &mut idle => break,
                r = rx.changed() => {
                    if r.is_err() {
                        return Catchup::Stopped;
                    }
                    if moved(rx, rs) {
                        return Catchup::RoleChanged;
                    }
                }
            }
        }
    }
    // (2) dispatcher at the committed end (which includes this term's NOOP). dledger may
    // announce the commit before our own fsync of the entries below it: take the core's
    // commit index (>= the NOOP) and wait until it is durable here and covered by the
    // watermark, so `end` really covers every committed entry.
    let status = match log.upgrade() {
        Some(l) => l.status(),
        None => return Catchup::Stopped,
    };
    let Some(commit_index) = status.await.map(|s| s.commit_index) else {
        return Catchup::Stopped;
    };
    let mut poll_ms = 1;
    let end = loop {
        if moved(rx, rs) {
            return Catchup::RoleChanged;
        }
        match log.upgrade().map(|l| l.exact_committed_end(commit_index)) {
            None => return Catchup::Stopped,
            Some(Some(e)) => break e,
            Some(None) => {
                // No watch exists for local durability; bounded back-off re-check.
                tokio::time::sleep(Duration::from_millis(poll_ms)).await;
                poll_ms = (poll_ms * 2).min(DISPATCH_WAIT_SLICE_MS);
            }
        }
    };
    loop {
        if moved(rx, rs) {
            return Catchup::RoleChanged;
        }
        let Some(c) = core.upgrade() else {
            return Catchup::Stopped;
        };
        if c.stop_requested() {
            return Catchup::Stopped;
        }
        // wait_dispatched blocks (condvar): off the executor.
        let reached = tokio::task::spawn_blocking(move || {
            c.wait_dispatched(end, Duration::from_millis(DISPATCH_WAIT_SLICE_MS))
        })
        .await
        .unwrap_or(false);
        if reached {
            break;
        }
    }
    // (3) exact next queue offsets, then accept puts (unless the role moved meanwhile).
    let Some(c) = core.upgrade() else {
        return Catchup::Stopped;
    };
    c.rebuild_queue_offset_table();
    drop(c);
    let Some(l) = log.upgrade() else {
        return Catchup::Stopped;
    };
    if moved(rx, rs) || l.take_resync() {
        // Another round: the loop re-evaluates.
        l.set_not_writable(rs);
        l.request_resync();
        return Catchup::RoleChanged;
    }
    l.set_writable(rs);
    Catchup::Done
}

impl StoreCore {
    /// The DLedger commitlog, in DLedger mode.
    pub fn dledger_log(&self) -> Option<&Arc<DLedgerCommitLog>> {
        self.dledger.get()
    }

    /// Role changes (DLedger mode); a file-commitlog store is always a writable master.
    pub fn role(&self) -> watch::Receiver<StoreRole> {
        match self.dledger.get() {
            Some(dl) => dl.role(),
            None => watch::channel(StoreRole::standalone()).1,
        }
    }

    /// Puts are accepted (always true for a file commitlog unless shut down).
    pub fn is_writable(&self) -> bool {
        match self.dledger.get() {
            Some(dl) => dl.is_writable(),
            None => !self.stopped.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Appends a metadata entry to the replicated log; resolves with its log index once
    /// committed. Every replica's metadata listener receives it in log order. Only on the
    /// writable leader (else `NotLeader`); a file-commitlog store returns `Config`.
    pub fn append_metadata(
        &self,
        kind: MetadataKind,
        payload: Bytes,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'static {
        let fut = self
            .dledger
            .get()
            .map(|dl| dl.append_metadata(kind, payload));
        async move {
            match fut {
                Some(f) => f.await,
                None => Err(StoreError::Config {
                    reason: "metadata entries need DLedger mode".into(),
                }),
            }
        }
    }

    /// Sets the metadata listener; everything already applied (the retained log up to the
    /// dispatcher) is replayed to it first, in order, then new entries follow.
    pub fn set_metadata_listener(&self, f: MetadataListener) {
        if let Some(dl) = self.dledger.get() {
            dl.set_metadata_listener(f, self.dispatched.get());
        }
    }

    /// Log entries walked so far to replay metadata (a late listener, or the entries below
    /// where this process's dispatcher started); 0 in file-commitlog mode.
    pub fn metadata_replay_steps(&self) -> u64 {
        self.dledger
            .get()
            .map_or(0, |dl| dl.metadata_replay_steps())
    }

    /// Asks the leader to hand leadership to the peer `to` (or the most caught-up peer).
    pub fn transfer_leadership(
        &self,
        to: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let fut = self.dledger.get().map(|dl| dl.transfer_leadership(to));
        async move {
            match fut {
                Some(f) => f.await,
                None => Err(StoreError::Config {
                    reason: "leadership transfer needs DLedger mode".into(),
                }),
            }
        }
    }

    /// DLedger node status (None for a file commitlog or once stopped).
    pub fn dledger_status(&self) -> impl Future<Output = Option<NodeStatus>> + Send + 'static {
        let fut = self.dledger.get().map(|dl| dl.status());
        async move {
            match fut {
                Some(f) => f.await,
                None => None,
            }
        }
    }
}
