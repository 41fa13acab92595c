//! Property tests: what we emit, our parsers read back, in both JSON flavours; arbitrary
//! input never panics the decoders.

use std::collections::BTreeMap;

use namesrv_client::fastjson::normalize;
use namesrv_client::{
    BrokerData, ClusterInfo, JsonStyle, QueueData, RegisterBrokerBody, TopicConfig, TopicRouteData,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    // Includes quotes, backslashes, braces, colons, commas, control and non-ASCII characters.
    proptest::string::string_regex("[a-zA-Z0-9_%:,{}\"\\\\ \u{1}\u{e9}\u{4e2d}-]{1,12}").unwrap()
}

fn broker_data() -> impl Strategy<Value = BrokerData> {
    (
        proptest::collection::btree_map(-2i64..40, name(), 0..5),
        name(),
        name(),
    )
        .prop_map(|(broker_addrs, broker_name, cluster)| BrokerData {
            broker_addrs,
            broker_name,
            cluster,
            ..Default::default()
        })
}

fn route() -> impl Strategy<Value = TopicRouteData> {
    (
        proptest::collection::vec(broker_data(), 0..4),
        proptest::collection::vec((name(), 0i32..8, 0i32..64, 0i32..64, 0i32..4), 0..4),
        proptest::option::of(name()),
        proptest::collection::btree_map(name(), proptest::collection::vec(name(), 0..3), 0..2),
    )
        .prop_map(
            |(broker_datas, qds, order_topic_conf, filter_server_table)| TopicRouteData {
                broker_datas,
                filter_server_table,
                order_topic_conf,
                queue_datas: qds
                    .into_iter()
                    .map(|(broker_name, perm, r, w, f)| QueueData {
                        broker_name,
                        perm,
                        read_queue_nums: r,
                        topic_sys_flag: f,
                        write_queue_nums: w,
                    })
                    .collect(),
            },
        )
}

proptest! {
    #[test]
    fn route_round_trips_in_both_styles(r in route()) {
        for style in [JsonStyle::Fastjson, JsonStyle::Standard] {
            let bytes = r.encode(style);
            let back = TopicRouteData::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &r);
        }
        // The standard flavour is plain JSON.
        let standard = r.encode(JsonStyle::Standard);
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&standard).is_ok());
    }

    #[test]
    fn cluster_info_round_trips(bds in proptest::collection::vec(broker_data(), 0..4)) {
        let mut info = ClusterInfo::default();
        for bd in bds {
            info.cluster_addr_table.entry(bd.cluster.clone()).or_default().insert(bd.broker_name.clone());
            info.broker_addr_table.insert(bd.broker_name.clone(), bd);
        }
        prop_assert_eq!(ClusterInfo::decode(&info.encode()).unwrap(), info);
    }

    #[test]
    fn compressed_register_body_round_trips(
        topics in proptest::collection::btree_map("[A-Za-z0-9_%-]{1,20}", (1i32..64, 1i32..64, 0i32..8), 0..20),
        filters in proptest::collection::vec(name(), 0..3),
    ) {
        let mut body = RegisterBrokerBody { filter_server_list: filters, ..Default::default() };
        for (t, (r, w, p)) in topics {
            body.topic_config_serialize_wrapper.topic_config_table.insert(t.clone(), TopicConfig::new(t, r, w, p));
        }
        prop_assert_eq!(&RegisterBrokerBody::decode(&body.encode(true), true).unwrap(), &body);
        prop_assert_eq!(&RegisterBrokerBody::decode(&body.encode(false), false).unwrap(), &body);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = TopicRouteData::decode(&bytes);
        let _ = RegisterBrokerBody::decode(&bytes, true);
        let _ = RegisterBrokerBody::decode(&bytes, false);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = normalize(text);
        }
    }

    #[test]
    fn normalize_keeps_standard_json_intact(m in proptest::collection::btree_map(name(), name(), 0..5)) {
        let text = serde_json::to_string(&m).unwrap();
        let normalized = normalize(&text);
        prop_assert_eq!(normalized.as_ref(), text.as_str());
        let _: BTreeMap<String, String> = serde_json::from_str(&normalize(&text)).unwrap();
    }
}
