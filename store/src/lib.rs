//! Message store: a RocketMQ-compatible commitlog (records in the exact Java layout), consume
//! queues, the key index, dispatch, retention and recovery. See README.md.
//!
//! Usage: `MessageStore::open(config)` (blocking: call via `spawn_blocking`), then
//! `put_message(..).await` / `put_messages(..).await` from async code; `get_message`,
//! `query_message`, `look_message_by_offset` and the offset queries are cheap reads of mapped
//! memory (a cold page faults where the bytes are first touched: see `residency`);
//! `shutdown()` (blocking) flushes and stops the threads.

pub mod commitlog;
pub mod config;
mod consume_queue;
pub mod env;
pub mod error;
pub mod file_log;
mod index;
mod mapped_file;
pub mod message;
mod page_release;
pub mod record_buf;
pub mod residency;
pub mod store;

pub use commitlog::dledger::{
    DLedgerCommitLog, DLedgerStoreConfig, MetadataKind, MetadataListener, StoreRole,
};
pub use commitlog::{AppendRequest, AppendResult, CommitLog, LogRead, QueueOffsetTable, Watermark};
pub use config::{
    parse_delay_levels, FlushDiskType, StoreConfig, DEFAULT_LOG_PAGE_CACHE_KEEP_BYTES,
    MAX_DISPATCH_INTERVAL_US,
};
pub use consume_queue::{CqUnit, CQ_UNIT_SIZE};
/// Status of the DLedger node of a store (`MessageStore::dledger_status`).
pub use dledger::node::NodeStatus as DLedgerNodeStatus;
pub use env::{Clock, DiskProbe, FileAllocator, StoreEnv, SystemClock};
pub use error::StoreError;
pub use file_log::FileCommitLog;
pub use index::index_key_hash;
pub use message::{MessageExt, MessageToStore};
pub use store::{
    AcceptAllFilter, ArrivalListener, GetMessageResult, GetMessageStatus, MessageFilter,
    MessageStore, PutMessageResult, QueryMessageResult, StoreStats,
};
