//! Consumer-group configuration (Java `SubscriptionGroupManager`), persisted as
//! `storePathRootDir/config/subscriptionGroup.json`:
//! `{"dataVersion":{...},"subscriptionGroupTable":{"G":{...}}}`.
//!
//! Groups are auto-created on first use when `autoCreateSubscriptionGroup` is on (Java
//! default), with `retryQueueNums` 1 and `retryMaxTimes` 16.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};

use crate::config::BrokerConfig;
use crate::persist;
use crate::topic_config::{now_ms, validate_topic_name, DataVersion, TopicError};

/// Upper bound on groups held by one broker.
pub const GROUPS_MAX: usize = 100_000;

// Java `SubscriptionGroupConfig` / `SubscriptionGroupWrapper` (subscriptionGroup.json,
// GET_ALL_SUBSCRIPTIONGROUP_CONFIG, the metadata log): remoting's body types.
pub use remoting::body::{SubscriptionGroupConfig, SubscriptionGroupWrapper};

/// A group with Java's defaults.
pub fn new_group(group: impl Into<String>) -> SubscriptionGroupConfig {
    SubscriptionGroupConfig {
        group_name: group.into(),
        ..Default::default()
    }
}

/// Groups the Java broker creates at start (`SubscriptionGroupManager.init`).
const SYSTEM_GROUPS: &[&str] = &[
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PULL",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_RMQ_SYS_TRANS",
];

pub struct SubscriptionGroupManager {
    config: Arc<BrokerConfig>,
    table: RwLock<BTreeMap<String, Arc<SubscriptionGroupConfig>>>,
    data_version: Mutex<DataVersion>,
    /// Serialises writes; holds the dataVersion counter last written (see topic_config).
    file: persist::VersionedJsonFile,
}

