//! The read side of the log that the core needs, and an in-memory implementation.
//!
//! The core never writes storage: it hands entries and hard state out through `Ready`, the
//! runtime persists them, and reports durability back (`on_entries_persisted`). Reads are
//! synchronous (the file store serves them from mmap).

use super::errors::StorageError;
use super::types::{Entry, HardState, SnapshotMeta};

/// Reported by storage when recovery discarded log data that may have been acknowledged
/// (checksum failure in the middle of the log, a wiped log). The node then neither votes nor
/// campaigns until it has provably caught up again, so a minority losing data can never let
/// a stale candidate win (see `RawNode` docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLoss {
    /// Hard-state term at the time the loss was detected (every lost entry has a term `<=` it).
    pub term_at_loss: u64,
    /// Highest index the log is known to have reached before the loss, if known.
    pub known_last_index: Option<u64>,
}

/// What storage recovered at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InitialState {
    pub hard_state: HardState,
    pub data_loss: Option<DataLoss>,
}

/// Synchronous log reads.
///
/// Invariants: `first_index() >= 1`; `last_index() >= first_index() - 1` (equal when empty);
/// `term(first_index() - 1)` answers the term of the compaction/snapshot point (0 for index 0).
pub trait Storage {
    fn initial_state(&self) -> InitialState;
    /// First retained entry.
    fn first_index(&self) -> u64;
    /// Last entry written (not necessarily durable yet).
    fn last_index(&self) -> u64;
    /// Term of `index` in `first_index()-1 ..= last_index()`.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    /// Entries in `[lo, hi)`, stopping once `max_size_bytes` is exceeded but always returning at
    /// least one entry when `lo < hi`.
    fn entries(&self, lo: u64, hi: u64, max_size_bytes: u64) -> Result<Vec<Entry>, StorageError>;
    /// Drop entries before `first_index_to_keep` (validated by `RawNode::compact`).
    fn compact(&mut self, first_index_to_keep: u64) -> Result<(), StorageError>;
}

/// In-memory storage for tests and the simulator. Everything written is immediately durable.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    pub hard_state: HardState,
    pub data_loss: Option<DataLoss>,
    /// Entry before `entries[0]` (the compaction or snapshot point).
    pub snapshot: SnapshotMeta,
    pub entries: Vec<Entry>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append entries, truncating any conflicting tail first (the first entry's index says
    /// where the new entries go).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.snapshot.index {
            return Err(StorageError::Compacted);
        }
        if first.index > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let keep = (first.index - self.snapshot.index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Discard the whole log; the next entry is `meta.index + 1`.
    pub fn apply_snapshot(&mut self, meta: SnapshotMeta) {
        self.entries.clear();
        self.snapshot = meta;
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> InitialState {
        InitialState {
            hard_state: self.hard_state,
            data_loss: self.data_loss,
        }
    }

    fn first_index(&self) -> u64 {
        self.snapshot.index + 1
    }

    fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index < self.snapshot.index {
            return Err(StorageError::Compacted);
        }
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        let off = (index - self.snapshot.index - 1) as usize;
        self.entries
            .get(off)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    fn entries(&self, lo: u64, hi: u64, max_size_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo <= self.snapshot.index {
            return Err(StorageError::Compacted);
        }
        if hi > self.last_index() + 1 || lo > hi {
            return Err(StorageError::Unavailable);
        }
        let start = (lo - self.snapshot.index - 1) as usize;
        let end = (hi - self.snapshot.index - 1) as usize;
        Ok(limit_size(&self.entries[start..end], max_size_bytes))
    }

    fn compact(&mut self, first_index_to_keep: u64) -> Result<(), StorageError> {
        if first_index_to_keep <= self.first_index() {
            return Ok(());
        }
        if first_index_to_keep > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let new_snap_index = first_index_to_keep - 1;
        let term = self.term(new_snap_index)?;
        let drop = (new_snap_index - self.snapshot.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = SnapshotMeta {
            index: new_snap_index,
            term,
        };
        Ok(())
    }
}

/// Prefix of `entries` whose total size stays within `max_size_bytes` (at least one entry).
pub fn limit_size(entries: &[Entry], max_size_bytes: u64) -> Vec<Entry> {
    let mut size = 0u64;
    let mut out = Vec::with_capacity(entries.len().min(1024));
    for e in entries {
        size += e.size_bytes();
        if !out.is_empty() && size > max_size_bytes {
            break;
        }
        out.push(e.clone());
    }
    out
}
