//! Stored-record micro-benchmarks: encode/decode of a 1 KiB message with typical producer
//! properties, properties encode/decode/lookup, and the consume-queue tags hash.
//! Run: `cargo bench -p store --bench message`.

use std::collections::HashMap;
use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use store::message::{
    decode_message, decode_message_bytes, decode_properties, encode_properties, encode_record,
    property, property_value, tags_hash, MessageToStore,
};

const BODY_BYTES: usize = 1024;
/// Room for one encoded record (body + header + properties); reused across iterations.
const SCRATCH_BYTES: usize = 4096;
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What a 4.9.7 Java producer puts on a tagged, keyed message.
fn producer_properties() -> HashMap<String, String> {
    [
        (property::TAGS, "TagA"),
        (property::KEYS, "order-000042 user-7"),
        (property::UNIQ_KEY, "7F0000010B2A18B4AAC27E3A2B5C0000"),
        (property::WAIT, "true"),
        (property::MSG_REGION, "DefaultRegion"),
        (property::TRACE_SWITCH, "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn sample_message() -> MessageToStore {
    let body = Bytes::from(
        (0..BODY_BYTES)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    MessageToStore::new(
        "BenchTopic",
        3,
        body,
        encode_properties(&producer_properties()),
    )
}

fn records(c: &mut Criterion) {
    let msg = sample_message();
    let mut encoded = BytesMut::with_capacity(SCRATCH_BYTES);
    let len = match encode_record(&msg, MAX_BODY_BYTES, &mut encoded) {
        Ok((len, _)) => len,
        Err(e) => panic!("sample record must encode: {e}"),
    };
    let encoded = encoded.freeze();
    assert_eq!(encoded.len(), len);
    assert_eq!(
        decode_message(&encoded).ok().map(|m| m.body),
        Some(msg.body.clone())
    );

    let mut g = c.benchmark_group("record_1KiB");
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(SCRATCH_BYTES);
        b.iter(|| {
            out.clear();
            let r = encode_record(black_box(&msg), MAX_BODY_BYTES, &mut out);
            black_box(r.is_ok())
        })
    });
    // Copies the record first (the read path for a non-mapped slice).
    g.bench_function("decode_message", |b| {
        b.iter(|| decode_message(black_box(&encoded[..])))
    });
    // Body shares the buffer.
    g.bench_function("decode_message_bytes", |b| {
        b.iter(|| decode_message_bytes(black_box(&encoded)))
    });
    g.finish();
}

fn properties(c: &mut Criterion) {
    let map = producer_properties();
    let text = encode_properties(&map);
    assert_eq!(decode_properties(&text), map);

    let mut g = c.benchmark_group("properties");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_6", |b| {
        b.iter(|| encode_properties(black_box(&map)))
    });
    g.bench_function("decode_6", |b| {
        b.iter(|| decode_properties(black_box(&text)))
    });
    // What dispatch does per record to find TAGS without building a map.
    g.bench_function("lookup_tags", |b| {
        b.iter(|| property_value(black_box(&text), property::TAGS))
    });
    g.bench_function("tags_hash", |b| b.iter(|| tags_hash(black_box("TagA"))));
    g.finish();
}

criterion_group!(benches, records, properties);
criterion_main!(benches);
