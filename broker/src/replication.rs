//! Group mode at run time (see `group` for the types): the metadata listener every replica
//! applies, the task that turns the store's DLedger role into the broker [`Role`] (and
//! re-registers on every change), the leader's metadata replicator, request forwarding
//! from a follower to the leader, and the graceful leadership hand-off at shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use remoting::client::{ClientConfig, RemotingClient};
use remoting::codes::response;
use remoting::RemotingCommand;
use store::{MetadataKind, StoreError, StoreRole};
use tokio::sync::watch;

use crate::consumer_offset::ConsumerOffsetManager;
use crate::context::BrokerContext;
use crate::group::{Checkpoint, MetaEntry, MetaKind, OffsetDelta, Peers, Role};
use crate::lock_manager::{HeldLock, RebalanceLockManager};
use crate::schedule::{decode_delay_offsets, ScheduleMessageService};
use crate::subscription_group::{SubscriptionGroupManager, SubscriptionGroupWrapper};
use crate::topic_config::{DataVersion, TopicConfigManager, TopicConfigSerializeWrapper};

/// Target JSON size of one consumer-offset entry (the store caps metadata payloads at
/// `MAX_METADATA_PAYLOAD_BYTES`, 8 MiB).
const OFFSET_ENTRY_TARGET_BYTES: usize = 2 * 1024 * 1024;

/// Lower bound on waiting for one metadata entry to commit.
const META_APPEND_TIMEOUT_MIN_MS: u64 = 1_000;

/// ext field marking a request a follower forwarded (never forwarded twice).
pub const FORWARDED_EXT: &str = "dLegerForwarded";

/// What the leader already proposed in its current term (None = propose a full snapshot).
#[derive(Debug, Default)]
struct ProposeState {
    term: u64,
    topics: Option<DataVersion>,
    groups: Option<DataVersion>,
    delay: Option<u64>,
    locks: Option<u64>,
    offsets_full_sent: bool,
    /// First log index of the full round in progress (None: no full round pending).
    round_start: Option<u64>,
    /// When the last checkpoint committed (None: not in this term yet).
    checkpointed_at: Option<Instant>,
}

/// Group-mode state shared by the processors and the background tasks.
pub struct GroupMode {
    pub peers: Peers,
    /// Term in which this node proposes metadata as master; 0 = not proposing. The
    /// listener skips entries this node proposed in this term (applied before proposing).
    proposing_term: AtomicU64,
    /// Serialises proposals so snapshots reach the log in the order they were taken.
    propose: tokio::sync::Mutex<ProposeState>,
    /// Connection to the leader's client port (forwarded requests), by address.
    forward: tokio::sync::Mutex<Option<(String, RemotingClient)>>,
    /// Wakes the replicator before its next batch (topic-table changes).
    poke: tokio::sync::Notify,
    /// Proposal rounds begun (under `propose`) and the last one that committed: a change
    /// applied before round `n` began is in the log once `rounds_committed >= n`.
    rounds_started: AtomicU64,
    rounds_committed: watch::Sender<u64>,
    /// Retention floor shared with the store (`DLedgerStoreConfig::retention_floor`):
    /// raised to the round start of every checkpoint this replica applies or commits.
    pub retention_floor: Arc<AtomicU64>,
    checkpoint_interval: Duration,
}

/// The managers the metadata listener applies entries to. They exist before the store
/// opens, because the store replays the retained metadata history while opening.
#[derive(Clone)]
pub struct Appliers {
    pub topics: Arc<TopicConfigManager>,
    pub groups: Arc<SubscriptionGroupManager>,
    pub offsets: Arc<ConsumerOffsetManager>,
    pub schedule: Arc<ScheduleMessageService>,
    pub locks: Arc<RebalanceLockManager>,
}

/// Store-level kind code of checkpoint entries (codes >= 16 are the broker's own).
const CHECKPOINT_KIND_CODE: u8 = 16;

fn store_kind(kind: MetaKind) -> MetadataKind {
    match kind {
        MetaKind::Topics => MetadataKind::TopicConfig,
        MetaKind::SubscriptionGroups => MetadataKind::SubscriptionGroup,
        MetaKind::ConsumerOffsets => MetadataKind::ConsumerOffsets,
        MetaKind::DelayOffsets => MetadataKind::DelayOffsets,
        MetaKind::Locks => MetadataKind::Lock,
        MetaKind::Checkpoint => MetadataKind::Custom(CHECKPOINT_KIND_CODE),
    }
}

