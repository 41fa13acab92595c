//! NameServer over the wire: registration, routes, expiry, connection close, role changes,
//! compressed bodies, KV and admin requests.

mod common;

use bytes::Bytes;
use common::*;
use namesrv::NamesrvConfig;
use namesrv_client::headers::{
    DeleteTopicFromNamesrvRequestHeader, GetKvListByNamespaceRequestHeader,
    GetRouteInfoRequestHeader, GetTopicsByClusterRequestHeader, KvConfigKeyRequestHeader,
    PutKvConfigRequestHeader, QueryDataVersionRequestHeader, QueryDataVersionResponseHeader,
    RegisterBrokerResponseHeader,
};
use namesrv_client::{ClusterInfo, DataVersion, KvTable, TopicList, TopicRouteData};
use remoting::codes::{request, response};
use remoting::RemotingCommand;

fn route_request(topic: &str, version: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        },
    );
    cmd.version = version;
    cmd
}

async fn route(client: &remoting::client::RemotingClient, topic: &str) -> Option<TopicRouteData> {
    let resp = call(client, route_request(topic, 475)).await;
    match resp.code {
        response::SUCCESS => Some(TopicRouteData::decode(&resp.body).unwrap()),
        response::TOPIC_NOT_EXIST => None,
        other => panic!("unexpected code {other}: {:?}", resp.remark),
    }
}

