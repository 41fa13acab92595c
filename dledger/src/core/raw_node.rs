//! `RawNode`: the application-facing wrapper producing `Ready` batches (as raft-rs
//! `raw_node.rs`).

use bytes::Bytes;

use super::config::Config;
use super::errors::{CoreError, ProposeError, StorageError};
use super::raft::Raft;
use super::storage::Storage;
use super::types::{Entry, HardState, Message, NodeId, Role, SnapshotMeta};

/// One batch of work for the runtime. See the module docs for the processing contract.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Must be durable BEFORE `persisted_messages` are sent (when only `commit` changed, the
    /// write may be lazy: the commit index is recoverable).
    pub hard_state: Option<HardState>,
    /// Follower only: discard the log; the next entry is `snapshot.index + 1`.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append; `entries[0].index` says where (an existing tail from there on is
    /// truncated first).
    pub entries: Vec<Entry>,
    /// May be sent immediately.
    pub messages: Vec<Message>,
    /// Only after `hard_state`, `snapshot` and `entries` of this and every earlier Ready are
    /// durable (votes, append responses).
    pub persisted_messages: Vec<Message>,
    /// Newly committed entries that are also durable locally, in order, for the state machine.
    pub committed_entries: Vec<Entry>,
    /// (role, term, leader) when any of them changed since the previous Ready.
    pub role_change: Option<(Role, u64, Option<NodeId>)>,
    /// Leader whose term NOOP is committed: proposals are accepted.
    pub ready_for_writes: bool,
}

impl Ready {
    /// What to report through `on_entries_persisted` once this Ready is durable.
    pub fn persist_point(&self) -> Option<(u64, u64)> {
        if let Some(e) = self.entries.last() {
            return Some((e.index, e.term));
        }
        self.snapshot.map(|s| (s.index, s.term))
    }
}

/// Read-only status for observability and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub vote: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub commit: u64,
    pub applied: u64,
    pub persisted: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub lease_valid: bool,
    pub ready_for_writes: bool,
    pub recovering: bool,
    /// Leader only: (peer, matched, next).
    pub progress: Vec<(NodeId, u64, u64)>,
}

/// The sans-IO Raft node.
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_hs: HardState,
    prev_soft: (Role, u64, Option<NodeId>),
    prev_ready_for_writes: bool,
}

impl<S: Storage> RawNode<S> {
    /// All randomness (election timeouts) derives from `rng_seed`.
    pub fn new(config: Config, storage: S, rng_seed: u64) -> Result<Self, CoreError> {
        let hs = storage.initial_state().hard_state;
        let raft = Raft::new(config, storage, rng_seed)?;
        let prev_soft = (raft.role, raft.term, raft.leader);
        Ok(RawNode {
            raft,
            prev_hs: hs,
            prev_soft,
            prev_ready_for_writes: false,
        })
    }

    /// Advance logical time by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Feed a message from a peer.
    pub fn step(&mut self, msg: Message) -> Result<(), CoreError> {
        self.raft.step(msg)
    }

    /// Append client data (leader only). Returns the entry's index; it is acknowledged when it
    /// shows up in `committed_entries`.
    pub fn propose(&mut self, data: Bytes) -> Result<u64, ProposeError> {
        self.raft.propose(data)
    }

    /// Start an election now (tests, tools). Ignored on a leader or a recovering node.
    pub fn campaign(&mut self) {
        self.raft.campaign(false);
    }

    /// Hand leadership to `to`: catch it up, then send `TimeoutNow` and step down.
    pub fn transfer_leader(&mut self, to: NodeId) {
        self.raft.transfer_leader(to);
    }

    /// Storage made everything up to (`last_index`, `last_term`) durable.
    pub fn on_entries_persisted(&mut self, last_index: u64, last_term: u64) {
        self.raft.on_entries_persisted(last_index, last_term);
    }

    /// The hard state of a Ready is durable. Nothing depends on it inside the core (ordering
    /// is the runtime's job); kept so runtimes report every completion uniformly.
    pub fn on_hard_state_persisted(&mut self) {}

    /// Drop entries before `first_index_to_keep` from storage. Only entries that are committed,
    /// handed out and durable may go.
    pub fn compact(&mut self, first_index_to_keep: u64) -> Result<(), CoreError> {
        let log = &self.raft.log;
        let limit = log.applied.min(log.persisted) + 1;
        if first_index_to_keep > limit {
            return Err(CoreError::CompactTooFar {
                requested: first_index_to_keep,
                limit,
            });
        }
        self.raft.log.storage.compact(first_index_to_keep)?;
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        let log = &self.raft.log;
        let commit = self
            .raft
            .durable_commit
            .max(log.committed.min(log.persisted));
        HardState {
            term: self.raft.term,
            vote: self.raft.vote,
            commit,
        }
    }

