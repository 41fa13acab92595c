//! The Raft log: durable-or-written entries in `Storage` plus an in-memory `unstable` tail that
//! holds every entry not yet reported durable (as raft-rs `raft_log.rs` + `log_unstable.rs`).

use super::errors::StorageError;
use super::storage::{limit_size, Storage};
use super::types::{Entry, SnapshotMeta};

/// Entries (and possibly a snapshot) not yet reported durable by the runtime.
#[derive(Debug, Default)]
struct Unstable {
    /// Pending snapshot: the runtime must reset the log to start after it.
    snapshot: Option<SnapshotMeta>,
    /// Index of `entries[0]` (or where it would be).
    offset: u64,
    entries: Vec<Entry>,
}

pub struct RaftLog<S: Storage> {
    pub storage: S,
    unstable: Unstable,
    /// Highest index known committed by a quorum.
    pub committed: u64,
    /// Highest index reported durable on this node (consistent with our log).
    pub persisted: u64,
    /// Highest committed index handed out in a `Ready`.
    pub applied: u64,
    /// Highest unstable index handed out in a `Ready` for persistence.
    handed_out: u64,
    snapshot_handed_out: bool,
}

impl<S: Storage> RaftLog<S> {
    /// `commit` is the recovered durable commit (clamped to the log).
    pub fn new(storage: S, commit: u64) -> Self {
        let last = storage.last_index();
        let first = storage.first_index();
        let committed = commit.min(last).max(first.saturating_sub(1));
        RaftLog {
            storage,
            unstable: Unstable {
                snapshot: None,
                offset: last + 1,
                entries: Vec::new(),
            },
            committed,
            persisted: last,
            applied: committed,
            handed_out: last,
            snapshot_handed_out: false,
        }
    }

    pub fn first_index(&self) -> u64 {
        match self.unstable.snapshot {
            Some(s) => s.index + 1,
            None => self.storage.first_index(),
        }
    }

    pub fn last_index(&self) -> u64 {
        self.unstable.offset + self.unstable.entries.len() as u64 - 1
    }

    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        let first = self.first_index();
        if index + 1 < first {
            return Err(StorageError::Compacted);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        if let Some(s) = self.unstable.snapshot {
            if index == s.index {
                return Ok(s.term);
            }
        }
        if index >= self.unstable.offset {
            let off = (index - self.unstable.offset) as usize;
            return self
                .unstable
                .entries
                .get(off)
                .map(|e| e.term)
                .ok_or(StorageError::Unavailable);
        }
        if index == 0 {
            return Ok(0);
        }
        self.storage.term(index)
    }

    /// Term of `index`, or 0 when it is not readable (used for comparisons only).
    pub fn term_or_zero(&self, index: u64) -> u64 {
        self.term(index).unwrap_or(0)
    }

    pub fn last_term(&self) -> u64 {
        self.term_or_zero(self.last_index())
    }

    pub fn match_term(&self, index: u64, term: u64) -> bool {
        matches!(self.term(index), Ok(t) if t == term)
    }

    /// Raft §5.4.1: is a candidate's log at least as up-to-date as ours?
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// Entries in `[lo, last_index]` up to `max_size_bytes` (at least one if any).
    pub fn entries(&self, lo: u64, max_size_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.slice(lo, self.last_index() + 1, max_size_bytes)
    }

    /// Entries in `[lo, hi)` up to `max_size_bytes` (at least one if `lo < hi`).
    pub fn slice(&self, lo: u64, hi: u64, max_size_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo < self.first_index() {
            return Err(StorageError::Compacted);
        }
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        if lo >= hi {
            return Ok(Vec::new());
        }
        let off = self.unstable.offset;
        let mut out = Vec::new();
        if lo < off {
            out = self.storage.entries(lo, hi.min(off), max_size_bytes)?;
            let got_last = match out.last() {
                Some(e) => e.index,
                None => return Err(StorageError::Unavailable),
            };
            if got_last < hi.min(off) - 1 {
                // Size limit reached inside storage.
                return Ok(out);
            }
        }
        if hi > off {
            let from = (lo.max(off) - off) as usize;
            let to = (hi - off) as usize;
            let tail = &self.unstable.entries[from..to];
            if out.is_empty() {
                out = limit_size(tail, max_size_bytes);
            } else {
                let mut used: u64 = out.iter().map(Entry::size_bytes).sum();
                for e in tail {
                    used += e.size_bytes();
                    if used > max_size_bytes {
                        break;
                    }
                    out.push(e.clone());
                }
            }
        }
        Ok(out)
    }

    /// Index of the first entry that conflicts with our log (or is new), 0 if none.
    fn find_conflict(&self, entries: &[Entry]) -> u64 {
        for e in entries {
            if !self.match_term(e.index, e.term) {
                return e.index;
            }
        }
        0
    }

