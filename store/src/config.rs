//! Store configuration (names follow Java `MessageStoreConfig` in snake_case).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use crate::error::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDiskType {
    /// Acknowledge after the write into the mapped segment; a flush thread msyncs every
    /// `flush_interval_commit_log_ms`.
    AsyncFlush,
    /// Acknowledge after msync; the writer thread group-commits everything queued meanwhile.
    SyncFlush,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub store_path_root_dir: PathBuf,
    /// Commitlog segment size in bytes (Java default 1 GiB).
    pub mapped_file_size_commit_log: u64,
    /// Consume-queue segment size in 20-byte units (Java default 300 000).
    pub mapped_file_size_consume_queue_units: u64,
    pub flush_disk_type: FlushDiskType,
    pub flush_interval_commit_log_ms: u64,
    /// How often consume queues are flushed and the dispatch checkpoint written.
    pub flush_interval_consume_queue_ms: u64,
    /// How long one cycle of index flushes takes: each consume-queue flush also flushes the
    /// next slice of the index's slot table. Puts write slots all over a 20 MB table, and
    /// a flush write-protects every page it cleans: flushing it all each second cost a
    /// write fault per slot page per second (~0.7 µs of the dispatcher's CPU per message
    /// with a Java producer's UNIQ_KEY on every message), and flushing it all at once is a
    /// write burst the log's fsyncs wait behind. Java flushes index files only when full
    /// and rebuilds the newer ones after a crash; here the dispatch checkpoint waits for a
    /// whole cycle, so a restart re-dispatches at most ~2 cycles more of the log.
    pub flush_interval_index_ms: u64,
    /// Limit on a message body (Java `maxMessageSize`, 4 MiB); the whole record may be up to
    /// this + 64 KiB.
    pub max_message_size_bytes: usize,
    pub file_reserved_time_hours: u64,
    /// Hours of day (UTC, `;`-separated, e.g. "04" or "04;05") at which expired segments are deleted.
    pub delete_when: String,
    /// Disk usage percentage above which expired-or-not old segments are deleted early.
    pub disk_max_used_space_ratio: u8,
    /// Disk usage percentage above which writes are refused (Java `diskSpaceWarningLevelRatio` 90).
    pub disk_space_warning_ratio: u8,
    pub message_delay_level: String,
    /// Written into every record's STOREHOST and offset message ids.
    pub store_host: SocketAddr,
    /// Index file: hash slots (Java 5 000 000) and entries (Java 20 000 000) per file.
    pub max_hash_slot_num: u32,
    pub max_index_num: u32,
    /// Bounded append queue in front of the writer thread (requests, not bytes).
    pub append_queue_capacity: usize,
    /// Upper bound on bytes the writer gathers into one write+fsync batch.
    pub max_write_batch_bytes: usize,
    /// SYNC_FLUSH: fail the put if not durable within this time (Java `syncFlushTimeout` 5 s).
    pub sync_flush_timeout_ms: u64,
    /// Retention check period.
    pub clean_resource_interval_ms: u64,
    /// Per pull limits (Java `maxTransferCountOnMessageInMemory` / `maxTransferBytesOnMessageInMemory`).
    pub max_transfer_count_on_message_in_memory: usize,
    pub max_transfer_bytes_on_message_in_memory: usize,
    /// Max candidate records returned by a key query (Java `maxMsgsNumBatch` 64).
    pub max_msgs_num_batch: usize,
    /// Shortest time between two dispatch passes while commits keep arriving (Java's reput
    /// service pauses 1 ms between passes). An idle dispatcher still reacts to the first
    /// commit at once; under load each pass takes everything committed meanwhile, so one
    /// wake-up serves many sends instead of one. 0 dispatches on every commit.
    pub dispatch_interval_us: u64,
    /// Drop-behind: log bytes more than this far behind the dispatcher (and on disk) are
    /// dropped from the page cache (`POSIX_FADV_DONTNEED`); `None` leaves them to the kernel.
    /// Why: a growing log takes every page it writes from free memory, and on a VM whose
    /// free pages go back to the host (virtio-balloon free page reporting, as on the
    /// benchmark machine) each such page costs a host fault on first touch; measured here,
    /// sustained group sends fell from ~46k to ~36k/s once the recently freed pages were
    /// used up. Dropping the cold tail hands the kernel back pages it can reuse at once.
    /// Cost: a consumer further behind than this reads from disk.
    pub log_page_cache_keep_bytes: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        StoreConfig {
            store_path_root_dir: home.join("store"),
            mapped_file_size_commit_log: 1024 * 1024 * 1024,
            mapped_file_size_consume_queue_units: 300_000,
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_commit_log_ms: 500,
            flush_interval_consume_queue_ms: 1000,
            flush_interval_index_ms: 10_000,
            max_message_size_bytes: 4 * 1024 * 1024,
            file_reserved_time_hours: 72,
            delete_when: "04".to_string(),
            disk_max_used_space_ratio: 75,
            disk_space_warning_ratio: 90,
            message_delay_level: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .to_string(),
            store_host: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 10911)),
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            append_queue_capacity: 10_000,
            max_write_batch_bytes: 4 * 1024 * 1024,
            sync_flush_timeout_ms: 5_000,
            clean_resource_interval_ms: 10_000,
            max_transfer_count_on_message_in_memory: 32,
            max_transfer_bytes_on_message_in_memory: 256 * 1024,
            max_msgs_num_batch: 64,
            dispatch_interval_us: 1_000,
            log_page_cache_keep_bytes: Some(DEFAULT_LOG_PAGE_CACHE_KEEP_BYTES),
        }
    }
}