    fn committed_allowed(&self) -> bool {
        // A leader only reports commits while its lease is valid; a deposed one stays quiet.
        self.raft.role != Role::Leader || !self.raft.cfg.check_quorum || self.raft.lease_valid()
    }

    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        self.hard_state() != self.prev_hs
            || !r.msgs.is_empty()
            || !r.persisted_msgs.is_empty()
            || r.has_pending_flush()
            || r.log.has_unstable_to_hand_out()
            || (self.committed_allowed() && r.log.has_next_committed())
            || (r.role, r.term, r.leader) != self.prev_soft
            || r.ready_for_writes() != self.prev_ready_for_writes
    }

    /// Take the next batch of work. Everything returned is considered handed out.
    pub fn ready(&mut self) -> Ready {
        self.raft.flush();
        let (snapshot, entries) = self.raft.log.take_unstable();
        let hs = self.hard_state();
        self.raft.durable_commit = hs.commit;
        let hard_state = if hs != self.prev_hs {
            self.prev_hs = hs;
            Some(hs)
        } else {
            None
        };
        let committed_entries = if self.committed_allowed() {
            let ents = self
                .raft
                .log
                .next_committed(self.raft.cfg.max_committed_size_per_ready_bytes);
            if let Some(last) = ents.last() {
                self.raft.log.applied_to(last.index);
            }
            ents
        } else {
            Vec::new()
        };
        let soft = (self.raft.role, self.raft.term, self.raft.leader);
        let role_change = if soft != self.prev_soft {
            self.prev_soft = soft;
            Some(soft)
        } else {
            None
        };
        let ready_for_writes = self.raft.ready_for_writes();
        self.prev_ready_for_writes = ready_for_writes;
        Ready {
            hard_state,
            snapshot,
            entries,
            messages: std::mem::take(&mut self.raft.msgs),
            persisted_messages: std::mem::take(&mut self.raft.persisted_msgs),
            committed_entries,
            role_change,
            ready_for_writes,
        }
    }

    // ---- accessors --------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.raft.id
    }
    pub fn role(&self) -> Role {
        self.raft.role
    }
    pub fn term(&self) -> u64 {
        self.raft.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.raft.vote
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.leader
    }
    pub fn committed(&self) -> u64 {
        self.raft.log.committed
    }
    /// Highest index whose entries a leader may acknowledge to its clients now, before they
    /// appear in `committed_entries`: the commit index, which can run ahead of this node's
    /// own fsync because a quorum of followers alone may hold them durably (thesis §10.2.1).
    /// Only the entries of the current term are the caller's own proposals. 0 unless this
    /// node leads (with a valid lease under check-quorum, as for `committed_entries`).
    pub fn acknowledged(&self) -> u64 {
        if self.raft.role == Role::Leader && self.committed_allowed() {
            self.raft.log.committed
        } else {
            0
        }
    }
    pub fn applied(&self) -> u64 {
        self.raft.log.applied
    }
    pub fn persisted(&self) -> u64 {
        self.raft.log.persisted
    }
    pub fn first_index(&self) -> u64 {
        self.raft.log.first_index()
    }
    pub fn last_index(&self) -> u64 {
        self.raft.log.last_index()
    }
    pub fn last_term(&self) -> u64 {
        self.raft.log.last_term()
    }
    /// Term of the entry at `index` in this node's log (written or unstable).
    pub fn term_of(&self, index: u64) -> Result<u64, StorageError> {
        self.raft.log.term(index)
    }
    /// Entries `[lo, hi)` of this node's log, up to `max_size_bytes`.
    pub fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_size_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.raft.log.slice(lo, hi, max_size_bytes)
    }
    /// Leader whose quorum acknowledged a message sent less than `lease_ticks` ago.
    pub fn lease_valid(&self) -> bool {
        self.raft.lease_valid()
    }
    pub fn ready_for_writes(&self) -> bool {
        self.raft.ready_for_writes()
    }
    /// Lost data at startup and not yet caught up (does not vote or campaign).
    pub fn is_recovering(&self) -> bool {
        self.raft.recovery.is_some()
    }
    pub fn config(&self) -> &Config {
        &self.raft.cfg
    }
    pub fn storage(&self) -> &S {
        &self.raft.log.storage
    }
    /// Runtimes that write through the same object they read from (e.g. `MemStorage`).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.raft.log.storage
    }

    pub fn status(&self) -> Status {
        let r = &self.raft;
        let progress = if r.role == Role::Leader {
            r.prs
                .iter()
                .map(|(&id, p)| (id, p.matched, p.next_idx))
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: r.id,
            role: r.role,
            term: r.term,
            vote: r.vote,
            leader: r.leader,
            commit: r.log.committed,
            applied: r.log.applied,
            persisted: r.log.persisted,
            first_index: r.log.first_index(),
            last_index: r.log.last_index(),
            lease_valid: r.lease_valid(),
            ready_for_writes: r.ready_for_writes(),
            recovering: r.recovery.is_some(),
            progress,
        }
    }
}
