//! namesrv-client against our NameServer: fan-out to several NameServers, periodic
//! registration with coalesced `register_now`, role changes, reconnect after restart.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::*;
use namesrv::NamesrvConfig;
use namesrv_client::client::next_data_version;
use namesrv_client::{BrokerRegistration, NamesrvClient, NamesrvClientConfig, TopicConfig};
use remoting::shutdown::Shutdown;

fn register_count(ns: &namesrv::NameServerHandle) -> u64 {
    ns.state().stats.register_requests.load(Ordering::Relaxed)
}

#[tokio::test]
async fn registers_with_every_namesrv_and_slave_learns_master() {
    let (ns1, s1) = start(NamesrvConfig::default()).await;
    let (ns2, s2) = start(NamesrvConfig::default()).await;
    let client = NamesrvClient::new(
        vec![ns1.local_addr().to_string(), ns2.local_addr().to_string()],
        NamesrvClientConfig::default(),
    );
    let master = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    let results = client.register_broker(&master).await.unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.master_addr.is_none()));
    let slave = registration("broker-a", "127.0.0.1:10921", 1, &[("T", 4)]);
    let results = client.register_broker(&slave).await.unwrap();
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_eq!(r.master_addr.as_deref(), Some("127.0.0.1:10911"));
        assert_eq!(r.ha_server_addr.as_deref(), Some("127.0.0.1:10911-ha"));
    }
    for ns in [&ns1, &ns2] {
        let route = ns.route_info().pickup_topic_route_data("T").unwrap();
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
    }
    // Route and cluster queries through the client parse our answers.
    let route = client.get_route_info("T").await.unwrap().unwrap();
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert!(client.get_route_info("missing").await.unwrap().is_none());
    let info = client.get_cluster_info().await.unwrap();
    assert!(info.broker_addr_table.contains_key("broker-a"));
    // One registration per call per NameServer, on one kept-open connection.
    assert_eq!(register_count(&ns1), 2);

    // One NameServer down: registration still succeeds with the other.
    s2.trigger();
    ns2.join().await;
    let results = client.register_broker(&master).await.unwrap();
    assert_eq!(results.len(), 1);
    let each = client.register_broker_each(&master).await;
    assert!(each[0].1.is_ok() && each[1].1.is_err());
    s1.trigger();
    ns1.join().await;
    assert!(client.register_broker(&master).await.is_err());
}

/// Single-threaded runtime: the burst runs without interleaving, so the result is exact.
#[tokio::test(flavor = "current_thread")]
async fn register_now_bursts_coalesce() {
    let (ns, s) = start(NamesrvConfig::default()).await;
    let client = Arc::new(NamesrvClient::new(
        vec![ns.local_addr().to_string()],
        NamesrvClientConfig::default(),
    ));
    let reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    let source = Arc::new(move || reg.clone());
    let stop = Shutdown::new();
    // Long period: every round after the first comes from register_now.
    let handle = client.start_periodic(60_000, source, stop.clone());
    handle.wait_rounds(1).await;
    assert_eq!(handle.last_ok_count(), 1);
    assert_eq!(register_count(&ns), 1);

    for _ in 0..50 {
        handle.register_now();
    }
    handle.wait_rounds(2).await;
    // Settle: let any (wrongly) queued extra round run before stopping.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    stop.trigger();
    handle.join().await;
    assert_eq!(
        handle.rounds(),
        2,
        "50 triggers while idle coalesce into one round"
    );
    assert_eq!(register_count(&ns), 2);
    s.trigger();
    ns.join().await;
}

#[tokio::test]
async fn periodic_interval_and_role_change_via_source() {
    let (ns, s) = start(NamesrvConfig::default()).await;
    let client = Arc::new(NamesrvClient::new(
        vec![ns.local_addr().to_string()],
        NamesrvClientConfig::default(),
    ));
    // The broker's role state: id 1 (follower) until it becomes leader.
    let broker_id = Arc::new(AtomicI64::new(1));
    let id = broker_id.clone();
    let source = Arc::new(move || {
        let mut reg: BrokerRegistration = registration("g", "127.0.0.1:20911", 0, &[("T", 4)]);
        reg.broker_id = id.load(Ordering::SeqCst);
        reg
    });
    let stop = Shutdown::new();
    // Short period: rounds keep coming without triggers.
    let handle = client.start_periodic(20, source, stop.clone());
    handle.wait_rounds(3).await;
    wait_route(&ns, "registered as slave id 1", |ns| {
        ns.route_info()
            .cluster_info()
            .broker_addr_table
            .get("g")
            .is_some_and(|bd| {
                bd.broker_addrs.get(&1).map(String::as_str) == Some("127.0.0.1:20911")
            })
    })
    .await;
    assert!(
        ns.route_info().pickup_topic_route_data("T").is_none(),
        "slave carries no queue data"
    );

    broker_id.store(0, Ordering::SeqCst);
    handle.register_now();
    wait_route(&ns, "promoted to id 0 with queue data", |ns| {
        ns.route_info()
            .pickup_topic_route_data("T")
            .is_some_and(|r| {
                r.broker_datas[0].broker_addrs.len() == 1
                    && r.broker_datas[0].master_addr() == Some("127.0.0.1:20911")
            })
    })
    .await;
    stop.trigger();
    handle.join().await;
    s.trigger();
    ns.join().await;
}

