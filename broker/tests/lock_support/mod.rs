//! LOCK_BATCH_MQ / UNLOCK_BATCH_MQ bodies and answers, shared by the wire and group tests.

use remoting::codes::response;
use remoting::RemotingCommand;

/// A lock/unlock request for `queues` of `topic` on broker-a, for `group` and `client_id`.
pub fn lock_cmd(
    code: i32,
    topic: &str,
    group: &str,
    client_id: &str,
    queues: &[i32],
) -> RemotingCommand {
    let mqs: Vec<String> = queues
        .iter()
        .map(|q| format!(r#"{{"brokerName":"broker-a","queueId":{q},"topic":"{topic}"}}"#))
        .collect();
    let body = format!(
        r#"{{"clientId":"{client_id}","consumerGroup":"{group}","mqSet":[{}]}}"#,
        mqs.join(",")
    );
    RemotingCommand::request(code).with_body(body.into_bytes())
}

/// Queue ids of a successful LOCK_BATCH_MQ answer, sorted.
pub fn locked_queues(resp: &RemotingCommand) -> Vec<i64> {
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let mut q: Vec<i64> = v["lockOKMQSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["queueId"].as_i64().unwrap())
        .collect();
    q.sort();
    q
}
