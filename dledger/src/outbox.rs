//! Coalesces appends issued in one burst into one hand-over to the node loop.
//!
//! Why: a broker worker reads many requests from one socket read and runs them one after
//! another; handing each append to the node loop on its own woke the loop (on another
//! CPU) for the first one, which then built a Ready, a storage job, an fsync and an
//! AppendEntries per follower for that single entry while the rest of the burst queued
//! behind it. On this kind of VM a cross-CPU wake-up costs ~10 µs of CPU, so one-entry
//! rounds were the most expensive messages of all. Now the first append of a burst
//! schedules a flush on the caller's runtime behind the tasks that are already runnable
//! (`yield_now`), and the whole burst leaves in one channel send.
//!
//! Invariants: items leave in push order (the lock is held across the hand-over, so two
//! flushes cannot overtake each other); a scheduled flush always runs, even if the
//! runtime drops its task unpolled (the guard flushes on drop); at most `limit_items`
//! wait here. Caveat for callers: the flush runs on the caller's runtime, so a caller must
//! not block that runtime's thread waiting synchronously for its own append (await it).

use std::sync::{Mutex, MutexGuard};

pub(crate) struct Outbox<T> {
    items: Mutex<Vec<T>>,
    limit_items: usize,
}

/// What `push` did.
pub(crate) enum Pushed<T> {
    /// The outbox was empty: the caller must schedule a flush.
    First,
    /// A flush is already scheduled.
    Queued,
    /// `limit_items` are waiting; the item is handed back.
    Full(T),
}

impl<T> Outbox<T> {
    pub(crate) fn new(limit_items: usize) -> Outbox<T> {
        assert!(limit_items > 0, "an outbox holds at least one item");
        Outbox {
            items: Mutex::new(Vec::new()),
            limit_items,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // A panic while holding the lock cannot leave the Vec half-updated.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, item: T) -> Pushed<T> {
        let mut q = self.lock();
        if q.len() >= self.limit_items {
            return Pushed::Full(item);
        }
        q.push(item);
        if q.len() == 1 {
            Pushed::First
        } else {
            Pushed::Queued
        }
    }

    /// Hands everything queued to `send` (under the lock: batches leave in push order) and
    /// returns what it returned; None if nothing was queued. `send` must not block and must
    /// not touch this outbox.
    pub(crate) fn flush<R>(&self, send: impl FnOnce(Vec<T>) -> R) -> Option<R> {
        let mut q = self.lock();
        if q.is_empty() {
            return None;
        }
        Some(send(std::mem::take(&mut *q)))
    }
}

/// Runs its closure when dropped: a scheduled flush task holds one, so that a task the
/// runtime drops without polling it (shutdown) still hands the burst over.
pub(crate) struct OnDrop<F: FnOnce()>(pub(crate) Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_first_push_asks_for_a_flush_and_a_flush_empties_in_order() {
        let o = Outbox::new(3);
        assert!(matches!(o.push(1), Pushed::First));
        assert!(matches!(o.push(2), Pushed::Queued));
        assert!(matches!(o.push(3), Pushed::Queued));
        assert!(matches!(o.push(4), Pushed::Full(4)));
        assert_eq!(o.flush(|v| v), Some(vec![1, 2, 3]));
        assert_eq!(o.flush(|v| v), None);
        assert!(matches!(o.push(5), Pushed::First));
    }

    #[test]
    fn a_guard_dropped_unpolled_still_flushes() {
        let o = Arc::new(Outbox::new(8));
        assert!(matches!(o.push("a"), Pushed::First));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&sent);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let o2 = Arc::clone(&o);
        let guard = OnDrop(Some(move || {
            o2.flush(|v| s.lock().expect("lock").extend(v));
        }));
        // Spawned but never polled: dropping the runtime drops the task.
        rt.spawn(async move {
            tokio::task::yield_now().await;
            drop(guard);
        });
        drop(rt);
        assert_eq!(*sent.lock().expect("lock"), vec!["a"]);
        assert!(matches!(o.push("b"), Pushed::First));
    }
}
