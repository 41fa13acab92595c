//! SEND_BATCH_MESSAGE: plain batches, whole-body zlib batches (C++ client) and malformed
//! batches, which must get MESSAGE_ILLEGAL and never crash or hang.

mod send_support;

use std::io::Write;

use bytes::Bytes;
use remoting::codes::{request, response};
use send_support::*;
use store::message::{encode_batch, sys_flag, BatchItem};

fn items(n: usize, body_len: usize) -> Vec<BatchItem> {
    (0..n)
        .map(|i| BatchItem {
            flag: 3,
            body: Bytes::from(vec![b'a' + (i % 26) as u8; body_len]),
            properties: props(&[("TAGS", "T"), ("UNIQ_KEY", &format!("U{i:04}"))]),
        })
        .collect()
}

fn batch_request(topic: &str, body: Bytes, sys_flag: i32) -> remoting::RemotingCommand {
    let mut req = send_request(topic, 0, &props(&[("WAIT", "true")]), &body);
    req.code = request::SEND_BATCH_MESSAGE;
    req.ext_fields.insert("m", "true");
    req.ext_fields.insert("f", sys_flag.to_string());
    req
}

async fn pull_all(b: &TestBroker, topic: &str) -> Vec<store::message::MessageExt> {
    b.wait_dispatched().await;
    let resp = b.pull(&pull_request("g", topic, 0, 0, "*", None)).await;
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    decode(&resp.body_contiguous())
}

#[tokio::test]
async fn plain_batch_is_stored_as_separate_records() {
    let b = TestBroker::start(false).await;
    let batch = items(3, 10);
    let resp = b
        .send(&batch_request("Batch", encode_batch(&batch), 0))
        .await;
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let ids: Vec<&str> = resp.ext("msgId").expect("msgId").split(',').collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ext_i64(&resp, "queueOffset"), 0);
    assert_eq!(resp.ext("transactionId"), Some("U0000,U0001,U0002"));
    let msgs = pull_all(&b, "Batch").await;
    assert_eq!(msgs.len(), 3);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.body, batch[i].body);
        assert_eq!(m.flag, 3);
        assert_eq!(m.queue_offset, i as i64);
        assert_eq!(m.msg_id(), ids[i]);
        assert_eq!(m.property("UNIQ_KEY"), Some(format!("U{i:04}").as_str()));
        assert_eq!(m.property("WAIT"), Some("true"));
        assert_eq!(m.property("CLUSTER"), Some("DefaultCluster"));
    }
    b.stop().await;
}

#[tokio::test]
async fn whole_body_compressed_batch_from_cpp_client() {
    let b = TestBroker::start(false).await;
    // Over 4 KiB, so the C++ client compresses the encoded batch as one zlib stream.
    let batch = items(5, 2000);
    let plain = encode_batch(&batch);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    z.write_all(&plain).expect("compress");
    let compressed = Bytes::from(z.finish().expect("compress"));
    assert!(compressed.len() < plain.len());
    let resp = b
        .send(&batch_request(
            "BatchZ",
            compressed,
            sys_flag::COMPRESSED_FLAG,
        ))
        .await;
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let msgs = pull_all(&b, "BatchZ").await;
    assert_eq!(msgs.len(), 5);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.body, batch[i].body, "inner body {i} stored plain");
        assert_eq!(
            m.sys_flag & sys_flag::COMPRESSED_FLAG,
            0,
            "stored record claims compression"
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn batch_flag_on_send_message_v2_is_a_batch() {
    // The C++ client sends batches as SEND_MESSAGE_V2 with `batch=true` and, above 4 KiB,
    // the whole body zlib-compressed (seen with rocketmq-client-cpp 1.x).
    let b = TestBroker::start(false).await;
    let batch = items(4, 1500);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    z.write_all(&encode_batch(&batch)).expect("compress");
    let mut req = batch_request(
        "BatchV2",
        Bytes::from(z.finish().expect("compress")),
        sys_flag::COMPRESSED_FLAG,
    );
    req.code = request::SEND_MESSAGE_V2;
    req.ext_fields.insert("m", "1");
    let resp = b.send(&req).await;
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(resp.ext("msgId").expect("msgId").split(',').count(), 4);
    let msgs = pull_all(&b, "BatchV2").await;
    assert_eq!(msgs.len(), 4);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.body, batch[i].body);
    }
    b.stop().await;
}

#[tokio::test]
async fn malformed_batches_get_message_illegal() {
    let b = TestBroker::start(false).await;
    let good = encode_batch(&items(2, 10));
    let mut cases: Vec<(Bytes, i32)> = vec![
        (good.slice(..good.len() - 3), 0),
        (good.slice(..7), 0),
        (Bytes::from_static(b"\xff\xff\xff\xff garbage"), 0),
        (Bytes::new(), 0),
        (
            Bytes::from_static(b"definitely not zlib"),
            sys_flag::COMPRESSED_FLAG,
        ),
    ];
    let mut bad_len = good.to_vec();
    bad_len[16..20].copy_from_slice(&i32::MAX.to_be_bytes()); // inner body length
    cases.push((Bytes::from(bad_len), 0));
    for (i, (body, flag)) in cases.into_iter().enumerate() {
        let resp = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            b.send(&batch_request("BatchBad", body, flag)),
        )
        .await
        .unwrap_or_else(|_| panic!("case {i} hung"));
        assert_eq!(resp.code, response::MESSAGE_ILLEGAL, "case {i}: {resp:?}");
    }
    // Nothing was stored by the rejected batches.
    b.wait_dispatched().await;
    assert_eq!(b.ctx.store.max_offset_in_queue("BatchBad", 0), 0);
    b.stop().await;
}
