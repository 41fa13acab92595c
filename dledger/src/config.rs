//! Node configuration, in DLedger's own terms (`group`, `peers`, `selfId`, `storeBaseDir`)
//! plus timing and explicit limits.
//!
//! `peers = "n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913"` (DLedger's
//! `DLedgerConfig.peers` format: `id-host:port` separated by `;`). Every node must use the
//! same peers string: numeric Raft ids are the 1-based position in that list.
//!
//! Timing defaults (tick 10 ms): heartbeat every 5 ticks (50 ms); election timeout 30 ticks,
//! randomized by the core in [30, 60) ticks = 300–600 ms; leader lease 24 ticks (< election
//! timeout). A dead leader is detected after 300–600 ms and replaced after one pre-vote +
//! vote round trip on loopback (well under 1 s), while a heartbeat can be late by ~250 ms on
//! a loaded 2-core machine before a follower even starts a pre-vote (which fails while the
//! other followers still hear the leader, so a slow tick cannot depose a live leader).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::core::NodeId;
use crate::storage::file_store::DEFAULT_ZERO_AHEAD_BYTES;
use crate::storage::thread::{DEFAULT_FSYNC_LINGER_US, MAX_FSYNC_LINGER_US};

/// One voter of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// DLedger name, e.g. `n0`.
    pub name: String,
    /// Raft id (1-based position in the peers list).
    pub id: NodeId,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid peers string {0:?}: {1}")]
    Peers(String, &'static str),
    #[error("self_id {0:?} is not in peers")]
    UnknownSelf(String),
    #[error("invalid value for {key}: {value:?}")]
    Value { key: String, value: String },
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    #[error("invalid limits: {0}")]
    Limits(&'static str),
}

/// Everything a node needs. Build with [`DLedgerConfig::new`] or [`DLedgerConfig::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DLedgerConfig {
    pub group: String,
    pub peers: Vec<PeerSpec>,
    pub self_id: String,
    /// Root directory; this node's files live under `<store_path>/dledger-<self_id>/`.
    pub store_path: PathBuf,

    pub tick_ms: u64,
    pub heartbeat_ticks: u32,
    pub election_timeout_ticks: u32,
    pub lease_ticks: u32,

    /// Size of one data segment (must be equal on all nodes: positions depend on it).
    pub segment_size_bytes: u64,
    /// Largest entry body.
    pub max_entry_size_bytes: u32,
    /// Largest append message the leader builds (bytes of entries).
    pub max_msg_size_bytes: u64,
    /// Uncommitted bytes the leader accepts before refusing appends (`Backpressure`).
    pub max_inflight_bytes: u64,
    /// Appends waiting to enter the node loop before `append` returns `Backpressure`.
    pub max_pending_appends: usize,
    /// Entries in one `append_batch` call.
    pub max_batch_entries: usize,
    /// Ready batches the storage thread may merge into one fsync.
    pub max_fsync_batch_jobs: usize,
    /// Group-commit delay: while entries arrive fast, a group waits up to this long for more
    /// before its fsync (one fsync, one disk flush and one wake-up chain for all of them).
    /// Adds up to this much to a commit under load; never applies to a lone sender. 0 = off.
    pub fsync_linger_us: u64,
    /// A lingering group stops waiting once it holds this many entry bytes.
    pub fsync_linger_bytes: u64,
    /// Messages queued per peer before dropping.
    pub send_queue_msgs: usize,
    /// Inbound peer messages queued before TCP backpressure.
    pub recv_queue_msgs: usize,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Retention: keep at most this many segment files (0 = keep everything). Older
    /// segments are deleted once their entries are committed and applied.
    pub retain_segments: usize,
    /// Optional cap on preallocated segment bytes (behaves like a full disk).
    pub disk_quota_bytes: Option<u64>,
    /// Recent entry bodies kept in memory (replication and commit without mmap copies).
    pub entry_cache_bytes: u64,
    /// Bytes past the write position kept written with zeros so that syncs never convert
    /// extents (see `FileStoreConfig::zero_ahead_bytes`); 0 turns it off.
    pub zero_ahead_bytes: u64,
    /// Seed for election-timeout randomization (default derived from the node id).
    pub rng_seed: Option<u64>,
}

