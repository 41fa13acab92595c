//! Topic configuration table (Java `TopicConfigManager`), persisted as
//! `storePathRootDir/config/topics.json` in the Java form
//! `{"dataVersion":{"counter":N,"timestamp":T},"topicConfigTable":{"T":{...}}}`.
//!
//! Every change bumps `dataVersion` (the NameServer only re-reads a broker's topics when it
//! changes, namesrv.md §2), persists off the executor, and wakes [`TopicConfigManager::changes`]
//! so the registration task re-registers at once.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;

use crate::config::BrokerConfig;
use crate::persist;

/// PermName bits (Java `PermName`).
pub mod perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;

    pub fn is_readable(perm: i32) -> bool {
        perm & READ != 0
    }
    pub fn is_writeable(perm: i32) -> bool {
        perm & WRITE != 0
    }
    pub fn is_inherited(perm: i32) -> bool {
        perm & INHERIT != 0
    }
}

/// TopicSysFlag bits.
pub mod topic_sys_flag {
    pub const UNIT: i32 = 1;
    pub const UNIT_SUB: i32 = 2;
}

pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
pub const SCHEDULE_TOPIC_QUEUE_NUM: i32 = 18;
pub const BENCHMARK_TOPIC: &str = "BenchmarkTest";
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
pub const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
pub const REPLY_TOPIC_POSTFIX: &str = "REPLY_TOPIC";
/// Java `TopicValidator.TOPIC_MAX_LENGTH`.
pub const TOPIC_MAX_LENGTH: usize = 127;
/// Queues of a DLQ topic (Java `DLQ_NUMS_PER_GROUP`).
pub const DLQ_NUMS_PER_GROUP: i32 = 1;
/// Upper bound on queues per topic; Java has none, but a typo of 100000 would allocate
/// consume queues for every one of them.
pub const QUEUE_NUMS_MAX: i32 = 1024;
/// Upper bound on topics held by one broker.
pub const TOPICS_MAX: usize = 100_000;

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

// Java `TopicConfig`, `DataVersion` and `TopicConfigSerializeWrapper` (topics.json,
// GET_ALL_TOPIC_CONFIG, REGISTER_BROKER, the metadata log) are remoting's NameServer
// protocol types; 5.x `attributes` are accepted on read and dropped (4.9.7 form).
pub use remoting::body::{DataVersion, TopicConfig, TopicConfigSerializeWrapper, TopicFilterType};

/// A read-write SINGLE_TAG topic with `queue_nums` read and write queues.
pub fn new_topic(topic: impl Into<String>, queue_nums: i32) -> TopicConfig {
    TopicConfig::new(topic, queue_nums, queue_nums, perm::READ | perm::WRITE)
}

fn with_perm(mut tc: TopicConfig, perm: i32) -> TopicConfig {
    tc.perm = perm;
    tc
}

/// The 4.9.7 form of a topic read from disk or the metadata log: 5.x `attributes` dropped.
fn without_attributes(mut tc: TopicConfig) -> TopicConfig {
    tc.attributes = None;
    tc
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why a topic name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("the topic name is blank")]
    Blank,
    #[error("the topic name `{0}` is longer than {TOPIC_MAX_LENGTH} characters")]
    TooLong(String),
    #[error("the topic name `{0}` contains characters outside [%|a-zA-Z0-9_-]")]
    IllegalCharacters(String),
    #[error("the topic `{0}` is a system topic")]
    SystemTopic(String),
    #[error("the topic `{0}` does not exist")]
    NotExist(String),
    #[error("too many topics (limit {TOPICS_MAX})")]
    TooManyTopics,
    #[error("queue nums {0} out of range 1..={QUEUE_NUMS_MAX}")]
    QueueNums(i32),
}

/// Java `TopicValidator.validateTopic`: `[%|a-zA-Z0-9_-]{1,127}`.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    if topic.trim().is_empty() {
        return Err(TopicError::Blank);
    }
    if topic.len() > TOPIC_MAX_LENGTH {
        return Err(TopicError::TooLong(topic.to_string()));
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
    {
        return Err(TopicError::IllegalCharacters(topic.to_string()));
    }
    Ok(())
}

