//! Group mode (`enableDLegerCommitLog=true`): three (or more) brokers with the same
//! `brokerName` share one Raft-replicated commitlog. This module owns what the broker
//! adds on top of the store's DLedger log:
//!
//! - [`Role`]: the broker's current role (master = writable DLedger leader, registered as
//!   brokerId 0; everyone else a slave registered as brokerId = peer index + 1). Single-
//!   replica mode has a constant role: master with the configured brokerId.
//! - [`Peers`]: `dLegerPeers` and our `dLegerPeerBrokerAddrs` (where a follower forwards
//!   consumer-offset commits: the leader's client-facing address).
//! - [`MetaEntry`]: the metadata replicated through the store's metadata log (topic table,
//!   subscription groups, consumer offsets, delay progress), encoded with a small envelope
//!   naming the proposer and its term so a leader skips the echo of its own entries
//!   (it applied them before proposing).
//!
//! Replication rule: the writable leader changes its managers in memory (as in single
//! mode) and a replicator task proposes what changed every `dLegerMetadataBatchIntervalMs`
//! (consumer offsets coalesced into one entry per batch, full snapshots of the small
//! tables); followers apply every committed entry in log order. A new leader first
//! proposes full snapshots of everything, so followers drop anything a deposed leader
//! applied locally but never got committed.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::config::{BrokerConfig, ConfigError};

/// Upper bound on group size (DLedger groups are 3 or 5 in practice).
pub const PEERS_MAX: usize = 9;
/// Upper bound on one metadata entry's payload; a bigger table is refused, not truncated.
pub const META_ENTRY_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The broker's role as seen by processors and the registration task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Accepts writes (sends, topic changes, offset commits): single mode, or the DLedger
    /// leader once its log is caught up (store `writable`).
    pub master: bool,
    /// What REGISTER_BROKER advertises: 0 for the master, peer index + 1 for followers.
    pub broker_id: i64,
    /// DLedger term (0 in single mode).
    pub term: u64,
    /// DLedger id of the current leader, if known.
    pub leader_id: Option<String>,
}

impl Role {
    /// Single-replica mode: always master, with the configured brokerId.
    pub fn single(config: &BrokerConfig) -> Role {
        Role {
            master: true,
            broker_id: config.broker_id,
            term: 0,
            leader_id: None,
        }
    }

    /// Group mode: derived from the store's view of leadership.
    pub fn group(
        is_leader: bool,
        writable: bool,
        term: u64,
        leader_id: Option<String>,
        self_index: usize,
    ) -> Role {
        let master = is_leader && writable;
        Role {
            master,
            broker_id: if master { 0 } else { self_index as i64 + 1 },
            term,
            leader_id,
        }
    }
}

/// One DLedger peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    /// DLedger (Raft) address.
    pub dledger_addr: String,
    /// Client-facing broker address (`dLegerPeerBrokerAddrs`), if configured.
    pub broker_addr: Option<String>,
}

/// The group's peers in `dLegerPeers` order, and this node's place among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    pub group: String,
    pub self_id: String,
    pub self_index: usize,
    pub peers: Vec<Peer>,
}

/// Parse `id-host:port;id-host:port` (DLedger's `peers` syntax).
pub fn parse_id_addr_list(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((id, addr)) = item.split_once('-') else {
            return Err(format!("`{item}` is not id-host:port"));
        };
        let (id, addr) = (id.trim(), addr.trim());
        if id.is_empty() || !addr.contains(':') {
            return Err(format!("`{item}` is not id-host:port"));
        }
        if out.iter().any(|(i, _)| i == id) {
            return Err(format!("peer id `{id}` listed twice"));
        }
        out.push((id.to_string(), addr.to_string()));
    }
    if out.is_empty() {
        return Err("no peers".to_string());
    }
    if out.len() > PEERS_MAX {
        return Err(format!("more than {PEERS_MAX} peers"));
    }
    Ok(out)
}

