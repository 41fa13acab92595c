//! Committed consumer offsets (Java `ConsumerOffsetManager`), persisted as
//! `storePathRootDir/config/consumerOffset.json` in fastjson form:
//! `{"offsetTable":{"topic@group":{0:5,1:7}}}` (bare numeric keys, as Java writes them).
//!
//! Commits only touch memory; the controller persists every `flushConsumerOffsetInterval`
//! (5 s) when something changed, and once more at shutdown.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::BrokerConfig;
use crate::group::OffsetDelta;
use crate::persist;

/// Separator of the Java `topic@group` key (neither name may contain it).
pub const TOPIC_GROUP_SEPARATOR: char = '@';
/// Upper bound on (topic, group) pairs, a guard against clients committing garbage.
pub const TOPIC_GROUPS_MAX: usize = 1_000_000;
/// Queue ids above this are refused (Java has no bound; real topics have at most ~1024).
pub const QUEUE_ID_MAX: i32 = 65_535;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OffsetError {
    #[error("queue id {0} out of range 0..={QUEUE_ID_MAX}")]
    QueueId(i32),
    #[error("names must not contain '@' (topic `{topic}`, group `{group}`)")]
    BadName { topic: String, group: String },
    #[error("offset table full ({TOPIC_GROUPS_MAX} topic@group entries)")]
    TableFull,
}

pub struct ConsumerOffsetManager {
    /// `topic@group` → queueId → next offset to consume.
    table: RwLock<HashMap<String, BTreeMap<i32, i64>>>,
    /// Bumped by every change; compared with `persisted_version` to skip idle writes.
    version: AtomicU64,
    /// Serialises writes; holds the version last written.
    write_lock: Arc<Mutex<u64>>,
    path: Option<PathBuf>,
    /// Group mode: changes not yet proposed to the metadata log (None = not tracking).
    dirty: Mutex<Option<OffsetDelta>>,
}

fn key(topic: &str, group: &str) -> String {
    let mut k = String::with_capacity(topic.len() + group.len() + 1);
    k.push_str(topic);
    k.push(TOPIC_GROUP_SEPARATOR);
    k.push_str(group);
    k
}