impl SubscriptionGroupManager {
    pub fn open(
        config: Arc<BrokerConfig>,
        persist: bool,
    ) -> io::Result<Arc<SubscriptionGroupManager>> {
        let path = persist.then(|| config.config_dir().join("subscriptionGroup.json"));
        let mut table = BTreeMap::new();
        let mut data_version = DataVersion::default();
        if let Some(p) = &path {
            if let Some(text) = persist::read_if_exists(p)? {
                let w: SubscriptionGroupWrapper =
                    serde_json::from_str(&persist::quote_bare_keys(&text)).map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
                    })?;
                data_version = w.data_version;
                for (k, v) in w.subscription_group_table {
                    table.insert(k, Arc::new(v));
                }
            }
        }
        for g in SYSTEM_GROUPS {
            table
                .entry(g.to_string())
                .or_insert_with(|| Arc::new(new_group(*g)));
        }
        Ok(Arc::new(SubscriptionGroupManager {
            config,
            table: RwLock::new(table),
            data_version: Mutex::new(data_version),
            file: persist::VersionedJsonFile::new("subscriptionGroup.json", path),
        }))
    }

    pub fn get(&self, group: &str) -> Option<Arc<SubscriptionGroupConfig>> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .cloned()
    }

    /// Java `findSubscriptionGroupConfig`: the group, auto-created with defaults when
    /// allowed; `None` when unknown and auto-create is off (or the name is invalid).
    pub fn find_or_auto_create(&self, group: &str) -> Option<Arc<SubscriptionGroupConfig>> {
        if let Some(g) = self.get(group) {
            return Some(g);
        }
        if !self.config.auto_create_subscription_group || validate_topic_name(group).is_err() {
            return None;
        }
        let created = {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            if let Some(g) = table.get(group) {
                return Some(g.clone());
            }
            if table.len() >= GROUPS_MAX {
                tracing::warn!(group, "subscription group table full, not creating");
                return None;
            }
            let g = Arc::new(new_group(group));
            table.insert(group.to_string(), g.clone());
            self.bump_version();
            g
        };
        tracing::info!(group, "subscription group auto-created");
        self.persist_async();
        Some(created)
    }

    /// Alias of [`Self::find_or_auto_create`].
    pub fn find_or_create(&self, group: &str) -> Option<Arc<SubscriptionGroupConfig>> {
        self.find_or_auto_create(group)
    }

    /// Insert or replace (admin UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).
    pub fn update(&self, g: SubscriptionGroupConfig) -> Result<(), TopicError> {
        validate_topic_name(&g.group_name)?;
        {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            if !table.contains_key(&g.group_name) && table.len() >= GROUPS_MAX {
                return Err(TopicError::TooManyTopics);
            }
            table.insert(g.group_name.clone(), Arc::new(g));
            self.bump_version();
        }
        self.persist_async();
        Ok(())
    }

    pub fn delete(&self, group: &str) -> bool {
        let removed = {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            let removed = table.remove(group).is_some();
            if removed {
                self.bump_version();
            }
            removed
        };
        if removed {
            self.persist_async();
        }
        removed
    }

    pub fn all(&self) -> Vec<Arc<SubscriptionGroupConfig>> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn data_version(&self) -> DataVersion {
        *self.data_version.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> SubscriptionGroupWrapper {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        SubscriptionGroupWrapper {
            data_version: self.data_version(),
            subscription_group_table: table
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
        }
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG body / subscriptionGroup.json.
    pub fn encode(&self) -> String {
        serde_json::to_string(&self.snapshot()).unwrap_or_default()
    }

    /// Group mode, on every replica: replace the table with one committed through the
    /// metadata log (the leader's full table); persists.
    pub fn replace_from_replica(&self, wrapper: SubscriptionGroupWrapper) {
        {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            let new: BTreeMap<String, Arc<SubscriptionGroupConfig>> = wrapper
                .subscription_group_table
                .into_iter()
                .take(GROUPS_MAX)
                .map(|(k, v)| (k, Arc::new(v)))
                .collect();
            if *table == new {
                return;
            }
            *table = new;
            self.bump_version();
        }
        self.persist_async();
    }

    /// A follower's view (group mode): the group if replicated, else — when auto-create is
    /// on — a default config that is NOT inserted (only the leader changes the table).
    pub fn find_or_default(&self, group: &str) -> Option<Arc<SubscriptionGroupConfig>> {
        if let Some(g) = self.get(group) {
            return Some(g);
        }
        if !self.config.auto_create_subscription_group || validate_topic_name(group).is_err() {
            return None;
        }
        Some(Arc::new(new_group(group)))
    }

    fn bump_version(&self) {
        let mut v = self.data_version.lock().unwrap_or_else(|e| e.into_inner());
        *v = v.next(now_ms());
    }

    pub fn persist_blocking(&self) -> io::Result<()> {
        let snapshot = self.snapshot();
        self.file
            .write_blocking(snapshot.data_version.counter, &snapshot)
    }

    fn persist_async(&self) {
        let snapshot = self.snapshot();
        self.file
            .write_in_background(snapshot.data_version.counter, snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_create_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(BrokerConfig {
            store_path_root_dir: dir.path().display().to_string(),
            ..BrokerConfig::default()
        });
        let m = SubscriptionGroupManager::open(cfg.clone(), true).unwrap();
        let g = m.find_or_auto_create("CG").unwrap();
        assert_eq!((g.retry_queue_nums, g.retry_max_times), (1, 16));
        m.update(SubscriptionGroupConfig {
            retry_max_times: 3,
            ..new_group("CG2")
        })
        .unwrap();
        m.persist_blocking().unwrap();
        let m2 = SubscriptionGroupManager::open(cfg, true).unwrap();
        assert_eq!(m2.get("CG2").unwrap().retry_max_times, 3);
        assert!(m2.get("CG").is_some());
        assert!(m2.delete("CG"));
        assert!(!m2.delete("CG"));

        let off = Arc::new(BrokerConfig {
            auto_create_subscription_group: false,
            ..BrokerConfig::default()
        });
        let json = serde_json::to_string(&new_group("G")).unwrap();
        assert_eq!(
            json,
            r#"{"brokerId":0,"consumeBroadcastEnable":true,"consumeEnable":true,"consumeFromMinEnable":true,"groupName":"G","notifyConsumerIdsChangedEnable":true,"retryMaxTimes":16,"retryQueueNums":1,"whichBrokerWhenConsumeSlowly":1}"#
        );
        let m3 = SubscriptionGroupManager::open(off, false).unwrap();
        assert!(m3.find_or_auto_create("CG").is_none());
        assert!(m3.find_or_auto_create("TOOLS_CONSUMER").is_some());
    }
}