#[tokio::test]
async fn reconnects_after_namesrv_restart() {
    let (ns1, s1) = start(NamesrvConfig::default()).await;
    let addr = ns1.local_addr().to_string();
    let client = Arc::new(NamesrvClient::new(
        vec![addr.clone()],
        NamesrvClientConfig::default(),
    ));
    let topics = Arc::new(std::sync::Mutex::new(registration(
        "broker-a",
        "127.0.0.1:10911",
        0,
        &[("T", 4)],
    )));
    let t = topics.clone();
    let source = Arc::new(move || t.lock().unwrap().clone());
    let stop = Shutdown::new();
    let handle = client.clone().start_periodic(60_000, source, stop.clone());
    handle.wait_rounds(1).await;
    assert!(ns1.route_info().is_broker_alive("127.0.0.1:10911"));

    // Restart the NameServer on the same port: it comes back empty.
    s1.trigger();
    ns1.join().await;
    let (ns2, s2) = start_at(&addr, NamesrvConfig::default()).await;
    assert!(!ns2.route_info().is_broker_alive("127.0.0.1:10911"));

    // A topic change triggers a registration, which must reconnect transparently.
    {
        let mut reg = topics.lock().unwrap();
        reg.topic_config_wrapper
            .topic_config_table
            .insert("NEW".into(), TopicConfig::new("NEW", 2, 2, 6));
        reg.topic_config_wrapper.data_version =
            next_data_version(&reg.topic_config_wrapper.data_version);
    }
    handle.register_now();
    wait_route(&ns2, "re-registered after restart", |ns| {
        ns.route_info().pickup_topic_route_data("NEW").is_some()
    })
    .await;
    assert!(ns2.route_info().pickup_topic_route_data("T").is_some());
    stop.trigger();
    handle.join().await;
    s2.trigger();
    ns2.join().await;
}

#[tokio::test]
async fn periodic_slave_learns_master_from_last_results() {
    let (ns, s) = start(NamesrvConfig::default()).await;
    let client = Arc::new(NamesrvClient::new(
        vec![ns.local_addr().to_string()],
        NamesrvClientConfig::default(),
    ));
    let master = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    client.register_broker(&master).await.unwrap();
    let slave = registration("broker-a", "127.0.0.1:10921", 1, &[("T", 4)]);
    let stop = Shutdown::new();
    let handle = client.start_periodic(60_000, Arc::new(move || slave.clone()), stop.clone());
    handle.wait_rounds(1).await;
    let results = handle.last_results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].master_addr.as_deref(), Some("127.0.0.1:10911"));
    assert_eq!(
        results[0].ha_server_addr.as_deref(),
        Some("127.0.0.1:10911-ha")
    );
    assert!(handle.last_errors().is_empty());
    stop.trigger();
    handle.join().await;
    s.trigger();
    ns.join().await;
}

#[tokio::test]
async fn failed_first_round_is_retried_before_the_interval() {
    // Reserve a port, then free it: the NameServer is not up when the broker starts.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap().to_string();
    drop(probe);
    let client = Arc::new(NamesrvClient::new(
        vec![addr.clone()],
        NamesrvClientConfig::default(),
    ));
    let reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    let stop = Shutdown::new();
    // Interval far beyond the test's wait bound: only the retry can register in time.
    let handle = client.start_periodic(60_000, Arc::new(move || reg.clone()), stop.clone());
    handle.wait_rounds(1).await;
    assert_eq!(handle.last_ok_count(), 0);
    assert_eq!(handle.last_errors().len(), 1);
    let (ns, s) = start_at(&addr, NamesrvConfig::default()).await;
    wait_route(&ns, "registered by the retry", |ns| {
        ns.route_info().is_broker_alive("127.0.0.1:10911")
    })
    .await;
    stop.trigger();
    handle.join().await;
    s.trigger();
    ns.join().await;
}
