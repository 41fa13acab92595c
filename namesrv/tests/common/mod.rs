//! Helpers shared by the NameServer integration tests.
#![allow(dead_code)]

use std::time::Duration;

use namesrv::{NameServer, NameServerHandle, NamesrvConfig};
use namesrv_client::{BrokerRegistration, DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use remoting::client::{ClientConfig, RemotingClient};
use remoting::shutdown::Shutdown;
use remoting::RemotingCommand;

/// Upper bound for any wait in these tests (generous: the machine is shared and slow).
pub const WAIT: Duration = Duration::from_secs(20);
pub const RPC_TIMEOUT_MS: u64 = 5_000;

pub async fn start(config: NamesrvConfig) -> (NameServerHandle, Shutdown) {
    start_at("127.0.0.1:0", config).await
}

pub async fn start_at(addr: &str, config: NamesrvConfig) -> (NameServerHandle, Shutdown) {
    let shutdown = Shutdown::new();
    let handle = NameServer::start(addr.parse().unwrap(), config, shutdown.clone())
        .await
        .unwrap();
    (handle, shutdown)
}

pub async fn connect(ns: &NameServerHandle) -> RemotingClient {
    RemotingClient::connect(&ns.local_addr().to_string(), ClientConfig::default())
        .await
        .unwrap()
}

pub async fn call(client: &RemotingClient, cmd: RemotingCommand) -> RemotingCommand {
    client.invoke(cmd, RPC_TIMEOUT_MS).await.unwrap()
}

pub fn registration(name: &str, addr: &str, id: i64, topics: &[(&str, i32)]) -> BrokerRegistration {
    let mut wrapper = TopicConfigSerializeWrapper {
        data_version: DataVersion::new(1_700_000_000_000, 1),
        ..Default::default()
    };
    for (topic, queues) in topics {
        wrapper.topic_config_table.insert(
            topic.to_string(),
            TopicConfig::new(*topic, *queues, *queues, 6),
        );
    }
    BrokerRegistration {
        cluster_name: "DefaultCluster".into(),
        broker_name: name.into(),
        broker_addr: addr.into(),
        broker_id: id,
        ha_server_addr: format!("{addr}-ha"),
        topic_config_wrapper: wrapper,
        filter_server_list: Vec::new(),
        compressed: false,
    }
}

/// Wait (bounded) until `cond` holds on the NameServer's route tables; re-checked on
/// every route change.
pub async fn wait_route(
    ns: &NameServerHandle,
    what: &str,
    cond: impl Fn(&NameServerHandle) -> bool,
) {
    let mut changes = ns.route_info().subscribe_changes();
    let waited = tokio::time::timeout(WAIT, async {
        loop {
            if cond(ns) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for: {what}");
    assert!(cond(ns), "route condition not met: {what}");
}
