//! Send → pull round trips through the processors, tag filtering, pull status mapping and
//! send validation.

mod send_support;

use remoting::codes::response;
use send_support::*;
use store::message::{decode_offset_msg_id, property};

const HOLD_MS: i64 = 5_000;

#[tokio::test]
async fn send_then_pull_round_trip_with_tag_filter() {
    let b = TestBroker::start(false).await;
    let tags = ["A", "B", "A"];
    let mut ids = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let body = format!("body-{i}");
        let p = props(&[
            ("TAGS", tag),
            ("KEYS", "k1"),
            ("UNIQ_KEY", &format!("UNIQ{i}")),
        ]);
        let resp = b
            .send(&send_request("RoundTrip", 1, &p, body.as_bytes()))
            .await;
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
        assert_eq!(ext_i64(&resp, "queueId"), 1);
        assert_eq!(ext_i64(&resp, "queueOffset"), i as i64);
        assert_eq!(resp.ext("MSG_REGION"), Some("DefaultRegion"));
        assert_eq!(resp.ext("TRACE_ON"), Some("true"));
        let msg_id = resp.ext("msgId").expect("msgId").to_string();
        assert_eq!(msg_id.len(), 32);
        assert_eq!(msg_id, msg_id.to_uppercase());
        let (host, _phys) = decode_offset_msg_id(&msg_id).expect("offset id decodes");
        assert_eq!(host.to_string(), STORE_HOST);
        ids.push(msg_id);
    }
    // The topic was auto-created from TBW102 with the client's 4 queues.
    let tc = b.ctx.topic_config.get("RoundTrip").expect("auto-created");
    assert_eq!(tc.write_queue_nums, 4);

    // Everything, held until dispatch makes the messages visible.
    let resp = b
        .pull(&pull_request("g1", "RoundTrip", 1, 0, "*", Some(HOLD_MS)))
        .await;
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let mut msgs = decode(&resp.body_contiguous());
    if msgs.len() < 3 {
        // Dispatch may have woken us after the first record; read the rest.
        b.wait_dispatched().await;
        let resp = b
            .pull(&pull_request("g1", "RoundTrip", 1, 0, "*", None))
            .await;
        msgs = decode(&resp.body_contiguous());
    }
    assert_eq!(msgs.len(), 3);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.body.as_ref(), format!("body-{i}").as_bytes());
        assert_eq!(m.queue_offset, i as i64);
        assert_eq!(m.topic, "RoundTrip");
        assert_eq!(m.msg_id(), ids[i]);
        assert_eq!(m.property(property::TAGS), Some(tags[i]));
        assert_eq!(m.property(property::CLUSTER), Some("DefaultCluster"));
        assert_eq!(m.born_host.to_string(), BORN_HOST);
    }

    // Tag filter: only the A messages, but the offset moves past the B as well.
    let resp = b
        .pull(&pull_request("g1", "RoundTrip", 1, 0, "A", None))
        .await;
    assert_eq!(resp.code, response::SUCCESS);
    let msgs = decode(&resp.body_contiguous());
    assert_eq!(
        msgs.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(ext_i64(&resp, "nextBeginOffset"), 3);
    assert_eq!(ext_i64(&resp, "maxOffset"), 3);
    assert_eq!(ext_i64(&resp, "minOffset"), 0);
    assert_eq!(ext_i64(&resp, "suggestWhichBrokerId"), 0);

    // Nothing matches C: the scanned units are skipped and the client retries at once.
    let resp = b
        .pull(&pull_request("g1", "RoundTrip", 1, 1, "C", None))
        .await;
    assert_eq!(resp.code, response::PULL_RETRY_IMMEDIATELY, "{resp:?}");
    assert_eq!(ext_i64(&resp, "nextBeginOffset"), 3);
    b.stop().await;
}

