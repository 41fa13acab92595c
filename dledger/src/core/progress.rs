//! Leader-side view of each follower (as raft-rs `progress.rs` + `inflights.rs`).

use std::collections::VecDeque;

/// Bounded window of in-flight append messages, identified by their last index.
#[derive(Debug, Clone)]
pub struct Inflights {
    cap: usize,
    last_indexes: VecDeque<u64>,
}

impl Inflights {
    pub fn new(cap: usize) -> Self {
        assert!(cap > 0, "inflights capacity must be positive");
        Inflights {
            cap,
            last_indexes: VecDeque::with_capacity(cap.min(256)),
        }
    }

    pub fn full(&self) -> bool {
        self.last_indexes.len() >= self.cap
    }

    pub fn count(&self) -> usize {
        self.last_indexes.len()
    }

    pub fn add(&mut self, last_index: u64) {
        assert!(!self.full(), "inflights overflow");
        if let Some(&back) = self.last_indexes.back() {
            debug_assert!(back <= last_index, "inflights not monotonic");
        }
        self.last_indexes.push_back(last_index);
    }

    /// Release every message whose last index is `<= index`.
    pub fn free_to(&mut self, index: u64) {
        while self.last_indexes.front().is_some_and(|&f| f <= index) {
            self.last_indexes.pop_front();
        }
    }

    pub fn reset(&mut self) {
        self.last_indexes.clear();
    }

    /// Release the oldest message (a heartbeat response proves the follower is reachable,
    /// so a lost append must not block the window forever).
    pub fn free_first_one(&mut self) {
        self.last_indexes.pop_front();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// One append at a time until the match point is found.
    Probe,
    /// Pipelined appends, bounded by `Inflights`.
    Replicate,
    /// Follower is behind our first entry; an `InstallSnapshot` is outstanding.
    Snapshot,
}

#[derive(Debug, Clone)]
pub struct Progress {
    /// Highest index known durable on the follower.
    pub matched: u64,
    pub next_idx: u64,
    pub state: ProgressState,
    /// Probe/Snapshot: a message is outstanding; wait for a response or heartbeat.
    pub paused: bool,
    pub pending_snapshot: u64,
    /// Heard from this peer since the last check-quorum round.
    pub recent_active: bool,
    /// Leader tick at which the latest acknowledged message was sent (leader lease).
    pub acked_ctx: u64,
    pub ins: Inflights,
}

impl Progress {
    pub fn new(next_idx: u64, max_inflight_msgs: usize) -> Self {
        Progress {
            matched: 0,
            next_idx,
            state: ProgressState::Probe,
            paused: false,
            pending_snapshot: 0,
            recent_active: false,
            acked_ctx: 0,
            ins: Inflights::new(max_inflight_msgs),
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.paused = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.ins.reset();
    }

    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next_idx = (self.matched + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next_idx = self.matched + 1;
        }
    }

    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_idx = self.matched + 1;
    }

    pub fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
        self.paused = true;
    }

    /// A success response for `n`. Returns whether `matched` advanced.
    pub fn maybe_update(&mut self, n: u64) -> bool {
        let updated = self.matched < n;
        if updated {
            self.matched = n;
            self.paused = false;
        }
        self.next_idx = self.next_idx.max(n + 1);
        updated
    }

    /// A reject of `rejected` with a hint. Returns false for stale rejects.
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next_idx = self.matched + 1;
            return true;
        }
        if self.next_idx == 0 || self.next_idx - 1 != rejected {
            return false;
        }
        self.next_idx = rejected.min(match_hint + 1).max(self.matched + 1).max(1);
        self.paused = false;
        true
    }

    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.paused,
            ProgressState::Replicate => self.ins.full(),
            ProgressState::Snapshot => true,
        }
    }

    /// Record that entries up to `last` were sent.
    pub fn update_on_send(&mut self, last: Option<u64>) {
        match self.state {
            ProgressState::Replicate => {
                if let Some(last) = last {
                    self.next_idx = last + 1;
                    self.ins.add(last);
                }
            }
            ProgressState::Probe => self.paused = true,
            ProgressState::Snapshot => {}
        }
    }
}
