//! Typed headers: Java key names, lenient parsing (clients.md), required/optional fields.

use remoting::command::ExtFieldMap;

use proptest::prelude::*;
use remoting::codes::request;
use remoting::header::decode_json;
use remoting::headers::consumer::UnregisterClientRequestHeader;
use remoting::headers::namesrv::RegisterBrokerRequestHeader;
use remoting::headers::offset::QueryConsumerOffsetRequestHeader;
use remoting::headers::pull::PullMessageRequestHeader;
use remoting::headers::send::{
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use remoting::headers::CommandHeader;
use remoting::{RemotingCommand, RemotingError};

#[test]
fn cpp_style_send_header_numbers_and_zero_one_booleans() {
    // Numbers as JSON numbers, booleans as "0"/"1", no serializeTypeCurrentRPC,
    // extra ACL-ish keys (clients.md items 1, 2, 3, 7).
    let raw = br#"{"code":310,"language":"CPP","version":63,"opaque":5,"flag":0,"remark":"",
        "extFields":{"a":"pg","b":"T","c":"TBW102","d":4,"e":0,"f":0,"g":1700000000000,"h":0,
        "i":"TAGS\u0001A\u0002","j":0,"k":"0","m":"1","OnsChannel":"ALIYUN","AccessKey":"x"}}"#;
    let cmd = decode_json(raw).unwrap();
    let h = SendMessageRequestHeader::decode_any(&cmd).unwrap();
    assert_eq!(h.producer_group, "pg");
    assert_eq!(h.default_topic_queue_nums, 4);
    assert_eq!(h.born_timestamp, 1_700_000_000_000);
    assert_eq!(h.unit_mode, Some(false));
    assert_eq!(h.batch, Some(true));
    assert_eq!(h.properties.as_deref(), Some("TAGS\u{1}A\u{2}"));
}

#[test]
fn v1_send_header_uses_full_names() {
    let h = SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: "T".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 2,
        sys_flag: 0,
        born_timestamp: 1,
        flag: 0,
        batch: Some(false),
        ..Default::default()
    };
    let cmd = RemotingCommand::request_with_header(request::SEND_MESSAGE, &h);
    assert_eq!(cmd.ext("producerGroup"), Some("PG"));
    assert_eq!(cmd.ext("queueId"), Some("2"));
    assert_eq!(cmd.ext("batch"), Some("false"));
    assert_eq!(cmd.ext("properties"), None);
    assert_eq!(SendMessageRequestHeader::decode_any(&cmd).unwrap(), h);
}

#[test]
fn required_and_invalid_fields_are_errors() {
    let mut ext = ExtFieldMap::new();
    ext.insert("consumerGroup".to_string(), "CG".to_string());
    ext.insert("topic".to_string(), "T".to_string());
    assert!(matches!(
        QueryConsumerOffsetRequestHeader::read_from(&ext),
        Err(RemotingError::MissingField("queueId"))
    ));
    ext.insert("queueId".to_string(), "x1".to_string());
    assert!(matches!(
        QueryConsumerOffsetRequestHeader::read_from(&ext),
        Err(RemotingError::InvalidField {
            field: "queueId",
            ..
        })
    ));
    ext.insert("queueId".to_string(), " 3 ".to_string());
    let h = QueryConsumerOffsetRequestHeader::read_from(&ext).unwrap();
    assert_eq!(h.queue_id, 3);
    assert_eq!(h.set_zero_if_not_found, None);
}