impl Peers {
    /// From `dLegerGroup`, `dLegerPeers`, `dLegerSelfId` and `dLegerPeerBrokerAddrs`.
    pub fn from_config(config: &BrokerConfig) -> Result<Peers, ConfigError> {
        let need = |key: &str, v: &Option<String>| -> Result<String, ConfigError> {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_string())
                .ok_or_else(|| BrokerConfig::bad(key, "", "required with enableDLegerCommitLog"))
        };
        let group = need("dLegerGroup", &config.dleger_group)?;
        let peers_text = need("dLegerPeers", &config.dleger_peers)?;
        let self_id = need("dLegerSelfId", &config.dleger_self_id)?;
        let list = parse_id_addr_list(&peers_text)
            .map_err(|r| BrokerConfig::bad("dLegerPeers", &peers_text, &r))?;
        let mut broker_addrs = HashMap::new();
        if let Some(text) = config
            .dleger_peer_broker_addrs
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        {
            for (id, addr) in parse_id_addr_list(text)
                .map_err(|r| BrokerConfig::bad("dLegerPeerBrokerAddrs", text, &r))?
            {
                if !list.iter().any(|(i, _)| *i == id) {
                    return Err(BrokerConfig::bad(
                        "dLegerPeerBrokerAddrs",
                        text,
                        &format!("peer `{id}` is not in dLegerPeers"),
                    ));
                }
                broker_addrs.insert(id, addr);
            }
        }
        let Some(self_index) = list.iter().position(|(id, _)| *id == self_id) else {
            return Err(BrokerConfig::bad(
                "dLegerSelfId",
                &self_id,
                "is not one of the dLegerPeers ids",
            ));
        };
        // Our own client address is always known.
        broker_addrs
            .entry(self_id.clone())
            .or_insert_with(|| config.broker_addr());
        let peers = list
            .into_iter()
            .map(|(id, dledger_addr)| Peer {
                broker_addr: broker_addrs.get(&id).cloned(),
                id,
                dledger_addr,
            })
            .collect();
        Ok(Peers {
            group,
            self_id,
            self_index,
            peers,
        })
    }

    /// Client-facing address of peer `id` (None when unknown).
    pub fn broker_addr_of(&self, id: &str) -> Option<&str> {
        self.peers
            .iter()
            .find(|p| p.id == id)
            .and_then(|p| p.broker_addr.as_deref())
    }
}

/// Kinds of replicated metadata (the first byte of our payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MetaKind {
    Topics = 1,
    SubscriptionGroups = 2,
    ConsumerOffsets = 3,
    DelayOffsets = 4,
    Locks = 5,
    /// Marks a complete full metadata round: everything from `Checkpoint::from_index` on
    /// replays to the whole metadata state, so retention may delete what lies before it.
    Checkpoint = 6,
}

/// Body of a `MetaKind::Checkpoint` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Log index of the first entry of the full round.
    pub from_index: u64,
}

impl MetaKind {
    pub fn from_u8(b: u8) -> Option<MetaKind> {
        Some(match b {
            1 => MetaKind::Topics,
            2 => MetaKind::SubscriptionGroups,
            3 => MetaKind::ConsumerOffsets,
            4 => MetaKind::DelayOffsets,
            5 => MetaKind::Locks,
            6 => MetaKind::Checkpoint,
            _ => return None,
        })
    }
}

/// A change of committed consumer offsets. `full` = the table is replaced by `set`
/// (a new leader's first entry); otherwise `removed` keys go first, then `set` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetDelta {
    #[serde(default)]
    pub full: bool,
    #[serde(default)]
    pub set: BTreeMap<String, BTreeMap<i32, i64>>,
    #[serde(default)]
    pub removed: Vec<String>,
}

impl OffsetDelta {
    pub fn is_empty(&self) -> bool {
        !self.full && self.set.is_empty() && self.removed.is_empty()
    }

    /// Record a commit (coalescing: the latest value per queue wins).
    pub fn record_set(&mut self, key: &str, queue_id: i32, offset: i64) {
        match self.set.get_mut(key) {
            Some(q) => {
                q.insert(queue_id, offset);
            }
            None => {
                self.set
                    .insert(key.to_string(), BTreeMap::from([(queue_id, offset)]));
            }
        }
    }

    /// Record a removal of a whole `topic@group` key.
    pub fn record_remove(&mut self, key: &str) {
        self.set.remove(key);
        if !self.removed.iter().any(|k| k == key) {
            self.removed.push(key.to_string());
        }
    }

    /// Split into deltas of about `max_bytes` of JSON each, applied in order: the first
    /// keeps `full` and the removals, so a big table never exceeds the entry size limit.
    pub fn split(self, max_bytes: usize) -> Vec<OffsetDelta> {
        // Rough JSON size: key + quotes/braces, ~24 bytes per queue entry.
        let cost = |k: &str, q: &BTreeMap<i32, i64>| k.len() + 8 + q.len() * 24;
        let mut out = vec![OffsetDelta {
            full: self.full,
            set: BTreeMap::new(),
            removed: self.removed,
        }];
        let mut size: usize = out[0].removed.iter().map(|k| k.len() + 3).sum();
        for (k, q) in self.set {
            let c = cost(&k, &q);
            if size + c > max_bytes && !out.last().is_some_and(OffsetDelta::is_empty) {
                out.push(OffsetDelta::default());
                size = 0;
            }
            size += c;
            if let Some(last) = out.last_mut() {
                last.set.insert(k, q);
            }
        }
        out
    }

