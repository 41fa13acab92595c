//! Compatibility scenarios with npm `ali-ons@3.12.0` (pure JavaScript) against our namesrv +
//! single-replica broker, run as real processes. ali-ons never auto-creates topics, so every
//! test creates its topic first with UPDATE_AND_CREATE_TOPIC.
//!
//! The script lives in tests/clients/node/ons_client.js.

use tests::check::{assert_delivered, received_by_body, sent_by_body};
use tests::scenario;
use tests::script::{run, ScriptOutput, ScriptRun};
use tests::{ClientKind, Cluster};

const QUEUES: i32 = 4;
const SCRIPT: &str = "ons_client.js";
const SCRIPT_TIMEOUT_MS: u64 = 90_000;
/// Redelivery uses delay level 3 (10 s) on a Java-compatible broker.
const REDELIVERY_TIMEOUT_MS: u64 = 120_000;

const ONS: scenario::Client = scenario::Client {
    kind: ClientKind::Node,
    script: SCRIPT,
    queues: QUEUES,
    timeout_ms: SCRIPT_TIMEOUT_MS,
    label: "ali-ons",
};

fn cluster_with_topic(topic: &str) -> Cluster {
    scenario::cluster_with_topic(topic, QUEUES)
}

fn ons(c: &Cluster, args: &[&str], timeout_ms: u64) -> ScriptOutput {
    scenario::run_client(ClientKind::Node, SCRIPT, c, args, timeout_ms)
}

fn produce(c: &Cluster, args: &[&str]) -> ScriptOutput {
    scenario::produce_with(ClientKind::Node, SCRIPT, c, args, SCRIPT_TIMEOUT_MS)
}

fn committed_total(c: &Cluster, group: &str, topic: &str) -> i64 {
    scenario::committed_total(c, group, topic, QUEUES)
}

#[test]
fn ons_send_and_push_consume_with_tags_keys_and_properties() {
    let topic = "OnsBasic";
    let c = cluster_with_topic(topic);
    let sent = sent_by_body(&produce(
        &c,
        &[
            "--topic",
            topic,
            "--prefix",
            "basic",
            "--tags",
            "TagA,TagB",
            "--sync",
            "20",
            "--large",
            "2",
        ],
    ));
    assert_eq!(sent.len(), 22);
    for s in sent.values() {
        assert!(
            s.str("msg_id").is_some_and(|id| id.len() == 32),
            "send result msgId {s:?}"
        );
    }
    let out = ons(
        &c,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            "ons_cg_basic",
            "--expect",
            "22",
        ],
        SCRIPT_TIMEOUT_MS,
    );
    assert_delivered(&sent, &out, "ali-ons push consumer");
    let got = received_by_body(&out);
    // ali-ons reports the offset message id of the send and of the delivery: they agree.
    for (body, s) in &sent {
        assert_eq!(
            got[body][0].str("msg_id"),
            s.str("msg_id"),
            "msgId of {body:?}"
        );
    }
    assert_eq!(committed_total(&c, "ons_cg_basic", topic), 22);
    // The send response's msgId is the offset id (store host + commitlog offset): decoding it
    // and asking VIEW_MESSAGE_BY_ID for that offset returns the message (what Java's
    // viewMessage(msgId) does), and the record's own offset id is the same string.
    let mut admin = c.admin_broker().expect("admin");
    for (body, s) in &sent {
        let id = s.str("msg_id").expect("msg_id");
        let offset = i64::from_str_radix(&id[16..32], 16).expect("hex offset in msgId");
        let r = admin.view_message(offset).expect("view by id");
        assert_eq!(r.body_str(), *body, "view of {id}");
        assert_eq!(r.offset_msg_id(), id);
        assert_eq!(r.property("KEYS"), s.str("keys"));
    }
}

#[test]
fn cpp_produced_messages_reach_an_ons_consumer() {
    let topic = "CrossClient";
    let c = cluster_with_topic(topic);
    let out = run(
        ClientKind::Cpp,
        "cpp_client.py",
        &[
            "produce",
            "--topic",
            topic,
            "--prefix",
            "cross",
            "--sync",
            "5",
            "--large",
            "2",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("run cpp producer");
    out.assert_success();
    let sent = sent_by_body(&out);
    let got = ons(
        &c,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            "ons_cg_cross",
            "--expect",
            "7",
        ],
        SCRIPT_TIMEOUT_MS,
    );
    assert_delivered(&sent, &got, "ali-ons consuming C++ messages");
}

#[test]
fn ons_tag_filter_delivers_only_subscribed_tags() {
    scenario::tag_filter_delivers_only_subscribed_tags(
        ONS,
        "OnsTags",
        "ons_cg_tags",
        ["TagA", "TagB"],
    );
}

#[test]
fn ons_consumer_resumes_from_committed_offset() {
    scenario::consumer_resumes_from_committed_offset(ONS, "OnsResume", "ons_cg_resume", 10);
}

#[test]
fn ons_failed_consume_is_redelivered_via_send_back() {
    let topic = "OnsRetry";
    let c = cluster_with_topic(topic);
    let sent = sent_by_body(&produce(
        &c,
        &["--topic", topic, "--prefix", "retry", "--sync", "3"],
    ));
    let out = ons(
        &c,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            "ons_cg_retry",
            "--expect",
            "3",
            "--fail-first",
        ],
        REDELIVERY_TIMEOUT_MS,
    );
    assert_delivered(&sent, &out, "redelivered messages");
    let got = received_by_body(&out);
    for (body, d) in &got {
        assert!(d.len() >= 2, "{body:?} not redelivered: {d:?}");
        assert_eq!(d[0].i64("reconsume_times"), Some(0));
        let ok = d
            .iter()
            .find(|e| e.str("result") == Some("ok"))
            .expect("acked delivery");
        assert!(ok.i64("reconsume_times").unwrap_or(0) >= 1, "{ok:?}");
        assert_eq!(
            ok.str("topic"),
            Some(topic),
            "retry copy presented under the original topic"
        );
        assert!(
            ok.prop("ORIGIN_MESSAGE_ID").is_some(),
            "retry copy lacks ORIGIN_MESSAGE_ID"
        );
    }
}

