//! The commitlog seam. `MessageStore` talks to the log only through [`CommitLog`]; the file
//! implementation lives in `file_log.rs`, a DLedger-backed one implements the same trait.
//!
//! Contract:
//! * `append` resolves once the records are durable (SYNC_FLUSH), written (ASYNC_FLUSH) or
//!   committed by a quorum (DLedger), with the physical offset of every record.
//! * The implementation assigns queue offsets (from the shared [`QueueOffsetTable`]) and
//!   physical offsets in log order, patching QUEUEOFFSET / PHYSICALOFFSET / STORETIMESTAMP
//!   into the encoded records.
//! * `committed_offset` is the dispatch watermark: records below it never disappear.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::error::StoreError;

pub mod dledger;
mod dledger_map;

/// One append: one record, or a batch of records for one (topic, queue) that must land
/// contiguously with consecutive queue offsets.
#[derive(Debug)]
pub struct AppendRequest {
    /// Encoded records back to back (message-format.md §1), fields to patch left 0.
    pub records: BytesMut,
    pub record_count: u32,
    pub topic: String,
    pub queue_id: i32,
    /// False for PREPARED / ROLLBACK transaction records (queue offset 0, not advanced).
    pub assign_queue_offsets: bool,
    /// SYNC_FLUSH / group: resolve only once durable. False = Java `WAIT=false`: resolve
    /// after the write (dispatch still waits for durability).
    pub wait_durable: bool,
}

#[derive(Debug, Clone)]
pub struct AppendResult {
    /// Physical offset of the first record; the request's records follow it back to back
    /// (a caller that needs each one's offset adds up the sizes of the records it encoded).
    pub phys_offset: i64,
    /// Queue offset of the first record.
    pub queue_offset: i64,
    pub wrote_bytes: i32,
    pub store_timestamp_ms: i64,
}

pub type AppendFuture = Pin<Box<dyn Future<Output = Result<AppendResult, StoreError>> + Send>>;

/// What the dispatcher finds at a physical offset.
#[derive(Debug)]
pub enum LogRead {
    /// A complete record starting at `phys`; the next item starts at `next`.
    Record { phys: i64, data: Bytes, next: i64 },
    /// Padding (end-of-file blank, entry header...): continue at `next`.
    Skip { next: i64 },
    /// Nothing readable yet at this offset.
    NotYet,
    /// Data below the watermark that does not parse; the dispatcher skips to `next`.
    Corrupt { reason: String, next: i64 },
}

pub trait CommitLog: Send + Sync {
    /// Queues an append; the future resolves once durable/committed. Must not block.
    fn append(&self, req: AppendRequest) -> AppendFuture;
    /// Dispatch watermark (exclusive end of committed/durable data).
    fn committed_offset(&self) -> i64;
    /// Blocks (dispatcher thread only) until the watermark exceeds `offset` or `timeout`
    /// passes; returns the watermark.
    fn wait_committed_beyond(&self, offset: i64, timeout: Duration) -> i64;
    /// Reads the item at `from` (below `committed`).
    fn read_next(&self, from: i64, committed: i64) -> LogRead;
    /// Zero-copy read of `size` bytes at `phys` (must lie inside one segment, below the
    /// committed watermark).
    fn read(&self, phys: i64, size: usize) -> Option<Bytes>;
    /// Oldest readable offset.
    fn min_offset(&self) -> i64;
    /// Exclusive end of written data (may exceed `committed_offset`).
    fn max_offset(&self) -> i64;
    /// Exclusive end of data known to be on disk.
    fn flushed_offset(&self) -> i64;
    /// Flushes everything written so far (blocking; not on executor threads).
    fn flush(&self) -> Result<(), StoreError>;
    /// Deletes whole segments that end at or below `max_phys` and whose data is older than
    /// `expire_before_ms` (or all such when `force`), at most `max_files`, never the last
    /// one. Returns the number deleted.
    fn delete_expired(
        &self,
        expire_before_ms: i64,
        force: bool,
        max_phys: i64,
        max_files: usize,
    ) -> usize;
    /// Bytes occupied by segments.
    fn disk_bytes(&self) -> u64;
    /// Stops threads after draining (pending appends fail with `ShutDown`).
    fn shutdown(&self);
    /// Number of fsync/msync batches issued (group-commit observability).
    fn fsync_count(&self) -> u64;
    /// Drops this process's page mappings of log bytes below `below` (already dispatched and
    /// on disk): they stay in the page cache and fault back in if read, but no longer count
    /// in the broker's RSS, which otherwise grows with everything the dispatcher ever read.
    fn release_mapped_below(&self, _below: i64) {}
    /// Drops the page cache of the log bytes in `[from, to)` (page-aligned, dispatched and
    /// on disk) with `POSIX_FADV_DONTNEED`: pages nobody maps are freed at once, reads fault
    /// them back in from disk (`StoreConfig::log_page_cache_keep_bytes`).
    fn drop_page_cache(&self, _from: i64, _to: i64) {}
    /// Bytes mapped by reads below the last `release_mapped_below` point so far
    /// (monotonic, an estimate): pages that stay in RSS until the next pass.
    fn cold_read_bytes(&self) -> u64 {
        0
    }
}

