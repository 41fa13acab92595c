//! Compatibility scenarios with rocketmq-client-cpp 1.x (PyPI `rocketmq==0.4.4`) against our
//! namesrv + single-replica broker, run as real processes.
//!
//! The scripts live in tests/clients/cpp/cpp_client.py. The C++ push consumer starts from
//! CONSUME_FROM_LAST_OFFSET (not configurable through the binding); like Java's broker, ours must
//! answer a new group's offset query on a young queue with 0 so messages sent before the
//! consumer started are delivered (docs/protocol/codes.md §3.7).

use std::collections::BTreeMap;

use tests::check::{acked_bodies, assert_delivered, received_by_body, sent_by_body};
use tests::scenario;
use tests::script::{run, ScriptOutput};
use tests::{BrokerOptions, ClientKind, Cluster};

const QUEUES: i32 = 4;
const SCRIPT: &str = "cpp_client.py";
/// Script deadline; the harness waits a little longer before killing it.
const SCRIPT_TIMEOUT_MS: u64 = 90_000;
/// First redelivery comes after delay level 3 (10 s) on a Java-compatible broker.
const REDELIVERY_TIMEOUT_MS: u64 = 120_000;

const CPP: scenario::Client = scenario::Client {
    kind: ClientKind::Cpp,
    script: SCRIPT,
    queues: QUEUES,
    timeout_ms: SCRIPT_TIMEOUT_MS,
    label: "C++ consumer",
};

fn cluster_with_topic(topic: &str) -> Cluster {
    scenario::cluster_with_topic(topic, QUEUES)
}

fn cpp(c: &Cluster, args: &[&str], timeout_ms: u64) -> ScriptOutput {
    scenario::run_client(ClientKind::Cpp, SCRIPT, c, args, timeout_ms)
}

fn produce(c: &Cluster, args: &[&str]) -> ScriptOutput {
    scenario::produce_with(ClientKind::Cpp, SCRIPT, c, args, SCRIPT_TIMEOUT_MS)
}

/// Messages in the store's consume queues of `topic`, once they reach `expected` or 5 s pass.
/// Consume queues are built asynchronously after the send is acknowledged (as in Java's
/// ReputMessageService), so GET_MAX_OFFSET may briefly lag the acknowledged sends; a count
/// that never reaches `expected` (e.g. a batch stored as one message) is returned as it is.
fn total_in_store(c: &Cluster, topic: &str, expected: i64) -> i64 {
    let count = || {
        c.admin_broker()
            .and_then(|mut a| a.total_messages(topic, QUEUES))
            .expect("GET_MAX_OFFSET")
    };
    let mut last = count();
    // Bounded: the deadline ends the wait whether or not the count settles.
    let _ = c.wait_for(
        "consume queues to reach the acknowledged count",
        5_000,
        || {
            last = count();
            Ok(last >= expected)
        },
    );
    last
}

fn committed_total(c: &Cluster, group: &str, topic: &str) -> i64 {
    scenario::committed_total(c, group, topic, QUEUES)
}

#[test]
fn cpp_sync_async_oneway_and_large_sends_are_all_consumed() {
    let topic = "CppSendModes";
    let c = cluster_with_topic(topic);
    #[rustfmt::skip]
    let sent = produce(&c, &[
        "--topic", topic, "--prefix", "modes", "--tags", "TagA,TagB",
        "--sync", "10", "--async", "10", "--oneway", "5", "--large", "3",
    ]);
    let sent = sent_by_body(&sent);
    assert_eq!(sent.len(), 28);

    // Oneway sends are unacknowledged: wait until the broker holds all 28 before consuming
    // (a timeout here is reported by the count assertion below).
    let _ = c.wait_for("28 messages in the store", 30_000, || {
        Ok(c.admin_broker()?.total_messages(topic, QUEUES)? >= 28)
    });
    assert_eq!(
        total_in_store(&c, topic, 28),
        28,
        "messages in the store (sum of GET_MAX_OFFSET)"
    );

    #[rustfmt::skip]
    let out = cpp(&c, &["consume", "--topic", topic, "--group", "cpp_cg_modes", "--expect", "28"],
        SCRIPT_TIMEOUT_MS);
    let dups = assert_delivered(&sent, &out, "C++ push consumer");
    eprintln!("duplicates delivered: {dups}");

    // Large single messages (> 4 KiB) are compressed by the client: stored with sysFlag bit 0,
    // delivered inflated.
    let mut admin = c.admin_broker().expect("admin");
    for (body, s) in sent.iter().filter(|(b, _)| b.contains("|large|")) {
        let key = s.str("keys").expect("keys");
        let recs = admin.query_message(topic, key, 32, false).expect("query");
        let r = recs
            .iter()
            .find(|r| r.body_str() == *body)
            .unwrap_or_else(|| panic!("query by key {key}: {recs:?}"));
        assert_eq!(r.sys_flag & 1, 1, "large body stored compressed");
    }

    // Shutdown committed the offsets.
    assert_eq!(
        committed_total(&c, "cpp_cg_modes", topic),
        28,
        "committed offsets after the consumer shut down"
    );
}