impl ConsumerOffsetManager {
    /// Load `config_dir/consumerOffset.json` if present; `persist = false` = memory only.
    pub fn open(config: &BrokerConfig, persist: bool) -> io::Result<Arc<ConsumerOffsetManager>> {
        let path = persist.then(|| config.config_dir().join("consumerOffset.json"));
        let mut table = HashMap::new();
        if let Some(p) = &path {
            if let Some(text) = persist::read_if_exists(p)? {
                table = decode(&text).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
                })?;
            }
        }
        Ok(Arc::new(ConsumerOffsetManager {
            table: RwLock::new(table),
            version: AtomicU64::new(0),
            write_lock: Arc::new(Mutex::new(0)),
            path,
            dirty: Mutex::new(None),
        }))
    }

    /// Record `offset` (the next message to consume) for (group, topic, queue).
    pub fn commit(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
    ) -> Result<(), OffsetError> {
        if !(0..=QUEUE_ID_MAX).contains(&queue_id) {
            return Err(OffsetError::QueueId(queue_id));
        }
        if topic.contains(TOPIC_GROUP_SEPARATOR) || group.contains(TOPIC_GROUP_SEPARATOR) {
            return Err(OffsetError::BadName {
                topic: topic.to_string(),
                group: group.to_string(),
            });
        }
        let k = key(topic, group);
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(&k) && table.len() >= TOPIC_GROUPS_MAX {
            return Err(OffsetError::TableFull);
        }
        if let Some(d) = self
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            d.record_set(&k, queue_id, offset);
        }
        let queues = table.entry(k).or_default();
        let old = queues.insert(queue_id, offset);
        if old != Some(offset) {
            self.version.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Group mode: start (`true`) or stop recording changes for replication. Stopping
    /// drops what was recorded.
    pub fn track_changes(&self, on: bool) {
        let mut d = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        *d = on.then(OffsetDelta::default);
    }

    /// The changes recorded since the last call (empty when not tracking).
    pub fn take_changes(&self) -> OffsetDelta {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Put back changes whose proposal failed (newer changes win).
    pub fn restore_changes(&self, older: OffsetDelta) {
        if let Some(d) = self
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            d.merge_older(older);
        }
    }

    /// The whole table as a `full` delta (a new leader's first offsets entry).
    pub fn full_delta(&self) -> OffsetDelta {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        OffsetDelta {
            full: true,
            set: table.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            removed: Vec::new(),
        }
    }

    /// Apply a delta committed through the metadata log (every replica, log order).
    pub fn apply_replicated(&self, delta: OffsetDelta) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if delta.full {
            table.clear();
        }
        for k in &delta.removed {
            table.remove(k);
        }
        for (k, queues) in delta.set {
            if !table.contains_key(&k) && table.len() >= TOPIC_GROUPS_MAX {
                tracing::warn!(key = %k, "offset table full; replicated offsets dropped");
                continue;
            }
            let entry = table.entry(k).or_default();
            for (q, off) in queues {
                entry.insert(q, off);
            }
        }
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// The committed offset, `None` if the group never committed one for this queue.
    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(topic, group))
            .and_then(|q| q.get(&queue_id).copied())
    }

    /// queueId → offset of one (group, topic) (stats).
    pub fn offsets_of_group_topic(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(topic, group))
            .cloned()
            .unwrap_or_default()
    }

    /// Topics a group has offsets for.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = table
            .keys()
            .filter_map(|k| k.rsplit_once(TOPIC_GROUP_SEPARATOR))
            .filter(|(_, g)| *g == group)
            .map(|(t, _)| t.to_string())
            .collect();
        out.sort();
        out
    }

    /// Groups that have offsets for a topic.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = table
            .keys()
            .filter_map(|k| k.split_once(TOPIC_GROUP_SEPARATOR))
            .filter(|(t, _)| *t == topic)
            .map(|(_, g)| g.to_string())
            .collect();
        out.sort();
        out
    }

    /// Drop every offset of a group (group deletion).
    pub fn remove_group(&self, group: &str) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        let before = table.len();
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        table.retain(|k, _| {
            let keep = k
                .split_once(TOPIC_GROUP_SEPARATOR)
                .map(|(_, g)| g != group)
                .unwrap_or(true);
            if let (false, Some(d)) = (keep, dirty.as_mut()) {
                d.record_remove(k);
            }
            keep
        });
        if table.len() != before {
            self.version.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drop every offset of a topic (topic deletion).
    pub fn remove_topic(&self, topic: &str) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        let before = table.len();
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        table.retain(|k, _| {
            let keep = k
                .split_once(TOPIC_GROUP_SEPARATOR)
                .map(|(t, _)| t != topic)
                .unwrap_or(true);
            if let (false, Some(d)) = (keep, dirty.as_mut()) {
                d.record_remove(k);
            }
            keep
        });
        if table.len() != before {
            self.version.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The fastjson text Java writes (and reads): bare numeric queue-id keys, sorted.
    pub fn encode(&self) -> String {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<&String> = table.keys().collect();
        keys.sort();
        let mut out = String::with_capacity(32 + table.len() * 48);
        out.push_str("{\"offsetTable\":{");
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::String((*k).clone()).to_string());
            out.push_str(":{");
            if let Some(queues) = table.get(*k) {
                for (j, (q, off)) in queues.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{q}:{off}");
                }
            }
            out.push('}');
        }
        out.push_str("}}");
        out
    }

    /// Write the file if anything changed since the last write (blocking: call from a
    /// blocking thread). Returns whether a write happened.
    pub fn persist_blocking(&self) -> io::Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let mut last = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let version = self.version.load(Ordering::Relaxed);
        if version == *last && path.exists() {
            return Ok(false);
        }
        let json = self.encode();
        persist::write_atomic(path, json.as_bytes())?;
        *last = version;
        Ok(true)
    }
}

