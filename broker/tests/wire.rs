//! End-to-end tests of broker A's processors over real TCP connections (remoting client).

mod lock_support;

use std::sync::Arc;
use std::time::Duration;

use broker::config::BrokerConfig;
use broker::controller::Broker;
use lock_support::locked_queues;
use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::{ClientConfig, RemotingClient, RemotingCommand};
use tokio::sync::mpsc;

const TIMEOUT_MS: u64 = 5_000;

fn test_config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig::for_test(dir)
}

/// Captures server→client requests (NOTIFY_CONSUMER_IDS_CHANGED).
struct Capture(mpsc::UnboundedSender<RemotingCommand>);

impl RequestProcessor for Capture {
    fn process(&self, _ctx: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
        let _ = self.0.send(req);
        Box::pin(async { Ok(None) })
    }
}

async fn client(
    addr: std::net::SocketAddr,
) -> (RemotingClient, mpsc::UnboundedReceiver<RemotingCommand>) {
    let c = RemotingClient::connect(&addr.to_string(), ClientConfig::default())
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    c.set_request_handler(Arc::new(Capture(tx)));
    (c, rx)
}

async fn call(c: &RemotingClient, cmd: RemotingCommand) -> RemotingCommand {
    c.invoke(cmd, TIMEOUT_MS).await.unwrap()
}

fn heartbeat(client_id: &str, group: &str) -> RemotingCommand {
    // The C++/Node habits: enum ordinals, subVersion as a string, no tagsSet/codeSet/unitMode.
    let body = format!(
        r#"{{"clientID":"{client_id}","consumerDataSet":[{{"consumeFromWhere":4,"consumeType":1,"groupName":"{group}",
        "messageModel":1,"subscriptionDataSet":[{{"subString":"TagA || TagB","subVersion":"1700000000000","topic":"T1"}}]}}],
        "producerDataSet":[{{"groupName":"PG"}}]}}"#
    );
    RemotingCommand::request(request::HEART_BEAT).with_body(body.into_bytes())
}

fn consumer_list(group: &str) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP);
    cmd.ext_fields.insert("consumerGroup", group);
    cmd
}

async fn next_notify(rx: &mut mpsc::UnboundedReceiver<RemotingCommand>) -> RemotingCommand {
    tokio::time::timeout(Duration::from_millis(TIMEOUT_MS), rx.recv())
        .await
        .expect("NOTIFY_CONSUMER_IDS_CHANGED within the timeout")
        .expect("channel open")
}

