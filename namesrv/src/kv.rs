//! In-memory KV configuration (Java `KVConfigManager`). Java persists it to
//! `kvConfig.json`; we keep it in memory only (clients read it, nothing depends on it
//! surviving a restart).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use namesrv_client::KvTable;

pub struct KvConfigManager {
    table: RwLock<HashMap<String, BTreeMap<String, String>>>,
    max_entries: usize,
}

/// The table is full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("KV table full (limit {limit} entries)")]
pub struct KvFull {
    pub limit: usize,
}

impl KvConfigManager {
    pub fn new(max_entries: usize) -> KvConfigManager {
        assert!(max_entries > 0);
        KvConfigManager {
            table: RwLock::new(HashMap::new()),
            max_entries,
        }
    }

    fn len(map: &HashMap<String, BTreeMap<String, String>>) -> usize {
        map.values().map(BTreeMap::len).sum()
    }

    pub fn put(&self, namespace: &str, key: &str, value: &str) -> Result<(), KvFull> {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        let exists = t.get(namespace).is_some_and(|ns| ns.contains_key(key));
        if !exists && Self::len(&t) >= self.max_entries {
            return Err(KvFull {
                limit: self.max_entries,
            });
        }
        t.entry(namespace.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
        Ok(())
    }

    pub fn get(&self, namespace: &str, key: &str) -> Option<String> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        t.get(namespace).and_then(|ns| ns.get(key)).cloned()
    }

    pub fn delete(&self, namespace: &str, key: &str) {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        if let Some(ns) = t.get_mut(namespace) {
            ns.remove(key);
            if ns.is_empty() {
                t.remove(namespace);
            }
        }
    }

    /// `None` when the namespace has no entry (Java returns null → QUERY_NOT_FOUND).
    pub fn list(&self, namespace: &str) -> Option<KvTable> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        t.get(namespace)
            .filter(|ns| !ns.is_empty())
            .map(|ns| KvTable { table: ns.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_list() {
        let kv = KvConfigManager::new(2);
        assert!(kv.list("ns").is_none());
        kv.put("ns", "a", "1").unwrap();
        kv.put("ns", "a", "2").unwrap();
        kv.put("ns", "b", "3").unwrap();
        assert_eq!(kv.put("ns", "c", "4"), Err(KvFull { limit: 2 }));
        assert_eq!(kv.get("ns", "a").as_deref(), Some("2"));
        assert_eq!(kv.list("ns").unwrap().table.len(), 2);
        kv.delete("ns", "a");
        kv.delete("ns", "b");
        assert!(kv.list("ns").is_none());
        assert!(kv.get("ns", "a").is_none());
    }
}
