//! The Raft state machine proper (as raft-rs `raft.rs`): roles, elections, replication,
//! commit, leases and leadership transfer. No I/O: outputs are queued in `msgs` /
//! `persisted_msgs` and in the log's unstable part.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use smallvec::SmallVec;

use super::config::{Config, MAX_PEERS};
use super::errors::{CoreError, ProposeError, StorageError};
use super::log::RaftLog;
use super::progress::{Progress, ProgressState};
use super::storage::Storage;
use super::types::{Entry, EntryKind, Message, MsgKind, NodeId, Role, SnapshotMeta};

/// Small deterministic PRNG (xorshift64*): all randomness comes from the seed so the
/// simulator replays exactly.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // splitmix64 finalizer: nearby seeds (node ids) must give unrelated streams, or
        // election timeouts of different nodes expire together and votes keep splitting.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VoteResult {
    Pending,
    Won,
    Lost,
}

pub struct Raft<S: Storage> {
    pub id: NodeId,
    pub term: u64,
    pub vote: Option<NodeId>,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub log: RaftLog<S>,
    pub cfg: Config,
    /// Progress of every other voter (leader only meaningful).
    pub prs: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    pub msgs: Vec<Message>,
    pub persisted_msgs: Vec<Message>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    /// Ticks since start (the leader lease clock).
    pub now: u64,
    /// After a restart the node cannot know whom it acknowledged as leader recently, so it
    /// refuses votes for one election timeout (keeps leases safe across crashes).
    quiet_until: u64,
    pub transfer_target: Option<NodeId>,
    noop_index: u64,
    uncommitted: VecDeque<(u64, u64)>,
    uncommitted_bytes: u64,
    /// Set after a data loss: (term at loss, known last index). No voting/campaigning.
    pub recovery: Option<(u64, u64)>,
    rng: XorShift,
    /// Highest `min(committed, persisted)` ever reported: the hard state's commit.
    pub durable_commit: u64,
    /// Appends to broadcast at the next `ready()` (batches proposals).
    pending_bcast: bool,
    pending_bcast_empty: bool,
}

impl<S: Storage> Raft<S> {
    pub fn new(cfg: Config, storage: S, seed: u64) -> Result<Self, CoreError> {
        cfg.validate()?;
        let init = storage.initial_state();
        let hs = init.hard_state;
        let log = RaftLog::new(storage, hs.commit);
        let mut term = hs.term;
        let mut vote = hs.vote;
        let last_term = log.last_term();
        if last_term > term {
            // Entries of a newer term survived but the hard state did not: we may have voted
            // in that term, so claim our vote went to ourselves (never grants another vote).
            term = last_term;
            vote = Some(cfg.id);
        }
        let last = log.last_index();
        let mut prs = BTreeMap::new();
        for &p in &cfg.peers {
            if p != cfg.id {
                prs.insert(p, Progress::new(last + 1, cfg.max_inflight_msgs));
            }
        }
        let recovery = init
            .data_loss
            .map(|d| (d.term_at_loss, d.known_last_index.unwrap_or(u64::MAX)));
        let quiet_until = u64::from(cfg.election_timeout_ticks);
        let mut r = Raft {
            id: cfg.id,
            term,
            vote,
            role: Role::Follower,
            leader: None,
            log,
            prs,
            votes: BTreeMap::new(),
            msgs: Vec::new(),
            persisted_msgs: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: cfg.election_timeout_ticks,
            now: 0,
            quiet_until,
            transfer_target: None,
            noop_index: 0,
            uncommitted: VecDeque::new(),
            uncommitted_bytes: 0,
            recovery,
            rng: XorShift::new(seed),
            durable_commit: hs.commit,
            pending_bcast: false,
            pending_bcast_empty: false,
            cfg,
        };
        r.randomize_timeout();
        r.check_recovered();
        Ok(r)
    }

    fn quorum(&self) -> usize {
        self.cfg.peers.len() / 2 + 1
    }

    fn randomize_timeout(&mut self) {
        let et = u64::from(self.cfg.election_timeout_ticks);
        self.randomized_timeout = (et + self.rng.next_u64() % et) as u32;
    }

    /// Caught up after a data loss when the log holds an entry newer than the loss term (it
    /// came from a leader that has every entry committed up to then), or a commit index backed
    /// by the log reaches what the node had. The persisted commit from before the loss counts:
    /// entries at or below it can only have been re-filled by leaders of a term >= the loss
    /// term, which hold exactly the committed ones.
    fn check_recovered(&mut self) {
        if let Some((term, index)) = self.recovery {
            let backed = self
                .log
                .committed
                .max(self.durable_commit.min(self.log.last_index()));
            if self.log.last_term() > term || backed >= index {
                self.recovery = None;
            }
        }
    }