/// Next queue offset per (topic, queue). Shared by the store (delete, rebuild) and the log's
/// writer, which locks it once per write batch.
#[derive(Debug, Default)]
pub struct QueueOffsetTable {
    inner: Mutex<HashMap<String, HashMap<i32, i64>>>,
}

impl QueueOffsetTable {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<i32, i64>>> {
        // A poisoned lock only means another thread panicked mid-update of plain integers.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn get(&self, topic: &str, queue_id: i32) -> i64 {
        self.lock()
            .get(topic)
            .and_then(|q| q.get(&queue_id))
            .copied()
            .unwrap_or(0)
    }
    pub fn set(&self, topic: &str, queue_id: i32, next: i64) {
        let mut g = self.lock();
        match g.get_mut(topic) {
            Some(q) => {
                q.insert(queue_id, next);
            }
            None => {
                g.entry(topic.to_string())
                    .or_default()
                    .insert(queue_id, next);
            }
        }
    }
    pub fn remove_topic(&self, topic: &str) {
        self.lock().remove(topic);
    }
}

/// A monotonically increasing offset that threads can wait on.
///
/// Publishing is on the append path (once per acknowledged put), so it takes the lock and
/// wakes only when the value moved and someone waits: a condvar notify is a syscall even
/// without waiters.
#[derive(Debug)]
pub struct Watermark {
    value: AtomicI64,
    /// Threads inside `wait_beyond`. SeqCst with `value` (Dekker): a waiter registers, then
    /// reads the value; a publisher raises the value, then reads this. One of them sees the
    /// other, so a waiter that read the old value is always woken.
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Watermark {
    pub fn new(v: i64) -> Self {
        Watermark {
            value: AtomicI64::new(v),
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Acquire)
    }
    pub fn publish(&self, v: i64) {
        // fetch_max: racing publishers can never move the watermark backwards.
        let prev = self.value.fetch_max(v, Ordering::SeqCst);
        if prev < v && self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify();
        }
    }
    /// Wakes waiters without changing the value (shutdown).
    pub fn notify(&self) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.cv.notify_all();
    }
    pub fn wait_beyond(&self, offset: i64, timeout: Duration) -> i64 {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _registered = WaiterGuard(&self.waiters);
        loop {
            let v = self.value.load(Ordering::SeqCst);
            if v > offset {
                return v;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return v;
            }
            let (ng, _) = self
                .cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner());
            g = ng;
        }
    }
}

/// Unregisters a `wait_beyond` caller however it returns.
struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// `publish` skips the lock when nobody waits: a waiter that has just registered must
    /// still be woken. A lost wake-up would leave a waiter asleep for its (hour-long)
    /// timeout, which the watchdog below turns into a failure.
    #[test]
    fn a_publish_always_wakes_a_waiter_it_passes() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let w = Arc::new(Watermark::new(0));
            for round in 1..=2000i64 {
                let w2 = Arc::clone(&w);
                let waiter = std::thread::spawn(move || {
                    w2.wait_beyond(round - 1, Duration::from_secs(3600))
                });
                w.publish(round);
                let seen = waiter.join().unwrap_or(-1);
                if seen != round {
                    let _ = done_tx.send(Err(format!("round {round}: waiter saw {seen}")));
                    return;
                }
            }
            let _ = done_tx.send(Ok(()));
        });
        match done_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(r) => r.unwrap(),
            Err(_) => panic!("a waiter was not woken by the publish that passed it"),
        }
    }
}