impl DLedgerConfig {
    /// Defaults for everything but identity and location.
    pub fn new(
        group: &str,
        peers: &str,
        self_id: &str,
        store_path: impl Into<PathBuf>,
    ) -> Result<DLedgerConfig, ConfigError> {
        let peers = parse_peers(peers)?;
        if !peers.iter().any(|p| p.name == self_id) {
            return Err(ConfigError::UnknownSelf(self_id.to_string()));
        }
        let c = DLedgerConfig {
            group: group.to_string(),
            peers,
            self_id: self_id.to_string(),
            store_path: store_path.into(),
            tick_ms: 10,
            heartbeat_ticks: 5,
            election_timeout_ticks: 30,
            lease_ticks: 24,
            segment_size_bytes: 64 * 1024 * 1024,
            max_entry_size_bytes: 4 * 1024 * 1024,
            max_msg_size_bytes: 1024 * 1024,
            max_inflight_bytes: 64 * 1024 * 1024,
            max_pending_appends: 16 * 1024,
            max_batch_entries: 1024,
            max_fsync_batch_jobs: 256,
            fsync_linger_us: DEFAULT_FSYNC_LINGER_US,
            fsync_linger_bytes: 256 * 1024,
            send_queue_msgs: 4096,
            recv_queue_msgs: 4096,
            reconnect_min_ms: 10,
            reconnect_max_ms: 500,
            retain_segments: 0,
            disk_quota_bytes: None,
            entry_cache_bytes: 64 * 1024 * 1024,
            zero_ahead_bytes: DEFAULT_ZERO_AHEAD_BYTES,
            rng_seed: None,
        };
        c.validate()?;
        Ok(c)
    }

    /// Parse `key=value` lines (DLedger property names accepted where they exist:
    /// `group`, `peers`, `selfId`/`self_id`, `storeBaseDir`/`store_path`). `#` starts a comment.
    pub fn parse(text: &str) -> Result<DLedgerConfig, ConfigError> {
        let mut kv = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| ConfigError::Value {
                key: line.to_string(),
                value: String::new(),
            })?;
            kv.push((k.trim().to_string(), v.trim().to_string()));
        }
        let get = |names: &[&str]| {
            kv.iter()
                .rev()
                .find(|(k, _)| names.contains(&k.as_str()))
                .map(|(_, v)| v.clone())
        };
        let missing = |k: &str| ConfigError::Value {
            key: k.to_string(),
            value: String::new(),
        };
        let group = get(&["group"]).ok_or_else(|| missing("group"))?;
        let peers = get(&["peers"]).ok_or_else(|| missing("peers"))?;
        let self_id = get(&["selfId", "self_id"]).ok_or_else(|| missing("self_id"))?;
        let store = get(&["storeBaseDir", "store_path"]).ok_or_else(|| missing("store_path"))?;
        let mut c = DLedgerConfig::new(&group, &peers, &self_id, store)?;
        for (k, v) in &kv {
            let bad = || ConfigError::Value {
                key: k.clone(),
                value: v.clone(),
            };
            let n = || v.parse::<u64>().map_err(|_| bad());
            match k.as_str() {
                "group" | "peers" | "selfId" | "self_id" | "storeBaseDir" | "store_path" => {}
                "tick_ms" => c.tick_ms = n()?,
                "heartbeat_ticks" => c.heartbeat_ticks = n()? as u32,
                "election_timeout_ticks" => c.election_timeout_ticks = n()? as u32,
                "lease_ticks" => c.lease_ticks = n()? as u32,
                "segment_size_bytes" => c.segment_size_bytes = n()?,
                "max_entry_size_bytes" => {
                    c.max_entry_size_bytes = u32::try_from(n()?).map_err(|_| bad())?
                }
                "max_msg_size_bytes" => c.max_msg_size_bytes = n()?,
                "max_inflight_bytes" => c.max_inflight_bytes = n()?,
                "max_pending_appends" => c.max_pending_appends = n()? as usize,
                "max_batch_entries" => c.max_batch_entries = n()? as usize,
                "max_fsync_batch_jobs" => c.max_fsync_batch_jobs = n()? as usize,
                "fsync_linger_us" => c.fsync_linger_us = n()?,
                "fsync_linger_bytes" => c.fsync_linger_bytes = n()?,
                "send_queue_msgs" => c.send_queue_msgs = n()? as usize,
                "recv_queue_msgs" => c.recv_queue_msgs = n()? as usize,
                "reconnect_min_ms" => c.reconnect_min_ms = n()?,
                "reconnect_max_ms" => c.reconnect_max_ms = n()?,
                "retain_segments" => c.retain_segments = n()? as usize,
                "disk_quota_bytes" => c.disk_quota_bytes = Some(n()?),
                "entry_cache_bytes" => c.entry_cache_bytes = n()?,
                "zero_ahead_bytes" => c.zero_ahead_bytes = n()?,
                "rng_seed" => c.rng_seed = Some(n()?),
                _ => return Err(ConfigError::UnknownKey(k.clone())),
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Check limits and timing relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tick_ms == 0 || self.tick_ms > 1000 {
            return Err(ConfigError::Limits("tick_ms must be in 1..=1000"));
        }
        if self.heartbeat_ticks == 0 || self.election_timeout_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::Limits(
                "need 0 < heartbeat_ticks < election_timeout_ticks",
            ));
        }
        if self.lease_ticks == 0 || self.lease_ticks >= self.election_timeout_ticks {
            return Err(ConfigError::Limits(
                "lease_ticks must be below the election timeout",
            ));
        }
        let min_seg = self.max_entry_size_bytes as u64 + 48 + 8;
        if self.segment_size_bytes < min_seg {
            return Err(ConfigError::Limits(
                "segment_size_bytes must hold one max-size entry",
            ));
        }
        if self.max_entry_size_bytes == 0 || self.max_msg_size_bytes == 0 {
            return Err(ConfigError::Limits("entry and message limits must be > 0"));
        }
        if self.max_inflight_bytes < self.max_entry_size_bytes as u64 {
            return Err(ConfigError::Limits(
                "max_inflight_bytes must hold one max-size entry",
            ));
        }
        if self.max_pending_appends == 0
            || self.max_batch_entries == 0
            || self.max_fsync_batch_jobs == 0
            || self.send_queue_msgs == 0
            || self.recv_queue_msgs == 0
        {
            return Err(ConfigError::Limits("queue limits must be > 0"));
        }
        if self.fsync_linger_us > MAX_FSYNC_LINGER_US {
            return Err(ConfigError::Limits(
                "fsync_linger_us must be at most 10 000",
            ));
        }
        if self.group.is_empty() || self.group.len() > 256 {
            return Err(ConfigError::Limits("group name must have 1..=256 bytes"));
        }
        Ok(())
    }

    /// This node's Raft id.
    pub fn self_node_id(&self) -> NodeId {
        self.peers
            .iter()
            .find(|p| p.name == self.self_id)
            .map(|p| p.id)
            .unwrap_or(0)
    }

    /// Address this node listens on.
    pub fn self_addr(&self) -> Option<SocketAddr> {
        self.peers
            .iter()
            .find(|p| p.name == self.self_id)
            .map(|p| p.addr)
    }

    /// Raft id of a peer name.
    pub fn peer_id(&self, name: &str) -> Option<NodeId> {
        self.peers.iter().find(|p| p.name == name).map(|p| p.id)
    }

    /// Peer name of a Raft id.
    pub fn peer_name(&self, id: NodeId) -> Option<&str> {
        self.peers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.as_str())
    }

    /// `<store_path>/dledger-<self_id>`.
    pub fn node_dir(&self) -> PathBuf {
        self.store_path.join(format!("dledger-{}", self.self_id))
    }

    /// Largest frame on the wire: one message of entries plus framing slack, and at least one
    /// max-size entry.
    pub fn max_frame_bytes(&self) -> u32 {
        let m = self
            .max_msg_size_bytes
            .max(self.max_entry_size_bytes as u64);
        (2 * m + 64 * 1024).min(u32::MAX as u64 / 2) as u32
    }
}

