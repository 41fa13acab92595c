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
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use compact_str::CompactString;

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
    pub topic: CompactString,
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

/// Resolves with an append's result. A concrete type rather than a boxed future: an append
/// whose state already lives in one shared object (DLedger's pending put) costs no second
/// allocation for the caller's future.
#[must_use = "an append's outcome is only known by awaiting it"]
pub struct AppendFuture(AppendWait);

enum AppendWait {
    Ready(Option<Result<AppendResult, StoreError>>),
    Boxed(Pin<Box<dyn Future<Output = Result<AppendResult, StoreError>> + Send>>),
    Slot(Arc<dyn AppendSlot>),
}

/// A pending append's shared state, where its result is picked up.
pub(crate) trait AppendSlot: Send + Sync {
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<AppendResult, StoreError>>;
}

impl AppendFuture {
    pub fn ready(result: Result<AppendResult, StoreError>) -> Self {
        AppendFuture(AppendWait::Ready(Some(result)))
    }

    pub fn boxed(
        fut: impl Future<Output = Result<AppendResult, StoreError>> + Send + 'static,
    ) -> Self {
        AppendFuture(AppendWait::Boxed(Box::pin(fut)))
    }

    pub(crate) fn slot(slot: Arc<dyn AppendSlot>) -> Self {
        AppendFuture(AppendWait::Slot(slot))
    }
}

impl Future for AppendFuture {
    type Output = Result<AppendResult, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            AppendWait::Ready(r) => {
                Poll::Ready(r.take().expect("AppendFuture polled after completion"))
            }
            AppendWait::Boxed(f) => f.as_mut().poll(cx),
            AppendWait::Slot(s) => s.poll_result(cx),
        }
    }
}

/// A result handed from the thread that learns it to the task awaiting it: a one-shot channel
/// that lives inside the operation's own shared state instead of an allocation of its own.
pub(crate) struct Completion<T> {
    state: Mutex<CompletionState<T>>,
}

enum CompletionState<T> {
    Waiting(Option<Waker>),
    Done(T),
    Taken,
}

impl<T> Completion<T> {
    pub(crate) fn new() -> Self {
        Completion {
            state: Mutex::new(CompletionState::Waiting(None)),
        }
    }

    /// Stores the result and wakes the waiter. The first result stands; later ones are
    /// dropped (the caller answers each operation once; this keeps a second answer harmless).
    pub(crate) fn complete(&self, value: T) {
        let waker = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *st {
                CompletionState::Waiting(w) => {
                    let w = w.take();
                    *st = CompletionState::Done(value);
                    w
                }
                CompletionState::Done(_) | CompletionState::Taken => None,
            }
        };
        // Outside the lock: the woken task may poll at once on another thread.
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Ready once completed; the result is handed out once.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *st, CompletionState::Taken) {
            CompletionState::Done(v) => Poll::Ready(v),
            CompletionState::Waiting(w) => {
                let w = match w {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                *st = CompletionState::Waiting(Some(w));
                Poll::Pending
            }
            CompletionState::Taken => panic!("completion polled after its result was taken"),
        }
    }
}

/// An append's result slot on its own, for a log whose pending append has no other shared
/// state (the file commitlog's writer thread answers through it).
pub(crate) struct AnswerSlot(Completion<Result<AppendResult, StoreError>>);

impl AppendSlot for AnswerSlot {
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<AppendResult, StoreError>> {
        self.0.poll(cx)
    }
}

/// Answers one append. Dropped unanswered (its writer stopped), it answers `ShutDown`, so no
/// sender waits forever.
pub(crate) struct Responder(Arc<AnswerSlot>);

impl Responder {
    /// A responder and the future its answer resolves; one allocation for both.
    pub(crate) fn new() -> (Responder, AppendFuture) {
        let slot = Arc::new(AnswerSlot(Completion::new()));
        let fut = AppendFuture::slot(Arc::clone(&slot) as Arc<dyn AppendSlot>);
        (Responder(slot), fut)
    }

    /// The sender may have stopped waiting; nothing to do then.
    pub(crate) fn send(self, result: Result<AppendResult, StoreError>) {
        self.0 .0.complete(result);
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        // A no-op after `send`: the first answer stands.
        self.0 .0.complete(Err(StoreError::ShutDown));
    }
}

/// Receives a record the dispatcher reads, at its physical offset, borrowed from the mapped
/// log: this runs for every record on every replica, and a `Bytes` per record would cost an
/// allocation each.
pub type RecordVisitor<'a> = &'a mut dyn FnMut(i64, &[u8]) -> Result<(), StoreError>;

/// What the dispatcher finds at a physical offset.
#[derive(Debug)]
pub enum LogRead {
    /// A complete record starting at `phys` went to the visitor, which answered `visited`;
    /// the next item starts at `next`.
    Record {
        phys: i64,
        next: i64,
        visited: Result<(), StoreError>,
    },
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
    /// Reads the item at `from` (below `committed`); a record goes to `visit`.
    fn read_next(&self, from: i64, committed: i64, visit: RecordVisitor<'_>) -> LogRead;
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
