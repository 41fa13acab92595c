//! Group mode (three in-process brokers over one DLedger group, an embedded NameServer):
//! roles in the NameServer, sends refused by followers, offset commits forwarded to the
//! leader, metadata replicated, and a graceful leader stop handing over to a follower.

mod lock_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broker::config::BrokerConfig;
use broker::controller::Broker;
use bytes::Bytes;
use lock_support::locked_queues;
use remoting::codes::{request, response};
use remoting::shutdown::Shutdown;
use remoting::{ClientConfig, RemotingClient, RemotingCommand};
use testkit::free_port;

const TIMEOUT_MS: u64 = 10_000;
/// Bound on waiting for elections / registrations on a loaded 2-core machine.
const EVENTUALLY_MS: u64 = 30_000;
const POLL_MS: u64 = 20;

/// Poll an external state (the NameServer has no change feed) until `f` returns Some.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_millis(EVENTUALLY_MS);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

struct Group {
    ns_addr: String,
    ns: (namesrv::NameServerHandle, Shutdown),
    /// Indexed by peer (n0, n1, n2); None once stopped.
    brokers: Vec<Option<Broker>>,
    broker_ports: Vec<u16>,
    dl_ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
}

fn group_config(
    dir: &std::path::Path,
    i: usize,
    ns_addr: &str,
    dl_ports: &[u16],
    broker_ports: &[u16],
) -> BrokerConfig {
    BrokerConfig {
        listen_port: broker_ports[i],
        namesrv_addr: Some(ns_addr.to_string()),
        enable_dleger_commit_log: true,
        dleger_group: Some("broker-a".into()),
        dleger_peers: Some(testkit::dledger_peers(dl_ports)),
        dleger_self_id: Some(format!("n{i}")),
        dleger_peer_broker_addrs: Some(testkit::dledger_peers(broker_ports)),
        dleger_metadata_batch_interval_ms: 50,
        // n0 serves pulls as a follower; n1 and n2 point clients at the master.
        slave_read_enable: i == 0,
        ..BrokerConfig::for_test(dir)
    }
}

impl Group {
    async fn start() -> Group {
        let dl_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let broker_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        Group::start_in(dirs, dl_ports, broker_ports).await
    }

    async fn start_in(
        dirs: Vec<tempfile::TempDir>,
        dl_ports: Vec<u16>,
        broker_ports: Vec<u16>,
    ) -> Group {
        Group::start_tuned(dirs, dl_ports, broker_ports, |_| {}).await
    }

    async fn start_tuned(
        dirs: Vec<tempfile::TempDir>,
        dl_ports: Vec<u16>,
        broker_ports: Vec<u16>,
        tune: fn(&mut BrokerConfig),
    ) -> Group {
        let ns_shutdown = Shutdown::new();
        let ns = namesrv::NameServer::start(
            "127.0.0.1:0".parse().unwrap(),
            namesrv::NamesrvConfig::default(),
            ns_shutdown.clone(),
        )
        .await
        .unwrap();
        let ns_addr = ns.local_addr().to_string();
        let starts = (0..3).map(|i| {
            let mut c = group_config(dirs[i].path(), i, &ns_addr, &dl_ports, &broker_ports);
            tune(&mut c);
            Broker::start(c)
        });
        let brokers = futures::future::join_all(starts)
            .await
            .into_iter()
            .map(|b| Some(b.expect("broker starts")))
            .collect();
        Group {
            ns_addr,
            ns: (ns, ns_shutdown),
            brokers,
            broker_ports,
            dl_ports,
            dirs,
        }
    }

    fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.broker_ports[i])
    }

    /// The index of the (single) master among the running brokers, once there is one.
    async fn master(&self) -> usize {
        eventually("a master", || async {
            let masters: Vec<usize> = self
                .brokers
                .iter()
                .enumerate()
                .filter(|(_, b)| b.as_ref().is_some_and(|b| b.ctx.is_master()))
                .map(|(i, _)| i)
                .collect();
            (masters.len() == 1).then(|| masters[0])
        })
        .await
    }

    /// brokerId → address registered for broker-a.
    async fn registered(&self) -> BTreeMap<i64, String> {
        let client =
            namesrv_client::NamesrvClient::new(vec![self.ns_addr.clone()], Default::default());
        match client.get_cluster_info().await {
            Ok(info) => info
                .broker_addr_table
                .get("broker-a")
                .map(|b| b.broker_addrs.clone())
                .unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        }
    }

    /// Stop everything; returns what a restart needs (data dirs and ports).
    async fn stop(mut self) -> (Vec<tempfile::TempDir>, Vec<u16>, Vec<u16>) {
        for b in self.brokers.iter_mut().filter_map(Option::take) {
            b.shutdown().await;
        }
        self.ns.1.trigger();
        self.ns.0.join().await;
        (self.dirs, self.dl_ports, self.broker_ports)
    }
}