/// Parse DLedger's `peers` format.
pub fn parse_peers(s: &str) -> Result<Vec<PeerSpec>, ConfigError> {
    let bad = |why| ConfigError::Peers(s.to_string(), why);
    let mut out: Vec<PeerSpec> = Vec::new();
    for (k, part) in s.split(';').filter(|p| !p.trim().is_empty()).enumerate() {
        let (name, addr) = part
            .trim()
            .split_once('-')
            .ok_or_else(|| bad("expected id-host:port"))?;
        let addr: SocketAddr = addr
            .replace("localhost", "127.0.0.1")
            .parse()
            .map_err(|_| bad("bad host:port"))?;
        if addr.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return Err(bad("peers must be on 127.0.0.1"));
        }
        if name.is_empty() || out.iter().any(|p| p.name == name || p.addr == addr) {
            return Err(bad("duplicate or empty peer"));
        }
        out.push(PeerSpec {
            name: name.to_string(),
            id: k as NodeId + 1,
            addr,
        });
    }
    if out.is_empty() || out.len() > crate::core::MAX_PEERS {
        return Err(bad("need 1..=16 peers"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dledger_style_config() {
        let c = DLedgerConfig::parse(
            "group=g1\npeers=n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913\n\
             selfId=n1\nstoreBaseDir=/tmp/x\ntick_ms=20\n",
        )
        .unwrap();
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.self_node_id(), 2);
        assert_eq!(c.tick_ms, 20);
        assert_eq!(c.self_addr().unwrap().port(), 40912);
        assert_eq!(c.node_dir(), PathBuf::from("/tmp/x/dledger-n1"));
        assert!(
            DLedgerConfig::parse("group=g\npeers=n0-10.0.0.1:1\nself_id=n0\nstore_path=/x")
                .is_err()
        );
        assert!(DLedgerConfig::new("g", "n0-127.0.0.1:1", "n9", "/x").is_err());
        assert!(DLedgerConfig::parse(
            "group=g\npeers=n0-127.0.0.1:1\nself_id=n0\nstore_path=/x\nbogus=1"
        )
        .is_err());
    }
}