#[test]
fn cpp_batch_and_compressed_batch_are_stored_as_separate_messages() {
    let topic = "CppBatch";
    let c = cluster_with_topic(topic);
    // The C++ client sends batches as SEND_MESSAGE (10) with header batch="1" and compresses
    // the whole batch body when it exceeds 4 KiB (the big batch: 4 x ~1.5 KiB).
    #[rustfmt::skip]
    let sent = produce(&c, &[
        "--topic", topic, "--prefix", "batch", "--tags", "TagA,TagB",
        "--batch", "5", "--big-batch", "4",
    ]);
    let sent = sent_by_body(&sent);
    assert_eq!(sent.len(), 9);
    assert_eq!(
        total_in_store(&c, topic, 9),
        9,
        "messages in the store after a batch of 5 and a compressed batch of 4 (a batch stored \
         as one message counts 1)"
    );
    #[rustfmt::skip]
    let out = cpp(&c, &["consume", "--topic", topic, "--group", "cpp_cg_batch", "--expect", "9"],
        SCRIPT_TIMEOUT_MS);
    assert_delivered(&sent, &out, "C++ consumer of batch messages");
    let big: Vec<_> = sent.keys().filter(|b| b.contains("|bigbatch|")).collect();
    assert_eq!(big.len(), 4);
    assert!(big.iter().all(|b| b.len() > 1500));
    // Each inner message is indexed under its own key.
    let mut admin = c.admin_broker().expect("admin");
    for (body, s) in &sent {
        let key = s.str("keys").expect("keys");
        let recs = admin.query_message(topic, key, 32, false).expect("query");
        assert!(
            recs.iter()
                .any(|r| r.body_str() == *body && r.sys_flag & 1 == 0),
            "batch message {key} not found as its own uncompressed record: {recs:?}"
        );
    }
}

#[test]
fn cpp_tag_filter_delivers_only_subscribed_tags() {
    scenario::tag_filter_delivers_only_subscribed_tags(
        CPP,
        "CppTags",
        "cpp_cg_tags",
        ["TagA", "TagC"],
    );
}

#[test]
fn cpp_consumer_resumes_from_committed_offset() {
    scenario::consumer_resumes_from_committed_offset(CPP, "CppResume", "cpp_cg_resume", 12);
}

#[test]
fn cpp_orderly_consumer_sees_each_key_in_send_order() {
    let topic = "CppOrderly";
    let c = cluster_with_topic(topic);
    let keys = 4;
    let count = 60;
    let sent = produce(
        &c,
        &[
            "--topic",
            topic,
            "--prefix",
            "ord",
            "--orderly",
            &count.to_string(),
            "--order-keys",
            &keys.to_string(),
        ],
    );
    let sent_map = sent_by_body(&sent);
    // Same key => same queue (the selector is key % queues).
    let mut queue_of_key: BTreeMap<i64, i64> = BTreeMap::new();
    for e in sent_map.values() {
        let key = e.i64("order_key").expect("order_key");
        assert!(e.str("msg_id").is_some());
        let _ = queue_of_key.entry(key).or_insert(key % i64::from(QUEUES));
    }
    let out = cpp(
        &c,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            "cpp_cg_orderly",
            "--orderly",
            "--expect",
            &count.to_string(),
        ],
        SCRIPT_TIMEOUT_MS,
    );
    assert_delivered(&sent_map, &out, "orderly consumer");
    // Per key, deliveries arrive in send order (index i = seq * keys + key).
    let mut last_seq: BTreeMap<i64, i64> = BTreeMap::new();
    for e in out.of_kind("received") {
        let body = e.str("body").expect("body");
        let i: i64 = body
            .rsplit('|')
            .next()
            .and_then(|s| s.parse().ok())
            .expect("index");
        let (key, seq) = (i % keys, i / keys);
        assert_eq!(
            e.i64("queue_id"),
            Some(queue_of_key[&key]),
            "key {key} delivered from another queue"
        );
        match last_seq.insert(key, seq) {
            Some(p) => assert_eq!(seq, p + 1, "key {key}: seq {seq} delivered after {p}"),
            None => assert_eq!(seq, 0, "key {key}: first delivery is seq {seq}"),
        }
    }
}