/// Is this a "not (or no longer) the writable leader" failure, which ends a proposing term?
fn lost_leadership(e: &StoreError) -> bool {
    matches!(e, StoreError::NotLeader { .. } | StoreError::ShutDown)
}

impl GroupMode {
    pub fn new(peers: Peers, checkpoint_interval: Duration) -> Arc<GroupMode> {
        Arc::new(GroupMode {
            retention_floor: Arc::new(AtomicU64::new(0)),
            checkpoint_interval,
            peers,
            proposing_term: AtomicU64::new(0),
            propose: tokio::sync::Mutex::new(ProposeState::default()),
            forward: tokio::sync::Mutex::new(None),
            poke: tokio::sync::Notify::new(),
            rounds_started: AtomicU64::new(0),
            rounds_committed: watch::channel(0).0,
        })
    }

    /// Resolves once every change applied locally before this call is committed through
    /// the metadata log. It rides on the replicator's next batch, so concurrent callers
    /// share one entry (consumer offsets stay coalesced) and wait at most one batch
    /// interval plus the commit.
    pub async fn wait_replicated(&self, timeout: Duration) -> Result<(), String> {
        // A round already running may have taken its changes before ours were applied.
        let needed = self.rounds_started.load(Ordering::Acquire) + 1;
        let mut committed = self.rounds_committed.subscribe();
        let replicated = async { committed.wait_for(|c| *c >= needed).await.map(|_| ()) };
        match tokio::time::timeout(timeout, replicated).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("metadata replicator stopped".to_string()),
            Err(_) => Err(format!("not replicated within {} ms", timeout.as_millis())),
        }
    }

    /// Propose pending changes now rather than at the next batch.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// The listener handed to the store: applies committed metadata entries in log order
    /// on the store's dispatcher thread. `runtime` is entered so background file writes
    /// the managers start go to the runtime's blocking pool, not the dispatcher thread.
    pub fn metadata_listener(
        self: &Arc<Self>,
        appliers: Appliers,
        runtime: tokio::runtime::Handle,
    ) -> store::MetadataListener {
        let me = Arc::clone(self);
        Arc::new(move |kind: MetadataKind, payload: &[u8], index: u64| {
            let _guard = runtime.enter();
            me.apply(&appliers, kind, payload, index);
        })
    }

    fn apply(&self, a: &Appliers, kind: MetadataKind, payload: &[u8], index: u64) {
        let entry = match MetaEntry::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(index, ?kind, error = %e, "undecodable metadata entry skipped");
                return;
            }
        };
        if store_kind(entry.kind) != kind {
            tracing::error!(index, ?kind, inner = ?entry.kind, "metadata entry kind mismatch; skipped");
            return;
        }
        let proposing = self.proposing_term.load(Ordering::Acquire);
        if proposing != 0 && entry.term == proposing && entry.proposer == self.peers.self_id {
            return; // our own proposal of this term: applied before it was proposed
        }
        let body = &entry.body[..];
        let result: Result<(), String> = match entry.kind {
            MetaKind::Topics => serde_json::from_slice::<TopicConfigSerializeWrapper>(body)
                .map(|w| a.topics.replace_from_replica(w))
                .map_err(|e| e.to_string()),
            MetaKind::SubscriptionGroups => {
                serde_json::from_slice::<SubscriptionGroupWrapper>(body)
                    .map(|w| a.groups.replace_from_replica(w))
                    .map_err(|e| e.to_string())
            }
            MetaKind::ConsumerOffsets => serde_json::from_slice::<OffsetDelta>(body)
                .map(|d| a.offsets.apply_replicated(d))
                .map_err(|e| e.to_string()),
            MetaKind::DelayOffsets => std::str::from_utf8(body)
                .map_err(|e| e.to_string())
                .and_then(decode_delay_offsets)
                .map(|t| a.schedule.apply_replicated(t)),
            MetaKind::Locks => serde_json::from_slice::<Vec<HeldLock>>(body)
                .map(|l| {
                    a.locks
                        .replace_from_replica(l, crate::topic_config::now_ms())
                })
                .map_err(|e| e.to_string()),
            MetaKind::Checkpoint => serde_json::from_slice::<Checkpoint>(body)
                .map(|c| self.raise_retention_floor(c.from_index))
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => {
                tracing::debug!(index, kind = ?entry.kind, proposer = %entry.proposer, term = entry.term, "metadata entry applied")
            }
            Err(e) => {
                tracing::error!(index, kind = ?entry.kind, error = %e, "bad metadata entry body skipped")
            }
        }
    }

    fn raise_retention_floor(&self, from_index: u64) {
        let before = self.retention_floor.fetch_max(from_index, Ordering::AcqRel);
        if from_index > before {
            tracing::debug!(from_index, "metadata checkpoint: retention floor raised");
        }
    }

    /// Appends one metadata entry; resolves with its log index once committed.
    async fn append(
        &self,
        ctx: &BrokerContext,
        kind: MetaKind,
        term: u64,
        body: Bytes,
    ) -> Result<u64, StoreError> {
        let entry = MetaEntry {
            kind,
            proposer: self.peers.self_id.clone(),
            term,
            body,
        }
        .encode()
        .map_err(|e| StoreError::MessageIllegal {
            reason: e.to_string(),
        })?;
        // Bounded: a proposal that cannot commit (no quorum) must not hold the proposal
        // lock forever; the change is proposed again by the next round.
        let timeout_ms = ctx
            .config
            .sync_flush_timeout
            .max(META_APPEND_TIMEOUT_MIN_MS);
        let append = ctx.store.append_metadata(store_kind(kind), entry);
        match tokio::time::timeout(Duration::from_millis(timeout_ms), append).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::FlushTimeout { timeout_ms }),
        }
    }

    /// `append`, remembering the first entry of a full round (the checkpoint's
    /// `from_index`).
    async fn append_in_round(
        &self,
        ctx: &BrokerContext,
        st: &mut ProposeState,
        full_round: bool,
        kind: MetaKind,
        body: Bytes,
    ) -> Result<(), StoreError> {
        let index = self.append(ctx, kind, st.term, body).await?;
        if full_round && st.round_start.is_none() {
            st.round_start = Some(index);
        }
        Ok(())
    }

    /// Propose everything that changed since the last proposal of this term (all of it
    /// after a new election). Resolves once committed. Fails with `NotLeader` when this
    /// broker is not the master of `term` (any more).
    pub async fn propose_changes(&self, ctx: &BrokerContext) -> Result<(), StoreError> {
        let mut st = self.propose.lock().await;
        let term = {
            let role = ctx.role.borrow();
            if !role.master {
                return Err(StoreError::NotLeader {
                    leader: role.leader_id.clone(),
                });
            }
            role.term
        };
        let round = self.rounds_started.fetch_add(1, Ordering::AcqRel) + 1;
        if st.term != term {
            *st = ProposeState {
                term,
                ..ProposeState::default()
            };
            ctx.consumer_offsets.track_changes(true);
            self.proposing_term.store(term, Ordering::Release);
            // Holders could not renew while there was no master.
            ctx.lock_manager.refresh_all(crate::topic_config::now_ms());
        }
        // A full round (everything proposed again, then a checkpoint entry) opens every
        // term and then every checkpoint interval: retention may delete the log before it.
        let full_round = st
            .checkpointed_at
            .is_none_or(|t| t.elapsed() >= self.checkpoint_interval);
        if full_round && st.round_start.is_none() && st.checkpointed_at.is_some() {
            st.topics = None;
            st.groups = None;
            st.delay = None;
            st.locks = None;
            st.offsets_full_sent = false;
        }
        let topics_v = ctx.topic_config.data_version();
        if st.topics != Some(topics_v) {
            let snap = ctx.topic_config.snapshot();
            let body = serde_json::to_vec(&snap).map_err(|e| StoreError::MessageIllegal {
                reason: e.to_string(),
            })?;
            self.append_in_round(ctx, &mut st, full_round, MetaKind::Topics, body.into())
                .await?;
            st.topics = Some(snap.data_version);
        }
        let groups_v = ctx.subscription_groups.data_version();
        if st.groups != Some(groups_v) {
            let snap = ctx.subscription_groups.snapshot();
            let body = serde_json::to_vec(&snap).map_err(|e| StoreError::MessageIllegal {
                reason: e.to_string(),
            })?;
            self.append_in_round(
                ctx,
                &mut st,
                full_round,
                MetaKind::SubscriptionGroups,
                body.into(),
            )
            .await?;
            st.groups = Some(snap.data_version);
        }
        let delay_v = ctx.schedule.version();
        if st.delay != Some(delay_v) {
            let body = ctx.schedule.encode();
            self.append_in_round(
                ctx,
                &mut st,
                full_round,
                MetaKind::DelayOffsets,
                body.into(),
            )
            .await?;
            st.delay = Some(delay_v);
        }
        let locks_v = ctx.lock_manager.version();
        if st.locks != Some(locks_v) {
            let body = serde_json::to_vec(&ctx.lock_manager.snapshot()).map_err(|e| {
                StoreError::MessageIllegal {
                    reason: e.to_string(),
                }
            })?;
            self.append_in_round(ctx, &mut st, full_round, MetaKind::Locks, body.into())
                .await?;
            st.locks = Some(locks_v);
        }
        let (delta, full) = if st.offsets_full_sent {
            (ctx.consumer_offsets.take_changes(), false)
        } else {
            // Changes recorded so far are part of the full table.
            let _ = ctx.consumer_offsets.take_changes();
            (ctx.consumer_offsets.full_delta(), true)
        };
        if !delta.is_empty() {
            let mut parts = delta.split(OFFSET_ENTRY_TARGET_BYTES).into_iter();
            while let Some(part) = parts.next() {
                let body = serde_json::to_vec(&part).map_err(|e| StoreError::MessageIllegal {
                    reason: e.to_string(),
                })?;
                if let Err(e) = self
                    .append_in_round(
                        ctx,
                        &mut st,
                        full_round,
                        MetaKind::ConsumerOffsets,
                        body.into(),
                    )
                    .await
                {
                    if !full {
                        // Not proposed: keep for the next round (newer commits win).
                        let mut rest = part;
                        for mut later in parts {
                            later.merge_older(rest);
                            rest = later;
                        }
                        ctx.consumer_offsets.restore_changes(rest);
                    }
                    return Err(e);
                }
            }
        }
        st.offsets_full_sent = true;
        if full_round {
            if let Some(from_index) = st.round_start {
                let body = serde_json::to_vec(&Checkpoint { from_index }).map_err(|e| {
                    StoreError::MessageIllegal {
                        reason: e.to_string(),
                    }
                })?;
                self.append(ctx, MetaKind::Checkpoint, term, body.into())
                    .await?;
                // The listener skips this node's own entries of its term.
                self.raise_retention_floor(from_index);
            }
            st.round_start = None;
            st.checkpointed_at = Some(Instant::now());
        }
        // Rounds are serialised by `propose`, so `round` only grows here.
        self.rounds_committed.send_if_modified(|c| {
            let newer = *c < round;
            if newer {
                *c = round;
            }
            newer
        });
        Ok(())
    }

    /// Stop proposing (role lost): later entries of the old term are applied normally.
    fn stop_proposing(&self, ctx: &BrokerContext) {
        self.proposing_term.store(0, Ordering::Release);
        ctx.consumer_offsets.track_changes(false);
    }

    /// Forward a request (consumer-offset commit) to the leader's client port and relay
    /// its answer. Answers SERVICE_NOT_AVAILABLE when no leader is known/reachable.
    pub async fn forward_to_leader(
        &self,
        ctx: &BrokerContext,
        req: &RemotingCommand,
    ) -> RemotingCommand {
        let unavailable = |why: String| {
            RemotingCommand::error_response(
                req,
                response::SERVICE_NOT_AVAILABLE,
                format!("service not available now: {why}"),
            )
        };
        if req.ext(FORWARDED_EXT).is_some() {
            return unavailable("forwarded to a broker that is not the leader".into());
        }
        let leader = ctx.role.borrow().leader_id.clone();
        let Some(leader) = leader else {
            return unavailable("no DLedger leader elected".into());
        };
        let Some(addr) = self.peers.broker_addr_of(&leader).map(str::to_string) else {
            return unavailable(format!(
                "address of leader {leader} unknown (set dLegerPeerBrokerAddrs)"
            ));
        };
        if leader == self.peers.self_id {
            return unavailable("the leader is still catching up".into());
        }
        let client = {
            let mut slot = self.forward.lock().await;
            match slot.as_ref() {
                Some((a, c)) if *a == addr && !c.is_closed() => c.clone(),
                _ => match RemotingClient::connect(&addr, ClientConfig::default()).await {
                    Ok(c) => {
                        *slot = Some((addr.clone(), c.clone()));
                        c
                    }
                    Err(e) => return unavailable(format!("leader {addr} unreachable: {e}")),
                },
            }
        };
        let mut fwd = RemotingCommand::request(req.code);
        fwd.ext_fields = req.ext_fields.clone();
        fwd.ext_fields.insert(FORWARDED_EXT, "true");
        fwd.body = req.body.clone();
        match client
            .invoke(fwd, ctx.config.dleger_forward_timeout_ms)
            .await
        {
            Ok(resp) => {
                let mut out = RemotingCommand::response_to(req, resp.code);
                out.remark = resp.remark;
                out.ext_fields = resp.ext_fields;
                out.body = resp.body;
                out
            }
            Err(e) => unavailable(format!("forward to leader {addr} failed: {e}")),
        }
    }

    /// Graceful stop of the master: propose what is pending, then hand leadership to the
    /// most caught-up follower and wait (bounded) until this node is no master any more.
    pub async fn hand_off(&self, ctx: &BrokerContext) {
        if !ctx.is_master() {
            return;
        }
        if let Err(e) = self.propose_changes(ctx).await {
            tracing::warn!(error = %e, "final metadata proposal before hand-off failed");
        }
        let timeout = Duration::from_millis(ctx.config.dleger_transfer_leader_timeout_ms);
        let transfer = ctx.store.transfer_leadership(None);
        match tokio::time::timeout(timeout, transfer).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leadership transfer failed");
                return;
            }
            Err(_) => {
                tracing::warn!("leadership transfer timed out");
                return;
            }
        }
        let mut role = ctx.role.clone();
        let deposed = async move { role.wait_for(|r| !r.master).await.is_ok() };
        match tokio::time::timeout(timeout, deposed).await {
            Ok(_) => tracing::info!("leadership handed off"),
            Err(_) => tracing::warn!("still master after the leadership transfer"),
        }
    }
}

