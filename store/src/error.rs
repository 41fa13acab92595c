//! Typed store errors.

use std::path::PathBuf;

/// Every failure the store reports. Callers map these to RocketMQ response codes
/// (e.g. `DiskFull` / `ShutDown` -> SERVICE_NOT_AVAILABLE, `MessageIllegal` -> MESSAGE_ILLEGAL).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No space for a new segment (ENOSPC from preallocation or a write) or the disk usage
    /// ratio is above the warning level. Nothing was written; retry once space returns.
    #[error("disk full: {reason}")]
    DiskFull { reason: String },
    /// The message can never be stored as given (too large, bad topic, bad properties...).
    #[error("message illegal: {reason}")]
    MessageIllegal { reason: String },
    /// Bytes on disk (or handed to a decoder) do not form a valid record.
    #[error("corrupt data in {file} at {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: i64,
        reason: String,
    },
    #[error("io error on {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store is shutting down (or an earlier fsync failure made it read-only).
    #[error("store is shut down")]
    ShutDown,
    /// An fsync/flush failed earlier; the store refuses writes because durability of the
    /// tail can no longer be promised.
    #[error("store is read-only after an earlier flush failure: {reason}")]
    ReadOnly { reason: String },
    /// The append did not become durable/committed within the configured time.
    #[error("flush timed out after {timeout_ms} ms")]
    FlushTimeout { timeout_ms: u64 },
    /// The body uses a compression we cannot inflate (LZ4/ZSTD).
    #[error("unsupported compression type {compression_type}")]
    UnsupportedCompression { compression_type: i32 },
    /// DLedger mode: this replica does not accept writes (follower, or a leader still
    /// catching up). Retriable; the broker answers SERVICE_NOT_AVAILABLE like a Java
    /// DLedger follower. `leader` is the DLedger peer name of the leader when known.
    #[error("not the writable leader (leader: {leader:?})")]
    NotLeader { leader: Option<String> },
    /// Too many uncommitted appends in flight (DLedger backpressure). Retriable.
    #[error("store busy: {reason}")]
    Busy { reason: String },
    /// Invalid configuration value.
    #[error("bad config: {reason}")]
    Config { reason: String },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return StoreError::DiskFull {
                reason: format!("ENOSPC on {}", path.display()),
            };
        }
        StoreError::Io { path, source }
    }

    pub(crate) fn corrupt(offset: i64, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            file: String::from("<record>"),
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn illegal(reason: impl Into<String>) -> Self {
        StoreError::MessageIllegal {
            reason: reason.into(),
        }
    }
}