async fn connect(addr: &str) -> RemotingClient {
    RemotingClient::connect(addr, ClientConfig::default())
        .await
        .unwrap()
}

async fn call(c: &RemotingClient, cmd: RemotingCommand) -> RemotingCommand {
    c.invoke(cmd, TIMEOUT_MS).await.unwrap()
}

fn create_topic(topic: &str) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC);
    for (k, v) in [
        ("topic", topic),
        ("defaultTopic", "TBW102"),
        ("readQueueNums", "2"),
        ("writeQueueNums", "2"),
        ("perm", "6"),
        ("topicFilterType", "SINGLE_TAG"),
        ("order", "false"),
    ] {
        cmd.ext_fields.insert(k, v);
    }
    cmd
}

fn send(topic: &str) -> RemotingCommand {
    send_with_props(topic, "")
}

fn send_body(topic: &str, body: Bytes) -> RemotingCommand {
    let mut cmd = send(topic);
    cmd.body = body;
    cmd
}

fn send_with_props(topic: &str, props: &str) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::SEND_MESSAGE_V2);
    for (k, v) in [
        ("a", "group_producer"),
        ("b", topic),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "0"),
        ("f", "0"),
        ("g", "1700000000000"),
        ("h", "0"),
        ("i", props),
        ("j", "0"),
        ("k", "false"),
        ("m", "false"),
    ] {
        cmd.ext_fields.insert(k, v);
    }
    cmd.with_body(Bytes::from_static(b"hello group"))
}

fn offset_cmd(code: i32, topic: &str, q: i32, commit: Option<i64>) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code);
    cmd.ext_fields.insert("consumerGroup", "GG");
    cmd.ext_fields.insert("topic", topic);
    cmd.ext_fields.insert("queueId", q.to_string());
    if let Some(o) = commit {
        cmd.ext_fields.insert("commitOffset", o.to_string());
    }
    cmd
}

fn pull(topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::PULL_MESSAGE);
    for (k, v) in [
        ("consumerGroup", "GG".to_string()),
        ("topic", topic.to_string()),
        ("queueId", queue_id.to_string()),
        ("queueOffset", offset.to_string()),
        ("maxMsgNums", "32".to_string()),
        ("sysFlag", "4".to_string()), // SUBSCRIPTION: the expression travels with the pull
        ("commitOffset", "0".to_string()),
        ("suspendTimeoutMillis", "0".to_string()),
        ("subscription", "*".to_string()),
        ("subVersion", "0".to_string()),
        ("expressionType", "TAG".to_string()),
    ] {
        cmd.ext_fields.insert(k, v);
    }
    cmd
}

fn lock_cmd(code: i32, client_id: &str, queues: &[i32]) -> RemotingCommand {
    lock_support::lock_cmd(code, "GroupTopic", "GG", client_id, queues)
}