/// Follow the store's DLedger role: publish the broker role and re-register at once on
/// every change (Java re-registers on role change too, with the new brokerId).
pub async fn run_role_loop(
    ctx: Arc<BrokerContext>,
    mut store_role: watch::Receiver<StoreRole>,
    role_tx: watch::Sender<Role>,
) {
    loop {
        let sr = store_role.borrow_and_update().clone();
        let role = Role::group(
            sr.is_leader,
            sr.writable,
            sr.term,
            sr.leader_id.clone(),
            sr.self_index,
        );
        let changed = role_tx.send_if_modified(|cur| {
            if *cur != role {
                *cur = role.clone();
                true
            } else {
                false
            }
        });
        if changed {
            tracing::info!(master = role.master, broker_id = role.broker_id, term = role.term,
                leader = ?role.leader_id, "broker role changed");
            ctx.register.register_now();
        }
        tokio::select! {
            r = store_role.changed() => if r.is_err() { return },
            _ = ctx.shutdown.wait() => return,
        }
    }
}

/// The master's metadata replicator: every `dLegerMetadataBatchIntervalMs` (and at once
/// after a topic-table change) propose what changed; consumer offsets coalesce into one
/// entry per batch.
pub async fn run_replicator(ctx: Arc<BrokerContext>, gm: Arc<GroupMode>) {
    let interval = Duration::from_millis(ctx.config.dleger_metadata_batch_interval_ms);
    let mut role = ctx.role.clone();
    loop {
        let became_master = tokio::select! {
            r = role.wait_for(|r| r.master) => r.is_ok(),
            _ = ctx.shutdown.wait() => false,
        };
        if !became_master {
            return;
        }
        loop {
            match gm.propose_changes(&ctx).await {
                Ok(()) => {}
                Err(e) if lost_leadership(&e) => break,
                Err(e) => tracing::warn!(error = %e, "metadata proposal failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = gm.poke.notified() => {}
                _ = role.changed() => {}
                _ = ctx.shutdown.wait() => return,
            }
            if !ctx.is_master() {
                break;
            }
        }
        gm.stop_proposing(&ctx);
        tracing::info!("no longer master: metadata proposals stopped");
    }
}