/// Topics producers may not send to (Java `TopicValidator.isNotAllowedSendTopic`).
pub fn is_not_allowed_send_topic(topic: &str) -> bool {
    matches!(
        topic,
        SCHEDULE_TOPIC
            | TRANS_HALF_TOPIC
            | TRANS_OP_HALF_TOPIC
            | TRANS_CHECK_MAX_TIME_TOPIC
            | SELF_TEST_TOPIC
            | OFFSET_MOVED_EVENT
    )
}

/// Built-in topics not created by users (Java `TopicValidator.isSystemTopic` plus the
/// cluster/broker/reply topics this broker registers).
pub fn is_system_topic(topic: &str, config: &BrokerConfig) -> bool {
    matches!(
        topic,
        AUTO_CREATE_TOPIC_KEY_TOPIC
            | SCHEDULE_TOPIC
            | BENCHMARK_TOPIC
            | TRANS_HALF_TOPIC
            | TRACE_TOPIC
            | TRANS_OP_HALF_TOPIC
            | TRANS_CHECK_MAX_TIME_TOPIC
            | SELF_TEST_TOPIC
            | OFFSET_MOVED_EVENT
    ) || topic.starts_with(SYSTEM_TOPIC_PREFIX)
        || topic == config.broker_cluster_name
        || topic == config.broker_name
        || topic == format!("{}_{}", config.broker_cluster_name, REPLY_TOPIC_POSTFIX)
}

/// The topic table. Cheap `get` (read lock + `Arc` clone) for the send/pull hot paths.
pub struct TopicConfigManager {
    config: Arc<BrokerConfig>,
    table: RwLock<BTreeMap<String, Arc<TopicConfig>>>,
    data_version: Mutex<DataVersion>,
    /// Serialises file writes and holds the dataVersion counter last written, so a slow
    /// background write of an older snapshot never overwrites a newer one.
    file: persist::VersionedJsonFile,
    changed: Notify,
}

