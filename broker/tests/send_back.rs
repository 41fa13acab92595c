//! CONSUMER_SEND_MSG_BACK: retry through %RETRY%<group> with a delay, then %DLQ%<group>
//! after maxReconsumeTimes; delayLevel -1 goes straight to the DLQ.

mod send_support;

use broker::processor::send::consumer_send_msg_back;
use remoting::codes::{request, response};
use remoting::headers::consumer::ConsumerSendMsgBackRequestHeader;
use remoting::RemotingCommand;
use send_support::*;
use store::message::property;

fn send_back(offset: i64, delay_level: i32, max: i32) -> RemotingCommand {
    RemotingCommand::request_with_header(
        request::CONSUMER_SEND_MSG_BACK,
        &ConsumerSendMsgBackRequestHeader {
            offset,
            group: "cg".into(),
            delay_level,
            origin_msg_id: Some("CLIENTUNIQ".into()),
            origin_topic: Some("Orig".into()),
            unit_mode: Some(false),
            max_reconsume_times: Some(max),
        },
    )
}

#[tokio::test]
async fn send_back_retries_then_dead_letters() {
    let b = TestBroker::start(true).await;
    let resp = b
        .send(&send_request(
            "Orig",
            0,
            &props(&[("TAGS", "A")]),
            b"payload",
        ))
        .await;
    assert_eq!(resp.code, response::SUCCESS);
    let original = pull_one(&b, "cg", "Orig", 0, 0).await;

    // 1st failure: retry with delay level 1 (1 s).
    let resp = consumer_send_msg_back(&b.ctx, &send_back(original.commit_log_offset, 1, 2)).await;
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let retry1 = pull_one(&b, "cg", "%RETRY%cg", 0, 0).await;
    assert_eq!(retry1.body.as_ref(), b"payload");
    assert_eq!(retry1.reconsume_times, 1);
    assert_eq!(retry1.property(property::RETRY_TOPIC), Some("Orig"));
    assert_eq!(
        retry1.property(property::ORIGIN_MESSAGE_ID),
        Some(original.msg_id().as_str())
    );
    assert_eq!(retry1.property(property::DELAY), None);
    assert!(b.ctx.topic_config.get("%RETRY%cg").is_some());

    // 2nd failure: still below max 2.
    let resp = consumer_send_msg_back(&b.ctx, &send_back(retry1.commit_log_offset, 1, 2)).await;
    assert_eq!(resp.code, response::SUCCESS);
    let retry2 = pull_one(&b, "cg", "%RETRY%cg", 0, 1).await;
    assert_eq!(retry2.reconsume_times, 2);
    assert_eq!(
        retry2.property(property::ORIGIN_MESSAGE_ID),
        Some(original.msg_id().as_str())
    );

    // 3rd failure: reconsumeTimes 2 >= max 2 → DLQ, no delay.
    let resp = consumer_send_msg_back(&b.ctx, &send_back(retry2.commit_log_offset, 1, 2)).await;
    assert_eq!(resp.code, response::SUCCESS);
    let dead = pull_one(&b, "cg", "%DLQ%cg", 0, 0).await;
    assert_eq!(dead.body.as_ref(), b"payload");
    assert_eq!(dead.reconsume_times, 3);
    assert_eq!(dead.property(property::RETRY_TOPIC), Some("Orig"));

    // delayLevel -1: straight to the DLQ.
    let resp = consumer_send_msg_back(&b.ctx, &send_back(original.commit_log_offset, -1, 16)).await;
    assert_eq!(resp.code, response::SUCCESS);
    let dead2 = pull_one(&b, "cg", "%DLQ%cg", 0, 1).await;
    assert_eq!(dead2.reconsume_times, 1);

    // delayLevel 0: the broker picks 3 + reconsumeTimes (level 3 = 10 s here), so the
    // copy is parked in SCHEDULE_TOPIC_XXXX queue 2 with the retry topic as REAL_TOPIC.
    let resp = consumer_send_msg_back(&b.ctx, &send_back(original.commit_log_offset, 0, 16)).await;
    assert_eq!(resp.code, response::SUCCESS);
    let parked = pull_one(&b, "g", store::message::SCHEDULE_TOPIC, 2, 0).await;
    assert_eq!(parked.property(property::DELAY), Some("3"));
    assert_eq!(parked.property(property::REAL_TOPIC), Some("%RETRY%cg"));
    assert_eq!(parked.reconsume_times, 1);

    // An offset with no record behind it.
    let resp = consumer_send_msg_back(&b.ctx, &send_back(1 << 40, 0, 16)).await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    b.stop().await;
}