/// Default of `StoreConfig::log_page_cache_keep_bytes`.
pub const DEFAULT_LOG_PAGE_CACHE_KEEP_BYTES: u64 = 256 * 1024 * 1024;

/// Upper bound of `StoreConfig::dispatch_interval_us`: consumers wait at most this long.
pub const MAX_DISPATCH_INTERVAL_US: u64 = 100_000;

impl StoreConfig {
    /// Largest whole record accepted (body limit + 64 KiB for headers/properties, as Java).
    pub fn max_record_size_bytes(&self) -> usize {
        self.max_message_size_bytes + 64 * 1024
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let bad = |reason: &str| {
            Err(StoreError::Config {
                reason: reason.to_string(),
            })
        };
        if self.mapped_file_size_commit_log < 4096
            || self.mapped_file_size_commit_log > i32::MAX as u64
        {
            return bad("mapped_file_size_commit_log must be in [4096, 2^31)");
        }
        if (self.max_record_size_bytes() as u64) + 8 > self.mapped_file_size_commit_log {
            return bad("a maximal record (+8 byte blank) must fit into one commitlog segment");
        }
        if self.mapped_file_size_consume_queue_units < 2
            || self.mapped_file_size_consume_queue_units > 100_000_000
        {
            return bad("mapped_file_size_consume_queue_units must be in [2, 1e8]");
        }
        if self.max_hash_slot_num < 1 || self.max_index_num < 2 {
            return bad("index sizes too small");
        }
        if self.append_queue_capacity == 0 || self.max_write_batch_bytes == 0 {
            return bad("append queue/batch limits must be > 0");
        }
        if self.dispatch_interval_us > MAX_DISPATCH_INTERVAL_US {
            return bad("dispatch_interval_us must be at most 100 000 (100 ms)");
        }
        parse_delay_levels(&self.message_delay_level)?;
        Ok(())
    }
}

/// Parses "1s 5s 10s ... 2h" (units s, m, h, d) into milliseconds per level (index = level-1).
pub fn parse_delay_levels(spec: &str) -> Result<Vec<i64>, StoreError> {
    let mut out = Vec::new();
    for token in spec.split_whitespace() {
        let (num, unit) = token.split_at(token.len().saturating_sub(1));
        let unit_ms: i64 = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(StoreError::Config {
                    reason: format!("bad delay level {token:?}"),
                })
            }
        };
        let n: i64 = num.parse().map_err(|_| StoreError::Config {
            reason: format!("bad delay level {token:?}"),
        })?;
        out.push(n.saturating_mul(unit_ms));
    }
    if out.is_empty() || out.len() > 64 {
        return Err(StoreError::Config {
            reason: "message_delay_level must list 1..=64 levels".to_string(),
        });
    }
    Ok(out)
}
