//! Property tests: decoders never panic on arbitrary input, and encode→decode round-trips.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use remoting::command::{LanguageCode, SerializeType};
use remoting::frame::{encode_frame, RemotingCodec};
use remoting::header::{decode_binary, decode_json, encode_binary, encode_json};
use remoting::RemotingCommand;
use tokio_util::codec::Decoder;

fn language() -> impl Strategy<Value = LanguageCode> {
    (0u8..14).prop_filter_map("OTHER (7) round-trips too", |c| {
        Some(LanguageCode::from_code(c))
    })
}

fn command(binary: bool) -> impl Strategy<Value = RemotingCommand> {
    let code = if binary {
        (i16::MIN as i32..=i16::MAX as i32).boxed()
    } else {
        any::<i32>().boxed()
    };
    let version = if binary {
        (i16::MIN as i32..=i16::MAX as i32).boxed()
    } else {
        any::<i32>().boxed()
    };
    (
        code,
        language(),
        version,
        any::<i32>(),
        any::<i32>(),
        proptest::option::of(".{1,40}"),
        proptest::collection::hash_map(".{1,12}", ".{1,30}", 0..8),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            move |(code, language, version, opaque, flag, remark, ext, body)| RemotingCommand {
                code,
                language,
                version,
                opaque,
                flag,
                remark,
                ext_fields: ext.into_iter().collect(),
                body: Bytes::from(body),
                body_tail: Vec::new(),
                serialize_type: if binary {
                    SerializeType::RocketMq
                } else {
                    SerializeType::Json
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frame_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                  split in 0usize..2048) {
        let mut codec = RemotingCodec::new(1024);
        let split = split.min(data.len());
        let mut buf = BytesMut::from(&data[..split]);
        let mut rest = &data[split..];
        // Feed in two parts; decode until error or need-more.
        for _ in 0..64 {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) if !rest.is_empty() => { buf.extend_from_slice(rest); rest = &[]; }
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn frame_with_valid_prefix_never_panics(st in 0u8..3, header in proptest::collection::vec(any::<u8>(), 0..300),
                                            body in proptest::collection::vec(any::<u8>(), 0..50),
                                            hl_delta in -3i32..3) {
        let hl = (header.len() as i32 + hl_delta).max(0) as u32;
        let mut frame = Vec::new();
        frame.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
        frame.extend_from_slice(&(((st as u32) << 24) | hl).to_be_bytes());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&body);
        let mut buf = BytesMut::from(&frame[..]);
        let _ = RemotingCodec::default().decode(&mut buf);
    }

    #[test]
    fn json_header_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_json(&data);
    }

    #[test]
    fn json_like_text_never_panics(text in r#"[{}\[\]":,0-9a-zA-Z\\ .eE+-]{0,200}"#) {
        let _ = decode_json(text.as_bytes());
        let _ = remoting::body::fastjson::parse(text.as_bytes());
        let _ = remoting::body::decode::<remoting::body::HeartbeatData>(text.as_bytes());
    }

    #[test]
    fn binary_header_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_binary(&data);
    }

    #[test]
    fn json_round_trip(cmd in command(false)) {
        let mut buf = BytesMut::new();
        encode_json(&cmd, &mut buf);
        let mut back = decode_json(&buf).unwrap();
        back.body = cmd.body.clone();
        prop_assert_eq!(&back, &cmd);
        let frame = encode_frame(&cmd).unwrap();
        let mut fb = BytesMut::from(&frame[..]);
        let decoded = RemotingCodec::default().decode(&mut fb).unwrap().unwrap();
        prop_assert_eq!(decoded, cmd);
    }

    #[test]
    fn a_body_in_parts_encodes_like_one_body(cmd in command(false),
                                             cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        // Cut the body at arbitrary points (empty parts included) into body + body_tail.
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (cmd.body.len() + 1)).collect();
        at.sort_unstable();
        let mut parts = Vec::new();
        let mut from = 0;
        for &to in at.iter().chain(std::iter::once(&cmd.body.len())) {
            parts.push(cmd.body.slice(from..to));
            from = to;
        }
        let mut split = cmd.clone();
        split.body = parts.remove(0);
        split.body_tail = parts;
        prop_assert_eq!(split.body_len(), cmd.body.len());
        prop_assert_eq!(split.body_contiguous(), cmd.body.clone());
        prop_assert_eq!(encode_frame(&split).unwrap(), encode_frame(&cmd).unwrap());
    }

    #[test]
    fn binary_round_trip(cmd in command(true)) {
        let mut buf = BytesMut::new();
        encode_binary(&cmd, &mut buf).unwrap();
        let mut back = decode_binary(&buf).unwrap();
        back.body = cmd.body.clone();
        prop_assert_eq!(&back, &cmd);
        let frame = encode_frame(&cmd).unwrap();
        let mut fb = BytesMut::from(&frame[..]);
        let decoded = RemotingCodec::default().decode(&mut fb).unwrap().unwrap();
        prop_assert_eq!(decoded, cmd);
    }

    #[test]
    fn several_frames_split_anywhere(cmds in proptest::collection::vec(command(false), 1..5),
                                     chunk in 1usize..64) {
        let mut all = Vec::new();
        for c in &cmds { all.extend_from_slice(&encode_frame(c).unwrap()); }
        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in all.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(c) = codec.decode(&mut buf).unwrap() { out.push(c); }
        }
        prop_assert_eq!(out, cmds);
    }
}
