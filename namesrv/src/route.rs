//! The route tables (Java `RouteInfoManager`): which brokers are alive, which broker
//! groups serve which topics, and the cluster membership.
//!
//! Rules follow `[A4] namesrv/.../routeinfo/RouteInfoManager.java` (namesrv.md §2):
//! - `brokerAddrs[brokerId] = brokerAddr` after removing any *other* id mapped to the same
//!   address (a DLedger follower promoted to leader moves `<1,addr>` to `<0,addr>`).
//! - Topic queue data is taken only from the master (id 0), and only when its DataVersion
//!   changed, the id is newly held by this address, or (as in 5.x) the topic has no queue
//!   data of this group yet.
//! - Removing a broker address (unregister, connection close, expiry) deletes it from its
//!   BrokerData; an empty BrokerData removes the brokerName from its cluster and its queue
//!   data from every topic (topics left without queue data disappear).
//!
//! All operations are short and synchronous under one `RwLock`; no lock is held across
//! an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use namesrv_client::body::{perm, MASTER_ID};
use namesrv_client::{
    BrokerData, ClusterInfo, DataVersion, QueueData, RegisterBrokerResult, TopicConfig,
    TopicConfigSerializeWrapper, TopicList, TopicRouteData,
};
use remoting::connection::ConnectionContext;
use tokio::sync::watch;

/// TopicSysFlag bits (`common/sysflag/TopicSysFlag.java`).
const FLAG_UNIT: i32 = 1;
const FLAG_UNIT_SUB: i32 = 2;

/// Liveness record of one broker address.
#[derive(Debug, Clone)]
pub struct BrokerLiveInfo {
    pub last_update: Instant,
    pub data_version: DataVersion,
    pub ha_server_addr: String,
    /// Connection the broker registered on (None when registered in-process, e.g. tests).
    pub conn: Option<ConnectionContext>,
}

impl BrokerLiveInfo {
    fn conn_id(&self) -> Option<u64> {
        self.conn.as_ref().map(ConnectionContext::id)
    }
}

/// One REGISTER_BROKER, decoded.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    pub cluster_name: &'a str,
    pub broker_addr: &'a str,
    pub broker_name: &'a str,
    pub broker_id: i64,
    pub ha_server_addr: &'a str,
    pub topic_config_wrapper: &'a TopicConfigSerializeWrapper,
    pub filter_server_list: &'a [String],
    pub conn: Option<ConnectionContext>,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("too many live brokers (limit {limit})")]
    TooManyBrokers { limit: usize },
    #[error("invalid registration: {0}")]
    Invalid(&'static str),
}

#[derive(Default)]
struct Tables {
    /// topic → brokerName → queue data.
    topic_queue_table: HashMap<String, BTreeMap<String, QueueData>>,
    /// brokerName → group members.
    broker_addr_table: BTreeMap<String, BrokerData>,
    /// clusterName → brokerNames.
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    /// brokerAddr → liveness.
    broker_live_table: HashMap<String, BrokerLiveInfo>,
    /// brokerAddr → filter servers (legacy; normally empty).
    filter_server_table: HashMap<String, Vec<String>>,
}

/// Limits applied to registrations.
#[derive(Debug, Clone, Copy)]
pub struct RouteLimits {
    pub max_live_brokers: usize,
    pub max_topics: usize,
}

pub struct RouteInfoManager {
    tables: RwLock<Tables>,
    limits: RouteLimits,
    /// Bumped on every change of the route tables (lets tests and observers await changes).
    changes: watch::Sender<u64>,
}

