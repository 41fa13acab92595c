//! Orderly-consumer queue locks (Java `RebalanceLockManager`).
//!
//! A queue of a group is locked by one client id at a time; a lock not renewed for
//! `lockMaxLiveTime` (60 s, Java `rocketmq.broker.rebalance.lockMaxLiveTime`) expires and
//! may be taken by another client. Clients renew every 20 s. Locks are per broker and in
//! memory only, like Java's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::body::MessageQueue;
use crate::topic_config::now_ms;

/// Java default lock lifetime.
pub const LOCK_MAX_LIVE_TIME_MS: i64 = 60_000;
/// Upper bound on locked queues per group.
pub const LOCKS_PER_GROUP_MAX: usize = 65_536;
/// Upper bound on groups holding locks.
pub const LOCK_GROUPS_MAX: usize = 100_000;

#[derive(Debug, Clone)]
struct LockEntry {
    client_id: String,
    last_update_ms: i64,
}

impl LockEntry {
    fn is_expired(&self, now_ms: i64, max_live_ms: i64) -> bool {
        now_ms - self.last_update_ms > max_live_ms
    }
}

pub struct RebalanceLockManager {
    max_live_ms: i64,
    /// group → queue → holder. One mutex: lock calls are rare (every 20 s per client).
    table: Mutex<HashMap<String, HashMap<MessageQueue, LockEntry>>>,
    /// Bumped when a holder changes (grant, take-over, release), not on renewals: group
    /// mode replicates the holder table when it changes.
    version: AtomicU64,
}

/// One held lock, as replicated in group mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldLock {
    pub group: String,
    pub mq: MessageQueue,
    pub client_id: String,
}

impl Default for RebalanceLockManager {
    fn default() -> Self {
        Self::new(LOCK_MAX_LIVE_TIME_MS)
    }
}

impl RebalanceLockManager {
    pub fn new(max_live_ms: i64) -> Self {
        assert!(max_live_ms > 0);
        RebalanceLockManager {
            max_live_ms,
            table: Mutex::new(HashMap::new()),
            version: AtomicU64::new(0),
        }
    }

    /// Lock (or renew) every queue in `mqs` for `client_id`; returns the queues now held
    /// by `client_id` (queues held by another live client are left out).
    pub fn try_lock_batch(
        &self,
        group: &str,
        mqs: &[MessageQueue],
        client_id: &str,
    ) -> Vec<MessageQueue> {
        self.try_lock_batch_at(group, mqs, client_id, now_ms())
    }

