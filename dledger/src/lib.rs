//! DLedger: a durable Raft log.
//!
//! - [`core`]: the sans-IO Raft state machine (no tokio, no std::fs, no std::net). Inputs are
//!   peer messages, ticks, storage completions and client proposals; outputs come out of
//!   `RawNode::ready()` as messages to send, entries/hard state to persist, commit advances
//!   and role changes. Modelled on tikv/raft-rs (`raft.rs`, `raft_log.rs`, `raw_node.rs`).
//! - [`storage`]: the file store (mmap'd data segments + index, CRC32C per entry, group commit,
//!   recovery) and the memory store used by tests.
//! - [`transport`]: peer TCP frames with reconnects and bounded queues.
//! - [`node`]: the tokio runtime that drives the core with real storage and peers and exposes
//!   the broker-facing interface (append, committed stream, role changes, status).

pub mod config;
pub mod core;
pub mod node;
mod outbox;
pub mod storage;
pub mod transport;
