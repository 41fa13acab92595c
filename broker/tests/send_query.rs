//! Queries after sends: view by offset id, query by key / UNIQ_KEY, offset queries and the
//! mqadmin stats bodies.

mod send_support;

use broker::processor::{query, stats};
use remoting::codes::{request, response};
use remoting::RemotingCommand;
use send_support::*;
use store::message::decode_offset_msg_id;

fn req(code: i32, fields: &[(&str, &str)]) -> RemotingCommand {
    let mut r = RemotingCommand::request(code);
    for (k, v) in fields {
        r.ext_fields.insert(k.to_string(), v.to_string());
    }
    r
}

#[tokio::test]
async fn view_query_offsets_and_stats() {
    let b = TestBroker::start(false).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let p = props(&[
            ("KEYS", &format!("order-{i} common")),
            ("UNIQ_KEY", &format!("UNIQ-{i}")),
        ]);
        let resp = b
            .send(&send_request("Q", 0, &p, format!("m{i}").as_bytes()))
            .await;
        assert_eq!(resp.code, response::SUCCESS);
        ids.push(resp.ext("msgId").expect("msgId").to_string());
    }
    b.wait_dispatched().await;

    // View by the offset id's commitlog offset.
    let (_, phys) = decode_offset_msg_id(&ids[1]).expect("id");
    let r = query::handle(
        &b.ctx,
        &req(
            request::VIEW_MESSAGE_BY_ID,
            &[("offset", &phys.to_string())],
        ),
    )
    .await
    .expect("handled");
    assert_eq!(r.code, response::SUCCESS);
    let m = decode(&r.body_contiguous());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].body.as_ref(), b"m1");
    assert_eq!(m[0].msg_id(), ids[1]);
    let r = query::handle(
        &b.ctx,
        &req(request::VIEW_MESSAGE_BY_ID, &[("offset", "999999999")]),
    )
    .await
    .expect("handled");
    assert_eq!(r.code, response::SYSTEM_ERROR);
    for bad in ["-1", &i64::MAX.to_string(), &(phys + 1).to_string()] {
        let r = query::handle(
            &b.ctx,
            &req(request::VIEW_MESSAGE_BY_ID, &[("offset", bad)]),
        )
        .await
        .expect("handled");
        assert_eq!(r.code, response::SYSTEM_ERROR, "offset {bad}");
    }

    // Query by key: all three share "common"; one has "order-2".
    let q = |key: &str, unique: bool| {
        let mut r = req(
            request::QUERY_MESSAGE,
            &[
                ("topic", "Q"),
                ("key", key),
                ("maxNum", "32"),
                ("beginTimestamp", "0"),
                ("endTimestamp", &i64::MAX.to_string()),
            ],
        );
        if unique {
            r.ext_fields.insert("_UNIQUE_KEY_QUERY", "true");
        }
        r
    };
    let r = query::handle(&b.ctx, &q("common", false))
        .await
        .expect("handled");
    assert_eq!(r.code, response::SUCCESS, "{r:?}");
    assert_eq!(decode(&r.body_contiguous()).len(), 3);
    assert!(r.ext("indexLastUpdateTimestamp").is_some());
    assert!(r.ext("indexLastUpdatePhyoffset").is_some());
    let r = query::handle(&b.ctx, &q("order-2", false))
        .await
        .expect("handled");
    let found = decode(&r.body_contiguous());
    assert!(found.iter().any(|m| m.body.as_ref() == b"m2"));
    let r = query::handle(&b.ctx, &q("UNIQ-0", true))
        .await
        .expect("handled");
    assert!(decode(&r.body_contiguous())
        .iter()
        .any(|m| m.body.as_ref() == b"m0"));
    let r = query::handle(&b.ctx, &q("absent", false))
        .await
        .expect("handled");
    assert_eq!(r.code, response::QUERY_NOT_FOUND);

    // Offset queries.
    let qf = [("topic", "Q"), ("queueId", "0")];
    let r = query::handle(&b.ctx, &req(request::GET_MAX_OFFSET, &qf))
        .await
        .expect("handled");
    assert_eq!(ext_i64(&r, "offset"), 3);
    let r = query::handle(&b.ctx, &req(request::GET_MIN_OFFSET, &qf))
        .await
        .expect("handled");
    assert_eq!(ext_i64(&r, "offset"), 0);
    let r = query::handle(&b.ctx, &req(request::GET_EARLIEST_MSG_STORETIME, &qf))
        .await
        .expect("handled");
    let earliest = ext_i64(&r, "timestamp");
    assert!(earliest > 0);
    let r = query::handle(
        &b.ctx,
        &req(
            request::SEARCH_OFFSET_BY_TIMESTAMP,
            &[
                ("topic", "Q"),
                ("queueId", "0"),
                ("timestamp", &earliest.to_string()),
            ],
        ),
    )
    .await
    .expect("handled");
    assert_eq!(ext_i64(&r, "offset"), 0);

    // Stats bodies in the fastjson MessageQueue-keyed form.
    let r = stats::topic_stats(
        &b.ctx,
        &req(request::GET_TOPIC_STATS_INFO, &[("topic", "Q")]),
    )
    .await
    .expect("handled");
    assert_eq!(r.code, response::SUCCESS);
    let body = String::from_utf8(r.body.to_vec()).expect("utf-8");
    assert!(body.starts_with("{\"offsetTable\":{{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"Q\"}:{\"lastUpdateTimestamp\":"), "{body}");
    assert!(body.contains("\"maxOffset\":3,\"minOffset\":0}"), "{body}");
    let r = stats::topic_stats(
        &b.ctx,
        &req(request::GET_TOPIC_STATS_INFO, &[("topic", "Missing")]),
    )
    .await
    .expect("handled");
    assert_eq!(r.code, response::TOPIC_NOT_EXIST);

    b.ctx
        .consumer_offsets
        .commit("cg", "Q", 0, 2)
        .expect("commit");
    let r = stats::consume_stats(
        &b.ctx,
        &req(request::GET_CONSUME_STATS, &[("consumerGroup", "cg")]),
    )
    .await
    .expect("handled");
    let body = String::from_utf8(r.body.to_vec()).expect("utf-8");
    assert!(
        body.starts_with("{\"consumeTps\":0.0,\"offsetTable\":{"),
        "{body}"
    );
    assert!(
        body.contains("{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"Q\"}:{\"brokerOffset\":3,\"consumerOffset\":2,\"lastTimestamp\":"),
        "{body}"
    );
    b.stop().await;
}
