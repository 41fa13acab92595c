//! Send and pull over real TCP connections (`Broker::start` + remoting client): the push
//! consumer path (subscription from the heartbeat, SUBSCRIPTION bit clear) and a held pull
//! that must not block other requests on the same connection.

mod send_support;

use std::time::Duration;

use broker::config::BrokerConfig;
use broker::controller::Broker;
use remoting::codes::{request, response};
use remoting::{ClientConfig, RemotingClient, RemotingCommand};
use send_support::*;

const TIMEOUT_MS: u64 = 10_000;

fn test_config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        store_path_root_dir: dir.display().to_string(),
        listen_port: 0,
        mapped_file_size_commit_log: 8 * 1024 * 1024,
        mapped_file_size_consume_queue: 1000 * 20,
        ..BrokerConfig::default()
    }
}

fn heartbeat(group: &str, topic: &str, expression: &str) -> RemotingCommand {
    let body = format!(
        r#"{{"clientID":"127.0.0.1@1","consumerDataSet":[{{"consumeFromWhere":4,"consumeType":1,"groupName":"{group}",
        "messageModel":1,"subscriptionDataSet":[{{"subString":"{expression}","subVersion":"1700000000000","topic":"{topic}"}}]}}],
        "producerDataSet":[]}}"#
    );
    RemotingCommand::request(request::HEART_BEAT).with_body(body.into_bytes())
}

/// A push-consumer pull: SUSPEND only, subscription taken from the heartbeat.
fn push_pull(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    suspend_ms: i64,
) -> RemotingCommand {
    let mut req = pull_request(group, topic, queue_id, offset, "*", Some(suspend_ms));
    req.ext_fields.insert("sysFlag", "2");
    req.ext_fields.remove("subscription");
    req.ext_fields.insert("subVersion", "1700000000000");
    req
}

#[tokio::test]
async fn push_consumer_pull_uses_heartbeat_subscription() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(test_config(dir.path()))
        .await
        .expect("broker starts");
    let c = RemotingClient::connect(&broker.local_addr().to_string(), ClientConfig::default())
        .await
        .expect("connect");
    for (i, tag) in ["TagA", "TagC", "TagB"].iter().enumerate() {
        let resp = c
            .invoke(
                send_request(
                    "Wire",
                    0,
                    &props(&[("TAGS", tag)]),
                    format!("w{i}").as_bytes(),
                ),
                TIMEOUT_MS,
            )
            .await
            .expect("send");
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
        // Stored records carry the broker's real address, so offset ids point back to it.
        let id = resp.ext("msgId").expect("msgId");
        let (host, _) = store::message::decode_offset_msg_id(id).expect("id");
        assert_eq!(host, broker.local_addr());
    }
    let hb = c
        .invoke(heartbeat("WireCG", "Wire", "TagA || TagB"), TIMEOUT_MS)
        .await
        .expect("heartbeat");
    assert_eq!(hb.code, response::SUCCESS, "{hb:?}");

    let resp = c
        .invoke(push_pull("WireCG", "Wire", 0, 0, 5_000), TIMEOUT_MS)
        .await
        .expect("pull");
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let msgs = decode(&resp.body);
    let bodies: Vec<&[u8]> = msgs.iter().map(|m| m.body.as_ref()).collect();
    // Dispatch can wake the pull after the first record; all we require is the filter.
    assert!(
        bodies.iter().all(|b| *b == b"w0" || *b == b"w2"),
        "{bodies:?}"
    );
    assert!(!bodies.is_empty());

    // A newer subscription version than the heartbeat's: not latest.
    let mut stale = push_pull("WireCG", "Wire", 0, 0, 0);
    stale.ext_fields.insert("subVersion", "1800000000000");
    let resp = c.invoke(stale, TIMEOUT_MS).await.expect("pull");
    assert_eq!(resp.code, response::SUBSCRIPTION_NOT_LATEST);
    drop(c);
    broker.shutdown().await;
}

#[tokio::test]
async fn held_pull_does_not_block_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(test_config(dir.path()))
        .await
        .expect("broker starts");
    let c = std::sync::Arc::new(
        RemotingClient::connect(&broker.local_addr().to_string(), ClientConfig::default())
            .await
            .expect("connect"),
    );
    let resp = c
        .invoke(send_request("WireHold", 0, "", b"x"), TIMEOUT_MS)
        .await
        .expect("send");
    assert_eq!(resp.code, response::SUCCESS);

    let c2 = c.clone();
    let held = tokio::spawn(async move {
        c2.invoke(
            pull_request("g", "WireHold", 1, 0, "*", Some(8_000)),
            TIMEOUT_MS,
        )
        .await
        .expect("pull answered")
    });
    // Wait until the pull is parked, then send on the same connection: the send must be
    // answered, and wake the pull.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.ctx.pull_hold.held_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "pull was never held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        c.invoke(send_request("WireHold", 1, "", b"wake"), TIMEOUT_MS),
    )
    .await
    .expect("send not blocked by the held pull")
    .expect("send");
    assert_eq!(resp.code, response::SUCCESS);
    let pulled = held.await.expect("task");
    assert_eq!(pulled.code, response::SUCCESS, "{pulled:?}");
    assert_eq!(decode(&pulled.body)[0].body.as_ref(), b"wake");
    broker.shutdown().await;
}