    pub fn try_lock_batch_at(
        &self,
        group: &str,
        mqs: &[MessageQueue],
        client_id: &str,
        now_ms: i64,
    ) -> Vec<MessageQueue> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(group) && table.len() >= LOCK_GROUPS_MAX {
            tracing::warn!(group, "lock table full");
            return Vec::new();
        }
        let locks = table.entry(group.to_string()).or_default();
        let mut ok = Vec::with_capacity(mqs.len());
        for mq in mqs {
            match locks.get_mut(mq) {
                Some(e) if e.client_id == client_id => {
                    e.last_update_ms = now_ms;
                    ok.push(mq.clone());
                }
                Some(e) if e.is_expired(now_ms, self.max_live_ms) => {
                    tracing::info!(group, ?mq, old = %e.client_id, new = client_id, "expired queue lock taken over");
                    e.client_id = client_id.to_string();
                    e.last_update_ms = now_ms;
                    self.version.fetch_add(1, Ordering::Relaxed);
                    ok.push(mq.clone());
                }
                Some(_) => {}
                None => {
                    if locks.len() >= LOCKS_PER_GROUP_MAX {
                        continue;
                    }
                    locks.insert(
                        mq.clone(),
                        LockEntry {
                            client_id: client_id.to_string(),
                            last_update_ms: now_ms,
                        },
                    );
                    self.version.fetch_add(1, Ordering::Relaxed);
                    ok.push(mq.clone());
                }
            }
        }
        ok
    }

    /// Release the queues `client_id` holds; locks of other clients are untouched.
    pub fn unlock_batch(&self, group: &str, mqs: &[MessageQueue], client_id: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Some(locks) = table.get_mut(group) else {
            return;
        };
        for mq in mqs {
            if locks.get(mq).is_some_and(|e| e.client_id == client_id) {
                locks.remove(mq);
                self.version.fetch_add(1, Ordering::Relaxed);
            }
        }
        if locks.is_empty() {
            table.remove(group);
        }
    }

    /// Release every lock `client_id` holds in `group` (the client unregistered, i.e. shut
    /// down: Java keeps such locks until they expire, which stalls a restarted orderly
    /// consumer for up to 60 s when the old one forgot to unlock a queue). Returns how many.
    pub fn unlock_all_of_client(&self, group: &str, client_id: &str) -> usize {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Some(locks) = table.get_mut(group) else {
            return 0;
        };
        let before = locks.len();
        locks.retain(|_, e| e.client_id != client_id);
        let released = before - locks.len();
        if locks.is_empty() {
            table.remove(group);
        }
        if released > 0 {
            self.version.fetch_add(1, Ordering::Relaxed);
        }
        released
    }

    /// Bumped whenever a holder changes (group-mode replication compares it).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Every live lock (group mode: replicated so holders keep their queues on failover).
    pub fn snapshot(&self) -> Vec<HeldLock> {
        let now = now_ms();
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (group, locks) in table.iter() {
            for (mq, e) in locks {
                if !e.is_expired(now, self.max_live_ms) {
                    out.push(HeldLock {
                        group: group.clone(),
                        mq: mq.clone(),
                        client_id: e.client_id.clone(),
                    });
                }
            }
        }
        out
    }

    /// Group mode, on every replica: the holders committed through the metadata log,
    /// stamped `now_ms` (a lock lives a full lifetime after it was replicated).
    pub fn replace_from_replica(&self, held: Vec<HeldLock>, now_ms: i64) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.clear();
        for h in held {
            if !table.contains_key(&h.group) && table.len() >= LOCK_GROUPS_MAX {
                continue;
            }
            let locks = table.entry(h.group).or_default();
            if locks.len() < LOCKS_PER_GROUP_MAX {
                locks.insert(
                    h.mq,
                    LockEntry {
                        client_id: h.client_id,
                        last_update_ms: now_ms,
                    },
                );
            }
        }
    }

    /// A new master restarts every lock's lifetime: holders had no master to renew with
    /// during the failover.
    pub fn refresh_all(&self, now_ms: i64) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for e in table.values_mut().flat_map(|l| l.values_mut()) {
            e.last_update_ms = now_ms;
        }
    }

    /// Whether `client_id` holds a live lock on `mq` (pull of orderly consumers).
    pub fn is_locked_by(&self, group: &str, mq: &MessageQueue, client_id: &str) -> bool {
        self.is_locked_by_at(group, mq, client_id, now_ms())
    }

    pub fn is_locked_by_at(
        &self,
        group: &str,
        mq: &MessageQueue,
        client_id: &str,
        now_ms: i64,
    ) -> bool {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .get(group)
            .and_then(|l| l.get(mq))
            .is_some_and(|e| e.client_id == client_id && !e.is_expired(now_ms, self.max_live_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue::new("T", "broker-a", q)
    }

    #[test]
    fn lock_unlock_expiry_and_other_client() {
        let m = RebalanceLockManager::new(60_000);
        let t0 = 1_000_000;
        assert_eq!(
            m.try_lock_batch_at("G", &[mq(0), mq(1)], "c1", t0),
            vec![mq(0), mq(1)]
        );
        // Another client cannot take live locks, but gets free queues.
        assert_eq!(
            m.try_lock_batch_at("G", &[mq(0), mq(2)], "c2", t0 + 1000),
            vec![mq(2)]
        );
        // Another group is independent.
        assert_eq!(m.try_lock_batch_at("G2", &[mq(0)], "c2", t0), vec![mq(0)]);
        // Renewal by the holder extends the lock.
        assert_eq!(
            m.try_lock_batch_at("G", &[mq(0)], "c1", t0 + 50_000),
            vec![mq(0)]
        );
        assert!(m
            .try_lock_batch_at("G", &[mq(0)], "c2", t0 + 100_000)
            .is_empty());
        // mq(1) was not renewed: expired after 60 s, c2 takes it.
        assert_eq!(
            m.try_lock_batch_at("G", &[mq(1)], "c2", t0 + 60_001),
            vec![mq(1)]
        );
        assert!(m.is_locked_by_at("G", &mq(1), "c2", t0 + 60_001));
        assert!(!m.is_locked_by_at("G", &mq(1), "c1", t0 + 60_001));
        // Unlock by a non-holder does nothing; by the holder frees it.
        m.unlock_batch("G", &[mq(0)], "c2");
        assert!(m.is_locked_by_at("G", &mq(0), "c1", t0 + 50_001));
        m.unlock_batch("G", &[mq(0)], "c1");
        assert_eq!(
            m.try_lock_batch_at("G", &[mq(0)], "c2", t0 + 50_002),
            vec![mq(0)]
        );
    }

    #[test]
    fn replicated_locks_keep_their_holders() {
        let leader = RebalanceLockManager::new(60_000);
        let v0 = leader.version();
        leader.try_lock_batch("G", &[mq(0), mq(1)], "c1");
        assert!(leader.version() > v0);
        let v1 = leader.version();
        leader.try_lock_batch("G", &[mq(0)], "c1");
        assert_eq!(leader.version(), v1, "a renewal is no holder change");

        let follower = RebalanceLockManager::new(60_000);
        let t = now_ms();
        follower.replace_from_replica(leader.snapshot(), t);
        assert!(follower.is_locked_by_at("G", &mq(1), "c1", t + 59_000));
        assert!(follower
            .try_lock_batch_at("G", &[mq(1)], "c2", t + 1)
            .is_empty());
        follower.refresh_all(t + 50_000);
        assert!(follower.is_locked_by_at("G", &mq(1), "c1", t + 100_000));
    }
}