    /// Put an older, unsent delta back in front of this one (a failed proposal): newer
    /// values in `self` win.
    pub fn merge_older(&mut self, older: OffsetDelta) {
        let newer = std::mem::take(self);
        *self = older;
        for k in newer.removed {
            self.record_remove(&k);
        }
        for (k, queues) in newer.set {
            for (q, off) in queues {
                self.record_set(&k, q, off);
            }
        }
        self.full |= newer.full;
    }
}

/// One replicated metadata entry, with who proposed it (leader id and term).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaEntry {
    pub kind: MetaKind,
    pub proposer: String,
    pub term: u64,
    /// JSON body (topics: `TopicConfigSerializeWrapper`, groups: `SubscriptionGroupWrapper`,
    /// offsets: [`OffsetDelta`], delay: `delayOffset.json` form).
    pub body: bytes::Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaError {
    #[error("metadata entry truncated")]
    Truncated,
    #[error("unknown metadata entry kind {0}")]
    UnknownKind(u8),
    #[error("unsupported metadata entry version {0}")]
    Version(u8),
    #[error("metadata entry of {0} bytes exceeds {META_ENTRY_MAX_BYTES}")]
    TooLarge(usize),
    #[error("bad metadata body: {0}")]
    Body(String),
}

const META_VERSION: u8 = 1;

impl MetaEntry {
    /// `[version u8][kind u8][proposer len u8][proposer][term u64 BE][body]`.
    pub fn encode(&self) -> Result<bytes::Bytes, MetaError> {
        let proposer = self.proposer.as_bytes();
        let len = 3 + proposer.len().min(255) + 8 + self.body.len();
        if len > META_ENTRY_MAX_BYTES {
            return Err(MetaError::TooLarge(len));
        }
        let mut out = bytes::BytesMut::with_capacity(len);
        out.extend_from_slice(&[META_VERSION, self.kind as u8, proposer.len().min(255) as u8]);
        out.extend_from_slice(&proposer[..proposer.len().min(255)]);
        out.extend_from_slice(&self.term.to_be_bytes());
        out.extend_from_slice(&self.body);
        Ok(out.freeze())
    }

