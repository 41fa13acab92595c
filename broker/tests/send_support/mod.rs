//! Shared helpers for the send/pull/schedule integration tests: a `BrokerContext` over a
//! temporary store (no network), request builders and record decoding.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::client::{ConsumerManager, ProducerManager};
use broker::config::BrokerConfig;
use broker::consumer_offset::ConsumerOffsetManager;
use broker::context::{BrokerContext, RegisterTrigger};
use broker::lock_manager::RebalanceLockManager;
use broker::processor::pull;
use broker::processor::send;
use broker::subscription_group::SubscriptionGroupManager;
use broker::topic_config::TopicConfigManager;
use bytes::Bytes;
use remoting::codes::request;
use remoting::headers::pull::{sys_flag, PullMessageRequestHeader};
use remoting::headers::send::SendMessageRequestHeaderV2;
use remoting::shutdown::Shutdown;
use remoting::RemotingCommand;
use store::message::MessageExt;

pub const STORE_HOST: &str = "127.0.0.1:10911";
pub const BORN_HOST: &str = "127.0.0.1:40000";

pub struct TestBroker {
    pub ctx: Arc<BrokerContext>,
    pub dir: tempfile::TempDir,
}

pub fn born_host() -> SocketAddr {
    BORN_HOST.parse().expect("literal address")
}

impl TestBroker {
    /// A context over a fresh temp dir; long polling wired to the store. The schedule
    /// service is started only when `with_schedule`.
    pub async fn start(with_schedule: bool) -> TestBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        TestBroker::start_in(dir, with_schedule).await
    }

    pub async fn start_in(dir: tempfile::TempDir, with_schedule: bool) -> TestBroker {
        let cfg = Arc::new(BrokerConfig {
            store_path_root_dir: dir.path().to_string_lossy().into_owned(),
            mapped_file_size_commit_log: 8 * 1024 * 1024,
            mapped_file_size_consume_queue: 1000 * 20,
            max_message_size: 64 * 1024,
            ..BrokerConfig::default()
        });
        let store_host: SocketAddr = STORE_HOST.parse().expect("literal address");
        let sc = broker::controller::store_config(&cfg, store_host);
        let c = cfg.clone();
        let (store, topics, groups, offsets) = tokio::task::spawn_blocking(move || {
            (
                store::MessageStore::open(sc).expect("store opens"),
                TopicConfigManager::open(c.clone(), true).expect("topics"),
                SubscriptionGroupManager::open(c.clone(), true).expect("groups"),
                ConsumerOffsetManager::open(&c, true).expect("offsets"),
            )
        })
        .await
        .expect("open task");
        let ctx = Arc::new(BrokerContext {
            config: cfg.clone(),
            store,
            topic_config: topics,
            subscription_groups: groups,
            consumer_offsets: offsets,
            consumer_manager: Arc::new(ConsumerManager::new()),
            producer_manager: Arc::new(ProducerManager::new()),
            lock_manager: Arc::new(RebalanceLockManager::default()),
            pull_hold: Arc::new(broker::long_polling::PullRequestHoldService::new()),
            schedule: Arc::new(broker::schedule::ScheduleMessageService::new()),
            register: Arc::new(RegisterTrigger::default()),
            broker_addr: cfg.broker_addr(),
            store_host,
            shutdown: Shutdown::new(),
            // Single-replica: a constant master role.
            role: tokio::sync::watch::channel(broker::group::Role::single(&cfg)).1,
            group: None,
        });
        ctx.pull_hold.start(ctx.clone());
        if with_schedule {
            ctx.schedule.start(ctx.clone());
        }
        TestBroker { ctx, dir }
    }

    /// Stop background tasks and close the store; returns the directory for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        self.ctx.shutdown.trigger();
        let schedule = self.ctx.schedule.clone();
        tokio::task::spawn_blocking(move || schedule.persist_blocking())
            .await
            .expect("persist task")
            .expect("delayOffset.json written");
        let store = self.ctx.store.clone();
        tokio::task::spawn_blocking(move || store.shutdown())
            .await
            .expect("store shutdown");
        self.dir
    }

    /// Sends a copy: the processor consumes the request's extFields.
    pub async fn send(&self, req: &RemotingCommand) -> RemotingCommand {
        self.send_owned(req.clone()).await
    }

    /// Sends `req` itself, as the server does with a decoded request.
    pub async fn send_owned(&self, mut req: RemotingCommand) -> RemotingCommand {
        send::send_message(&self.ctx, &mut req, born_host()).await
    }

    pub async fn pull(&self, req: &RemotingCommand) -> RemotingCommand {
        pull::process_pull(&self.ctx, req).await
    }

    /// Wait until every record written so far is dispatched (consume queues, index).
    pub async fn wait_dispatched(&self) {
        let store = self.ctx.store.clone();
        let reached = tokio::task::spawn_blocking(move || {
            let max = store.commit_log_max_offset();
            store.wait_dispatched(max, Duration::from_secs(10))
        })
        .await
        .expect("wait task");
        assert!(reached, "dispatcher did not catch up within 10 s");
    }
}

/// Properties string from pairs (`k\x01v\x02`).
pub fn props(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in pairs {
        s.push_str(k);
        s.push('\u{1}');
        s.push_str(v);
        s.push('\u{2}');
    }
    s
}

/// A SEND_MESSAGE_V2 request as the Java client builds it.
pub fn send_request(topic: &str, queue_id: i32, properties: &str, body: &[u8]) -> RemotingCommand {
    let header = SendMessageRequestHeaderV2 {
        a: "test_producer".into(),
        b: topic.into(),
        c: "TBW102".into(),
        d: 4,
        e: queue_id,
        f: 0,
        g: 1_700_000_000_000,
        h: 0,
        i: Some(properties.to_string()),
        j: Some(0),
        k: Some(false),
        l: None,
        m: Some(false),
        n: None,
    };
    RemotingCommand::request_with_header(request::SEND_MESSAGE_V2, &header)
        .with_body(Bytes::copy_from_slice(body))
}

/// A pull carrying its own subscription expression (pull/lite consumers do this).
pub fn pull_request(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    expression: &str,
    suspend_ms: Option<i64>,
) -> RemotingCommand {
    let header = PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: sys_flag::SUBSCRIPTION
            | if suspend_ms.is_some() {
                sys_flag::SUSPEND
            } else {
                0
            },
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms.unwrap_or(0),
        subscription: Some(expression.into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        ..Default::default()
    };
    RemotingCommand::request_with_header(request::PULL_MESSAGE, &header)
}

pub fn ext_i64(cmd: &RemotingCommand, key: &str) -> i64 {
    cmd.ext(key)
        .unwrap_or_else(|| panic!("missing ext field {key} in {cmd:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("ext field {key} is not a number"))
}

/// Decode a pull/query body into messages.
pub fn decode(body: &Bytes) -> Vec<MessageExt> {
    store::message::decode_messages(body).expect("body decodes as records")
}

/// Long-poll one queue from `offset` until at least one message is there.
pub async fn pull_one(
    b: &TestBroker,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> MessageExt {
    let resp = b
        .pull(&pull_request(
            group,
            topic,
            queue_id,
            offset,
            "*",
            Some(15_000),
        ))
        .await;
    assert_eq!(
        resp.code,
        remoting::codes::response::SUCCESS,
        "pull {topic}:{queue_id}@{offset}: {resp:?}"
    );
    decode(&resp.body_contiguous())
        .into_iter()
        .next()
        .expect("one message")
}
