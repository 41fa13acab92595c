//! Sans-IO Raft core, modelled on tikv/raft-rs.
//!
//! Inputs: `tick()`, `step(Message)`, `propose(Bytes)`, durability reports
//! (`on_entries_persisted`). Outputs: `ready()` returns a [`Ready`] with entries and hard state
//! to persist, messages to send (some only once persisted), committed entries and role changes.
//! This module does no I/O: no async runtime, file system, network or clock imports
//! (enforced by `core_is_sans_io` in tests/raft_paper.rs).
//!
//! Runtime contract for each `Ready`, processed strictly in the order they are returned:
//! 1. send `messages` now (a leader's appends go out in parallel with its own fsync);
//! 2. if `snapshot` is set, discard the log and restart it after `snapshot.index`;
//! 3. append `entries` (truncating any existing tail from `entries[0].index`) and write
//!    `hard_state`, in either order (if entries of a newer term survive a crash without the
//!    hard state, the core adopts that term with its vote set to itself);
//! 4. once durable, call `on_entries_persisted(last.index, last.term)` (for a snapshot-only
//!    Ready: the snapshot's index/term) and send `persisted_messages`;
//! 5. hand `committed_entries` to the state machine (only entries durable locally).

mod config;
mod errors;
mod log;
mod progress;
mod raft;
mod raw_node;
mod storage;
mod types;

pub use config::{Config, MAX_PEERS};
pub use errors::{CoreError, ProposeError, StorageError};
pub use progress::{Inflights, Progress, ProgressState};
pub use raw_node::{RawNode, Ready, Status};
pub use storage::{limit_size, DataLoss, InitialState, MemStorage, Storage};
pub use types::{Entry, EntryKind, HardState, Message, MsgKind, NodeId, Role, SnapshotMeta};
