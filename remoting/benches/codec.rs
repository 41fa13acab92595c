//! Remoting codec micro-benchmarks: header encode/decode in both encodings and full frame
//! decode, on the SEND_MESSAGE_V2 request of docs/protocol/frames.md §3 (the bytes a 4.9.7
//! Java producer sends). Run: `cargo bench -p remoting --bench codec`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use remoting::command::SerializeType;
use remoting::frame::{encode_frame, RemotingCodec};
use remoting::header::{decode_binary, decode_json, encode_binary, encode_json};
use remoting::headers::send::SendMessageRequestHeaderV2;
use remoting::RemotingCommand;
use tokio_util::codec::Decoder;

/// frames.md §3: the JSON header of a 4.9.7 SEND_MESSAGE_V2 (256 bytes).
const SEND_V2_JSON: &str = r#"{"code":310,"extFields":{"a":"PG","b":"T","c":"TBW102","d":"4","e":"1","f":"0","g":"1700000000000","h":"0","i":"TAGS\u0001A","j":"0","k":"false","m":"false","n":"broker-a"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":0}"#;

/// The same request as a Java producer sends it with its per-message `UNIQ_KEY` and `WAIT`
/// (properties escaped as fastjson writes them), and a 40-character topic.
const SEND_V2_UNIQ_JSON: &str = r#"{"code":310,"extFields":{"a":"benchmark_producer_group","b":"BenchmarkTopicWithALongerName_0123456789","c":"TBW102","d":"4","e":"3","f":"0","g":"1763852400123","h":"0","i":"UNIQ_KEY\u00017F0000011A2B18B4AAC27A3C5D6E0001\u0002WAIT\u0001true\u0002TAGS\u0001TagA\u0002","j":"0","k":"false","m":"false","n":"broker-a"},"flag":0,"language":"JAVA","opaque":123456,"serializeTypeCurrentRPC":"JSON","version":435}"#;

/// Largest scratch buffer a header can need here; reused across iterations.
const SCRATCH_BYTES: usize = 1024;

fn send_v2_command() -> RemotingCommand {
    let mut cmd = match decode_json(SEND_V2_JSON.as_bytes()) {
        Ok(cmd) => cmd,
        Err(e) => panic!("frames.md §3 header must decode: {e}"),
    };
    cmd.body = Bytes::from_static(b"hi");
    cmd
}

/// `length | type+headerLength | header | body` of `cmd` in the given encoding.
fn frame_bytes(cmd: &RemotingCommand, serialize_type: SerializeType) -> BytesMut {
    let mut cmd = cmd.clone();
    cmd.serialize_type = serialize_type;
    match encode_frame(&cmd) {
        Ok(bytes) => BytesMut::from(&bytes[..]),
        Err(e) => panic!("encoding the example frame: {e}"),
    }
}

fn headers(c: &mut Criterion) {
    let cmd = send_v2_command();
    let mut binary = BytesMut::with_capacity(SCRATCH_BYTES);
    if let Err(e) = encode_binary(&cmd, &mut binary) {
        panic!("binary encode: {e}");
    }
    let binary = binary.freeze();
    assert_eq!(
        decode_binary(&binary).map(|c| c.ext_fields).ok(),
        Some(cmd.ext_fields.clone()),
        "binary header round-trips"
    );

    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    g.bench_function("json_encode", |b| {
        let mut dst = BytesMut::with_capacity(SCRATCH_BYTES);
        b.iter(|| {
            dst.clear();
            encode_json(black_box(&cmd), &mut dst);
            black_box(dst.len())
        })
    });
    g.bench_function("json_decode", |b| {
        b.iter(|| decode_json(black_box(SEND_V2_JSON.as_bytes())))
    });
    g.bench_function("json_decode_uniq", |b| {
        b.iter(|| decode_json(black_box(SEND_V2_UNIQ_JSON.as_bytes())))
    });
    // What the send processor does with a decoded request: move the typed header out.
    g.bench_function("json_decode_uniq_take_send_v2", |b| {
        b.iter(|| {
            decode_json(black_box(SEND_V2_UNIQ_JSON.as_bytes()))
                .and_then(|mut cmd| cmd.take_header::<SendMessageRequestHeaderV2>())
        })
    });
    g.bench_function("binary_encode", |b| {
        let mut dst = BytesMut::with_capacity(SCRATCH_BYTES);
        b.iter(|| {
            dst.clear();
            let r = encode_binary(black_box(&cmd), &mut dst);
            black_box((r.is_ok(), dst.len()))
        })
    });
    g.bench_function("binary_decode", |b| {
        b.iter(|| decode_binary(black_box(&binary)))
    });
    // extFields → typed header (what the send processor does after decoding the frame).
    g.bench_function("typed_send_v2_decode", |b| {
        b.iter(|| black_box(&cmd).decode_header::<SendMessageRequestHeaderV2>())
    });
    g.finish();
}

fn frames(c: &mut Criterion) {
    let cmd = send_v2_command();
    let json_frame = frame_bytes(&cmd, SerializeType::Json);
    let binary_frame = frame_bytes(&cmd, SerializeType::RocketMq);

    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in [
        ("decode_json", &json_frame),
        ("decode_binary", &binary_frame),
    ] {
        g.bench_function(name, |b| {
            let mut codec = RemotingCodec::default();
            b.iter_batched(
                || frame.clone(),
                |mut buf| {
                    let decoded = codec.decode(&mut buf);
                    assert!(matches!(decoded, Ok(Some(_))), "one complete frame");
                    decoded
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("encode_json", |b| b.iter(|| encode_frame(black_box(&cmd))));
    g.finish();
}

criterion_group!(benches, headers, frames);
criterion_main!(benches);
