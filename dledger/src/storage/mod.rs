//! Durable storage for the Raft log.
//!
//! - [`codec`]: the 48-byte DLedger-style entry header with CRC32C.
//! - [`file_store`]: mmap'd, preallocated data segments + in-memory index, recovery.
//! - [`hard_state`]: the atomically replaced term/vote/commit file.
//! - [`thread`]: the dedicated storage thread (group commit, fail-stop on fsync errors).

pub mod atomic_file;
pub mod codec;
pub mod file_store;
pub mod hard_state;
pub mod thread;

use std::path::{Path, PathBuf};

pub use file_store::{Durable, FileStore, FileStoreConfig, StoredEntry};
pub use hard_state::{HardStateFile, HardStateRecord};

/// Storage failures. `Corrupt` always names the file and byte offset.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fsync failed on {path}: {source} (fail-stop: the node must not continue)")]
    Fsync {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt store file {file} at offset {offset}: {reason}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("disk full, append refused: {0}")]
    DiskFull(String),
    #[error("entry of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    EntryTooLarge { size_bytes: u64, max_bytes: u64 },
    #[error("index {index} is compacted (first index {first_index})")]
    Compacted { index: u64, first_index: u64 },
    #[error("index {index} is not available (last index {last_index})")]
    Unavailable { index: u64, last_index: u64 },
    #[error("append at index {index} leaves a gap (expected {expected})")]
    Gap { index: u64, expected: u64 },
    #[error("position {pos} (+{len_bytes} bytes) is outside the durable log")]
    OutOfRange { pos: u64, len_bytes: u64 },
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("store stopped after an earlier fatal I/O error")]
    Poisoned,
}

impl StorageError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return StorageError::DiskFull(format!("{}: {source}", path.display()));
        }
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn fsync(path: &Path, source: std::io::Error) -> Self {
        StorageError::Fsync {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Errors after which the node must stop (fail-stop) rather than retry.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StorageError::Fsync { .. }
                | StorageError::Poisoned
                | StorageError::Io { .. }
                | StorageError::Corrupt { .. }
        )
    }
}
