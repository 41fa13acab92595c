//! Wire-independent Raft data types: entries, hard state, messages.

use bytes::Bytes;

/// Peers are identified by small integers (the runtime config maps "n0" -> 0, ...).
pub type NodeId = u64;

/// What an entry carries. `Noop` is appended by every new leader at the start of its term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Normal,
    Noop,
}

/// One log entry. `data` is reference counted so replication never copies message bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    /// Approximate wire size used for batching and backpressure accounting.
    pub fn size_bytes(&self) -> u64 {
        // index + term + kind + length prefix, then the payload.
        25 + self.data.len() as u64
    }
}

/// State that must be durable before any message that depends on it leaves the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
    /// Durable commit index: never above this node's durable log.
    pub commit: u64,
}

/// Metadata of a "snapshot". The log is the state, so a snapshot is only the point at which a
/// follower's log restarts: the follower discards its log and its next entry is `index + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
}

/// Role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Message payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgKind {
    /// Pre-vote (thesis §9.6): `term` of the enclosing message is the term the sender would
    /// campaign in; receivers do not change their own term.
    PreVote {
        last_index: u64,
        last_term: u64,
    },
    PreVoteResp {
        reject: bool,
    },
    /// `transfer` is set when the campaign follows a `TimeoutNow` and must ignore leases.
    Vote {
        last_index: u64,
        last_term: u64,
        transfer: bool,
    },
    VoteResp {
        reject: bool,
    },
    /// `ctx` is the leader's tick count at send time, echoed back to extend the leader lease.
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        ctx: u64,
    },
    /// On success `index` is the follower's durable match index. On reject, `index` is the
    /// rejected `prev_index` and (`hint_index`, `hint_term`) let the leader skip a whole term.
    AppendResp {
        index: u64,
        reject: bool,
        hint_index: u64,
        hint_term: u64,
        ctx: u64,
    },
    Heartbeat {
        commit: u64,
        ctx: u64,
    },
    HeartbeatResp {
        ctx: u64,
    },
    /// The follower is behind the leader's first retained entry: restart its log after `snapshot`.
    InstallSnapshot {
        snapshot: SnapshotMeta,
    },
    /// Leadership transfer: the receiver campaigns immediately.
    TimeoutNow,
}

/// A message between peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub kind: MsgKind,
}

impl Message {
    /// Sum of the entry sizes carried (0 for non-append messages).
    pub fn entries_size_bytes(&self) -> u64 {
        match &self.kind {
            MsgKind::Append { entries, .. } => entries.iter().map(Entry::size_bytes).sum(),
            _ => 0,
        }
    }
}
