//! Core configuration.

use super::errors::CoreError;
use super::types::NodeId;

/// Upper bound on cluster size (TIGER_STYLE: every quantity has a limit).
pub const MAX_PEERS: usize = 16;

/// Configuration of one Raft node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub id: NodeId,
    /// All voters, including `id`.
    pub peers: Vec<NodeId>,
    /// Base election timeout; the effective timeout is randomized in `[et, 2*et)`.
    pub election_timeout_ticks: u32,
    pub heartbeat_ticks: u32,
    pub pre_vote: bool,
    /// Leader steps down when it heard from no quorum within an election timeout; followers
    /// that heard from a leader within an election timeout refuse (pre-)votes.
    pub check_quorum: bool,
    /// Leader lease length. Must be below `election_timeout_ticks` so a partitioned leader
    /// stops acknowledging before followers start voting for a new one.
    pub lease_ticks: u32,
    pub max_size_per_msg_bytes: u64,
    pub max_inflight_msgs: usize,
    /// Backpressure: the leader refuses proposals beyond this many uncommitted payload bytes.
    pub max_uncommitted_bytes: u64,
    /// Upper bound on committed entries handed out per `Ready`.
    pub max_committed_size_per_ready_bytes: u64,
    /// When set, a leader hands leadership to this node once it is caught up.
    pub preferred_leader: Option<NodeId>,
}

impl Config {
    /// A config with sensible defaults for the given node and voters.
    pub fn new(id: NodeId, peers: Vec<NodeId>) -> Self {
        Config {
            id,
            peers,
            election_timeout_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            lease_ticks: 8,
            max_size_per_msg_bytes: 1 << 20,
            max_inflight_msgs: 64,
            max_uncommitted_bytes: 64 << 20,
            max_committed_size_per_ready_bytes: 4 << 20,
            preferred_leader: None,
        }
    }

    pub fn validate(&self) -> Result<(), CoreError> {
        if self.peers.is_empty() || self.peers.len() > MAX_PEERS {
            return Err(CoreError::Config("peers must hold 1..=16 voters"));
        }
        if !self.peers.contains(&self.id) {
            return Err(CoreError::Config("peers must contain id"));
        }
        let mut sorted = self.peers.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.peers.len() {
            return Err(CoreError::Config("duplicate peer ids"));
        }
        if self.heartbeat_ticks == 0 {
            return Err(CoreError::Config("heartbeat_ticks must be > 0"));
        }
        if self.election_timeout_ticks <= self.heartbeat_ticks {
            return Err(CoreError::Config(
                "election_timeout_ticks must exceed heartbeat_ticks",
            ));
        }
        if self.lease_ticks == 0 || self.lease_ticks >= self.election_timeout_ticks {
            return Err(CoreError::Config(
                "lease_ticks must be in 1..election_timeout_ticks",
            ));
        }
        if self.max_inflight_msgs == 0 || self.max_inflight_msgs > 4096 {
            return Err(CoreError::Config("max_inflight_msgs must be in 1..=4096"));
        }
        if self.max_size_per_msg_bytes == 0 {
            return Err(CoreError::Config("max_size_per_msg_bytes must be > 0"));
        }
        if self.max_uncommitted_bytes == 0 {
            return Err(CoreError::Config("max_uncommitted_bytes must be > 0"));
        }
        if self.max_committed_size_per_ready_bytes == 0 {
            return Err(CoreError::Config(
                "max_committed_size_per_ready_bytes must be > 0",
            ));
        }
        if let Some(p) = self.preferred_leader {
            if !self.peers.contains(&p) {
                return Err(CoreError::Config("preferred_leader must be a peer"));
            }
        }
        Ok(())
    }
}
