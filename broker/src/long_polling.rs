//! Long polling for PULL_MESSAGE (Java `PullRequestHoldService`).
//!
//! Instead of parking a request object and re-executing it from a timer thread (the Java
//! design), a held pull is an `async` loop in the pull processor: it subscribes to the
//! queue's arrival signal *before* reading the store, so an arrival between the read and
//! the wait is never lost, then awaits either the signal or its deadline and reads again.
//! The store's arrival listener (installed by [`PullRequestHoldService::start`]) bumps the
//! signal of the (topic, queue) that just received a dispatched message.
//!
//! Invariants:
//! - at most [`MAX_HELD_PULLS`] pulls are held at once; beyond that a pull is answered
//!   immediately (PULL_NOT_FOUND) instead of being parked, so memory stays bounded;
//! - one watch channel per (topic, queue) that ever had a waiter; entries without
//!   receivers are pruned by [`PullRequestHoldService::prune`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::watch;

use crate::context::BrokerContext;

/// Upper bound on pulls parked at the same time (each holds one connection slot).
pub const MAX_HELD_PULLS: usize = 65_536;
/// How often signals without waiters are dropped.
pub const PRUNE_INTERVAL_MS: u64 = 60_000;

/// Per-topic map queue id → arrival counter. A `Mutex<HashMap>` per topic keeps the hot
/// notify path allocation-free (lookup by `&str`, then by `i32`).
type TopicSignals = Mutex<HashMap<i32, watch::Sender<u64>>>;

/// Registry of arrival signals for held pulls (and the schedule service's idle timers).
#[derive(Default)]
pub struct PullRequestHoldService {
    topics: DashMap<String, Arc<TopicSignals>>,
    held: AtomicUsize,
}

/// A subscription to one queue's arrival signal. Created before reading the store so
/// that a message arriving after the read still wakes [`ArrivalWaiter::wait`].
pub struct ArrivalWaiter {
    rx: watch::Receiver<u64>,
}

impl ArrivalWaiter {
    /// Resolves when a message arrived for the queue since this waiter was created (or
    /// since the last `wait` returned). Never resolves if the service is dropped.
    pub async fn wait(&mut self) {
        if self.rx.changed().await.is_err() {
            // Sender dropped (pruned while we held a receiver cannot happen; service
            // gone): never wake, the caller's deadline ends the wait.
            std::future::pending::<()>().await;
        }
    }
}

/// Counts one held pull; releases the slot on drop.
pub struct HeldPermit<'a> {
    svc: &'a PullRequestHoldService,
}

impl Drop for HeldPermit<'_> {
    fn drop(&mut self) {
        self.svc.held.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PullRequestHoldService {
    /// Builds the service; it needs no context so `BrokerContext` can own it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the store's arrival listener so dispatched messages wake held pulls, and a
    /// task that prunes unused signals every [`PRUNE_INTERVAL_MS`].
    pub fn start(self: &Arc<Self>, ctx: Arc<BrokerContext>) {
        let pruner = Arc::clone(self);
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(std::time::Duration::from_millis(PRUNE_INTERVAL_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => pruner.prune(),
                    _ = shutdown.wait() => return,
                }
            }
        });
        let svc = Arc::clone(self);
        ctx.store.set_message_arrival_listener(Arc::new(
            move |topic: &str, queue_id: i32, _next: i64, _tags: i64| {
                svc.notify_message_arriving(topic, queue_id);
            },
        ));
    }

    /// Subscribe to arrivals on (topic, queue_id).
    pub fn subscribe(&self, topic: &str, queue_id: i32) -> ArrivalWaiter {
        // The map guard stays alive while the receiver is created, so `prune` (which needs
        // the shard's write lock) cannot drop the topic's signals in between.
        if let Some(signals) = self.topics.get(topic) {
            return Self::subscribe_in(signals.value(), queue_id);
        }
        let signals = self
            .topics
            .entry(topic.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(HashMap::new())));
        Self::subscribe_in(signals.value(), queue_id)
    }

    fn subscribe_in(signals: &TopicSignals, queue_id: i32) -> ArrivalWaiter {
        let mut map = signals.lock().unwrap_or_else(|p| p.into_inner());
        let sender = map
            .entry(queue_id)
            .or_insert_with(|| watch::channel(0u64).0);
        ArrivalWaiter {
            rx: sender.subscribe(),
        }
    }

    /// Wake every waiter of (topic, queue_id). Called by the store dispatcher for each
    /// dispatched message, so it does no allocation and returns quickly when nobody waits.
    pub fn notify_message_arriving(&self, topic: &str, queue_id: i32) {
        let Some(signals) = self.topics.get(topic) else {
            return;
        };
        let map = signals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = map.get(&queue_id) {
            if sender.receiver_count() > 0 {
                sender.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    /// Reserve a hold slot; `None` when [`MAX_HELD_PULLS`] pulls are already parked.
    pub fn try_hold(&self) -> Option<HeldPermit<'_>> {
        let prev = self.held.fetch_add(1, Ordering::AcqRel);
        if prev >= MAX_HELD_PULLS {
            self.held.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(HeldPermit { svc: self })
    }

    /// Number of pulls currently parked.
    pub fn held_count(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Drop signals nobody listens to (deleted topics, idle queues).
    pub fn prune(&self) {
        self.topics.retain(|_, signals| {
            let mut map = signals.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, s| s.receiver_count() > 0);
            !map.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn arrival_after_subscribe_is_not_lost() {
        let svc = PullRequestHoldService::new();
        let mut w = svc.subscribe("T", 1);
        svc.notify_message_arriving("T", 1);
        tokio::time::timeout(Duration::from_secs(5), w.wait())
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn other_queue_does_not_wake() {
        let svc = PullRequestHoldService::new();
        let mut w = svc.subscribe("T", 1);
        svc.notify_message_arriving("T", 2);
        svc.notify_message_arriving("U", 1);
        assert!(tokio::time::timeout(Duration::from_millis(50), w.wait())
            .await
            .is_err());
    }

    #[test]
    fn hold_slots_are_bounded_and_released() {
        let svc = PullRequestHoldService::new();
        {
            let _p = svc.try_hold().expect("slot");
            assert_eq!(svc.held_count(), 1);
        }
        assert_eq!(svc.held_count(), 0);
    }

    #[test]
    fn prune_removes_unlistened() {
        let svc = PullRequestHoldService::new();
        drop(svc.subscribe("T", 0));
        svc.prune();
        assert!(svc.topics.is_empty());
    }
}