    pub fn promotable(&self) -> bool {
        self.recovery.is_none()
    }

    /// A leader (or a follower that recently heard from one, or a node just restarted) ignores
    /// non-transfer (pre-)votes with higher terms (thesis §4.2.3, and what makes leases safe).
    fn in_lease(&self) -> bool {
        self.cfg.check_quorum
            && ((self.leader.is_some() && self.election_elapsed < self.cfg.election_timeout_ticks)
                || self.now < self.quiet_until)
    }

    pub fn ready_for_writes(&self) -> bool {
        self.role == Role::Leader && self.noop_index > 0 && self.log.committed >= self.noop_index
    }

    // ---- role transitions -------------------------------------------------------------

    fn reset(&mut self, term: u64) {
        if term != self.term {
            assert!(
                term > self.term,
                "term going backwards {} -> {}",
                self.term,
                term
            );
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomize_timeout();
        self.votes.clear();
        self.transfer_target = None;
        self.uncommitted.clear();
        self.uncommitted_bytes = 0;
        self.noop_index = 0;
        self.pending_bcast = false;
        self.pending_bcast_empty = false;
        let last = self.log.last_index();
        let cap = self.cfg.max_inflight_msgs;
        for pr in self.prs.values_mut() {
            *pr = Progress::new(last + 1, cap);
        }
    }

    pub fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.leader = leader;
        self.role = Role::Follower;
    }

    fn become_pre_candidate(&mut self) {
        assert!(self.role != Role::Leader, "leader cannot pre-campaign");
        self.role = Role::PreCandidate;
        self.votes.clear();
        self.leader = None;
    }

    fn become_candidate(&mut self) {
        assert!(self.role != Role::Leader, "leader cannot campaign");
        let term = self.term + 1;
        self.reset(term);
        self.vote = Some(self.id);
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        assert!(
            self.role == Role::Candidate,
            "only a candidate becomes leader"
        );
        let term = self.term;
        self.reset(term);
        self.leader = Some(self.id);
        self.role = Role::Leader;
        for pr in self.prs.values_mut() {
            pr.recent_active = true;
        }
        // A NOOP of the new term lets the leader commit everything before it (§5.4.2, §8).
        let index = self.log.last_index() + 1;
        self.log.append(&[Entry {
            index,
            term,
            kind: EntryKind::Noop,
            data: Bytes::new(),
        }]);
        self.noop_index = index;
        self.pending_bcast = true;
        self.maybe_commit();
    }

    // ---- elections --------------------------------------------------------------------

    pub fn campaign(&mut self, transfer: bool) {
        if !self.promotable() || self.role == Role::Leader {
            return;
        }
        if self.cfg.pre_vote && !transfer {
            self.become_pre_candidate();
            let (li, lt) = (self.log.last_index(), self.log.last_term());
            let t = self.term + 1;
            for p in self.other_peers() {
                self.msgs.push(Message {
                    from: self.id,
                    to: p,
                    term: t,
                    kind: MsgKind::PreVote {
                        last_index: li,
                        last_term: lt,
                    },
                });
            }
            if self.poll(self.id, true) == VoteResult::Won {
                self.campaign_election(false);
            }
        } else {
            self.campaign_election(transfer);
        }
    }

    fn campaign_election(&mut self, transfer: bool) {
        self.become_candidate();
        let (li, lt) = (self.log.last_index(), self.log.last_term());
        let t = self.term;
        for p in self.other_peers() {
            // The candidate's own vote must be durable before asking others.
            self.persisted_msgs.push(Message {
                from: self.id,
                to: p,
                term: t,
                kind: MsgKind::Vote {
                    last_index: li,
                    last_term: lt,
                    transfer,
                },
            });
        }
        if self.poll(self.id, true) == VoteResult::Won {
            self.become_leader();
        }
    }

    /// Inline for any group of up to five replicas: broadcasts run per batch of appends.
    fn other_peers(&self) -> SmallVec<[NodeId; 4]> {
        self.prs.keys().copied().collect()
    }