fn ids(resp: &RemotingCommand) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let mut ids: Vec<String> = v["consumerIdList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_membership_and_notify() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let addr = broker.local_addr();
    let ctx = broker.ctx.clone();

    let (a, mut a_rx) = client(addr).await;
    let resp = call(&a, heartbeat("10.0.0.1@a", "CG")).await;
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    assert!(
        resp.version >= 407,
        "clients read the broker version from here"
    );
    // First member: notified of its own arrival, like Java.
    assert_eq!(
        next_notify(&mut a_rx).await.code,
        request::NOTIFY_CONSUMER_IDS_CHANGED
    );

    // Group state from the lenient body.
    let sub = ctx.consumer_manager.find_subscription("CG", "T1").unwrap();
    assert_eq!(sub.sub_version, 1_700_000_000_000);
    assert_eq!(sub.tags_set.len(), 2);
    assert!(
        ctx.topic_config.get("%RETRY%CG").is_some(),
        "retry topic created by heartbeat"
    );
    assert!(
        ctx.subscription_groups.get("CG").is_some(),
        "group auto-created"
    );
    assert!(ctx.producer_manager.get_available_channel("PG").is_some());

    // A repeated heartbeat changes nothing: no notification.
    assert_eq!(
        call(&a, heartbeat("10.0.0.1@a", "CG")).await.code,
        response::SUCCESS
    );

    // Second member joins: A is told.
    let (b, mut b_rx) = client(addr).await;
    assert_eq!(
        call(&b, heartbeat("10.0.0.2@b", "CG")).await.code,
        response::SUCCESS
    );
    let n = next_notify(&mut a_rx).await;
    assert_eq!(n.ext("consumerGroup"), Some("CG"));
    assert!(n.is_oneway());
    next_notify(&mut b_rx).await;
    assert!(
        a_rx.try_recv().is_err(),
        "the repeated heartbeat must not have notified"
    );
    let resp = call(&a, consumer_list("CG")).await;
    assert_eq!(ids(&resp), vec!["10.0.0.1@a", "10.0.0.2@b"]);

    // B's connection closes: A is told and the list shrinks.
    b.close();
    next_notify(&mut a_rx).await;
    assert_eq!(
        ids(&call(&a, consumer_list("CG")).await),
        vec!["10.0.0.1@a"]
    );

    // A unregisters: the group is gone.
    let mut unreg = RemotingCommand::request(request::UNREGISTER_CLIENT);
    unreg.ext_fields.insert("clientID", "10.0.0.1@a");
    unreg.ext_fields.insert("consumerGroup", "CG");
    unreg.ext_fields.insert("producerGroup", "PG");
    assert_eq!(call(&a, unreg).await.code, response::SUCCESS);
    assert_eq!(
        call(&a, consumer_list("CG")).await.code,
        response::SYSTEM_ERROR
    );
    assert!(ctx.producer_manager.get_available_channel("PG").is_none());

    // A malformed body is an error response, not a dropped connection.
    let bad = RemotingCommand::request(request::HEART_BEAT).with_body(&b"{nope"[..]);
    assert_eq!(call(&a, bad).await.code, response::SYSTEM_ERROR);
    broker.shutdown().await;
}

fn offset_cmd(code: i32, q: i32, commit: Option<i64>) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code);
    cmd.ext_fields.insert("consumerGroup", "G");
    cmd.ext_fields.insert("topic", "T");
    cmd.ext_fields.insert("queueId", q.to_string());
    if let Some(o) = commit {
        cmd.ext_fields.insert("commitOffset", o.to_string());
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let (c, _rx) = client(broker.local_addr()).await;
    let none = call(&c, offset_cmd(request::QUERY_CONSUMER_OFFSET, 0, None)).await;
    assert_eq!(none.code, response::QUERY_NOT_FOUND);
    let up = call(&c, offset_cmd(request::UPDATE_CONSUMER_OFFSET, 0, Some(42))).await;
    assert_eq!(up.code, response::SUCCESS);
    let q = call(&c, offset_cmd(request::QUERY_CONSUMER_OFFSET, 0, None)).await;
    assert_eq!((q.code, q.ext("offset")), (response::SUCCESS, Some("42")));
    drop(c);
    broker.shutdown().await;

    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let (c, _rx) = client(broker.local_addr()).await;
    let q = call(&c, offset_cmd(request::QUERY_CONSUMER_OFFSET, 0, None)).await;
    assert_eq!((q.code, q.ext("offset")), (response::SUCCESS, Some("42")));
    let q1 = call(&c, offset_cmd(request::QUERY_CONSUMER_OFFSET, 1, None)).await;
    assert_eq!(q1.code, response::QUERY_NOT_FOUND);
    broker.shutdown().await;
}