#[test]
fn cpp_reconsume_later_redelivers_with_reconsume_times() {
    let topic = "CppRetry";
    let c = cluster_with_topic(topic);
    let sent = sent_by_body(&produce(
        &c,
        &["--topic", topic, "--prefix", "retry", "--sync", "3"],
    ));
    let out = cpp(
        &c,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            "cpp_cg_retry",
            "--expect",
            "3",
            "--fail-first",
        ],
        REDELIVERY_TIMEOUT_MS,
    );
    assert_delivered(&sent, &out, "redelivered messages");
    let got = received_by_body(&out);
    for (body, deliveries) in &got {
        assert!(deliveries.len() >= 2, "{body:?} was not redelivered");
        assert_eq!(deliveries[0].str("result"), Some("fail"));
        let ok = deliveries
            .iter()
            .find(|d| d.str("result") == Some("ok"))
            .expect("an acknowledged delivery");
        assert!(
            ok.i64("reconsume_times").unwrap_or(0) >= 1,
            "redelivery of {body:?} has reconsume_times {:?}",
            ok.i64("reconsume_times")
        );
        // The retry copy keeps the original topic for the application.
        assert_eq!(ok.str("topic"), Some(topic));
    }
    assert_eq!(acked_bodies(&out).len(), 3);
}

#[test]
fn cpp_delay_level_1_arrives_after_one_second() {
    let topic = "CppDelay";
    let c = cluster_with_topic(topic);
    let sent = sent_by_body(&produce(
        &c,
        &[
            "--topic",
            topic,
            "--prefix",
            "delay",
            "--sync",
            "3",
            "--delay-level",
            "1",
        ],
    ));
    // The pull consumer reads every queue from offset 0: it sees a delayed message only once
    // the broker has moved it to the real topic.
    let out = cpp(
        &c,
        &["pull", "--topic", topic, "--expect", "3"],
        SCRIPT_TIMEOUT_MS,
    );
    assert_delivered(&sent, &out, "delayed messages");
    let got = received_by_body(&out);
    for (body, d) in &got {
        let born = sent[body].i64("born_ms").expect("born_ms");
        let recv = d[0].i64("recv_ms").expect("recv_ms");
        let stored = d[0].i64("store_ms").expect("store_ms");
        assert!(
            recv - born >= 1000,
            "{body:?} received {} ms after send",
            recv - born
        );
        assert!(
            stored - born >= 1000,
            "{body:?} stored in the real topic {} ms after send",
            stored - born
        );
    }
}