impl RouteInfoManager {
    pub fn new(limits: RouteLimits) -> RouteInfoManager {
        assert!(limits.max_live_brokers > 0 && limits.max_topics > 0);
        RouteInfoManager {
            tables: RwLock::new(Tables::default()),
            limits,
            changes: watch::channel(0).0,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        // A panic while holding the lock leaves consistent-enough maps; keep serving.
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Receiver that observes a counter bumped on every route change.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn register_broker(
        &self,
        reg: Registration<'_>,
        now: Instant,
    ) -> Result<RegisterBrokerResult, RegisterError> {
        if reg.broker_addr.is_empty() || reg.broker_name.is_empty() || reg.cluster_name.is_empty() {
            return Err(RegisterError::Invalid(
                "empty brokerAddr, brokerName or clusterName",
            ));
        }
        if reg.broker_id < 0 {
            return Err(RegisterError::Invalid("negative brokerId"));
        }
        let mut result = RegisterBrokerResult::default();
        {
            let mut t = self.write();
            let tables = &mut *t;
            if !tables.broker_live_table.contains_key(reg.broker_addr)
                && tables.broker_live_table.len() >= self.limits.max_live_brokers
            {
                return Err(RegisterError::TooManyBrokers {
                    limit: self.limits.max_live_brokers,
                });
            }
            tables
                .cluster_addr_table
                .entry(reg.cluster_name.to_string())
                .or_default()
                .insert(reg.broker_name.to_string());

            let mut register_first = false;
            let broker_data = tables
                .broker_addr_table
                .entry(reg.broker_name.to_string())
                .or_insert_with(|| {
                    register_first = true;
                    BrokerData {
                        broker_addrs: BTreeMap::new(),
                        broker_name: reg.broker_name.to_string(),
                        cluster: reg.cluster_name.to_string(),
                        ..Default::default()
                    }
                });
            // One address holds one id: a role change moves it (namesrv.md §2, §6).
            broker_data
                .broker_addrs
                .retain(|id, addr| *id == reg.broker_id || addr != reg.broker_addr);
            let old_addr = broker_data
                .broker_addrs
                .insert(reg.broker_id, reg.broker_addr.to_string());
            // A new address for this id (first registration, or a new master after a
            // leader change) always gets its topic table read.
            register_first = register_first || old_addr.as_deref() != Some(reg.broker_addr);
            if let Some(old) = old_addr.filter(|old| old != reg.broker_addr) {
                tracing::info!(broker_name = reg.broker_name, id = reg.broker_id, %old, new = reg.broker_addr, "broker id moved to a new address");
            }

            if reg.broker_id == MASTER_ID {
                let changed = !matches!(
                    tables.broker_live_table.get(reg.broker_addr),
                    Some(live) if live.data_version == reg.topic_config_wrapper.data_version
                );
                for tc in reg.topic_config_wrapper.topic_config_table.values() {
                    // Like 5.x: topics this group has no queue data for yet are always added.
                    let missing = !matches!(
                        tables.topic_queue_table.get(&tc.topic_name),
                        Some(q) if q.contains_key(reg.broker_name)
                    );
                    if changed || register_first || missing {
                        create_and_update_queue_data(
                            &mut tables.topic_queue_table,
                            reg.broker_name,
                            tc,
                            self.limits.max_topics,
                        );
                    }
                }
            }

            let prev = tables.broker_live_table.insert(
                reg.broker_addr.to_string(),
                BrokerLiveInfo {
                    last_update: now,
                    data_version: reg.topic_config_wrapper.data_version,
                    ha_server_addr: reg.ha_server_addr.to_string(),
                    conn: reg.conn,
                },
            );
            if prev.is_none() {
                tracing::info!(
                    addr = reg.broker_addr,
                    ha = reg.ha_server_addr,
                    id = reg.broker_id,
                    "new broker registered"
                );
            }

            if reg.filter_server_list.is_empty() {
                tables.filter_server_table.remove(reg.broker_addr);
            } else {
                tables
                    .filter_server_table
                    .insert(reg.broker_addr.to_string(), reg.filter_server_list.to_vec());
            }

            if reg.broker_id != MASTER_ID {
                let master = tables
                    .broker_addr_table
                    .get(reg.broker_name)
                    .and_then(|bd| bd.master_addr().map(str::to_string));
                if let Some(master_addr) = master {
                    if let Some(live) = tables.broker_live_table.get(&master_addr) {
                        result.ha_server_addr = Some(live.ha_server_addr.clone());
                        result.master_addr = Some(master_addr);
                    }
                }
            }
        }
        self.changed();
        Ok(result)
    }

    /// UNREGISTER_BROKER. Unlike Java we remove `brokerAddrs[brokerId]` only while it
    /// still maps to `broker_addr`, so a late unregister of a demoted master cannot evict
    /// the new master that took id 0.
    pub fn unregister_broker(
        &self,
        cluster_name: &str,
        broker_addr: &str,
        broker_name: &str,
        broker_id: i64,
    ) {
        {
            let mut t = self.write();
            let tables = &mut *t;
            tables.broker_live_table.remove(broker_addr);
            tables.filter_server_table.remove(broker_addr);
            let mut remove_name = false;
            if let Some(bd) = tables.broker_addr_table.get_mut(broker_name) {
                if bd
                    .broker_addrs
                    .get(&broker_id)
                    .is_some_and(|a| a == broker_addr)
                {
                    bd.broker_addrs.remove(&broker_id);
                }
                if bd.broker_addrs.is_empty() {
                    tables.broker_addr_table.remove(broker_name);
                    remove_name = true;
                }
            }
            if remove_name {
                if let Some(names) = tables.cluster_addr_table.get_mut(cluster_name) {
                    names.remove(broker_name);
                    if names.is_empty() {
                        tables.cluster_addr_table.remove(cluster_name);
                    }
                }
                remove_topics_of_broker_name(&mut tables.topic_queue_table, broker_name);
            }
            tracing::info!(broker_addr, broker_name, broker_id, "broker unregistered");
        }
        self.changed();
    }

    /// Forget a broker address everywhere (Java `onChannelDestroy`).
    fn remove_broker_addr(tables: &mut Tables, broker_addr: &str) {
        tables.broker_live_table.remove(broker_addr);
        tables.filter_server_table.remove(broker_addr);
        let mut emptied: Vec<String> = Vec::new();
        for (name, bd) in tables.broker_addr_table.iter_mut() {
            let before = bd.broker_addrs.len();
            bd.broker_addrs.retain(|_, a| a != broker_addr);
            if before != bd.broker_addrs.len() && bd.broker_addrs.is_empty() {
                emptied.push(name.clone());
            }
        }
        for name in emptied {
            tables.broker_addr_table.remove(&name);
            tables.cluster_addr_table.retain(|_, names| {
                names.remove(&name);
                !names.is_empty()
            });
            remove_topics_of_broker_name(&mut tables.topic_queue_table, &name);
            tracing::info!(broker_name = %name, "broker group removed (no member left)");
        }
    }

    /// A connection closed: drop every broker that registered on it (and has not
    /// re-registered on another connection since).
    pub fn on_connection_closed(&self, conn_id: u64) -> Vec<String> {
        let removed: Vec<String> = {
            let mut t = self.write();
            let addrs: Vec<String> = t
                .broker_live_table
                .iter()
                .filter(|(_, live)| live.conn_id() == Some(conn_id))
                .map(|(addr, _)| addr.clone())
                .collect();
            for addr in &addrs {
                tracing::info!(broker_addr = %addr, "broker connection closed; removing its routes");
                Self::remove_broker_addr(&mut t, addr);
            }
            addrs
        };
        if !removed.is_empty() {
            self.changed();
        }
        removed
    }

    /// Drop brokers whose last registration is older than `expiry` (Java
    /// `scanNotActiveBroker`); their connections are closed, as Java does.
    pub fn scan_not_active_brokers(&self, now: Instant, expiry: Duration) -> Vec<String> {
        let mut to_close = Vec::new();
        let removed: Vec<String> = {
            let mut t = self.write();
            let expired: Vec<String> = t
                .broker_live_table
                .iter()
                .filter(|(_, live)| now.saturating_duration_since(live.last_update) > expiry)
                .map(|(addr, _)| addr.clone())
                .collect();
            for addr in &expired {
                if let Some(conn) = t.broker_live_table.get(addr).and_then(|l| l.conn.clone()) {
                    to_close.push(conn);
                }
                tracing::warn!(broker_addr = %addr, expiry_ms = expiry.as_millis() as u64, "broker expired");
                Self::remove_broker_addr(&mut t, addr);
            }
            expired
        };
        // Close outside the lock: closing runs the connection-closed callback.
        for conn in to_close {
            conn.close();
        }
        if !removed.is_empty() {
            self.changed();
        }
        removed
    }

    /// QUERY_DATA_VERSION: does the stored DataVersion differ from `dv`?
    pub fn is_broker_topic_config_changed(&self, broker_addr: &str, dv: &DataVersion) -> bool {
        !matches!(
            self.read().broker_live_table.get(broker_addr),
            Some(live) if live.data_version == *dv
        )
    }

    pub fn broker_data_version(&self, broker_addr: &str) -> Option<DataVersion> {
        self.read()
            .broker_live_table
            .get(broker_addr)
            .map(|live| live.data_version)
    }

    pub fn update_broker_timestamp(&self, broker_addr: &str, now: Instant) {
        if let Some(live) = self.write().broker_live_table.get_mut(broker_addr) {
            live.last_update = now;
        }
    }

    pub fn is_broker_alive(&self, broker_addr: &str) -> bool {
        self.read().broker_live_table.contains_key(broker_addr)
    }

    /// GET_ROUTEINFO_BY_TOPIC: `None` unless the topic has queue data *and* at least one
    /// of its broker groups is known.
    pub fn pickup_topic_route_data(&self, topic: &str) -> Option<TopicRouteData> {
        let t = self.read();
        let queues = t.topic_queue_table.get(topic)?;
        let mut route = TopicRouteData {
            queue_datas: queues.values().cloned().collect(),
            ..Default::default()
        };
        for name in queues.keys() {
            if let Some(bd) = t.broker_addr_table.get(name) {
                for addr in bd.broker_addrs.values() {
                    if let Some(list) = t.filter_server_table.get(addr).filter(|l| !l.is_empty()) {
                        route.filter_server_table.insert(addr.clone(), list.clone());
                    }
                }
                route.broker_datas.push(bd.clone());
            }
        }
        if route.broker_datas.is_empty() || route.queue_datas.is_empty() {
            return None;
        }
        Some(route)
    }

    pub fn cluster_info(&self) -> ClusterInfo {
        let t = self.read();
        ClusterInfo {
            broker_addr_table: t.broker_addr_table.clone(),
            cluster_addr_table: t.cluster_addr_table.clone(),
        }
    }

    pub fn all_topic_list(&self) -> TopicList {
        TopicList {
            broker_addr: None,
            topic_list: self.read().topic_queue_table.keys().cloned().collect(),
        }
    }

    pub fn topics_by_cluster(&self, cluster: &str) -> TopicList {
        let t = self.read();
        let mut list = TopicList::default();
        if let Some(names) = t.cluster_addr_table.get(cluster) {
            for (topic, queues) in &t.topic_queue_table {
                if queues.keys().any(|n| names.contains(n)) {
                    list.topic_list.insert(topic.clone());
                }
            }
        }
        list
    }

    /// Cluster names and broker names (each is a system topic), plus one broker address.
    pub fn system_topic_list(&self) -> TopicList {
        let t = self.read();
        let mut list = TopicList::default();
        for (cluster, names) in &t.cluster_addr_table {
            list.topic_list.insert(cluster.clone());
            list.topic_list.extend(names.iter().cloned());
        }
        list.broker_addr = t
            .broker_addr_table
            .values()
            .find_map(|bd| bd.broker_addrs.values().next().cloned());
        list
    }

    /// Topics whose (first) queue data satisfies `pred(topicSysFlag)`.
    pub fn topics_with_flags(&self, pred: impl Fn(i32) -> bool) -> TopicList {
        let t = self.read();
        TopicList {
            broker_addr: None,
            topic_list: t
                .topic_queue_table
                .iter()
                .filter(|(_, q)| q.values().next().is_some_and(|qd| pred(qd.topic_sys_flag)))
                .map(|(topic, _)| topic.clone())
                .collect(),
        }
    }

    pub fn unit_topics(&self) -> TopicList {
        self.topics_with_flags(|f| f & FLAG_UNIT != 0)
    }

    pub fn has_unit_sub_topics(&self) -> TopicList {
        self.topics_with_flags(|f| f & FLAG_UNIT_SUB != 0)
    }

    pub fn has_unit_sub_ununit_topics(&self) -> TopicList {
        self.topics_with_flags(|f| f & FLAG_UNIT == 0 && f & FLAG_UNIT_SUB != 0)
    }

    /// DELETE_TOPIC_IN_NAMESRV; with a cluster, only that cluster's broker groups.
    pub fn delete_topic(&self, topic: &str, cluster: Option<&str>) {
        {
            let mut t = self.write();
            let tables = &mut *t;
            match cluster {
                None => {
                    tables.topic_queue_table.remove(topic);
                }
                Some(cluster) => {
                    if let (Some(names), Some(queues)) = (
                        tables.cluster_addr_table.get(cluster),
                        tables.topic_queue_table.get_mut(topic),
                    ) {
                        queues.retain(|name, _| !names.contains(name));
                        if queues.is_empty() {
                            tables.topic_queue_table.remove(topic);
                        }
                    }
                }
            }
        }
        self.changed();
    }

    /// WIPE_WRITE_PERM_OF_BROKER / ADD_WRITE_PERM_OF_BROKER: returns the number of topics touched.
    pub fn set_write_perm_of_broker(&self, broker_name: &str, writable: bool) -> i32 {
        let mut count = 0;
        {
            let mut t = self.write();
            for queues in t.topic_queue_table.values_mut() {
                if let Some(qd) = queues.get_mut(broker_name) {
                    if writable {
                        qd.perm |= perm::WRITE;
                    } else {
                        qd.perm &= !perm::WRITE;
                    }
                    count += 1;
                }
            }
        }
        self.changed();
        count
    }

    /// Number of live broker addresses.
    pub fn live_broker_count(&self) -> usize {
        self.read().broker_live_table.len()
    }
}

fn create_and_update_queue_data(
    table: &mut HashMap<String, BTreeMap<String, QueueData>>,
    broker_name: &str,
    tc: &TopicConfig,
    max_topics: usize,
) {
    if !table.contains_key(&tc.topic_name) && table.len() >= max_topics {
        tracing::warn!(topic = %tc.topic_name, max_topics, "route table full; topic not added");
        return;
    }
    let qd = QueueData {
        broker_name: broker_name.to_string(),
        perm: tc.perm,
        read_queue_nums: tc.read_queue_nums,
        topic_sys_flag: tc.topic_sys_flag,
        write_queue_nums: tc.write_queue_nums,
    };
    table
        .entry(tc.topic_name.clone())
        .or_default()
        .insert(broker_name.to_string(), qd);
}

fn remove_topics_of_broker_name(
    table: &mut HashMap<String, BTreeMap<String, QueueData>>,
    broker_name: &str,
) {
    table.retain(|_, queues| {
        queues.remove(broker_name);
        !queues.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RouteLimits {
        RouteLimits {
            max_live_brokers: 16,
            max_topics: 100,
        }
    }

    fn wrapper(counter: i64, topics: &[(&str, i32)]) -> TopicConfigSerializeWrapper {
        let mut w = TopicConfigSerializeWrapper {
            data_version: DataVersion::new(1000, counter),
            ..Default::default()
        };
        for (name, queues) in topics {
            w.topic_config_table.insert(
                name.to_string(),
                TopicConfig::new(*name, *queues, *queues, 6),
            );
        }
        w
    }

    fn register(
        m: &RouteInfoManager,
        name: &str,
        addr: &str,
        id: i64,
        w: &TopicConfigSerializeWrapper,
        now: Instant,
    ) -> RegisterBrokerResult {
        m.register_broker(
            Registration {
                cluster_name: "DefaultCluster",
                broker_addr: addr,
                broker_name: name,
                broker_id: id,
                ha_server_addr: &format!("{addr}-ha"),
                topic_config_wrapper: w,
                filter_server_list: &[],
                conn: None,
            },
            now,
        )
        .unwrap()
    }

    #[test]
    fn master_registration_creates_route() {
        let m = RouteInfoManager::new(limits());
        let now = Instant::now();
        register(
            &m,
            "broker-a",
            "127.0.0.1:10911",
            0,
            &wrapper(1, &[("T", 4)]),
            now,
        );
        let route = m.pickup_topic_route_data("T").unwrap();
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        assert_eq!(route.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
        assert!(m.pickup_topic_route_data("U").is_none());
    }

    #[test]
    fn slave_gets_master_addresses_and_no_queue_data() {
        let m = RouteInfoManager::new(limits());
        let now = Instant::now();
        let r = register(&m, "broker-a", "s:1", 1, &wrapper(1, &[("S", 2)]), now);
        assert_eq!(r.master_addr, None, "no master yet");
        assert!(
            m.pickup_topic_route_data("S").is_none(),
            "slaves carry no queue data"
        );
        register(&m, "broker-a", "m:1", 0, &wrapper(1, &[("T", 4)]), now);
        let r = register(&m, "broker-a", "s:1", 1, &wrapper(1, &[("S", 2)]), now);
        assert_eq!(r.master_addr.as_deref(), Some("m:1"));
        assert_eq!(r.ha_server_addr.as_deref(), Some("m:1-ha"));
        let route = m.pickup_topic_route_data("T").unwrap();
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
    }

    #[test]
    fn topic_table_reread_only_when_data_version_changes() {
        let m = RouteInfoManager::new(limits());
        let now = Instant::now();
        register(&m, "b", "a:1", 0, &wrapper(1, &[("T", 4)]), now);
        // Same DataVersion, different content: ignored (Java behaviour).
        register(&m, "b", "a:1", 0, &wrapper(1, &[("T", 8)]), now);
        assert_eq!(
            m.pickup_topic_route_data("T").unwrap().queue_datas[0].write_queue_nums,
            4
        );
        register(&m, "b", "a:1", 0, &wrapper(2, &[("T", 8)]), now);
        assert_eq!(
            m.pickup_topic_route_data("T").unwrap().queue_datas[0].write_queue_nums,
            8
        );
    }

    #[test]
    fn role_change_moves_address_between_ids() {
        let m = RouteInfoManager::new(limits());
        let now = Instant::now();
        let w = wrapper(1, &[("T", 4)]);
        register(&m, "g", "n0:1", 0, &w, now);
        register(&m, "g", "n1:1", 2, &w, now);
        // Leader change: n0 becomes follower (id 1), n1 becomes leader (id 0).
        register(&m, "g", "n0:1", 1, &w, now);
        register(&m, "g", "n1:1", 0, &w, now);
        let bd = &m.pickup_topic_route_data("T").unwrap().broker_datas[0];
        assert_eq!(
            bd.broker_addrs,
            BTreeMap::from([(0, "n1:1".to_string()), (1, "n0:1".to_string())])
        );
        // And back: n0 leader again.
        register(&m, "g", "n1:1", 2, &w, now);
        register(&m, "g", "n0:1", 0, &w, now);
        let bd = &m.pickup_topic_route_data("T").unwrap().broker_datas[0];
        assert_eq!(
            bd.broker_addrs,
            BTreeMap::from([(0, "n0:1".to_string()), (2, "n1:1".to_string())])
        );
    }

    #[test]
    fn new_master_address_reads_its_table_even_with_same_data_version() {
        let m = RouteInfoManager::new(limits());
        let now = Instant::now();
        let old = wrapper(5, &[("T", 4)]);
        register(&m, "g", "n0:1", 0, &old, now);
        // The follower already registered the replicated table (same DataVersion) ...
        let replicated = wrapper(5, &[("T", 8), ("NEW", 2)]);
        register(&m, "g", "n1:1", 1, &replicated, now);
        // ... and becomes master while n0 is gone: its table must be read.
        register(&m, "g", "n1:1", 0, &replicated, now);
        assert_eq!(
            m.pickup_topic_route_data("T").unwrap().queue_datas[0].write_queue_nums,
            8
        );
        assert!(m.pickup_topic_route_data("NEW").is_some());
    }

    #[test]
    fn expiry_removes_silent_brokers_only() {
        let m = RouteInfoManager::new(limits());
        let t0 = Instant::now();
        register(&m, "a", "a:1", 0, &wrapper(1, &[("T", 4)]), t0);
        register(
            &m,
            "b",
            "b:1",
            0,
            &wrapper(1, &[("T", 4), ("U", 1)]),
            t0 + Duration::from_secs(100),
        );
        let expiry = Duration::from_secs(120);
        assert!(m
            .scan_not_active_brokers(t0 + Duration::from_secs(120), expiry)
            .is_empty());
        let removed = m.scan_not_active_brokers(t0 + Duration::from_secs(121), expiry);
        assert_eq!(removed, vec!["a:1".to_string()]);
        let route = m.pickup_topic_route_data("T").unwrap();
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.queue_datas[0].broker_name, "b");
        m.scan_not_active_brokers(t0 + Duration::from_secs(300), expiry);
        assert!(m.pickup_topic_route_data("T").is_none());
        assert!(m.cluster_info().cluster_addr_table.is_empty());
        assert!(m.all_topic_list().topic_list.is_empty());
    }

    #[test]
    fn liveness_refresh_postpones_expiry() {
        let m = RouteInfoManager::new(limits());
        let t0 = Instant::now();
        register(&m, "a", "a:1", 0, &wrapper(1, &[("T", 4)]), t0);
        m.update_broker_timestamp("a:1", t0 + Duration::from_secs(100));
        let expiry = Duration::from_secs(120);
        assert!(m
            .scan_not_active_brokers(t0 + Duration::from_secs(150), expiry)
            .is_empty());
        assert_eq!(
            m.scan_not_active_brokers(t0 + Duration::from_secs(221), expiry),
            vec!["a:1".to_string()]
        );
    }

    #[test]
    fn unregister_keeps_new_master() {
        let m = RouteInfoManager::new(limits());
        let now = Instant::now();
        let w = wrapper(1, &[("T", 4)]);
        register(&m, "g", "old:1", 0, &w, now);
        register(&m, "g", "new:1", 0, &w, now);
        m.unregister_broker("DefaultCluster", "old:1", "g", 0);
        let bd = &m.pickup_topic_route_data("T").unwrap().broker_datas[0];
        assert_eq!(bd.master_addr(), Some("new:1"));
        m.unregister_broker("DefaultCluster", "new:1", "g", 0);
        assert!(m.pickup_topic_route_data("T").is_none());
    }

    #[test]
    fn delete_topic_and_write_perm() {
        let m = RouteInfoManager::new(limits());
        let now = Instant::now();
        register(&m, "a", "a:1", 0, &wrapper(1, &[("T", 4), ("U", 4)]), now);
        assert_eq!(m.set_write_perm_of_broker("a", false), 2);
        assert_eq!(
            m.pickup_topic_route_data("T").unwrap().queue_datas[0].perm,
            perm::READ
        );
        assert_eq!(m.set_write_perm_of_broker("a", true), 2);
        assert_eq!(
            m.pickup_topic_route_data("T").unwrap().queue_datas[0].perm,
            perm::READ_WRITE
        );
        m.delete_topic("T", Some("OtherCluster"));
        assert!(m.pickup_topic_route_data("T").is_some());
        m.delete_topic("T", Some("DefaultCluster"));
        assert!(m.pickup_topic_route_data("T").is_none());
        m.delete_topic("U", None);
        assert!(m.all_topic_list().topic_list.is_empty());
        assert_eq!(
            m.system_topic_list().topic_list,
            BTreeSet::from(["DefaultCluster".to_string(), "a".to_string()])
        );
    }

    #[test]
    fn live_broker_limit_is_enforced() {
        let m = RouteInfoManager::new(RouteLimits {
            max_live_brokers: 1,
            max_topics: 10,
        });
        let now = Instant::now();
        register(&m, "a", "a:1", 0, &wrapper(1, &[]), now);
        let w = wrapper(1, &[]);
        let err = m
            .register_broker(
                Registration {
                    cluster_name: "c",
                    broker_addr: "b:1",
                    broker_name: "b",
                    broker_id: 0,
                    ha_server_addr: "",
                    topic_config_wrapper: &w,
                    filter_server_list: &[],
                    conn: None,
                },
                now,
            )
            .unwrap_err();
        assert_eq!(err, RegisterError::TooManyBrokers { limit: 1 });
        // Re-registering a known address still works.
        register(&m, "a", "a:1", 0, &wrapper(2, &[]), now);
    }
}
