//! Route lookups (GET_ROUTEINFO_BY_TOPIC, namesrv.md §4–§5) and one connection per address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use remoting::body::{fastjson, TopicRouteData};
use remoting::codes::{request, response};
use remoting::headers::namesrv::GetRouteInfoRequestHeader;
use remoting::{ClientConfig, RemotingClient, RemotingCommand};

use crate::error::BenchError;

/// `PermName.PERM_READ` / `PERM_WRITE` (Apache `common/.../constant/PermName.java`).
pub const PERM_READ: i32 = 0x4;
pub const PERM_WRITE: i32 = 0x2;
/// Java's auto-create template topic and the client's default queue count for it.
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;
/// Bound on queues per topic we will drive (Java caps queue nums far lower in practice).
pub const MAX_QUEUES: usize = 65_536;
pub const ROUTE_TIMEOUT_MS: u64 = 3000;
pub const ROUTE_REFRESH_INTERVAL_MS: u64 = 1000;

/// One queue on one broker's current master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTarget {
    pub broker_name: Arc<str>,
    pub addr: Arc<str>,
    pub queue_id: i32,
}

/// Lazily opened connections, one per address; a closed one is replaced on next use.
#[derive(Debug, Default)]
pub struct Connections {
    map: Mutex<HashMap<String, RemotingClient>>,
    /// One lock per address, held while connecting to it, so tasks that all miss at once
    /// (every sender at start-up) share one new connection instead of each opening its own
    /// and dropping all but the last. Per address: a dead master that is slow to refuse must
    /// not hold up connecting to the new one.
    connecting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Connections {
    pub async fn get(&self, addr: &str) -> Result<RemotingClient, BenchError> {
        if let Some(c) = self.open(addr) {
            return Ok(c);
        }
        let lock = {
            let mut m = self.connecting.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(m.entry(addr.to_string()).or_default())
        };
        let _connecting = lock.lock().await;
        // Someone else may have connected while this task waited.
        if let Some(c) = self.open(addr) {
            return Ok(c);
        }
        let client = RemotingClient::connect(addr, ClientConfig::default()).await?;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    fn open(&self, addr: &str) -> Option<RemotingClient> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(addr).filter(|c| !c.is_closed()).cloned()
    }

    pub fn close_all(&self) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for c in map.values() {
            c.close();
        }
    }
}

/// Ask the NameServer for a topic's route. Parses both standard JSON and fastjson's
/// bare-numeric-key form of `brokerAddrs` (namesrv.md §4).
pub async fn fetch_route(
    conns: &Connections,
    namesrv: &str,
    topic: &str,
) -> Result<TopicRouteData, BenchError> {
    let header = GetRouteInfoRequestHeader {
        topic: topic.to_string(),
        accept_standard_json_only: Some(true),
    };
    let client = conns.get(namesrv).await?;
    let resp = client
        .invoke(
            RemotingCommand::request_with_header(request::GET_ROUTEINFO_BY_TOPIC, &header),
            ROUTE_TIMEOUT_MS,
        )
        .await?;
    if resp.code != response::SUCCESS {
        return Err(BenchError::NoRoute {
            topic: topic.to_string(),
            reason: format!("code {} {}", resp.code, resp.remark.unwrap_or_default()),
        });
    }
    let value = fastjson::parse(&resp.body)?;
    serde_json::from_value(value).map_err(|e| BenchError::NoRoute {
        topic: topic.to_string(),
        reason: format!("bad route body: {e}"),
    })
}

fn master_addr(route: &TopicRouteData, broker_name: &str) -> Option<Arc<str>> {
    route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == broker_name)
        .and_then(|b| b.broker_addrs.get(&0))
        .map(|a| Arc::from(a.as_str()))
}

/// Publish queues like `TopicPublishInfo` (namesrv.md §5): queue data with WRITE whose
/// broker has a master (id 0), sorted by broker name, ids `0..min(writeQueueNums, cap)`.
pub fn publish_queues(route: &TopicRouteData, queue_cap: Option<i32>) -> Vec<QueueTarget> {
    queues(route, PERM_WRITE, |q| {
        q.write_queue_nums.min(queue_cap.unwrap_or(i32::MAX))
    })
}

/// Subscribe queues: queue data with READ on a broker with a master, ids `0..readQueueNums`.
pub fn subscribe_queues(route: &TopicRouteData) -> Vec<QueueTarget> {
    queues(route, PERM_READ, |q| q.read_queue_nums)
}

fn queues(
    route: &TopicRouteData,
    perm: i32,
    nums: impl Fn(&remoting::body::QueueData) -> i32,
) -> Vec<QueueTarget> {
    let mut datas: Vec<_> = route
        .queue_datas
        .iter()
        .filter(|q| q.perm & perm != 0)
        .collect();
    datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    let mut out = Vec::new();
    for q in datas {
        let Some(addr) = master_addr(route, &q.broker_name) else {
            continue;
        };
        let name: Arc<str> = Arc::from(q.broker_name.as_str());
        for queue_id in 0..nums(q).max(0) {
            if out.len() >= MAX_QUEUES {
                return out;
            }
            out.push(QueueTarget {
                broker_name: name.clone(),
                addr: addr.clone(),
                queue_id,
            });
        }
    }
    out
}