    fn poll(&mut self, from: NodeId, granted: bool) -> VoteResult {
        self.votes.entry(from).or_insert(granted);
        let yes = self.votes.values().filter(|&&v| v).count();
        let no = self.votes.len() - yes;
        let q = self.quorum();
        if yes >= q {
            VoteResult::Won
        } else if no > self.cfg.peers.len() - q {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    // ---- ticks ------------------------------------------------------------------------

    pub fn tick(&mut self) {
        self.now += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
            if self.election_elapsed >= self.randomized_timeout && self.promotable() {
                self.election_elapsed = 0;
                self.randomize_timeout();
                self.campaign(false);
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_active() {
                let term = self.term;
                self.become_follower(term, None);
                return;
            }
            if self.transfer_target.take().is_none() {
                if let Some(p) = self.cfg.preferred_leader {
                    let active = self.prs.get(&p).is_some_and(|pr| pr.recent_active);
                    if p != self.id && active && self.ready_for_writes() {
                        self.transfer_leader(p);
                    }
                }
            }
            for pr in self.prs.values_mut() {
                pr.recent_active = false;
            }
        }
        if self.role == Role::Leader && self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    fn quorum_active(&self) -> bool {
        1 + self.prs.values().filter(|p| p.recent_active).count() >= self.quorum()
    }

    // ---- leader lease -----------------------------------------------------------------

    /// Lease start: the send tick of the newest message acknowledged by a quorum (self = now).
    fn lease_start(&self) -> Option<u64> {
        let ctx = self.quorum_value(self.now + 1, |p| p.acked_ctx);
        // ctx values are `send tick + 1`; 0 means "no ack this term".
        ctx.checked_sub(1)
    }

    /// The largest value that a quorum (self included, with `own`) has reached. Stack only:
    /// this runs on every `has_ready`/commit check.
    fn quorum_value(&self, own: u64, f: impl Fn(&Progress) -> u64) -> u64 {
        let mut vals = [0u64; MAX_PEERS];
        let mut n = 0;
        vals[n] = own;
        n += 1;
        for p in self.prs.values().take(MAX_PEERS - 1) {
            vals[n] = f(p);
            n += 1;
        }
        let vals = &mut vals[..n];
        vals.sort_unstable_by(|a, b| b.cmp(a));
        vals[self.quorum() - 1]
    }

    /// Only meaningful with `check_quorum`: that is what makes followers refuse votes while
    /// they recently heard from the leader.
    pub fn lease_valid(&self) -> bool {
        self.role == Role::Leader
            && self.cfg.check_quorum
            && self
                .lease_start()
                .is_some_and(|s| self.now < s + u64::from(self.cfg.lease_ticks))
    }

    // ---- message handling -------------------------------------------------------------

    pub fn step(&mut self, m: Message) -> Result<(), CoreError> {
        if m.to != self.id {
            return Err(CoreError::WrongRecipient {
                to: m.to,
                me: self.id,
            });
        }
        if m.from == self.id || !self.prs.contains_key(&m.from) {
            return Err(CoreError::UnknownPeer(m.from));
        }
        if m.term > self.term {
            // Election traffic while in lease is ignored, including a late rejection of a
            // pre-campaign we abandoned when the leader's heartbeat arrived: adopting its
            // newer term would clear our leader and let us vote at once, breaking the
            // promise the leader's lease counts on (DST seed 182865).
            let vote_traffic = matches!(
                m.kind,
                MsgKind::PreVote { .. }
                    | MsgKind::PreVoteResp { .. }
                    | MsgKind::Vote {
                        transfer: false,
                        ..
                    }
            );
            if vote_traffic && self.in_lease() {
                return Ok(());
            }
            match m.kind {
                MsgKind::PreVote { .. } | MsgKind::PreVoteResp { reject: false } => {}
                MsgKind::Append { .. }
                | MsgKind::Heartbeat { .. }
                | MsgKind::InstallSnapshot { .. } => {
                    self.become_follower(m.term, Some(m.from));
                }
                MsgKind::Vote { .. } => {
                    // Adopt the term, but keep the election timer running: it restarts only
                    // when we grant the vote (below) or hear from a leader (Figure 2).
                    // Otherwise candidates that cannot win (older logs) keep postponing the
                    // campaign of the one node that can (DST seed 74902: no leader for
                    // 400 steps with two of five nodes recovering and pre-vote off).
                    let elapsed = self.election_elapsed;
                    self.become_follower(m.term, None);
                    self.election_elapsed = elapsed;
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.kind {
                MsgKind::Append { .. } | MsgKind::Heartbeat { .. } => {
                    // Tell a stale leader about the newer term so it steps down.
                    self.send(m.from, MsgKind::HeartbeatResp { ctx: 0 });
                }
                MsgKind::PreVote { .. } => self.send(m.from, MsgKind::PreVoteResp { reject: true }),
                _ => {}
            }
            return Ok(());
        }
        match m.kind {
            MsgKind::PreVote {
                last_index,
                last_term,
            } => self.handle_vote_request(m.from, m.term, true, last_index, last_term),
            MsgKind::Vote {
                last_index,
                last_term,
                ..
            } => self.handle_vote_request(m.from, m.term, false, last_index, last_term),
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m),
                Role::Follower => self.step_follower(m),
            },
        }
        Ok(())
    }

    fn send(&mut self, to: NodeId, kind: MsgKind) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            kind,
        });
    }