impl TopicConfigManager {
    /// Load `config_dir/topics.json` (if any) and add the built-in topics. `persist = false`
    /// keeps everything in memory (tests).
    pub fn open(config: Arc<BrokerConfig>, persist: bool) -> io::Result<Arc<TopicConfigManager>> {
        let path = persist.then(|| config.config_dir().join("topics.json"));
        let mut table = BTreeMap::new();
        let mut data_version = DataVersion::default();
        if let Some(p) = &path {
            if let Some(text) = persist::read_if_exists(p)? {
                let wrapper: TopicConfigSerializeWrapper =
                    serde_json::from_str(&persist::quote_bare_keys(&text)).map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
                    })?;
                data_version = wrapper.data_version;
                for (name, tc) in wrapper.topic_config_table {
                    table.insert(name, Arc::new(without_attributes(tc)));
                }
            }
        }
        // A new version per start: built-in topics may differ from the persisted table,
        // and the NameServer must re-read ours (Java stamps a fresh DataVersion too).
        let mgr = TopicConfigManager {
            config: config.clone(),
            table: RwLock::new(table),
            data_version: Mutex::new(data_version.next(now_ms())),
            file: persist::VersionedJsonFile::new("topics.json", path),
            changed: Notify::new(),
        };
        mgr.add_system_topics();
        Ok(Arc::new(mgr))
    }

    /// Java `TopicConfigManager` constructor: the built-in topics, (re)set at every start.
    fn add_system_topics(&self) {
        let c = &self.config;
        let rw = perm::READ | perm::WRITE;
        let mut sys = vec![
            new_topic(SELF_TEST_TOPIC, 1),
            new_topic(BENCHMARK_TOPIC, 1024),
            new_topic(OFFSET_MOVED_EVENT, 1),
            new_topic(SCHEDULE_TOPIC, SCHEDULE_TOPIC_QUEUE_NUM),
            new_topic(
                format!("{}_{}", c.broker_cluster_name, REPLY_TOPIC_POSTFIX),
                1,
            ),
            with_perm(
                new_topic(c.broker_cluster_name.clone(), 16),
                perm::INHERIT | if c.cluster_topic_enable { rw } else { 0 },
            ),
            with_perm(
                new_topic(c.broker_name.clone(), 1),
                perm::INHERIT | if c.broker_topic_enable { rw } else { 0 },
            ),
        ];
        if c.auto_create_topic_enable {
            sys.push(with_perm(
                new_topic(AUTO_CREATE_TOPIC_KEY_TOPIC, c.default_topic_queue_nums),
                perm::INHERIT | rw,
            ));
        }
        if c.trace_topic_enable {
            sys.push(new_topic(c.msg_trace_topic_name.clone(), 1));
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        for tc in sys {
            table.insert(tc.topic_name.clone(), Arc::new(tc));
        }
        if !c.auto_create_topic_enable {
            // A TBW102 persisted while auto-create was on must not keep granting creation.
            if let Some(tbw) = table.get(AUTO_CREATE_TOPIC_KEY_TOPIC).cloned() {
                let mut t = (*tbw).clone();
                t.perm &= !perm::INHERIT;
                table.insert(t.topic_name.clone(), Arc::new(t));
            }
        }
    }

    pub fn get(&self, topic: &str) -> Option<Arc<TopicConfig>> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .cloned()
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(topic)
    }

    pub fn all(&self) -> Vec<Arc<TopicConfig>> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn topic_names(&self) -> Vec<String> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn data_version(&self) -> DataVersion {
        *self.data_version.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Woken after every change (the registration task waits on it).
    pub fn changes(&self) -> &Notify {
        &self.changed
    }

    /// The table and version, consistent with each other.
    pub fn snapshot(&self) -> TopicConfigSerializeWrapper {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let data_version = self.data_version();
        TopicConfigSerializeWrapper {
            data_version,
            topic_config_table: table
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
        }
    }

    /// JSON of [`Self::snapshot`] (GET_ALL_TOPIC_CONFIG body, topics.json).
    pub fn encode(&self) -> String {
        serde_json::to_string(&self.snapshot()).unwrap_or_default()
    }

    /// Insert or replace a topic (admin UPDATE_AND_CREATE_TOPIC); persists and notifies.
    pub fn update(&self, tc: TopicConfig) -> Result<Arc<TopicConfig>, TopicError> {
        validate_topic_name(&tc.topic_name)?;
        for n in [tc.read_queue_nums, tc.write_queue_nums] {
            if !(0..=QUEUE_NUMS_MAX).contains(&n) {
                return Err(TopicError::QueueNums(n));
            }
        }
        let tc = Arc::new(tc);
        {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            if !table.contains_key(&tc.topic_name) && table.len() >= TOPICS_MAX {
                return Err(TopicError::TooManyTopics);
            }
            table.insert(tc.topic_name.clone(), tc.clone());
            self.bump_version();
        }
        tracing::info!(topic = %tc.topic_name, read = tc.read_queue_nums, write = tc.write_queue_nums, perm = tc.perm, "topic created or updated");
        self.after_change();
        Ok(tc)
    }

    /// Remove a topic; `false` if it did not exist.
    pub fn delete(&self, topic: &str) -> bool {
        let removed = {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            let removed = table.remove(topic).is_some();
            if removed {
                self.bump_version();
            }
            removed
        };
        if removed {
            tracing::info!(topic, "topic deleted");
            self.after_change();
        }
        removed
    }

    /// Java `createTopicInSendMessageMethod`: create `topic` from the template `default_topic`
    /// (normally TBW102) when the template has the INHERIT bit. `None` = not allowed.
    pub fn create_topic_in_send_message_method(
        &self,
        topic: &str,
        default_topic: &str,
        client_default_topic_queue_nums: i32,
        topic_sys_flag: i32,
    ) -> Option<Arc<TopicConfig>> {
        if let Some(tc) = self.get(topic) {
            return Some(tc);
        }
        validate_topic_name(topic).ok()?;
        let template = self.get(default_topic)?;
        let mut template_perm = template.perm;
        if default_topic == AUTO_CREATE_TOPIC_KEY_TOPIC && !self.config.auto_create_topic_enable {
            template_perm = perm::READ | perm::WRITE;
        }
        if !perm::is_inherited(template_perm) {
            tracing::warn!(
                topic,
                default_topic,
                "template topic has no INHERIT permission"
            );
            return None;
        }
        let queue_nums = client_default_topic_queue_nums
            .min(template.write_queue_nums)
            .clamp(0, QUEUE_NUMS_MAX);
        let tc = TopicConfig {
            order: false,
            perm: template_perm & !perm::INHERIT,
            read_queue_nums: queue_nums,
            topic_filter_type: template.topic_filter_type,
            topic_name: topic.to_string(),
            topic_sys_flag,
            write_queue_nums: queue_nums,
            attributes: None,
        };
        self.insert_if_absent(tc)
    }

    /// Java `createTopicInSendMessageBackMethod`: retry/DLQ topics, created regardless of
    /// `autoCreateTopicEnable`. Returns the existing config if present.
    pub fn create_topic_in_send_message_back_method(
        &self,
        topic: &str,
        queue_nums: i32,
        perm: i32,
        topic_sys_flag: i32,
    ) -> Option<Arc<TopicConfig>> {
        if let Some(tc) = self.get(topic) {
            return Some(tc);
        }
        validate_topic_name(topic).ok()?;
        let tc = TopicConfig {
            perm,
            topic_sys_flag,
            ..new_topic(topic, queue_nums.clamp(0, QUEUE_NUMS_MAX))
        };
        self.insert_if_absent(tc)
    }

    /// `%RETRY%<group>` with the group's retryQueueNums (created by heartbeat and send-back).
    pub fn create_retry_topic(
        &self,
        group: &str,
        retry_queue_nums: i32,
        unit_mode: bool,
    ) -> Option<Arc<TopicConfig>> {
        let flag = if unit_mode {
            topic_sys_flag::UNIT_SUB
        } else {
            0
        };
        self.create_topic_in_send_message_back_method(
            &retry_topic(group),
            retry_queue_nums,
            perm::READ | perm::WRITE,
            flag,
        )
    }

    /// `%DLQ%<group>`, one queue, read-write.
    pub fn create_dlq_topic(&self, group: &str) -> Option<Arc<TopicConfig>> {
        self.create_topic_in_send_message_back_method(
            &dlq_topic(group),
            DLQ_NUMS_PER_GROUP,
            perm::READ | perm::WRITE,
            0,
        )
    }

    fn insert_if_absent(&self, tc: TopicConfig) -> Option<Arc<TopicConfig>> {
        let created = {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            if let Some(existing) = table.get(&tc.topic_name) {
                return Some(existing.clone());
            }
            if table.len() >= TOPICS_MAX {
                tracing::warn!(topic = %tc.topic_name, "topic table full, not creating");
                return None;
            }
            let tc = Arc::new(tc);
            table.insert(tc.topic_name.clone(), tc.clone());
            self.bump_version();
            tc
        };
        tracing::info!(topic = %created.topic_name, queues = created.write_queue_nums, perm = created.perm, "topic auto-created");
        self.after_change();
        Some(created)
    }

    /// Group mode, on every replica: replace the table with one committed through the
    /// metadata log (the leader's full table). The local dataVersion is bumped (it only has
    /// to change for the NameServer to re-read the table); persists and re-registers.
    pub fn replace_from_replica(&self, wrapper: TopicConfigSerializeWrapper) {
        {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            let new: BTreeMap<String, Arc<TopicConfig>> = wrapper
                .topic_config_table
                .into_iter()
                .take(TOPICS_MAX)
                .map(|(k, v)| (k, Arc::new(without_attributes(v))))
                .collect();
            if *table == new {
                return;
            }
            *table = new;
            self.bump_version();
        }
        tracing::debug!("topic table replaced from the metadata log");
        self.after_change();
    }

    /// Called with the table write lock held, so version and table change together.
    fn bump_version(&self) {
        let mut v = self.data_version.lock().unwrap_or_else(|e| e.into_inner());
        *v = v.next(now_ms());
    }

    fn after_change(&self) {
        self.changed.notify_one();
        self.persist_async();
    }

    /// Write topics.json now (blocking).
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

    fn cfg(dir: &std::path::Path, auto_create: bool) -> Arc<BrokerConfig> {
        Arc::new(BrokerConfig {
            store_path_root_dir: dir.display().to_string(),
            auto_create_topic_enable: auto_create,
            ..BrokerConfig::default()
        })
    }

    #[test]
    fn auto_create_from_tbw102() {
        let dir = tempfile::tempdir().unwrap();
        let m = TopicConfigManager::open(cfg(dir.path(), true), true).unwrap();
        let tbw = m.get(AUTO_CREATE_TOPIC_KEY_TOPIC).unwrap();
        assert_eq!(tbw.perm, 7);
        assert_eq!(tbw.write_queue_nums, 8);
        let v0 = m.data_version();
        let t = m
            .create_topic_in_send_message_method("NewTopic", AUTO_CREATE_TOPIC_KEY_TOPIC, 4, 0)
            .unwrap();
        assert_eq!((t.read_queue_nums, t.write_queue_nums, t.perm), (4, 4, 6));
        assert_eq!(m.data_version().counter, v0.counter + 1);
        // Client asks for more queues than the template has: clamped.
        let t = m
            .create_topic_in_send_message_method("Big", AUTO_CREATE_TOPIC_KEY_TOPIC, 64, 0)
            .unwrap();
        assert_eq!(t.write_queue_nums, 8);
        // Template without INHERIT refuses.
        assert!(m
            .create_topic_in_send_message_method("X", SELF_TEST_TOPIC, 4, 0)
            .is_none());
        assert!(m
            .create_topic_in_send_message_method("bad topic", AUTO_CREATE_TOPIC_KEY_TOPIC, 4, 0)
            .is_none());
        m.persist_blocking().unwrap();
        let again = TopicConfigManager::open(cfg(dir.path(), true), true).unwrap();
        assert_eq!(
            again.get("NewTopic").as_deref(),
            Some(&*m.get("NewTopic").unwrap())
        );
        assert_eq!(again.data_version().counter, m.data_version().counter + 1);
    }

    #[test]
    fn auto_create_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let m = TopicConfigManager::open(cfg(dir.path(), false), false).unwrap();
        assert!(m.get(AUTO_CREATE_TOPIC_KEY_TOPIC).is_none());
        assert!(m
            .create_topic_in_send_message_method("T", AUTO_CREATE_TOPIC_KEY_TOPIC, 4, 0)
            .is_none());
        // Retry topics are still created.
        let r = m.create_retry_topic("G", 1, false).unwrap();
        assert_eq!(r.topic_name, "%RETRY%G");
        assert_eq!(r.write_queue_nums, 1);
    }

    #[test]
    fn java_json_form() {
        let j = r#"{"dataVersion":{"counter":3,"timestamp":1700000000000},"topicConfigTable":{"T":{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":0,"writeQueueNums":4,"attributes":{}}}}"#;
        let w: TopicConfigSerializeWrapper = serde_json::from_str(j).unwrap();
        assert_eq!(w.data_version.counter, 3);
        // A topics.json written by a 5.x broker: loaded, then served in the 4.9.7 form.
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), false);
        std::fs::create_dir_all(c.config_dir()).unwrap();
        std::fs::write(c.config_dir().join("topics.json"), j).unwrap();
        let m = TopicConfigManager::open(c, true).unwrap();
        assert_eq!(m.data_version().counter, 4);
        let out = m.encode();
        assert!(out.contains(r#""T":{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":0,"writeQueueNums":4}"#), "{out}");
    }
}