    pub fn decode(data: &[u8]) -> Result<MetaEntry, MetaError> {
        if data.len() > META_ENTRY_MAX_BYTES {
            return Err(MetaError::TooLarge(data.len()));
        }
        let [version, kind, plen, rest @ ..] = data else {
            return Err(MetaError::Truncated);
        };
        if *version != META_VERSION {
            return Err(MetaError::Version(*version));
        }
        let kind = MetaKind::from_u8(*kind).ok_or(MetaError::UnknownKind(*kind))?;
        let plen = usize::from(*plen);
        if rest.len() < plen + 8 {
            return Err(MetaError::Truncated);
        }
        let proposer = String::from_utf8_lossy(&rest[..plen]).into_owned();
        let mut term = [0u8; 8];
        term.copy_from_slice(&rest[plen..plen + 8]);
        Ok(MetaEntry {
            kind,
            proposer,
            term: u64::from_be_bytes(term),
            body: bytes::Bytes::copy_from_slice(&rest[plen + 8..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BrokerConfig {
        BrokerConfig {
            enable_dleger_commit_log: true,
            dleger_group: Some("g".into()),
            dleger_peers: Some("n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913".into()),
            dleger_self_id: Some("n1".into()),
            dleger_peer_broker_addrs: Some("n0-127.0.0.1:30911;n2-127.0.0.1:30931".into()),
            listen_port: 30921,
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn peers_parse_and_validate() {
        let p = Peers::from_config(&cfg()).unwrap();
        assert_eq!(p.self_index, 1);
        assert_eq!(p.peers.len(), 3);
        assert_eq!(p.broker_addr_of("n0"), Some("127.0.0.1:30911"));
        assert_eq!(
            p.broker_addr_of("n1"),
            Some("127.0.0.1:30921"),
            "own address"
        );
        assert_eq!(p.peers[2].dledger_addr, "127.0.0.1:40913");

        let mut c = cfg();
        c.dleger_self_id = Some("n7".into());
        let e = Peers::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("dLegerSelfId"), "{e}");
        let mut c = cfg();
        c.dleger_peers = Some("n0-127.0.0.1:1;n0-127.0.0.1:2".into());
        assert!(Peers::from_config(&c)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let mut c = cfg();
        c.dleger_peer_broker_addrs = Some("n9-127.0.0.1:1".into());
        assert!(Peers::from_config(&c)
            .unwrap_err()
            .to_string()
            .contains("dLegerPeerBrokerAddrs"));
        assert!(parse_id_addr_list("n0127.0.0.1:1").is_err());
        assert!(c.validate().is_err(), "validate checks the peers too");
    }

    #[test]
    fn shipped_group_confs_are_one_ready_group() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/dledger");
        let mut ports = Vec::new();
        let mut roots = Vec::new();
        for i in 0..3 {
            let path = dir.join(format!("broker-n{i}.conf"));
            let loaded = BrokerConfig::load(Some(&path), &[]).unwrap();
            assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
            let c = loaded.config;
            c.validate().unwrap();
            assert!(c.enable_dleger_commit_log);
            assert_eq!(c.broker_name, "broker-a");
            let p = Peers::from_config(&c).unwrap();
            assert_eq!(p.self_index, i);
            assert_eq!(p.broker_addr_of(&p.self_id), Some(c.broker_addr().as_str()));
            assert!(p.peers.iter().all(|peer| peer.broker_addr.is_some()));
            ports.push(c.listen_port);
            roots.push(c.store_path_root_dir);
        }
        ports.dedup();
        roots.dedup();
        assert_eq!(
            (ports.len(), roots.len()),
            (3, 3),
            "distinct ports and data dirs"
        );
    }

    #[test]
    fn role_ids() {
        let r = Role::group(true, false, 3, Some("n1".into()), 1);
        assert!(!r.master, "a leader that is not yet writable is no master");
        assert_eq!(r.broker_id, 2);
        let r = Role::group(true, true, 3, Some("n1".into()), 1);
        assert!(r.master);
        assert_eq!(r.broker_id, 0);
        let r = Role::group(false, false, 3, Some("n0".into()), 2);
        assert_eq!(r.broker_id, 3);
    }

    #[test]
    fn meta_entry_round_trip_and_errors() {
        let e = MetaEntry {
            kind: MetaKind::ConsumerOffsets,
            proposer: "n0".into(),
            term: 7,
            body: bytes::Bytes::from_static(b"{}"),
        };
        let enc = e.encode().unwrap();
        assert_eq!(MetaEntry::decode(&enc).unwrap(), e);
        assert_eq!(MetaEntry::decode(&enc[..4]), Err(MetaError::Truncated));
        let mut bad = enc.to_vec();
        bad[1] = 99;
        assert_eq!(MetaEntry::decode(&bad), Err(MetaError::UnknownKind(99)));
        bad[0] = 2;
        assert_eq!(MetaEntry::decode(&bad), Err(MetaError::Version(2)));
    }

    #[test]
    fn offset_delta_coalesces_and_merges() {
        let mut d = OffsetDelta::default();
        assert!(d.is_empty());
        d.record_set("T@G", 0, 1);
        d.record_set("T@G", 0, 5);
        d.record_set("T@G", 1, 2);
        d.record_remove("T@H");
        assert_eq!(d.set["T@G"], BTreeMap::from([(0, 5), (1, 2)]));
        let json = serde_json::to_string(&d).unwrap();
        let back: OffsetDelta = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);

        let mut newer = OffsetDelta::default();
        newer.record_set("T@G", 0, 9);
        newer.record_set("T@H", 0, 1);
        newer.merge_older(d);
        assert_eq!(newer.set["T@G"], BTreeMap::from([(0, 9), (1, 2)]));
        assert_eq!(newer.set["T@H"], BTreeMap::from([(0, 1)]));
        assert_eq!(newer.removed, vec!["T@H".to_string()]);

        let mut big = OffsetDelta {
            full: true,
            ..OffsetDelta::default()
        };
        for i in 0..100 {
            big.record_set(&format!("Topic{i}@Group"), 0, i);
        }
        let parts = big.clone().split(500);
        assert!(parts.len() > 5, "{}", parts.len());
        assert!(parts[0].full && !parts[1].full);
        let n: usize = parts.iter().map(|p| p.set.len()).sum();
        assert_eq!(n, 100);
        for p in &parts {
            assert!(serde_json::to_vec(p).unwrap().len() < 1000);
        }
        assert_eq!(big.clone().split(usize::MAX), vec![big]);
    }
}