#[test]
fn cpp_sent_messages_can_be_queried_by_key_and_viewed_by_id() {
    let topic = "CppQuery";
    let c = cluster_with_topic(topic);
    let sent = sent_by_body(&produce(
        &c,
        &["--topic", topic, "--prefix", "q", "--sync", "5"],
    ));
    let mut admin = c.admin_broker().expect("admin");
    for (body, s) in &sent {
        let key = s.str("keys").expect("keys");
        // The index is built by the dispatcher, possibly after the send was acknowledged.
        let mut found = Vec::new();
        c.wait_for(&format!("index entry for key {key}"), 10_000, || {
            found = admin.query_message(topic, key, 32, false)?;
            Ok(!found.is_empty())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        let rec = found
            .iter()
            .find(|r| r.body_str() == *body)
            .unwrap_or_else(|| panic!("query by key {key} returned {found:?}"));
        assert_eq!(rec.topic, topic);
        assert_eq!(rec.property("KEYS"), Some(key));
        assert_eq!(rec.property("test_prop"), s.prop("test_prop"));
        assert_eq!(rec.store_host.to_string(), c.broker_addr(), "store host");

        // By unique key (the id the producer got back).
        let uniq = s.str("msg_id").expect("msg_id");
        let by_uniq = admin
            .query_message(topic, uniq, 32, true)
            .expect("query uniq");
        assert!(
            by_uniq.iter().any(|r| r.body_str() == *body),
            "query by UNIQ_KEY {uniq} returned {by_uniq:?}"
        );
        assert_eq!(rec.property("UNIQ_KEY"), Some(uniq));

        // By offset id: VIEW_MESSAGE_BY_ID takes the commitlog offset encoded in it.
        let viewed = admin.view_message(rec.physical_offset).expect("view by id");
        assert_eq!(viewed, *rec, "view by id returns the same record");
        assert_eq!(viewed.offset_msg_id().len(), 32);
    }
}

#[test]
fn cpp_reconsume_later_ends_in_dlq_after_max_reconsume_times() {
    let topic = "CppDlq";
    let group = "cpp_cg_dlq";
    let dlq = format!("%DLQ%{group}");
    // All 18 delay levels at 1 s so the 16 retries of the default retryMaxTimes take ~16 s.
    let opts = BrokerOptions {
        extra: vec![("messageDelayLevel".into(), vec!["1s"; 18].join(" "))],
        ..BrokerOptions::default()
    };
    let c = Cluster::start(opts).expect("start namesrv + broker");
    c.create_topic(topic, QUEUES).expect("create topic");
    let sent = sent_by_body(&produce(
        &c,
        &["--topic", topic, "--prefix", "dlq", "--sync", "1"],
    ));
    // 1 delivery + 16 redeliveries (group retryMaxTimes 16), all answered RECONSUME_LATER.
    let out = cpp(
        &c,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            group,
            "--fail-always",
            "--stop-after-deliveries",
            "17",
        ],
        REDELIVERY_TIMEOUT_MS,
    );
    out.assert_success();
    let got = received_by_body(&out);
    assert_eq!(got.len(), 1, "{}", out.describe());
    let (body, deliveries) = got.iter().next().expect("one body");
    assert!(sent.contains_key(body));
    let times: Vec<i64> = deliveries
        .iter()
        .map(|d| d.i64("reconsume_times").unwrap_or(-1))
        .collect();
    assert_eq!(
        times,
        (0..17).collect::<Vec<i64>>(),
        "reconsume times of the deliveries"
    );
    c.wait_for("the message in the DLQ", 30_000, || {
        Ok(c.admin_broker()?.max_offset(&dlq, 0).unwrap_or(0) >= 1)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let key = sent[body].str("keys").expect("keys");
    let mut admin = c.admin_broker().expect("admin");
    let mut recs = Vec::new();
    c.wait_for("the DLQ index entry", 10_000, || {
        recs = admin.query_message(&dlq, key, 32, false)?;
        Ok(!recs.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let r = recs.iter().find(|r| r.topic == dlq).expect("DLQ record");
    assert_eq!(r.body_str(), *body);
    assert_eq!(r.property("RETRY_TOPIC"), Some(topic));
    assert_eq!(
        admin.max_offset(&dlq, 0).expect("dlq offset"),
        1,
        "exactly one dead letter"
    );
}

#[test]
fn ons_produced_messages_reach_a_cpp_consumer() {
    let topic = "CrossToCpp";
    let c = cluster_with_topic(topic);
    let out = run(
        ClientKind::Node,
        "ons_client.js",
        &[
            "produce",
            "--topic",
            topic,
            "--prefix",
            "x",
            "--tags",
            "TagA,TagB",
            "--sync",
            "10",
            "--large",
            "2",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("run ali-ons producer");
    out.assert_success();
    let sent = sent_by_body(&out);
    let got = cpp(
        &c,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            "cpp_cg_cross",
            "--expect",
            "12",
        ],
        SCRIPT_TIMEOUT_MS,
    );
    assert_delivered(&sent, &got, "C++ consuming ali-ons messages (2 compressed)");
}

#[test]
fn cpp_send_to_an_unknown_topic_auto_creates_it_when_enabled() {
    // No create_topic: the producer falls back to the TBW102 route and the broker creates
    // the topic on the first send (special-topics.md §5).
    let c = Cluster::start(BrokerOptions::default()).expect("start namesrv + broker");
    let topic = "CppAutoCreated";
    let sent = sent_by_body(&produce(
        &c,
        &["--topic", topic, "--prefix", "auto", "--sync", "5"],
    ));
    c.wait_for_route(topic)
        .unwrap_or_else(|e| panic!("auto-created topic not routed: {e}\n{}", c.logs()));
    #[rustfmt::skip]
    let out = cpp(&c, &["consume", "--topic", topic, "--group", "cpp_cg_auto", "--expect", "5"],
        SCRIPT_TIMEOUT_MS);
    assert_delivered(&sent, &out, "messages sent to an auto-created topic");
}

#[test]
fn cpp_send_to_an_unknown_topic_fails_when_auto_create_is_off() {
    let opts = BrokerOptions {
        auto_create_topic: false,
        ..BrokerOptions::default()
    };
    let c = Cluster::start(opts).expect("start namesrv + broker");
    let out = cpp(
        &c,
        &[
            "produce",
            "--topic",
            "CppNoSuchTopic",
            "--sync",
            "1",
            "--send-timeout-ms",
            "3000",
        ],
        30_000,
    );
    assert!(
        !out.success(),
        "send to a missing topic succeeded: {}",
        out.describe()
    );
    assert!(out.of_kind("sent").is_empty(), "{}", out.describe());
    assert!(
        !out.of_kind("error").is_empty(),
        "the client reports the failed send: {}",
        out.describe()
    );
    let total = c
        .admin_broker()
        .and_then(|mut a| a.total_messages("CppNoSuchTopic", 4))
        .unwrap_or(0);
    assert_eq!(total, 0, "nothing stored for a topic that does not exist");
}

#[test]
fn cpp_a_thousand_async_messages_are_all_consumed() {
    // Exercises pull pagination (32 per pull), long polling and the store's write batching.
    let topic = "CppMany";
    let c = cluster_with_topic(topic);
    let sent = sent_by_body(&produce(
        &c,
        &["--topic", topic, "--prefix", "many", "--async", "1000"],
    ));
    assert_eq!(sent.len(), 1000);
    assert_eq!(total_in_store(&c, topic, 1000), 1000);
    #[rustfmt::skip]
    let out = cpp(&c, &["consume", "--topic", topic, "--group", "cpp_cg_many", "--expect", "1000"],
        SCRIPT_TIMEOUT_MS);
    assert_delivered(&sent, &out, "1000 async messages");
    // Per queue, deliveries cover offsets 0..n densely.
    let mut per_queue: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for e in out.of_kind("received") {
        per_queue
            .entry(e.i64("queue_id").expect("queue_id"))
            .or_default()
            .push(e.i64("queue_offset").expect("queue_offset"));
    }
    for (q, mut offs) in per_queue {
        offs.sort_unstable();
        offs.dedup();
        let want: Vec<i64> = (0..offs.len() as i64).collect();
        assert_eq!(offs, want, "queue {q} offsets delivered");
    }
}

#[test]
fn cpp_tag_filter_skips_a_long_run_of_other_tags() {
    // 200 TagB messages in front of 5 TagA ones: the broker filters by tag hash and must keep
    // advancing nextBeginOffset past non-matching messages.
    let topic = "CppTagSkip";
    let c = cluster_with_topic(topic);
    produce(
        &c,
        &[
            "--topic", topic, "--prefix", "skip", "--tags", "TagB", "--async", "200",
        ],
    );
    let want = sent_by_body(&produce(
        &c,
        &[
            "--topic", topic, "--prefix", "want", "--tags", "TagA", "--sync", "5",
        ],
    ));
    #[rustfmt::skip]
    let out = cpp(&c, &["consume", "--topic", topic, "--group", "cpp_cg_skip", "--expr", "TagA",
        "--expect", "5"], SCRIPT_TIMEOUT_MS);
    assert_delivered(&want, &out, "TagA behind 200 TagB");
}