    fn send_persisted(&mut self, to: NodeId, kind: MsgKind) {
        self.persisted_msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            kind,
        });
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        msg_term: u64,
        pre: bool,
        last_index: u64,
        last_term: u64,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre && msg_term > self.term);
        let granted =
            can_vote && self.promotable() && self.log.is_up_to_date(last_index, last_term);
        if pre {
            let term = if granted { msg_term } else { self.term };
            self.msgs.push(Message {
                from: self.id,
                to: from,
                term,
                kind: MsgKind::PreVoteResp { reject: !granted },
            });
        } else {
            if granted {
                self.election_elapsed = 0;
                self.vote = Some(from);
            }
            // The vote must be durable before the reply leaves.
            self.send_persisted(from, MsgKind::VoteResp { reject: !granted });
        }
    }

    fn step_candidate(&mut self, m: Message) {
        match m.kind {
            MsgKind::PreVoteResp { reject } if self.role == Role::PreCandidate => {
                if !reject && m.term != self.term + 1 {
                    return;
                }
                match self.poll(m.from, !reject) {
                    VoteResult::Won => self.campaign_election(false),
                    VoteResult::Lost => {
                        let t = self.term;
                        self.become_follower(t, None);
                    }
                    VoteResult::Pending => {}
                }
            }
            MsgKind::VoteResp { reject } if self.role == Role::Candidate => {
                match self.poll(m.from, !reject) {
                    VoteResult::Won => self.become_leader(),
                    VoteResult::Lost => {
                        let t = self.term;
                        self.become_follower(t, None);
                    }
                    VoteResult::Pending => {}
                }
            }
            MsgKind::Append { .. }
            | MsgKind::Heartbeat { .. }
            | MsgKind::InstallSnapshot { .. } => {
                let t = self.term;
                self.become_follower(t, Some(m.from));
                self.step_follower(m);
            }
            _ => {}
        }
    }

    fn step_follower(&mut self, m: Message) {
        match m.kind {
            MsgKind::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                ctx,
            } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_append(m.from, prev_index, prev_term, &entries, commit, ctx);
            }
            MsgKind::Heartbeat { commit, ctx } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.log.commit_to(commit.min(self.log.last_index()));
                self.check_recovered();
                self.send(m.from, MsgKind::HeartbeatResp { ctx });
            }
            MsgKind::InstallSnapshot { snapshot } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_snapshot(m.from, snapshot);
            }
            MsgKind::TimeoutNow => self.campaign(true),
            _ => {}
        }
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
        commit: u64,
        ctx: u64,
    ) {
        // A malformed batch (gaps, or terms above the sender's) is dropped, never trusted.
        let well_formed = entries.iter().enumerate().all(|(k, e)| {
            e.index == prev_index + 1 + k as u64 && e.term <= self.term && e.term >= prev_term
        });
        if !well_formed {
            return;
        }
        let committed = self.log.committed;
        if prev_index < committed {
            self.send_persisted(
                from,
                MsgKind::AppendResp {
                    index: committed,
                    reject: false,
                    hint_index: 0,
                    hint_term: 0,
                    ctx,
                },
            );
            return;
        }
        match self
            .log
            .maybe_append(prev_index, prev_term, commit, entries)
        {
            Some(last_new) => {
                self.send_persisted(
                    from,
                    MsgKind::AppendResp {
                        index: last_new,
                        reject: false,
                        hint_index: 0,
                        hint_term: 0,
                        ctx,
                    },
                );
            }
            None => {
                let hint = prev_index.min(self.log.last_index());
                let (hint_index, hint_term) = self.log.find_conflict_by_term(hint, prev_term);
                self.send_persisted(
                    from,
                    MsgKind::AppendResp {
                        index: prev_index,
                        reject: true,
                        hint_index,
                        hint_term,
                        ctx,
                    },
                );
            }
        }
        self.check_recovered();
    }

    fn handle_snapshot(&mut self, from: NodeId, snap: SnapshotMeta) {
        let committed = self.log.committed;
        let index = if snap.index <= committed {
            committed
        } else if self.log.match_term(snap.index, snap.term) {
            self.log.commit_to(snap.index);
            snap.index
        } else {
            self.log.restore(snap);
            snap.index
        };
        self.check_recovered();
        self.send_persisted(
            from,
            MsgKind::AppendResp {
                index,
                reject: false,
                hint_index: 0,
                hint_term: 0,
                ctx: 0,
            },
        );
    }

    fn step_leader(&mut self, m: Message) {
        match m.kind {
            MsgKind::AppendResp {
                index,
                reject,
                hint_index,
                hint_term,
                ctx,
            } => {
                self.handle_append_resp(m.from, index, reject, hint_index, hint_term, ctx);
            }
            MsgKind::HeartbeatResp { ctx } => {
                let last = self.log.last_index();
                let Some(pr) = self.prs.get_mut(&m.from) else {
                    return;
                };
                pr.recent_active = true;
                pr.acked_ctx = pr.acked_ctx.max(ctx);
                if pr.state == ProgressState::Snapshot {
                    // The InstallSnapshot may have been lost: probing again re-sends it.
                    pr.become_probe();
                }
                pr.paused = false;
                if pr.state == ProgressState::Replicate && pr.ins.full() {
                    pr.ins.free_first_one();
                }
                if pr.matched < last {
                    self.send_append(m.from, true);
                }
                self.maybe_send_timeout_now(m.from);
            }
            _ => {}
        }
    }

    fn handle_append_resp(
        &mut self,
        from: NodeId,
        index: u64,
        reject: bool,
        hint_index: u64,
        hint_term: u64,
        ctx: u64,
    ) {
        let Some(pr) = self.prs.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.acked_ctx = pr.acked_ctx.max(ctx);
        if reject {
            if hint_index < pr.matched && index >= pr.matched {
                // The follower lost entries it once acknowledged (detected corruption on
                // restart): forget its match and probe from what it still has.
                pr.matched = hint_index;
                pr.become_probe();
                self.send_append(from, true);
                return;
            }
            let next_probe = if hint_term > 0 {
                self.log.find_conflict_by_term(hint_index, hint_term).0
            } else {
                hint_index
            };
            let Some(pr) = self.prs.get_mut(&from) else {
                return;
            };
            if pr.maybe_decr_to(index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from, true);
            }
            return;
        }
        let old_paused = pr.is_paused();
        if !pr.maybe_update(index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot => {
                if pr.matched >= pr.pending_snapshot {
                    pr.become_probe();
                }
            }
            ProgressState::Replicate => pr.ins.free_to(index),
        }
        if self.maybe_commit() {
            self.pending_bcast_empty = true;
        } else if old_paused {
            self.send_append(from, true);
        }
        for _ in 0..=self.cfg.max_inflight_msgs {
            if !self.send_append(from, false) {
                break;
            }
        }
        self.maybe_send_timeout_now(from);
    }

    // ---- replication ------------------------------------------------------------------

    /// Send the next batch to `to`. Returns whether a message was queued.
    fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let last = self.log.last_index();
        let max = self.cfg.max_size_per_msg_bytes;
        let commit = self.log.committed;
        let ctx = self.now + 1;
        let Some(pr) = self.prs.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        if pr.next_idx > last + 1 {
            if let Some(pr) = self.prs.get_mut(&to) {
                pr.next_idx = last + 1;
            }
        }
        let Some(pr) = self.prs.get(&to) else {
            return false;
        };
        let next = pr.next_idx.max(1);
        let prev_index = next - 1;
        let prev_term = self.log.term(prev_index);
        let ents = self.log.entries(next, max);
        match (prev_term, ents) {
            (Ok(prev_term), Ok(entries)) => {
                if entries.is_empty() && !allow_empty {
                    return false;
                }
                let last_sent = entries.last().map(|e| e.index);
                if let Some(pr) = self.prs.get_mut(&to) {
                    pr.update_on_send(last_sent);
                }
                self.send(
                    to,
                    MsgKind::Append {
                        prev_index,
                        prev_term,
                        entries,
                        commit,
                        ctx,
                    },
                );
                true
            }
            (Err(StorageError::Compacted), _) | (_, Err(StorageError::Compacted)) => {
                let index = self.log.first_index() - 1;
                let Ok(term) = self.log.term(index) else {
                    return false;
                };
                if let Some(pr) = self.prs.get_mut(&to) {
                    pr.become_snapshot(index);
                }
                self.send(
                    to,
                    MsgKind::InstallSnapshot {
                        snapshot: SnapshotMeta { index, term },
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// Send to every follower; in Replicate state keep pipelining batches until the inflight
    /// window is full or the follower has everything.
    fn bcast_append(&mut self, allow_empty: bool) {
        for p in self.other_peers() {
            if !self.send_append(p, allow_empty) {
                continue;
            }
            for _ in 0..self.cfg.max_inflight_msgs {
                if !self.send_append(p, false) {
                    break;
                }
            }
        }
    }

    fn bcast_heartbeat(&mut self) {
        let ctx = self.now + 1;
        let peers: Vec<(NodeId, u64)> = self.prs.iter().map(|(&id, pr)| (id, pr.matched)).collect();
        for (p, matched) in peers {
            // Never tell a follower to commit past what it is known to hold.
            let commit = self.log.committed.min(matched);
            self.send(p, MsgKind::Heartbeat { commit, ctx });
        }
    }

    /// Flush batched appends (called before building a `Ready`).
    pub fn flush(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        if self.pending_bcast_empty {
            self.bcast_append(true);
        } else if self.pending_bcast {
            self.bcast_append(false);
        }
        self.pending_bcast = false;
        self.pending_bcast_empty = false;
    }

    pub fn has_pending_flush(&self) -> bool {
        self.role == Role::Leader && (self.pending_bcast || self.pending_bcast_empty)
    }

    /// Commit index = quorum of DURABLE match indexes (leader counts its own durable index).
    fn maybe_commit(&mut self) -> bool {
        let mci = self.quorum_value(self.log.persisted, |p| p.matched);
        let term = self.term;
        if self.log.maybe_commit(mci, term) {
            let c = self.log.committed;
            while let Some(&(i, size)) = self.uncommitted.front() {
                if i > c {
                    break;
                }
                self.uncommitted_bytes -= size;
                self.uncommitted.pop_front();
            }
            return true;
        }
        false
    }

    pub fn propose(&mut self, data: Bytes) -> Result<u64, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer_target.is_some() {
            return Err(ProposeError::Transferring);
        }
        if !self.ready_for_writes() {
            return Err(ProposeError::NotReady);
        }
        let index = self.log.last_index() + 1;
        let e = Entry {
            index,
            term: self.term,
            kind: EntryKind::Normal,
            data,
        };
        let size = e.size_bytes();
        if size > self.cfg.max_size_per_msg_bytes {
            return Err(ProposeError::TooLarge { size_bytes: size });
        }
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + size > self.cfg.max_uncommitted_bytes
        {
            return Err(ProposeError::Backpressure);
        }
        self.log.append(&[e]);
        self.uncommitted.push_back((index, size));
        self.uncommitted_bytes += size;
        self.pending_bcast = true;
        Ok(index)
    }

    /// Storage made entries up to (`index`, `term`) durable.
    pub fn on_entries_persisted(&mut self, index: u64, term: u64) {
        if self.log.on_persisted(index, term) && self.role == Role::Leader && self.maybe_commit() {
            self.pending_bcast_empty = true;
        }
    }

    // ---- leadership transfer ----------------------------------------------------------

    pub fn transfer_leader(&mut self, to: NodeId) {
        if self.role != Role::Leader || to == self.id || !self.prs.contains_key(&to) {
            return;
        }
        if self.transfer_target == Some(to) {
            return;
        }
        self.transfer_target = Some(to);
        self.election_elapsed = 0;
        let caught_up = self
            .prs
            .get(&to)
            .is_some_and(|pr| pr.matched == self.log.last_index());
        if caught_up {
            self.send_timeout_now(to);
        } else {
            self.send_append(to, true);
        }
    }

    fn maybe_send_timeout_now(&mut self, from: NodeId) {
        if self.role == Role::Leader
            && self.transfer_target == Some(from)
            && self
                .prs
                .get(&from)
                .is_some_and(|pr| pr.matched == self.log.last_index())
        {
            self.send_timeout_now(from);
        }
    }

    /// The target is caught up: tell it to campaign and step down at once, so this node
    /// acknowledges nothing more in its term (keeps the lease argument simple).
    fn send_timeout_now(&mut self, to: NodeId) {
        self.send(to, MsgKind::TimeoutNow);
        let term = self.term;
        self.become_follower(term, None);
    }
}