fn lock_cmd(code: i32, client_id: &str, queues: &[i32]) -> RemotingCommand {
    lock_support::lock_cmd(code, "T", "CG", client_id, queues)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_unlock_batch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let (c, _rx) = client(broker.local_addr()).await;
    assert_eq!(
        locked_queues(&call(&c, lock_cmd(request::LOCK_BATCH_MQ, "c1", &[0, 1])).await),
        vec![0, 1]
    );
    assert_eq!(
        locked_queues(&call(&c, lock_cmd(request::LOCK_BATCH_MQ, "c2", &[1, 2])).await),
        vec![2]
    );
    let un = call(&c, lock_cmd(request::UNLOCK_BATCH_MQ, "c1", &[1])).await;
    assert_eq!(un.code, response::SUCCESS);
    assert_eq!(
        locked_queues(&call(&c, lock_cmd(request::LOCK_BATCH_MQ, "c2", &[1])).await),
        vec![1]
    );
    // c1 still holds queue 0; when it unregisters (shutdown) its locks are released.
    assert!(
        locked_queues(&call(&c, lock_cmd(request::LOCK_BATCH_MQ, "c2", &[0])).await).is_empty()
    );
    let mut unreg = RemotingCommand::request(request::UNREGISTER_CLIENT);
    unreg.ext_fields.insert("clientID", "c1");
    unreg.ext_fields.insert("consumerGroup", "CG");
    assert_eq!(call(&c, unreg).await.code, response::SUCCESS);
    assert_eq!(
        locked_queues(&call(&c, lock_cmd(request::LOCK_BATCH_MQ, "c2", &[0])).await),
        vec![0]
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_admin_and_namesrv_registration() {
    let dir = tempfile::tempdir().unwrap();
    let ns_port = testkit::free_port();
    let ns_addr = format!("127.0.0.1:{ns_port}");
    let config = BrokerConfig {
        with_namesrv: Some(ns_addr.clone()),
        ..test_config(dir.path())
    };
    let broker = Broker::start(config).await.unwrap();
    let (c, _rx) = client(broker.local_addr()).await;
    let ns = RemotingClient::connect(&ns_addr, ClientConfig::default())
        .await
        .unwrap();
    let route = |topic: &str| {
        let mut cmd = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC);
        cmd.ext_fields.insert("topic", topic);
        cmd
    };
    // Registered at start: TBW102 is routable.
    let r = call(&ns, route("TBW102")).await;
    assert_eq!(r.code, response::SUCCESS);
    assert!(String::from_utf8_lossy(&r.body).contains(&broker.local_addr().to_string()));

    let mut create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC);
    for (k, v) in [
        ("topic", "AdminTopic"),
        ("defaultTopic", "TBW102"),
        ("readQueueNums", "3"),
        ("writeQueueNums", "3"),
        ("perm", "6"),
        ("topicFilterType", "SINGLE_TAG"),
        ("order", "false"),
    ] {
        create.ext_fields.insert(k, v);
    }
    assert_eq!(call(&c, create.clone()).await.code, response::SUCCESS);
    let all = call(&c, RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG)).await;
    let v: serde_json::Value = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(v["topicConfigTable"]["AdminTopic"]["readQueueNums"], 3);

    // The new topic reaches the NameServer without waiting for the 30 s period.
    let mut routed = false;
    for _ in 0..100 {
        if call(&ns, route("AdminTopic")).await.code == response::SUCCESS {
            routed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(routed, "topic change re-registered at once");

    // System topics cannot be created.
    create.ext_fields.insert("topic", "TBW102");
    assert_eq!(call(&c, create).await.code, response::SYSTEM_ERROR);

    let mut del = RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER);
    del.ext_fields.insert("topic", "AdminTopic");
    assert_eq!(call(&c, del).await.code, response::SUCCESS);
    assert!(broker.ctx.topic_config.get("AdminTopic").is_none());

    let info = call(
        &c,
        RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert!(v["table"]["commitLogMaxOffset"].is_string());
    assert_eq!(v["table"]["brokerRole"], "ASYNC_MASTER");
    assert!(v["table"].get("dLegerTerm").is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn young_queue_answers_zero_and_disabled_by_set_zero_if_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let msg = store::MessageToStore::new("T", 0, bytes::Bytes::from_static(b"x"), String::new());
    broker.ctx.store.put_message(msg).await.unwrap();
    let (c, _rx) = client(broker.local_addr()).await;
    // Queue 0 holds a message and nothing was ever deleted: Java answers offset 0.
    let q = call(&c, offset_cmd(request::QUERY_CONSUMER_OFFSET, 0, None)).await;
    assert_eq!((q.code, q.ext("offset")), (response::SUCCESS, Some("0")));
    // 5.x setZeroIfNotFound=false: always QUERY_NOT_FOUND.
    let mut strict = offset_cmd(request::QUERY_CONSUMER_OFFSET, 0, None);
    strict.ext_fields.insert("setZeroIfNotFound", "false");
    assert_eq!(call(&c, strict).await.code, response::QUERY_NOT_FOUND);
    // Queue 1 is empty.
    let q1 = call(&c, offset_cmd(request::QUERY_CONSUMER_OFFSET, 1, None)).await;
    assert_eq!(q1.code, response::QUERY_NOT_FOUND);
    // ali-ons commits -1 for queues it never consumed: still "no offset".
    let up = call(&c, offset_cmd(request::UPDATE_CONSUMER_OFFSET, 1, Some(-1))).await;
    assert_eq!(up.code, response::SUCCESS);
    let q1 = call(&c, offset_cmd(request::QUERY_CONSUMER_OFFSET, 1, None)).await;
    assert_eq!(q1.code, response::QUERY_NOT_FOUND);
    broker.shutdown().await;
}

/// Answers GET_CONSUMER_RUNNING_INFO like a client would.
struct RunningInfoResponder;

impl RequestProcessor for RunningInfoResponder {
    fn process(&self, _ctx: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
        let resp = RemotingCommand::response_to(&req, response::SUCCESS).with_body(
            format!(r#"{{"asked":"{}"}}"#, req.ext("clientId").unwrap_or("")).into_bytes(),
        );
        Box::pin(async move { Ok(Some(resp)) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_running_info_is_forwarded_to_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let consumer =
        RemotingClient::connect(&broker.local_addr().to_string(), ClientConfig::default())
            .await
            .unwrap();
    consumer.set_request_handler(Arc::new(RunningInfoResponder));
    assert_eq!(
        call(&consumer, heartbeat("10.0.0.9@c", "CG9")).await.code,
        response::SUCCESS
    );

    let (admin, _rx) = client(broker.local_addr()).await;
    let mut ask = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO);
    ask.ext_fields.insert("consumerGroup", "CG9");
    ask.ext_fields.insert("clientId", "10.0.0.9@c");
    let resp = call(&admin, ask.clone()).await;
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    assert_eq!(&resp.body[..], br#"{"asked":"10.0.0.9@c"}"#);

    ask.ext_fields.insert("clientId", "nobody");
    assert_eq!(call(&admin, ask).await.code, response::SYSTEM_ERROR);

    let mut conns = RemotingCommand::request(request::GET_CONSUMER_CONNECTION_LIST);
    conns.ext_fields.insert("consumerGroup", "CG9");
    let resp = call(&admin, conns).await;
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["connectionSet"][0]["clientId"], "10.0.0.9@c");
    assert_eq!(v["consumeFromWhere"], "CONSUME_FROM_FIRST_OFFSET");
    assert_eq!(v["subscriptionTable"]["T1"]["subString"], "TagA || TagB");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_channels_expire() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let (a, _rx) = client(broker.local_addr()).await;
    assert_eq!(
        call(&a, heartbeat("10.0.0.1@a", "CGX")).await.code,
        response::SUCCESS
    );
    let ctx = &broker.ctx;
    // Nothing expires within 120 s of the last heartbeat...
    let soon = broker::topic_config::now_ms() + 60_000;
    assert!(ctx
        .consumer_manager
        .scan_not_active_channel(soon)
        .is_empty());
    assert_eq!(ctx.consumer_manager.client_ids("CGX"), vec!["10.0.0.1@a"]);
    // ...after that the channel is dropped and its connection closed.
    let later = broker::topic_config::now_ms() + 121_000;
    let changes = ctx.consumer_manager.scan_not_active_channel(later);
    assert_eq!(changes.len(), 1);
    assert!(ctx.consumer_manager.client_ids("CGX").is_empty());
    tokio::time::timeout(Duration::from_millis(TIMEOUT_MS), a.closed())
        .await
        .expect("expired connection closed by the broker");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_reports_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        broker_ip1: "not-an-ip".into(),
        ..test_config(dir.path())
    };
    let err = Broker::start(config).await.err().expect("start must fail");
    assert!(err.to_string().contains("brokerIP1"), "{err}");
}
