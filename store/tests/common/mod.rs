#![allow(dead_code)]

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use store::message::{decode_message_bytes, MessageExt};
use store::{
    Clock, DiskProbe, FileAllocator, FlushDiskType, MessageStore, MessageToStore, StoreConfig,
    StoreEnv,
};

pub const SEG: u64 = 128 * 1024;

pub fn config(dir: &Path, flush: FlushDiskType) -> StoreConfig {
    StoreConfig {
        store_path_root_dir: dir.to_path_buf(),
        mapped_file_size_commit_log: SEG,
        mapped_file_size_consume_queue_units: 50,
        flush_disk_type: flush,
        flush_interval_commit_log_ms: 20,
        flush_interval_consume_queue_ms: 50,
        max_message_size_bytes: 4096,
        max_hash_slot_num: 97,
        max_index_num: 64,
        store_host: "127.0.0.1:10911".parse().unwrap(),
        ..StoreConfig::default()
    }
}

pub struct ManualClock(pub AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn real_now_ms() -> i64 {
    store::SystemClock.now_ms()
}

/// Fails preallocation with ENOSPC while `full` is set.
#[derive(Default)]
pub struct FlakyAllocator {
    pub full: AtomicBool,
}

impl FileAllocator for FlakyAllocator {
    fn allocate(&self, file: &File, len: u64) -> std::io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        store::env::FallocateAllocator.allocate(file, len)
    }
}

pub struct FixedProbe(pub Mutex<f64>);

impl DiskProbe for FixedProbe {
    fn used_percent(&self, _path: &Path) -> Option<f64> {
        Some(*self.0.lock().unwrap())
    }
}

pub struct TestEnv {
    pub clock: Arc<ManualClock>,
    pub alloc: Arc<FlakyAllocator>,
    pub probe: Arc<FixedProbe>,
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv {
            clock: Arc::new(ManualClock(AtomicI64::new(real_now_ms()))),
            alloc: Arc::new(FlakyAllocator::default()),
            probe: Arc::new(FixedProbe(Mutex::new(10.0))),
        }
    }
    pub fn env(&self) -> StoreEnv {
        StoreEnv {
            clock: self.clock.clone(),
            allocator: self.alloc.clone(),
            disk_probe: self.probe.clone(),
        }
    }
}

pub fn open(dir: &Path, flush: FlushDiskType, te: &TestEnv) -> Arc<MessageStore> {
    MessageStore::open_with_env(config(dir, flush), te.env()).unwrap()
}

/// Waits until one of the `(index, store)` replicas becomes writable and returns its index
/// (event-driven over the role watches). Panics after `wait`.
pub async fn wait_writable<'a>(
    stores: impl IntoIterator<Item = (usize, &'a MessageStore)>,
    wait: Duration,
) -> usize {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (i, s) in stores {
        let mut w = s.role();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if w.borrow_and_update().writable {
                    let _ = tx.send(i);
                    return;
                }
                if w.changed().await.is_err() {
                    return;
                }
            }
        }));
    }
    let r = tokio::time::timeout(wait, rx.recv())
        .await
        .expect("no replica became writable")
        .unwrap();
    for t in tasks {
        t.abort();
    }
    r
}

pub fn msg(topic: &str, queue: i32, body: &[u8], props: &str) -> MessageToStore {
    let mut m = MessageToStore::new(
        topic,
        queue,
        Bytes::copy_from_slice(body),
        props.to_string(),
    );
    m.born_timestamp_ms = 1;
    m.born_host = "127.0.0.1:50000".parse().unwrap();
    m.store_host = "127.0.0.1:10911".parse().unwrap();
    m
}

pub fn tagged(topic: &str, queue: i32, body: &[u8], tag: &str) -> MessageToStore {
    msg(topic, queue, body, &format!("TAGS\u{1}{tag}\u{2}"))
}

/// Waits (event-based) until everything written is dispatched.
pub fn wait_dispatch(s: &MessageStore) {
    let end = s.commit_log_max_offset();
    assert!(
        s.wait_dispatched(end, Duration::from_secs(20)),
        "dispatch did not catch up"
    );
}

pub fn decode(b: &Bytes) -> MessageExt {
    decode_message_bytes(b).unwrap()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Pages of `[from, to)` of the file at `path` that are in the page cache: `mincore` over a
/// fresh read-only mapping (mapping a file faults nothing in by itself).
pub fn cached_pages(path: &Path, from: u64, to: u64) -> usize {
    const PAGE: u64 = 4096;
    let file = File::open(path).unwrap();
    // SAFETY: a read-only mapping only inspected with mincore, never read.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let (lo, hi) = (from / PAGE * PAGE, to.div_ceil(PAGE) * PAGE);
    assert!(hi as usize <= map.len().div_ceil(PAGE as usize) * PAGE as usize);
    let mut vec = vec![0u8; ((hi - lo) / PAGE) as usize];
    // SAFETY: `[lo, hi)` lies inside the mapping and is page-aligned; one byte per page.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr().add(lo as usize) as *mut libc::c_void,
            (hi - lo) as usize,
            vec.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|v| **v & 1 == 1).count()
}

/// Cached pages of the log bytes `[from, to)` in `dir`, whose files are named by their
/// 20-digit start offset and hold `seg` bytes each.
pub fn cached_log_pages(dir: &Path, seg: u64, from: u64, to: u64) -> usize {
    let mut n = 0;
    let mut base = from / seg * seg;
    while base < to {
        let path = dir.join(format!("{base:020}"));
        if path.exists() {
            n += cached_pages(&path, from.max(base) - base, to.min(base + seg) - base);
        }
        base += seg;
    }
    n
}