#[test]
fn java_spellings_of_keys() {
    let u = UnregisterClientRequestHeader {
        client_id: "c@1".into(),
        ..Default::default()
    };
    let mut ext = ExtFieldMap::new();
    u.write_to(&mut ext);
    assert_eq!(ext.get("clientID"), Some("c@1"));

    let r = RegisterBrokerRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: "127.0.0.1:10911".into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: "127.0.0.1:10912".into(),
        broker_id: 0,
        compressed: Some(false),
        body_crc32: Some(0),
        ..Default::default()
    };
    let cmd = RemotingCommand::request_with_header(request::REGISTER_BROKER, &r);
    assert_eq!(cmd.ext("haServerAddr"), Some("127.0.0.1:10912"));
    assert_eq!(cmd.ext("bodyCrc32"), Some("0"));
    assert_eq!(
        cmd.decode_header::<RegisterBrokerRequestHeader>().unwrap(),
        r
    );

    let resp = SendMessageResponseHeader {
        msg_id: "7F00000100002A9F0000000000000000".into(),
        queue_id: 1,
        queue_offset: 9,
        ..Default::default()
    };
    let mut ext = ExtFieldMap::new();
    resp.write_to(&mut ext);
    assert_eq!(ext.len(), 3);
    assert_eq!(ext.get("queueOffset"), Some("9"));
}

proptest! {
    /// Moving a header out of extFields gives what reading it gives (value or error), and
    /// removes exactly the fields the header names.
    #[test]
    fn take_header_agrees_with_decode_header(ext in proptest::collection::btree_map(
        prop_oneof![Just("a".to_string()), Just("b".to_string()), Just("c".to_string()),
                    Just("d".to_string()), Just("e".to_string()), Just("f".to_string()),
                    Just("g".to_string()), Just("h".to_string()), Just("i".to_string()),
                    Just("k".to_string()), Just("n".to_string()), ".{0,3}"],
        prop_oneof![Just("1".to_string()), Just("true".to_string()), ".{0,30}"], 0..14)) {
        // A valid header, then random extra, missing or overridden fields.
        let mut cmd = RemotingCommand::request(request::SEND_MESSAGE_V2);
        for (k, v) in [("a", "pg"), ("b", "T"), ("c", "TBW102"), ("d", "4"), ("e", "0"),
                       ("f", "0"), ("g", "5"), ("h", "0"), ("i", "K\u{1}V\u{2}")] {
            cmd.ext_fields.insert(k, v);
        }
        for (k, v) in ext {
            if v == "1" && k.len() == 1 {
                cmd.ext_fields.remove(&k);
            } else {
                cmd.ext_fields.insert(k, v);
            }
        }
        let read = cmd.decode_header::<SendMessageRequestHeaderV2>();
        let before = cmd.ext_fields.clone();
        let taken = cmd.take_header::<SendMessageRequestHeaderV2>();
        prop_assert_eq!(format!("{read:?}"), format!("{taken:?}"));
        if taken.is_ok() {
            let header_keys = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n"];
            let left: Vec<(&str, &str)> = cmd.ext_fields.iter().collect();
            let want: Vec<(&str, &str)> =
                before.iter().filter(|(k, _)| !header_keys.contains(k)).collect();
            prop_assert_eq!(left, want);
        }
    }

    #[test]
    fn header_reads_never_panic(ext in proptest::collection::btree_map(
        prop_oneof![Just("consumerGroup".to_string()), Just("topic".to_string()),
                    Just("queueId".to_string()), Just("queueOffset".to_string()),
                    Just("sysFlag".to_string()), Just("subVersion".to_string()), ".{0,8}"],
        ".{0,12}", 0..10)) {
        let ext: remoting::command::ExtFieldMap = ext.into_iter().collect();
        let _ = PullMessageRequestHeader::read_from(&ext);
        let _ = QueryConsumerOffsetRequestHeader::read_from(&ext);
    }

    #[test]
    fn pull_header_round_trip(queue_id in any::<i32>(), offset in any::<i64>(), flag in any::<i32>(),
                              sub in proptest::option::of(".{0,20}"), bname in proptest::option::of("[a-z]{1,8}")) {
        let h = PullMessageRequestHeader {
            consumer_group: "CG".into(),
            topic: "T".into(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: 32,
            sys_flag: flag,
            commit_offset: offset,
            suspend_timeout_millis: 15000,
            subscription: sub,
            sub_version: offset,
            bname,
            ..Default::default()
        };
        let mut ext = ExtFieldMap::new();
        h.write_to(&mut ext);
        prop_assert_eq!(PullMessageRequestHeader::read_from(&ext).unwrap(), h);
    }
}