#[test]
fn ons_message_goes_to_dlq_after_max_reconsume_times() {
    let topic = "OnsDlq";
    let group = "ons_cg_dlq";
    let dlq = format!("%DLQ%{group}");
    let c = cluster_with_topic(topic);
    let sent = sent_by_body(&produce(
        &c,
        &["--topic", topic, "--prefix", "dlq", "--sync", "2"],
    ));
    // maxReconsumeTimes=1: first delivery fails -> retry (reconsumeTimes 1) fails -> DLQ.
    let out = ons(
        &c,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            group,
            "--fail-always",
            "--max-reconsume",
            "1",
            "--stop-after-deliveries",
            "4",
        ],
        REDELIVERY_TIMEOUT_MS,
    );
    out.assert_success();
    let got = received_by_body(&out);
    assert_eq!(got.len(), 2, "{}", out.describe());
    for (body, d) in &got {
        assert!(sent.contains_key(body));
        let times: Vec<_> = d.iter().map(|e| e.i64("reconsume_times")).collect();
        assert_eq!(times, vec![Some(0), Some(1)], "deliveries of {body:?}");
    }
    // The second failure's send-back lands in %DLQ%<group>; nothing announces it to a client,
    // so poll the broker.
    c.wait_for("2 messages in the DLQ", 30_000, || {
        let mut a = c.admin_broker()?;
        Ok(a.max_offset(&dlq, 0).unwrap_or(0) >= 2)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let mut admin = c.admin_broker().expect("admin");
    assert_eq!(admin.max_offset(&dlq, 0).expect("dlq max offset"), 2);
    for (body, s) in &sent {
        let key = s.str("keys").expect("keys");
        let mut recs = Vec::new();
        c.wait_for(&format!("DLQ index entry for {key}"), 10_000, || {
            recs = admin.query_message(&dlq, key, 32, false)?;
            Ok(!recs.is_empty())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        let r = recs
            .iter()
            .find(|r| r.topic == dlq)
            .unwrap_or_else(|| panic!("no DLQ record for {key}: {recs:?}"));
        assert_eq!(r.body_str(), *body);
        assert_eq!(r.property("RETRY_TOPIC"), Some(topic));
        assert!(
            r.reconsume_times >= 1,
            "DLQ record reconsume_times {}",
            r.reconsume_times
        );
    }
}

#[test]
fn ons_delay_level_1_arrives_after_one_second() {
    let topic = "OnsDelay";
    let c = cluster_with_topic(topic);
    // Start the consumer first so arrival time is measured, not the consumer start-up.
    let t = SCRIPT_TIMEOUT_MS.to_string();
    let refs = [
        "consume",
        "--topic",
        topic,
        "--group",
        "ons_cg_delay",
        "--expect",
        "3",
        "--timeout-ms",
        &t,
    ];
    let mut consumer = ScriptRun::start(ClientKind::Node, SCRIPT, &refs, &c).expect("consumer");
    consumer
        .wait_event("started", 60_000)
        .expect("consumer started");
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
    let out = consumer
        .finish(SCRIPT_TIMEOUT_MS + scenario::HARNESS_MARGIN_MS)
        .expect("consumer output");
    assert_delivered(&sent, &out, "delayed messages");
    let got = received_by_body(&out);
    for (body, d) in &got {
        let born = sent[body].i64("born_ms").expect("born_ms");
        let recv = d[0].i64("recv_ms").expect("recv_ms");
        assert!(
            recv - born >= 1000,
            "{body:?} arrived {} ms after send",
            recv - born
        );
        // The consumer was already long-polling (ali-ons holds pulls for 15 s): the delayed
        // message's arrival in the real topic must wake the held pull.
        assert!(
            recv - born < 8_000,
            "{body:?} arrived {} ms after send: held pulls not woken",
            recv - born
        );
    }
}