    /// Largest index `<= index` whose term is `<= term`, with that term (fast back-off, as
    /// etcd-raft `findConflictByTerm`).
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term && i > 0 => i -= 1,
                Ok(t) => return (i, t),
                Err(_) => return (i, 0),
            }
        }
    }

    /// Follower append (§5.3). Returns the index of the last new entry on success.
    pub fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        entries: &[Entry],
    ) -> Option<u64> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index + entries.len() as u64;
        let conflict = self.find_conflict(entries);
        if conflict != 0 {
            assert!(
                conflict > self.committed,
                "conflict {} at or below commit {}",
                conflict,
                self.committed
            );
            let start = (conflict - prev_index - 1) as usize;
            self.truncate_and_append(&entries[start..]);
        }
        self.commit_to(commit.min(last_new));
        Some(last_new)
    }

    /// Leader append at the end of the log.
    pub fn append(&mut self, entries: &[Entry]) {
        self.truncate_and_append(entries);
    }

    fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let after = first.index;
        assert!(
            after > self.committed,
            "truncating committed entries at {}",
            after
        );
        assert!(after <= self.last_index() + 1, "gap in log at {}", after);
        let u = &mut self.unstable;
        if after == u.offset + u.entries.len() as u64 {
            u.entries.extend_from_slice(entries);
        } else if after <= u.offset {
            u.offset = after;
            u.entries.clear();
            u.entries.extend_from_slice(entries);
        } else {
            u.entries.truncate((after - u.offset) as usize);
            u.entries.extend_from_slice(entries);
        }
        self.persisted = self.persisted.min(after - 1);
        self.handed_out = self.handed_out.min(after - 1);
    }

    pub fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {} beyond last {}",
                index,
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Leader commit rule: only an entry of the current term is committed by counting (§5.4.2).
    pub fn maybe_commit(&mut self, index: u64, term: u64) -> bool {
        if index > self.committed && self.term_or_zero(index) == term {
            self.commit_to(index);
            return true;
        }
        false
    }

    /// Restart the log after `snap` (follower behind the leader's first retained entry).
    pub fn restore(&mut self, snap: SnapshotMeta) {
        assert!(
            snap.index > self.committed,
            "snapshot {} not past commit {}",
            snap.index,
            self.committed
        );
        self.unstable = Unstable {
            snapshot: Some(snap),
            offset: snap.index + 1,
            entries: Vec::new(),
        };
        self.snapshot_handed_out = false;
        self.committed = snap.index;
        self.applied = snap.index;
        self.persisted = self.persisted.min(snap.index.saturating_sub(1));
        self.handed_out = snap.index;
    }

    pub fn has_unstable_to_hand_out(&self) -> bool {
        (self.unstable.snapshot.is_some() && !self.snapshot_handed_out)
            || self.handed_out < self.last_index()
    }

    /// Snapshot and entries to persist next; marks them handed out.
    pub fn take_unstable(&mut self) -> (Option<SnapshotMeta>, Vec<Entry>) {
        let snap = if self.unstable.snapshot.is_some() && !self.snapshot_handed_out {
            self.snapshot_handed_out = true;
            self.unstable.snapshot
        } else {
            None
        };
        let last = self.last_index();
        let mut ents = Vec::new();
        if self.handed_out < last {
            let from = (self.handed_out + 1).max(self.unstable.offset);
            let start = (from - self.unstable.offset) as usize;
            ents = self.unstable.entries[start..].to_vec();
            self.handed_out = last;
        }
        (snap, ents)
    }

    /// The runtime made everything up to (`index`, `term`) durable.
    pub fn on_persisted(&mut self, index: u64, term: u64) -> bool {
        if index > self.handed_out || (index <= self.persisted && self.unstable.snapshot.is_none())
        {
            return false;
        }
        if let Some(s) = self.unstable.snapshot {
            if !self.snapshot_handed_out || index < s.index {
                return false;
            }
        }
        // A report for a tail we have since replaced does not vouch for the new entries.
        if !self.match_term(index, term) {
            return false;
        }
        self.unstable.snapshot = None;
        if index >= self.unstable.offset {
            let n = (index + 1 - self.unstable.offset) as usize;
            self.unstable.entries.drain(..n);
            self.unstable.offset = index + 1;
        }
        self.persisted = self.persisted.max(index);
        true
    }

    /// Committed entries not yet handed out, bounded by what is durable locally.
    ///
    /// Bounded by the local durable index: the runtime reads what it dispatches from its own
    /// store. (Commit itself may advance on a quorum of followers alone, thesis §10.2.1.)
    pub fn next_committed(&self, max_size_bytes: u64) -> Vec<Entry> {
        let hi = self.committed.min(self.persisted);
        if self.applied >= hi {
            return Vec::new();
        }
        self.slice(self.applied + 1, hi + 1, max_size_bytes)
            .unwrap_or_default()
    }

    pub fn has_next_committed(&self) -> bool {
        self.applied < self.committed.min(self.persisted)
    }

    pub fn applied_to(&mut self, index: u64) {
        assert!(index <= self.committed, "applied beyond commit");
        self.applied = self.applied.max(index);
    }
}