/// The current queue list, refreshed in the background so a failover (new master address)
/// is picked up within a second.
#[derive(Debug)]
pub struct RouteCache {
    current: RwLock<Arc<Vec<QueueTarget>>>,
}

impl RouteCache {
    pub fn new(queues: Vec<QueueTarget>) -> Arc<RouteCache> {
        Arc::new(RouteCache {
            current: RwLock::new(Arc::new(queues)),
        })
    }

    pub fn get(&self) -> Arc<Vec<QueueTarget>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replace the list; an empty answer (e.g. mid-failover, no master) keeps the old one so
    /// senders keep trying the last known queues.
    pub fn set(&self, queues: Vec<QueueTarget>) {
        if queues.is_empty() {
            return;
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(queues);
    }
}

/// Producer route: the topic's own route, else (topic not yet created) the auto-create
/// template `TBW102` limited to 4 queues, as the Java producer does.
pub async fn producer_queues(
    conns: &Connections,
    namesrv: &str,
    topic: &str,
) -> Result<Vec<QueueTarget>, BenchError> {
    match fetch_route(conns, namesrv, topic).await {
        Ok(route) => Ok(publish_queues(&route, None)),
        Err(BenchError::NoRoute { .. }) => {
            let route = fetch_route(conns, namesrv, AUTO_CREATE_TOPIC).await?;
            Ok(publish_queues(&route, Some(DEFAULT_TOPIC_QUEUE_NUMS)))
        }
        Err(e) => Err(e),
    }
}

/// Refresh `cache` every second until `stop` fires; errors keep the previous route.
pub async fn refresh_loop(
    conns: Arc<Connections>,
    cache: Arc<RouteCache>,
    namesrv: String,
    topic: String,
    for_producer: bool,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut stop = stop;
    let mut tick = tokio::time::interval(Duration::from_millis(ROUTE_REFRESH_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let fresh = if for_producer {
            producer_queues(&conns, &namesrv, &topic).await
        } else {
            fetch_route(&conns, &namesrv, &topic)
                .await
                .map(|r| subscribe_queues(&r))
        };
        if let Ok(q) = fresh {
            cache.set(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remoting::body::{BrokerData, QueueData};

    fn route() -> TopicRouteData {
        let bd = |name: &str, addrs: &[(i64, &str)]| BrokerData {
            broker_addrs: addrs.iter().map(|(i, a)| (*i, a.to_string())).collect(),
            broker_name: name.into(),
            cluster: "C".into(),
            ..Default::default()
        };
        let qd = |name: &str, perm, r, w| QueueData {
            broker_name: name.into(),
            perm,
            read_queue_nums: r,
            write_queue_nums: w,
            topic_sys_flag: 0,
        };
        TopicRouteData {
            broker_datas: vec![
                bd("b", &[(0, "127.0.0.1:2"), (1, "127.0.0.1:3")]),
                bd("a", &[(0, "127.0.0.1:1")]),
                bd("slaveonly", &[(1, "127.0.0.1:9")]),
            ],
            queue_datas: vec![
                qd("b", 6, 2, 3),
                qd("a", 6, 1, 2),
                qd("slaveonly", 6, 4, 4),
                qd("ro", 4, 1, 1),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn publish_queues_masters_sorted() {
        let q = publish_queues(&route(), None);
        let got: Vec<(&str, &str, i32)> = q
            .iter()
            .map(|t| (&*t.broker_name, &*t.addr, t.queue_id))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", "127.0.0.1:1", 0),
                ("a", "127.0.0.1:1", 1),
                ("b", "127.0.0.1:2", 0),
                ("b", "127.0.0.1:2", 1),
                ("b", "127.0.0.1:2", 2),
            ]
        );
        assert_eq!(publish_queues(&route(), Some(1)).len(), 2);
    }

    #[test]
    fn subscribe_queues_use_read_nums() {
        let q = subscribe_queues(&route());
        assert_eq!(q.len(), 3);
        assert_eq!(q.iter().filter(|t| &*t.broker_name == "b").count(), 2);
    }

    #[test]
    fn parses_fastjson_bare_keys() {
        let text = br#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
        let v = fastjson::parse(text).expect("parses");
        let r: TopicRouteData = serde_json::from_value(v).expect("route");
        let q = publish_queues(&r, None);
        assert_eq!(q.len(), 4);
        assert_eq!(&*q[3].addr, "127.0.0.1:10911");
    }

    #[test]
    fn cache_keeps_old_route_on_empty() {
        let c = RouteCache::new(publish_queues(&route(), None));
        c.set(Vec::new());
        assert_eq!(c.get().len(), 5);
        c.set(publish_queues(&route(), Some(1)));
        assert_eq!(c.get().len(), 2);
    }
}
