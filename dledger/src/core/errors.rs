//! Typed errors of the core.

use super::types::NodeId;

/// Errors reading the log through [`super::Storage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The index is before the first retained entry.
    #[error("log index compacted")]
    Compacted,
    /// The index is past the last entry (or otherwise not readable right now).
    #[error("log entry unavailable")]
    Unavailable,
    /// Anything else the storage layer wants to report (I/O, corruption).
    #[error("storage: {0}")]
    Other(String),
}

/// Errors of the core state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("invalid config: {0}")]
    Config(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("message from unknown peer {0}")]
    UnknownPeer(NodeId),
    #[error("message addressed to {to}, this node is {me}")]
    WrongRecipient { to: NodeId, me: NodeId },
    #[error("compaction to {requested} not allowed (limit {limit})")]
    CompactTooFar { requested: u64, limit: u64 },
}

/// Why a proposal was refused. The client may retry elsewhere (`NotLeader`) or later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not leader (leader hint {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
    /// Leader, but its term's NOOP is not committed yet.
    #[error("leader not ready: term noop not committed")]
    NotReady,
    /// Too many uncommitted bytes in flight.
    #[error("backpressure: uncommitted bytes over limit")]
    Backpressure,
    /// Leadership transfer in progress.
    #[error("leadership transfer in progress")]
    Transferring,
    #[error("proposal of {size_bytes} bytes exceeds max message size")]
    TooLarge { size_bytes: u64 },
}