async fn route_master(ns_addr: &str, topic: &str) -> Option<String> {
    let client = namesrv_client::NamesrvClient::new(vec![ns_addr.to_string()], Default::default());
    let route = client.get_route_info(topic).await.ok()??;
    route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == "broker-a")
        .and_then(|b| b.broker_addrs.get(&0).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_roles_forwarding_and_failover() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut g = Group::start().await;
    let leader = g.master().await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    // NameServer: master as brokerId 0, followers as peer index + 1.
    let expected: BTreeMap<i64, String> = std::iter::once((0, g.addr(leader)))
        .chain(followers.iter().map(|f| (*f as i64 + 1, g.addr(*f))))
        .collect();
    eventually("roles registered", || async {
        (g.registered().await == expected).then_some(())
    })
    .await;

    let lc = connect(&g.addr(leader)).await;
    let fc = connect(&g.addr(followers[0])).await;

    // GET_BROKER_RUNTIME_INFO says who is who (as Java's DLedger role handler sets
    // brokerRole), with the DLedger term and leader.
    let info = |c: RemotingClient| async move {
        let r = call(
            &c,
            RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO),
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["table"].clone()
    };
    let li = info(connect(&g.addr(leader)).await).await;
    let fi = info(connect(&g.addr(followers[0])).await).await;
    assert_eq!(li["brokerRole"], "SYNC_MASTER", "{li}");
    assert_eq!(li["brokerId"], "0");
    assert_eq!(fi["brokerRole"], "SLAVE", "{fi}");
    assert_eq!(fi["brokerId"], (followers[0] + 1).to_string());
    let term: u64 = li["dLegerTerm"].as_str().unwrap().parse().unwrap();
    assert!(term > 0);
    assert_eq!(li["dLegerLeaderId"], fi["dLegerLeaderId"]);
    assert_eq!(li["dLegerLeaderId"], format!("n{leader}"));
    // Our replicated-log figures: the leader has fsynced at least its term's NOOP.
    let fsyncs: u64 = li["dLedgerFsyncs"].as_str().unwrap().parse().unwrap();
    let persisted: u64 = li["dLedgerEntriesPersisted"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(fsyncs >= 1 && persisted >= 1, "{li}");
    assert!(fi["dLedgerFsyncP99Us"].as_str().is_some(), "{fi}");

    // Topic changes: SYSTEM_ERROR on a follower (Java validateSlave), OK on the leader
    // (answered once committed through the metadata log).
    let r = call(&fc, create_topic("GroupTopic")).await;
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert!(r.remark.unwrap_or_default().contains("slave"));
    assert_eq!(
        call(&lc, create_topic("GroupTopic")).await.code,
        response::SUCCESS
    );
    for f in &followers {
        let b = g.brokers[*f].as_ref().unwrap();
        eventually("topic replicated", || async {
            b.ctx.topic_config.contains("GroupTopic").then_some(())
        })
        .await;
    }
    assert_eq!(
        route_master(&g.ns_addr, "GroupTopic").await.as_deref(),
        Some(g.addr(leader).as_str())
    );

    // Sends: the leader stores, a follower refuses with SERVICE_NOT_AVAILABLE (retried
    // on another broker by Java clients).
    let ok = call(&lc, send("GroupTopic")).await;
    assert_eq!(ok.code, response::SUCCESS, "{:?}", ok.remark);
    let refused = call(&fc, send("GroupTopic")).await;
    assert_eq!(refused.code, response::SERVICE_NOT_AVAILABLE);

    // Pulls on followers: committed data with slaveReadEnable, else "retry at the master".
    for f in &followers {
        let b = g.brokers[*f].as_ref().unwrap();
        let c = connect(&g.addr(*f)).await;
        if b.ctx.config.slave_read_enable {
            let body = eventually("follower serves the message", || async {
                let r = call(&c, pull("GroupTopic", 0, 0)).await;
                (r.code == response::SUCCESS).then_some(r.body)
            })
            .await;
            let msgs = store::message::decode_messages(&body).unwrap();
            assert_eq!(&msgs[0].body[..], b"hello group");
        } else {
            let r = call(&c, pull("GroupTopic", 0, 0)).await;
            assert_eq!(r.code, response::PULL_RETRY_IMMEDIATELY);
            assert_eq!(r.ext("suggestWhichBrokerId"), Some("0"));
        }
    }

    // A send-back reaching a follower (clients address it by the record's STOREHOST) is
    // forwarded to the leader: delay level -1 dead-letters it into %DLQ%GG there.
    let lp = call(&lc, pull("GroupTopic", 0, 0)).await;
    assert_eq!(lp.code, response::SUCCESS);
    let phys = store::message::decode_messages(&lp.body).unwrap()[0].commit_log_offset;
    let mut back = RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK);
    for (k, v) in [
        ("offset", phys.to_string()),
        ("group", "GG".to_string()),
        ("delayLevel", "-1".to_string()),
        ("originTopic", "GroupTopic".to_string()),
        ("unitMode", "false".to_string()),
        ("maxReconsumeTimes", "16".to_string()),
    ] {
        back.ext_fields.insert(k, v);
    }
    let r = call(&fc, back).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let leader_ctx = &g.brokers[leader].as_ref().unwrap().ctx;
    assert!(leader_ctx.topic_config.contains("%DLQ%GG"));

    // An orderly consumer's queue lock asked from a follower (stale route) is forwarded to
    // the leader and replicated: it survives the failover below.
    let locked = call(&fc, lock_cmd(request::LOCK_BATCH_MQ, "client-1", &[0, 1])).await;
    assert_eq!(locked_queues(&locked), vec![0, 1]);

    // An offset commit reaching a follower is forwarded to the leader.
    let up = call(
        &fc,
        offset_cmd(request::UPDATE_CONSUMER_OFFSET, "GroupTopic", 0, Some(1)),
    )
    .await;
    assert_eq!(up.code, response::SUCCESS, "{:?}", up.remark);
    let q = call(
        &lc,
        offset_cmd(request::QUERY_CONSUMER_OFFSET, "GroupTopic", 0, None),
    )
    .await;
    assert_eq!((q.code, q.ext("offset")), (response::SUCCESS, Some("1")));
    // ... and replicated (coalesced batch) to every follower.
    for f in &followers {
        let b = g.brokers[*f].as_ref().unwrap();
        eventually("offset replicated", || async {
            (b.ctx.consumer_offsets.query("GG", "GroupTopic", 0) == Some(1)).then_some(())
        })
        .await;
    }
    // A later commit on the leader, then a graceful stop: nothing committed goes back.
    let up = call(
        &lc,
        offset_cmd(request::UPDATE_CONSUMER_OFFSET, "GroupTopic", 1, Some(7)),
    )
    .await;
    assert_eq!(up.code, response::SUCCESS);
    drop((lc, fc));

    let old = g.brokers[leader].take().unwrap();
    old.shutdown().await;
    let new_leader = g.master().await;
    assert_ne!(new_leader, leader);
    let new_addr = g.addr(new_leader);
    eventually("new master in the NameServer route", || async {
        (route_master(&g.ns_addr, "GroupTopic").await.as_deref() == Some(new_addr.as_str()))
            .then_some(())
    })
    .await;

    // Metadata survived: the topic exists, both committed offsets are there.
    let nc = connect(&new_addr).await;
    for (q, want) in [(0, "1"), (1, "7")] {
        let r = call(
            &nc,
            offset_cmd(request::QUERY_CONSUMER_OFFSET, "GroupTopic", q, None),
        )
        .await;
        assert_eq!((r.code, r.ext("offset")), (response::SUCCESS, Some(want)));
    }
    let ok = call(&nc, send("GroupTopic")).await;
    assert_eq!(ok.code, response::SUCCESS, "{:?}", ok.remark);
    let other = call(
        &nc,
        lock_cmd(request::LOCK_BATCH_MQ, "client-2", &[0, 1, 2]),
    )
    .await;
    assert_eq!(locked_queues(&other), vec![2], "client-1 keeps its locks");
    let all = call(&nc, RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG)).await;
    let v: serde_json::Value = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(v["topicConfigTable"]["GroupTopic"]["readQueueNums"], 2);
    drop(nc);
    g.stop().await;
}