#[tokio::test]
async fn pull_status_mapping() {
    let b = TestBroker::start(false).await;
    let resp = b
        .send(&send_request("Status", 0, &props(&[("TAGS", "A")]), b"x"))
        .await;
    assert_eq!(resp.code, response::SUCCESS);
    b.wait_dispatched().await;

    // offset == maxOffset, no suspend: PULL_NOT_FOUND with the offset unchanged.
    let resp = b.pull(&pull_request("g", "Status", 0, 1, "*", None)).await;
    assert_eq!(resp.code, response::PULL_NOT_FOUND);
    assert_eq!(resp.remark.as_deref(), Some("OFFSET_OVERFLOW_ONE"));
    assert_eq!(ext_i64(&resp, "nextBeginOffset"), 1);
    // offset > maxOffset: moved (Java `getMessage`: to minOffset when that is 0, else to
    // maxOffset).
    let resp = b.pull(&pull_request("g", "Status", 0, 10, "*", None)).await;
    assert_eq!(resp.code, response::PULL_OFFSET_MOVED);
    assert_eq!(resp.remark.as_deref(), Some("OFFSET_OVERFLOW_BADLY"));
    assert_eq!(ext_i64(&resp, "nextBeginOffset"), 0);
    // A negative offset is below minOffset.
    let resp = b.pull(&pull_request("g", "Status", 0, -5, "*", None)).await;
    assert_eq!(resp.code, response::PULL_OFFSET_MOVED, "{resp:?}");
    assert_eq!(ext_i64(&resp, "nextBeginOffset"), 0);
    // An empty queue of an existing topic at offset 0: not found (and all four fields).
    let resp = b.pull(&pull_request("g", "Status", 2, 0, "*", None)).await;
    assert_eq!(resp.code, response::PULL_NOT_FOUND);
    for k in [
        "suggestWhichBrokerId",
        "nextBeginOffset",
        "minOffset",
        "maxOffset",
    ] {
        assert!(resp.ext(k).is_some(), "missing {k}");
    }
    // Unknown topic, bad queue id, bad expression.
    let resp = b.pull(&pull_request("g", "Nope", 0, 0, "*", None)).await;
    assert_eq!(resp.code, response::TOPIC_NOT_EXIST);
    let resp = b.pull(&pull_request("g", "Status", 99, 0, "*", None)).await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    let resp = b.pull(&pull_request("g", "Status", 0, 0, "||", None)).await;
    assert_eq!(resp.code, response::SUBSCRIPTION_PARSE_FAILED);
    // No SUBSCRIPTION bit and no heartbeat: the subscription does not exist.
    let mut req = pull_request("g", "Status", 0, 0, "*", None);
    req.ext_fields.insert("sysFlag", "0");
    let resp = b.pull(&req).await;
    assert_eq!(resp.code, response::SUBSCRIPTION_NOT_EXIST);
    b.stop().await;
}

#[tokio::test]
async fn commit_offset_bit_commits() {
    let b = TestBroker::start(false).await;
    let resp = b.send(&send_request("Commit", 0, "", b"x")).await;
    assert_eq!(resp.code, response::SUCCESS);
    let mut req = pull_request("cg", "Commit", 0, 0, "*", None);
    req.ext_fields.insert("sysFlag", (0x1 | 0x4).to_string());
    req.ext_fields.insert("commitOffset", "1");
    let _ = b.pull(&req).await;
    assert_eq!(b.ctx.consumer_offsets.query("cg", "Commit", 0), Some(1));
    b.stop().await;
}

#[tokio::test]
async fn send_validation() {
    let b = TestBroker::start(false).await;
    let p = props(&[("TAGS", "A")]);
    let resp = b
        .send(&send_request("SCHEDULE_TOPIC_XXXX", 0, &p, b"x"))
        .await;
    assert_eq!(resp.code, response::NO_PERMISSION);
    let resp = b.send(&send_request("bad topic", 0, &p, b"x")).await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    let long = "T".repeat(128);
    let resp = b.send(&send_request(&long, 0, &p, b"x")).await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    let resp = b.send(&send_request("Valid", 99, &p, b"x")).await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    let big = vec![b'x'; b.ctx.config.max_message_size + 1];
    let resp = b.send(&send_request("Valid", 0, &p, &big)).await;
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL);
    // A template that does not exist: no auto-create.
    let mut req = send_request("NoTemplate", 0, &p, b"x");
    req.ext_fields.insert("c", "NoSuchTemplate");
    let resp = b.send(&req).await;
    assert_eq!(resp.code, response::TOPIC_NOT_EXIST);
    // Missing required header field.
    let mut req = send_request("Valid", 0, &p, b"x");
    req.ext_fields.remove("b");
    let resp = b.send(&req).await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    // Negative queue id: the broker picks a write queue.
    let resp = b.send(&send_request("Valid", -1, &p, b"x")).await;
    assert_eq!(resp.code, response::SUCCESS);
    let q = ext_i64(&resp, "queueId");
    assert!((0..4).contains(&q));
    b.stop().await;
}

#[tokio::test]
async fn retry_topic_send_over_max_goes_to_dlq() {
    let b = TestBroker::start(false).await;
    let mut req = send_request("%RETRY%cg1", 0, &props(&[("TAGS", "A")]), b"retry");
    req.ext_fields.insert("j", "3"); // reconsumeTimes
    req.ext_fields.insert("l", "3"); // maxReconsumeTimes
    let resp = b.send(&req).await;
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    b.wait_dispatched().await;
    assert_eq!(b.ctx.store.max_offset_in_queue("%DLQ%cg1", 0), 1);
    assert_eq!(b.ctx.store.max_offset_in_queue("%RETRY%cg1", 0), 0);
    b.stop().await;
}