#[tokio::test]
async fn route_body_is_java_bytes_for_old_and_new_clients() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let client = connect(&ns).await;
    let master = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    let slave = registration("broker-a", "127.0.0.1:10921", 1, &[("T", 4)]);
    let resp = call(&client, master.to_command()).await;
    assert_eq!(resp.code, response::SUCCESS);
    let resp = call(&client, slave.to_command()).await;
    assert_eq!(resp.code, response::SUCCESS);
    let h: RegisterBrokerResponseHeader = resp.decode_header().unwrap();
    assert_eq!(h.master_addr.as_deref(), Some("127.0.0.1:10911"));
    assert_eq!(h.ha_server_addr.as_deref(), Some("127.0.0.1:10911-ha"));
    assert!(
        resp.body.is_empty(),
        "no ORDER_TOPIC_CONFIG entries -> no body"
    );

    // Golden bytes from namesrv.md §4 (4.9.7 Java namesrv).
    let old = call(&client, route_request("T", 63)).await;
    assert_eq!(old.code, response::SUCCESS);
    assert_eq!(
        std::str::from_utf8(&old.body).unwrap(),
        r#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
    );
    let new = call(&client, route_request("T", 475)).await;
    assert_eq!(
        std::str::from_utf8(&new.body).unwrap(),
        r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
    );
    // acceptStandardJsonOnly forces the standard form for old versions too.
    let mut forced = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(
        &GetRouteInfoRequestHeader {
            topic: "T".into(),
            accept_standard_json_only: Some(true),
        },
    );
    forced.version = 63;
    assert_eq!(call(&client, forced).await.body, new.body);

    let info = call(
        &client,
        RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO),
    )
    .await;
    let text = std::str::from_utf8(&info.body).unwrap();
    assert!(
        text.contains(r#"{0:"127.0.0.1:10911",1:"127.0.0.1:10921"}"#),
        "{text}"
    );
    let info = ClusterInfo::decode(&info.body).unwrap();
    assert_eq!(info.cluster_addr_table["DefaultCluster"].len(), 1);

    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn unknown_topic_is_topic_not_exist_with_java_remark() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let client = connect(&ns).await;
    let resp = call(&client, route_request("Nope", 475)).await;
    assert_eq!(resp.code, response::TOPIC_NOT_EXIST);
    assert_eq!(
        resp.remark.as_deref(),
        Some("No topic route info in name server for the topic: Nope")
    );
    let resp = call(&client, RemotingCommand::request(9999)).await;
    assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED);
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn expiry_drops_silent_broker_then_topic_not_exist() {
    // Short expiry, but long enough that a loaded machine answers the first route query
    // before it passes.
    let config = NamesrvConfig {
        broker_expiry_ms: 2_000,
        scan_interval_ms: 50,
        ..Default::default()
    };
    let (ns, shutdown) = start(config).await;
    let broker = connect(&ns).await;
    let reader = connect(&ns).await;
    let reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    assert_eq!(
        call(&broker, reg.to_command()).await.code,
        response::SUCCESS
    );
    assert!(route(&reader, "T").await.is_some());

    // No further registrations: the scan removes it and closes its connection.
    wait_route(&ns, "broker expired", |ns| {
        !ns.route_info().is_broker_alive("127.0.0.1:10911")
    })
    .await;
    assert!(route(&reader, "T").await.is_none());
    tokio::time::timeout(WAIT, broker.closed())
        .await
        .expect("expired broker's connection is closed");
    assert!(!reader.is_closed(), "other connections stay open");
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn connection_close_removes_broker_at_once() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let broker = connect(&ns).await;
    let reader = connect(&ns).await;
    let reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    assert_eq!(
        call(&broker, reg.to_command()).await.code,
        response::SUCCESS
    );
    assert!(route(&reader, "T").await.is_some());
    broker.close();
    wait_route(&ns, "broker removed on close", |ns| {
        !ns.route_info().is_broker_alive("127.0.0.1:10911")
    })
    .await;
    assert!(route(&reader, "T").await.is_none());
    let info = ClusterInfo::decode(
        &call(
            &reader,
            RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO),
        )
        .await
        .body,
    )
    .unwrap();
    assert!(info.broker_addr_table.is_empty() && info.cluster_addr_table.is_empty());
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn re_registration_on_new_connection_survives_old_connection_close() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let old = connect(&ns).await;
    let new = connect(&ns).await;
    let reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    assert_eq!(call(&old, reg.to_command()).await.code, response::SUCCESS);
    // A second broker lives only on `old`: its removal proves the close was processed.
    let marker = registration("broker-m", "127.0.0.1:10999", 0, &[("M", 1)]);
    assert_eq!(
        call(&old, marker.to_command()).await.code,
        response::SUCCESS
    );
    // The broker reconnects and re-registers before its old connection is torn down.
    assert_eq!(call(&new, reg.to_command()).await.code, response::SUCCESS);
    old.close();
    wait_route(&ns, "marker removed with old connection", |ns| {
        !ns.route_info().is_broker_alive("127.0.0.1:10999")
    })
    .await;
    assert!(ns.route_info().is_broker_alive("127.0.0.1:10911"));
    assert!(route(&new, "T").await.is_some());
    assert!(route(&new, "M").await.is_none());
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn role_change_moves_address_between_ids() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let n0 = connect(&ns).await;
    let n1 = connect(&ns).await;
    let reader = connect(&ns).await;
    // DLedger group "g": n0 leads (id 0), n1 follows (id 2 = selfId 1 + 1).
    let a = "127.0.0.1:20911";
    let b = "127.0.0.1:21911";
    call(&n0, registration("g", a, 0, &[("T", 4)]).to_command()).await;
    call(&n1, registration("g", b, 2, &[("T", 4)]).to_command()).await;
    let bd = &route(&reader, "T").await.unwrap().broker_datas[0];
    assert_eq!(bd.broker_addrs.get(&0).map(String::as_str), Some(a));
    assert_eq!(bd.broker_addrs.get(&2).map(String::as_str), Some(b));

    // Leadership moves to n1: n0 re-registers as follower (id 1), n1 as master, oneway
    // like Java's role-change registration.
    let mut demote = registration("g", a, 1, &[("T", 4)]).to_command();
    demote.mark_oneway();
    n0.invoke_oneway(demote).await.unwrap();
    wait_route(&ns, "a moved to id 1", |ns| {
        ns.route_info()
            .pickup_topic_route_data("T")
            .is_some_and(|r| r.broker_datas[0].broker_addrs.get(&1).map(String::as_str) == Some(a))
    })
    .await;
    let mut promote = registration("g", b, 0, &[("T", 4)]).to_command();
    promote.mark_oneway();
    n1.invoke_oneway(promote).await.unwrap();
    wait_route(&ns, "b moved to id 0", |ns| {
        ns.route_info()
            .pickup_topic_route_data("T")
            .is_some_and(|r| r.broker_datas[0].master_addr() == Some(b))
    })
    .await;
    let bd = &route(&reader, "T").await.unwrap().broker_datas[0];
    assert_eq!(
        bd.broker_addrs.len(),
        2,
        "no stale ids: {:?}",
        bd.broker_addrs
    );
    assert_eq!(bd.broker_addrs.get(&1).map(String::as_str), Some(a));

    // The follower learns its new master.
    let resp = call(&n0, registration("g", a, 1, &[("T", 4)]).to_command()).await;
    let h: RegisterBrokerResponseHeader = resp.decode_header().unwrap();
    assert_eq!(h.master_addr.as_deref(), Some(b));

    // The old leader disconnecting does not take the group down.
    n0.close();
    wait_route(&ns, "a removed", |ns| !ns.route_info().is_broker_alive(a)).await;
    let bd = &route(&reader, "T").await.unwrap().broker_datas[0];
    assert_eq!(bd.broker_addrs.len(), 1);
    assert_eq!(bd.master_addr(), Some(b));
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn compressed_register_body_is_accepted() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let client = connect(&ns).await;
    let mut reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 8), ("U", 2)]);
    reg.compressed = true;
    let cmd = reg.to_command();
    assert_eq!(cmd.ext("compressed"), Some("true"));
    assert_eq!(cmd.body[0], 0x78, "zlib stream");
    assert_eq!(call(&client, cmd).await.code, response::SUCCESS);
    let r = route(&client, "T").await.unwrap();
    assert_eq!(
        (
            r.queue_datas[0].read_queue_nums,
            r.queue_datas[0].write_queue_nums
        ),
        (8, 8)
    );
    assert!(route(&client, "U").await.is_some());
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn bad_crc_and_bad_body_are_rejected() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let client = connect(&ns).await;
    let reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    let mut cmd = reg.to_command();
    cmd.ext_fields.insert("bodyCrc32", "12345");
    let resp = call(&client, cmd).await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert_eq!(resp.remark.as_deref(), Some("crc32 not match"));

    let mut cmd = reg.to_command().with_body(Bytes::from_static(b"{not json"));
    cmd.ext_fields.remove("bodyCrc32");
    let resp = call(&client, cmd).await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(!ns.route_info().is_broker_alive("127.0.0.1:10911"));
    assert!(
        !client.is_closed(),
        "a bad request does not kill the connection"
    );
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn kv_requests_answer_like_java() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let client = connect(&ns).await;
    let get = || {
        RemotingCommand::request(request::GET_KV_CONFIG).with_header(&KvConfigKeyRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "T".into(),
        })
    };
    let list = || {
        RemotingCommand::request(request::GET_KVLIST_BY_NAMESPACE).with_header(
            &GetKvListByNamespaceRequestHeader {
                namespace: "ORDER_TOPIC_CONFIG".into(),
            },
        )
    };
    let resp = call(&client, get()).await;
    assert_eq!(resp.code, response::QUERY_NOT_FOUND);
    assert_eq!(
        resp.remark.as_deref(),
        Some("No config item, Namespace: ORDER_TOPIC_CONFIG Key: T")
    );
    let resp = call(&client, list()).await;
    assert_eq!(resp.code, response::QUERY_NOT_FOUND);
    assert_eq!(
        resp.remark.as_deref(),
        Some("No config item, Namespace: ORDER_TOPIC_CONFIG")
    );

    let put =
        RemotingCommand::request(request::PUT_KV_CONFIG).with_header(&PutKvConfigRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "T".into(),
            value: "broker-a:4".into(),
        });
    assert_eq!(call(&client, put).await.code, response::SUCCESS);
    let resp = call(&client, get()).await;
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(resp.ext("value"), Some("broker-a:4"));
    let resp = call(&client, list()).await;
    assert_eq!(
        KvTable::decode(&resp.body).unwrap().table["T"],
        "broker-a:4"
    );

    // REGISTER_BROKER answers with the ORDER_TOPIC_CONFIG table.
    let reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    let resp = call(&client, reg.to_command()).await;
    assert_eq!(
        std::str::from_utf8(&resp.body).unwrap(),
        r#"{"table":{"T":"broker-a:4"}}"#
    );

    let del = RemotingCommand::request(request::DELETE_KV_CONFIG).with_header(
        &KvConfigKeyRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "T".into(),
        },
    );
    assert_eq!(call(&client, del).await.code, response::SUCCESS);
    assert_eq!(call(&client, get()).await.code, response::QUERY_NOT_FOUND);
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn order_topic_conf_in_route_when_enabled() {
    let config = NamesrvConfig {
        order_message_enable: true,
        ..Default::default()
    };
    let (ns, shutdown) = start(config).await;
    let client = connect(&ns).await;
    call(
        &client,
        registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4), ("U", 4)]).to_command(),
    )
    .await;
    let put =
        RemotingCommand::request(request::PUT_KV_CONFIG).with_header(&PutKvConfigRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "T".into(),
            value: "broker-a:4".into(),
        });
    call(&client, put).await;
    let t = call(&client, route_request("T", 63)).await;
    assert!(std::str::from_utf8(&t.body)
        .unwrap()
        .contains(r#""filterServerTable":{},"orderTopicConf":"broker-a:4","queueDatas""#));
    let u = call(&client, route_request("U", 63)).await;
    assert!(!std::str::from_utf8(&u.body)
        .unwrap()
        .contains("orderTopicConf"));
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn topic_lists_delete_and_data_version() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let client = connect(&ns).await;
    let reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4), ("U", 4)]);
    call(&client, reg.to_command()).await;
    call(
        &client,
        registration("broker-b", "127.0.0.1:10915", 0, &[("V", 1)]).to_command(),
    )
    .await;

    let all = call(
        &client,
        RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
    )
    .await;
    assert_eq!(
        TopicList::decode(&all.body)
            .unwrap()
            .topic_list
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["T", "U", "V"]
    );
    let by_cluster = RemotingCommand::request(request::GET_TOPICS_BY_CLUSTER).with_header(
        &GetTopicsByClusterRequestHeader {
            cluster: "DefaultCluster".into(),
        },
    );
    assert_eq!(
        TopicList::decode(&call(&client, by_cluster).await.body)
            .unwrap()
            .topic_list
            .len(),
        3
    );

    let del = RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV).with_header(
        &DeleteTopicFromNamesrvRequestHeader {
            topic: "U".into(),
            cluster_name: None,
        },
    );
    assert_eq!(call(&client, del).await.code, response::SUCCESS);
    assert!(route(&client, "U").await.is_none());

    // QUERY_DATA_VERSION: same version -> unchanged; other -> changed.
    let query = |dv: DataVersion| {
        RemotingCommand::request(request::QUERY_DATA_VERSION)
            .with_header(&QueryDataVersionRequestHeader {
                broker_name: "broker-a".into(),
                broker_addr: "127.0.0.1:10911".into(),
                cluster_name: "DefaultCluster".into(),
                broker_id: 0,
            })
            .with_body(Bytes::from(dv.encode()))
    };
    let dv = reg.topic_config_wrapper.data_version;
    let resp = call(&client, query(dv)).await;
    let h: QueryDataVersionResponseHeader = resp.decode_header().unwrap();
    assert_eq!(h.changed, Some(false));
    assert_eq!(DataVersion::decode(&resp.body).unwrap(), dv);
    let resp = call(&client, query(dv.next(dv.timestamp + 1))).await;
    let h: QueryDataVersionResponseHeader = resp.decode_header().unwrap();
    assert_eq!(h.changed, Some(true));
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn unregister_removes_broker() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let client = connect(&ns).await;
    let reg = registration("broker-a", "127.0.0.1:10911", 0, &[("T", 4)]);
    call(&client, reg.to_command()).await;
    let nsc =
        namesrv_client::NamesrvClient::new(vec![ns.local_addr().to_string()], Default::default());
    assert_eq!(nsc.unregister_broker(&reg).await.unwrap(), 1);
    assert!(route(&client, "T").await.is_none());
    assert!(!ns.route_info().is_broker_alive("127.0.0.1:10911"));
    shutdown.trigger();
    ns.join().await;
}

#[tokio::test]
async fn binary_header_requests_and_pre_3_0_11_bodies() {
    let (ns, shutdown) = start(NamesrvConfig::default()).await;
    let client = connect(&ns).await;
    // A pre-V3_0_11 broker sends a bare TopicConfigSerializeWrapper as body.
    let reg = registration("broker-old", "127.0.0.1:10931", 0, &[("OLD", 3)]);
    let mut cmd = reg.to_command();
    let wrapper = serde_json::to_vec(&reg.topic_config_wrapper).unwrap();
    cmd.ext_fields.remove("bodyCrc32");
    cmd.version = 36;
    cmd.body = Bytes::from(wrapper);
    assert_eq!(call(&client, cmd).await.code, response::SUCCESS);

    // Requests with the ROCKETMQ binary header are answered in kind.
    let mut req = route_request("OLD", 475);
    req.serialize_type = remoting::SerializeType::RocketMq;
    let resp = call(&client, req).await;
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(resp.serialize_type, remoting::SerializeType::RocketMq);
    let r = TopicRouteData::decode(&resp.body).unwrap();
    assert_eq!(r.queue_datas[0].read_queue_nums, 3);
    shutdown.trigger();
    ns.join().await;
}
