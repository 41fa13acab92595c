//! Golden frames from docs/protocol/frames.md §3 and §4 (bytes produced by the 4.9.7 Java
//! classes): they must decode to the right command and re-encode byte-for-byte.

use bytes::BytesMut;
use remoting::command::{LanguageCode, SerializeType};
use remoting::frame::{encode_frame, RemotingCodec};
use remoting::headers::send::{SendMessageRequestHeader, SendMessageRequestHeaderV2};
use remoting::RemotingCommand;
use tokio_util::codec::Decoder;

const SEND_V2_JSON: &str = r#"{"code":310,"extFields":{"a":"PG","b":"T","c":"TBW102","d":"4","e":"1","f":"0","g":"1700000000000","h":"0","i":"TAGS\u0001A","j":"0","k":"false","m":"false","n":"broker-a"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":0}"#;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn decode_one(bytes: &[u8]) -> RemotingCommand {
    let mut buf = BytesMut::from(bytes);
    let cmd = RemotingCodec::default()
        .decode(&mut buf)
        .expect("valid frame")
        .expect("complete frame");
    assert!(buf.is_empty(), "the whole frame is consumed");
    cmd
}

#[test]
fn json_send_message_v2_golden() {
    let header = SEND_V2_JSON.as_bytes();
    assert_eq!(header.len(), 256, "frames.md: header length 256");
    let mut frame = hex("00 00 01 06 00 00 01 00");
    frame.extend_from_slice(header);
    frame.extend_from_slice(b"hi");

    let cmd = decode_one(&frame);
    assert_eq!(cmd.serialize_type, SerializeType::Json);
    assert_eq!(cmd.code, 310);
    assert_eq!(cmd.opaque, 7);
    assert_eq!(cmd.flag, 0);
    assert_eq!(cmd.version, 0);
    assert_eq!(cmd.language, LanguageCode::Java);
    assert_eq!(cmd.remark, None);
    assert_eq!(&cmd.body[..], b"hi");
    assert_eq!(cmd.ext("i"), Some("TAGS\u{1}A"));

    let v2: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
    let h: SendMessageRequestHeader = v2.into();
    assert_eq!(h.producer_group, "PG");
    assert_eq!(h.topic, "T");
    assert_eq!(h.default_topic, "TBW102");
    assert_eq!(h.default_topic_queue_nums, 4);
    assert_eq!(h.queue_id, 1);
    assert_eq!(h.born_timestamp, 1_700_000_000_000);
    assert_eq!(h.properties.as_deref(), Some("TAGS\u{1}A"));
    assert_eq!(h.unit_mode, Some(false));
    assert_eq!(h.batch, Some(false));
    assert_eq!(h.max_reconsume_times, None);
    assert_eq!(h.broker_name.as_deref(), Some("broker-a"));
    assert_eq!(SendMessageRequestHeader::decode_any(&cmd).unwrap(), h);

    // Re-encoded in the same (JSON) type, byte-identical.
    assert_eq!(&encode_frame(&cmd).unwrap()[..], &frame[..]);
}

#[test]
fn binary_heart_beat_golden() {
    let frame = hex(
        "00000022 0100001e 0022 00 0000 00000001 00000000 00000001 72 00000008 0001 6b 00000001 76",
    );
    let cmd = decode_one(&frame);
    assert_eq!(cmd.serialize_type, SerializeType::RocketMq);
    assert_eq!(cmd.code, 34);
    assert_eq!(cmd.language, LanguageCode::Java);
    assert_eq!(cmd.version, 0);
    assert_eq!(cmd.opaque, 1);
    assert_eq!(cmd.flag, 0);
    assert_eq!(cmd.remark.as_deref(), Some("r"));
    assert_eq!(cmd.ext_fields.len(), 1);
    assert_eq!(cmd.ext("k"), Some("v"));
    assert!(cmd.body.is_empty());
    assert_eq!(&encode_frame(&cmd).unwrap()[..], &frame[..]);
}

