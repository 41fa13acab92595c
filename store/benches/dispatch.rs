//! Consume-queue dispatch throughput: put a burst of messages into a temporary
//! `MessageStore` (ASYNC_FLUSH) and time until the dispatcher has built the consume queues
//! and the index for all of them (`wait_dispatched`). The consume queue itself is private
//! to the store, so this measures append + dispatch end to end, per message.
//! Run: `cargo bench -p store --bench dispatch`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use store::message::{property, MessageToStore};
use store::{FlushDiskType, MessageStore, StoreConfig};

/// Messages per measured burst.
const BURST_MESSAGES: usize = 1024;
/// Messages per `put_messages` call (one queue each, as a batch send).
const BATCH_MESSAGES: usize = 32;
const QUEUES: i32 = 4;
const BODY_BYTES: usize = 128;
/// Generous: a loaded 2-core machine may stall the dispatcher for a while.
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(30);

fn open_store(dir: &std::path::Path) -> Arc<MessageStore> {
    let config = StoreConfig {
        store_path_root_dir: dir.to_path_buf(),
        mapped_file_size_commit_log: 64 * 1024 * 1024,
        flush_disk_type: FlushDiskType::AsyncFlush,
        ..StoreConfig::default()
    };
    match MessageStore::open(config) {
        Ok(s) => s,
        Err(e) => panic!("opening the bench store: {e}"),
    }
}

fn batch(queue_id: i32, seq: usize) -> Vec<MessageToStore> {
    let body = Bytes::from(vec![b'x'; BODY_BYTES]);
    (0..BATCH_MESSAGES)
        .map(|i| {
            let n = seq + i;
            // TAGS feeds the CQ tags code, KEYS and UNIQ_KEY feed the index.
            let props = format!(
                "{}\u{1}Tag{}\u{2}{}\u{1}key-{n}\u{2}{}\u{1}UNIQ{n:028}\u{2}",
                property::TAGS,
                n % 4,
                property::KEYS,
                property::UNIQ_KEY
            );
            MessageToStore::new("BenchTopic", queue_id, body.clone(), props)
        })
        .collect()
}

/// Time of one burst.
struct BurstTimes {
    /// First put → everything dispatched.
    total: Duration,
    /// Last put acknowledged → everything dispatched (how far dispatch trails appends).
    lag: Duration,
}

/// One burst of `BURST_MESSAGES` messages over `QUEUES` queues.
fn burst(rt: &tokio::runtime::Runtime, store: &MessageStore, seq: &mut usize) -> BurstTimes {
    let batches: Vec<Vec<MessageToStore>> = (0..BURST_MESSAGES / BATCH_MESSAGES)
        .map(|b| {
            let v = batch(b as i32 % QUEUES, *seq);
            *seq += BATCH_MESSAGES;
            v
        })
        .collect();
    let start = Instant::now();
    let end_offset = rt.block_on(async {
        let mut end = 0i64;
        for b in batches {
            match store.put_messages(b).await {
                Ok(r) => end = r.phys_offset + i64::from(r.wrote_bytes),
                Err(e) => panic!("put_messages: {e}"),
            }
        }
        end
    });
    let acked = Instant::now();
    assert!(
        store.wait_dispatched(end_offset, DISPATCH_TIMEOUT),
        "dispatch did not reach {end_offset} within {DISPATCH_TIMEOUT:?}"
    );
    BurstTimes {
        total: start.elapsed(),
        lag: acked.elapsed(),
    }
}

fn dispatch(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let store = open_store(dir.path());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let mut seq = 0usize;

    let mut g = c.benchmark_group("dispatch");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.throughput(Throughput::Elements(BURST_MESSAGES as u64));
    g.bench_function("put_and_dispatch_1024x128B", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| burst(&rt, &store, &mut seq).total)
                .sum::<Duration>()
        })
    });
    g.finish();

    // No throughput here: the lag is a latency, not a per-message cost.
    let mut g = c.benchmark_group("dispatch_lag");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.bench_function("after_last_put_1024x128B", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| burst(&rt, &store, &mut seq).lag)
                .sum::<Duration>()
        })
    });
    g.finish();
    store.shutdown();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