/// Parse the Java form (bare or quoted queue-id keys).
fn decode(text: &str) -> Result<HashMap<String, BTreeMap<i32, i64>>, String> {
    let v: serde_json::Value =
        serde_json::from_str(&persist::quote_bare_keys(text)).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    let Some(table) = v.get("offsetTable").and_then(|t| t.as_object()) else {
        return Ok(out);
    };
    for (k, queues) in table {
        let Some(queues) = queues.as_object() else {
            return Err(format!("entry `{k}` is not an object"));
        };
        let mut m = BTreeMap::new();
        for (q, off) in queues {
            let q: i32 = q
                .parse()
                .map_err(|_| format!("bad queue id `{q}` in `{k}`"))?;
            let off = off
                .as_i64()
                .ok_or_else(|| format!("bad offset for queue {q} in `{k}`"))?;
            m.insert(q, off);
        }
        out.insert(k.clone(), m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_query_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig {
            store_path_root_dir: dir.path().display().to_string(),
            ..BrokerConfig::default()
        };
        let m = ConsumerOffsetManager::open(&cfg, true).unwrap();
        assert_eq!(m.query("G", "T", 0), None);
        m.commit("G", "T", 0, 5).unwrap();
        m.commit("G", "T", 1, 7).unwrap();
        m.commit("G2", "T", 0, 1).unwrap();
        assert_eq!(m.commit("G", "T", -1, 1), Err(OffsetError::QueueId(-1)));
        assert!(m.commit("G@x", "T", 0, 1).is_err());
        assert!(m.persist_blocking().unwrap());
        assert!(!m.persist_blocking().unwrap(), "nothing changed");
        let text = std::fs::read_to_string(dir.path().join("config/consumerOffset.json")).unwrap();
        assert_eq!(text, r#"{"offsetTable":{"T@G":{0:5,1:7},"T@G2":{0:1}}}"#);

        let m2 = ConsumerOffsetManager::open(&cfg, true).unwrap();
        assert_eq!(m2.query("G", "T", 1), Some(7));
        assert_eq!(m2.query("G", "T", 2), None);
        assert_eq!(m2.groups_of_topic("T"), vec!["G", "G2"]);
        assert_eq!(m2.topics_of_group("G"), vec!["T"]);
        m2.remove_group("G2");
        assert_eq!(m2.groups_of_topic("T"), vec!["G"]);
    }

    #[test]
    fn tracked_changes_replicate_to_another_table() {
        let cfg = BrokerConfig::default();
        let leader = ConsumerOffsetManager::open(&cfg, false).unwrap();
        let follower = ConsumerOffsetManager::open(&cfg, false).unwrap();
        leader.commit("G", "T", 0, 1).unwrap();
        assert!(leader.take_changes().is_empty(), "not tracking yet");
        leader.track_changes(true);
        leader.commit("G", "T", 0, 5).unwrap();
        leader.commit("G", "T", 0, 6).unwrap();
        leader.commit("G2", "T", 1, 3).unwrap();
        let d = leader.take_changes();
        assert_eq!(d.set.len(), 2, "coalesced per topic@group");
        follower.apply_replicated(d);
        assert_eq!(follower.query("G", "T", 0), Some(6));
        leader.remove_group("G2");
        follower.apply_replicated(leader.take_changes());
        assert_eq!(follower.query("G2", "T", 1), None);
        follower.commit("X", "T", 0, 9).unwrap();
        follower.apply_replicated(leader.full_delta());
        assert_eq!(follower.query("X", "T", 0), None, "a full delta replaces");
        assert_eq!(follower.query("G", "T", 0), Some(6));
    }

    #[test]
    fn reads_quoted_java_form() {
        let t = decode(r#"{"offsetTable":{"%RETRY%G@G":{"0":3}}}"#).unwrap();
        assert_eq!(t["%RETRY%G@G"][&0], 3);
        assert!(decode(r#"{"offsetTable":{"T@G":{"x":3}}}"#).is_err());
    }
}