#[test]
fn binary_send_v2_prefix_golden() {
    // frames.md §4: the SEND_MESSAGE_V2 of §3 in binary starts with these bytes.
    let prefix = hex(
        "000000a9 010000a3 0136 00 0000 00000007 00000000 00000000 0000008e 0001 61 00000002 5047 0001 62 00000001 54",
    );
    let json = decode_one(&{
        let mut f = hex("00 00 01 06 00 00 01 00");
        f.extend_from_slice(SEND_V2_JSON.as_bytes());
        f.extend_from_slice(b"hi");
        f
    });
    let mut bin = json.clone();
    bin.serialize_type = SerializeType::RocketMq;
    let encoded = encode_frame(&bin).unwrap();
    // Same length and same leading entries (our keys are sorted; Java's HashMap order for
    // single-letter keys is alphabetical too).
    assert_eq!(&encoded[..prefix.len()], &prefix[..]);
    let back = decode_one(&encoded);
    assert_eq!(back.ext_fields, json.ext_fields);
    assert_eq!(&back.body[..], b"hi");
}

#[test]
fn frame_limits_follow_netty() {
    // length + 4 == limit is accepted, one more byte is not.
    let cmd = RemotingCommand::request(34).with_body(vec![7u8; 100]);
    let frame = encode_frame(&cmd).unwrap();
    let mut ok = BytesMut::from(&frame[..]);
    assert!(RemotingCodec::new(frame.len())
        .decode(&mut ok)
        .unwrap()
        .is_some());
    let mut too_big = BytesMut::from(&frame[..]);
    assert!(matches!(
        RemotingCodec::new(frame.len() - 1).decode(&mut too_big),
        Err(remoting::RemotingError::FrameTooLarge { .. })
    ));
    // Header length beyond the frame: rejected.
    let mut bad = BytesMut::from(&hex("00000008 00000100 7b7d 0000")[..]);
    assert!(RemotingCodec::default().decode(&mut bad).is_err());
    // Partial frame: wait for more.
    let mut partial = BytesMut::from(&frame[..frame.len() - 1]);
    assert!(RemotingCodec::default()
        .decode(&mut partial)
        .unwrap()
        .is_none());
}

/// A SEND_MESSAGE_V2 header captured from the npm client `ali-ons@3.12.0` (via a TCP proxy in
/// front of `examples/capture_server.rs`): numbers and booleans as JSON values in extFields,
/// no `serializeTypeCurrentRPC`, members in non-alphabetical order (docs/clients.md items 1–2).
#[test]
fn ali_ons_send_header_captured() {
    let header = br#"{"code":310,"language":"JAVA","opaque":2,"flag":0,"version":121,"extFields":{"a":"pg","b":"TopicTest","c":"TBW102","d":4,"e":2,"f":0,"g":1795306068773,"h":0,"i":"TAGS\u0001TagA\u0002","j":0,"k":false}}"#;
    assert_eq!(header.len(), 201);
    let body = b"hello 0";
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    frame.extend_from_slice(body);
    let cmd = decode_one(&frame);
    assert_eq!(cmd.version, 121);
    assert_eq!(&cmd.body[..], body);
    let h = SendMessageRequestHeader::decode_any(&cmd).unwrap();
    assert_eq!(h.default_topic_queue_nums, 4);
    assert_eq!(h.queue_id, 2);
    assert_eq!(h.born_timestamp, 1_795_306_068_773);
    assert_eq!(h.unit_mode, Some(false));
    assert_eq!(h.batch, None);
    assert_eq!(h.properties.as_deref(), Some("TAGS\u{1}TagA\u{2}"));
    // Our answer to it goes out as standard fastjson-shaped JSON with string values.
    let resp = RemotingCommand::response_to(&cmd, 0).with_ext("queueId", "2");
    let out = encode_frame(&resp).unwrap();
    let text = String::from_utf8_lossy(&out[8..]);
    assert!(text.contains(r#""extFields":{"queueId":"2"}"#), "{text}");
    assert!(text.contains(r#""opaque":2"#) && text.contains(r#""flag":1"#));
}