/// Creates `topic` on the master and commits offset 42 of queue 0 for group GG.
async fn topic_with_committed_offset(g: &Group, topic: &str) -> RemotingClient {
    let leader = g.master().await;
    let lc = connect(&g.addr(leader)).await;
    assert_eq!(call(&lc, create_topic(topic)).await.code, response::SUCCESS);
    let up = call(
        &lc,
        offset_cmd(request::UPDATE_CONSUMER_OFFSET, topic, 0, Some(42)),
    )
    .await;
    assert_eq!(up.code, response::SUCCESS);
    lc
}

/// Deletes every node's local metadata files: only the replicated log can restore them.
fn forget_local_metadata(dirs: &[tempfile::TempDir]) {
    for d in dirs {
        for f in [
            "topics.json",
            "consumerOffset.json",
            "subscriptionGroup.json",
        ] {
            let p = d.path().join("config").join(f);
            if p.exists() {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
}

/// Every node knows `topic` and GG's committed offset 42 on queue 0.
async fn assert_metadata_rebuilt(g: &Group, topic: &str) {
    for b in g.brokers.iter().flatten() {
        eventually("topic and offset rebuilt from the log", || async {
            (b.ctx.topic_config.contains(topic)
                && b.ctx.consumer_offsets.query("GG", topic, 0) == Some(42))
            .then_some(())
        })
        .await;
    }
}

/// After a full stop, the replicated log alone restores the metadata: the local JSON
/// files are deleted before the restart and every node rebuilds topics and offsets by
/// replaying the metadata entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_is_rebuilt_from_the_log_after_a_full_restart() {
    let g = Group::start().await;
    drop(topic_with_committed_offset(&g, "LogTopic").await);
    let (dirs, dl_ports, broker_ports) = g.stop().await;
    forget_local_metadata(&dirs);

    let g = Group::start_in(dirs, dl_ports, broker_ports).await;
    let leader = g.master().await;
    assert_metadata_rebuilt(&g, "LogTopic").await;
    let lc = connect(&g.addr(leader)).await;
    let q = call(
        &lc,
        offset_cmd(request::QUERY_CONSUMER_OFFSET, "LogTopic", 0, None),
    )
    .await;
    assert_eq!((q.code, q.ext("offset")), (response::SUCCESS, Some("42")));
    drop(lc);
    g.stop().await;
}

/// Delay delivery follows the role: only the master moves a due message to its topic, and
/// its progress reaches the followers through the metadata log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delayed_messages_are_delivered_once_by_the_master() {
    let g = Group::start().await;
    let leader = g.master().await;
    let lc = connect(&g.addr(leader)).await;
    assert_eq!(
        call(&lc, create_topic("DelayTopic")).await.code,
        response::SUCCESS
    );
    // DELAY=1: level 1 (1 s).
    let r = call(&lc, send_with_props("DelayTopic", "DELAY\u{1}1\u{2}")).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    for b in g.brokers.iter().flatten() {
        eventually("delay progress replicated", || async {
            (b.ctx.schedule.offset(1) == 1).then_some(())
        })
        .await;
    }
    // Delivered exactly once (by the master): one message in the real topic everywhere.
    for (i, b) in g.brokers.iter().enumerate() {
        let b = b.as_ref().unwrap();
        eventually("delivered message dispatched", || async {
            (b.ctx.store.max_offset_in_queue("DelayTopic", 0) >= 1).then_some(())
        })
        .await;
        assert_eq!(
            b.ctx.store.max_offset_in_queue("DelayTopic", 0),
            1,
            "node {i}"
        );
    }
    let body = call(&lc, RemotingCommand::request(request::GET_ALL_DELAY_OFFSET)).await;
    assert_eq!(body.code, response::SUCCESS);
    assert!(
        String::from_utf8_lossy(&body.body).contains("1:1"),
        "{:?}",
        body.body
    );
    drop(lc);
    g.stop().await;
}

/// Small segments, everything expired at once, a metadata checkpoint every 300 ms.
fn retention_config(c: &mut BrokerConfig) {
    c.max_message_size = 16 * 1024;
    c.mapped_file_size_commit_log = 128 * 1024;
    c.file_reserved_time = 0;
    c.dleger_metadata_checkpoint_interval_ms = 300;
}

/// Retention in group mode: after a metadata checkpoint, every replica deletes its old log
/// segments, and what is left still rebuilds all metadata after a full restart without the
/// local config files (the checkpoint's full round is kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_deletes_old_segments_and_the_log_still_rebuilds_all_metadata() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports = |_| (0..3).map(|_| free_port()).collect::<Vec<u16>>();
    let g = Group::start_tuned(dirs, ports(()), ports(()), retention_config).await;
    let lc = topic_with_committed_offset(&g, "KeepTopic").await;
    let leader = g.master().await;
    // ~450 KiB of messages: more than three 128 KiB segments.
    let body = Bytes::from(vec![b'k'; 3000]);
    for _ in 0..150 {
        let r = call(&lc, send_body("KeepTopic", body.clone())).await;
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    }
    drop(lc);
    let last = g.brokers[leader]
        .as_ref()
        .unwrap()
        .ctx
        .store
        .dledger_status()
        .await
        .expect("dledger status")
        .last_index;
    let seg = 128 * 1024;
    for b in g.brokers.iter().flatten() {
        let floor = &b.ctx.group.as_ref().expect("group mode").retention_floor;
        // A checkpoint whose round began after every send.
        eventually("a checkpoint after the sends", || async {
            (floor.load(std::sync::atomic::Ordering::Acquire) > last).then_some(())
        })
        .await;
        let store = &b.ctx.store;
        eventually("old segments deleted", || async {
            store.delete_expired_files(true);
            (store.commit_log_min_offset() >= 3 * seg).then_some(())
        })
        .await;
        eventually("consume queue trimmed", || async {
            store.delete_expired_files(true);
            (store.min_offset_in_queue("KeepTopic", 0) > 0).then_some(())
        })
        .await;
    }

    let (dirs, dl_ports, broker_ports) = g.stop().await;
    forget_local_metadata(&dirs);
    let g = Group::start_tuned(dirs, dl_ports, broker_ports, retention_config).await;
    g.master().await;
    assert_metadata_rebuilt(&g, "KeepTopic").await;
    for b in g.brokers.iter().flatten() {
        assert!(b.ctx.store.commit_log_min_offset() >= 3 * seg);
    }
    g.stop().await;
}
