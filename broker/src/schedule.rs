//! Delay-level delivery (Java `ScheduleMessageService`): messages sent with `DELAY=n` are
//! parked by the store in `SCHEDULE_TOPIC_XXXX` queue `n-1` (with `REAL_TOPIC`/`REAL_QID`);
//! one task per level reads its queue in order and, when a message is due, writes a copy
//! to the real topic/queue with `DELAY` removed.
//!
//! Because every message of a level has the same delay, a level's queue is ordered by due
//! time: the task sleeps exactly until the head is due (`sleep_until`), and when the queue
//! is empty it waits for the store's arrival signal instead of polling.
//!
//! Progress (next queue offset per level) is kept in `config/delayOffset.json` in the Java
//! form `{"offsetTable":{1:5,2:0}}`, written at most once per [`PERSIST_INTERVAL_MS`] when
//! it changed and at shutdown. A crash re-delivers at most the last interval's messages
//! (at-least-once, like Java) and never loses any.
//!
//! Java reference: `store/.../schedule/ScheduleMessageService.java` (4.9.7),
//! `broker/.../schedule/ScheduleMessageService.java` (5.x); special-topics.md §2.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use store::message::{self as msg, property, sys_flag, MessageExt, MessageToStore, SCHEDULE_TOPIC};
use store::AcceptAllFilter;
use tokio::time::Instant;

use crate::context::BrokerContext;
use crate::persist;

/// How often changed progress is written to delayOffset.json.
pub const PERSIST_INTERVAL_MS: u64 = 1_000;
/// Units read per store call.
pub const READ_BATCH: i32 = 32;
/// Byte cap per store read.
pub const READ_MAX_BYTES: usize = 1024 * 1024;
/// Back-off after a failed read or delivery.
pub const RETRY_AFTER_ERROR_MS: u64 = 1_000;
pub const DELAY_OFFSET_FILE: &str = "delayOffset.json";

#[derive(Default)]
pub struct ScheduleMessageService {
    /// level (1-based) → next consume-queue offset to deliver.
    offsets: Mutex<BTreeMap<usize, i64>>,
    dirty: AtomicBool,
    /// Bumped by local progress changes (not by replicated ones).
    version: std::sync::atomic::AtomicU64,
    started: AtomicBool,
    path: OnceLock<PathBuf>,
    /// Serialises file writes (the periodic task and a shutdown call share one tmp file).
    persist_lock: Mutex<()>,
}

impl ScheduleMessageService {
    /// Builds the service; it needs no context so `BrokerContext` can own it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Load progress and spawn one delivery task per delay level plus the persist task.
    /// Runs only on a master (`brokerId == 0`). Idempotent.
    pub fn start(self: &Arc<Self>, ctx: Arc<BrokerContext>) {
        // Group mode: every replica runs the loops; delivery waits for the master role.
        let eligible = ctx.config.enable_dleger_commit_log || ctx.config.broker_id == 0;
        if !eligible || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let path = ctx.config.config_dir().join(DELAY_OFFSET_FILE);
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let load_path = path.clone();
            let loaded =
                tokio::task::spawn_blocking(move || persist::read_if_exists(&load_path)).await;
            match loaded {
                Ok(Ok(Some(text))) => match decode_delay_offsets(&text) {
                    Ok(table) => svc.load(table),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable delayOffset.json")
                    }
                },
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read delayOffset.json")
                }
                Err(e) => tracing::warn!(error = %e, "delayOffset.json load task failed"),
            }
            let _ = svc.path.set(path);
            for (i, delay_ms) in ctx.config.delay_levels_ms().into_iter().enumerate() {
                tokio::spawn(Arc::clone(&svc).run_level(Arc::clone(&ctx), i + 1, delay_ms));
            }
            svc.run_persist(ctx).await;
        });
    }

    fn load(&self, table: Vec<(usize, i64)>) {
        let mut offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        // Max: in group mode the metadata log may already have applied newer progress.
        for (level, off) in table {
            let slot = offsets.entry(level).or_insert(0);
            *slot = (*slot).max(off);
        }
    }

    /// Group mode, on every replica: progress committed through the metadata log.
    pub fn apply_replicated(&self, table: Vec<(usize, i64)>) {
        let changed = {
            let mut offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
            let mut changed = false;
            for (level, off) in table.into_iter().take(crate::config::DELAY_LEVELS_MAX) {
                let off = off.max(0);
                if offsets.insert(level, off) != Some(off) {
                    changed = true;
                }
            }
            changed
        };
        if changed {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Bumped by every local progress change (the group replicator compares it).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Next offset to deliver for `level` (0 if never delivered).
    pub fn offset(&self, level: usize) -> i64 {
        let offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        offsets.get(&level).copied().unwrap_or(0)
    }

    fn set_offset(&self, level: usize, offset: i64) {
        let mut offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        let slot = offsets.entry(level).or_insert(0);
        if *slot != offset {
            *slot = offset;
            self.version.fetch_add(1, Ordering::AcqRel);
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// The progress table in the Java `delayOffset.json` form (also the body of
    /// GET_ALL_DELAY_OFFSET).
    pub fn encode(&self) -> String {
        let offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        let table: Vec<(usize, i64)> = offsets.iter().map(|(k, v)| (*k, *v)).collect();
        encode_delay_offsets(&table)
    }

    /// Write delayOffset.json now (blocking; call from `spawn_blocking` or at shutdown).
    pub fn persist_blocking(&self) -> std::io::Result<()> {
        let Some(path) = self.path.get() else {
            return Ok(());
        };
        let _guard = self.persist_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.dirty.store(false, Ordering::Release);
        let text = self.encode();
        persist::write_atomic(path, text.as_bytes()).inspect_err(|_| {
            self.dirty.store(true, Ordering::Release);
        })
    }

    async fn run_persist(self: Arc<Self>, ctx: Arc<BrokerContext>) {
        let mut tick = tokio::time::interval(Duration::from_millis(PERSIST_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                _ = ctx.shutdown.wait() => true,
            };
            if self.dirty.load(Ordering::Acquire) || stop {
                let svc = Arc::clone(&self);
                match tokio::task::spawn_blocking(move || svc.persist_blocking()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "persisting delayOffset.json failed");
                    }
                    Err(e) => tracing::warn!(error = %e, "delayOffset.json persist task failed"),
                }
            }
            if stop {
                return;
            }
        }
    }

    /// Delivery loop of one level.
    async fn run_level(self: Arc<Self>, ctx: Arc<BrokerContext>, level: usize, delay_ms: u64) {
        let Ok(queue_id) = i32::try_from(level - 1) else {
            return;
        };
        let delay_ms = i64::try_from(delay_ms).unwrap_or(i64::MAX);
        loop {
            if ctx.shutdown.is_triggered() {
                return;
            }
            if !ctx.is_master() {
                // Only the writable leader delivers (group mode); followers wait.
                let mut role = ctx.role.clone();
                let alive = tokio::select! {
                    r = role.wait_for(|r| r.master) => r.is_ok(),
                    _ = ctx.shutdown.wait() => return,
                };
                if !alive {
                    ctx.shutdown.wait().await;
                    return;
                }
                continue;
            }
            // Subscribe before reading so an arrival after the read still wakes us.
            let mut waiter = ctx.pull_hold.subscribe(SCHEDULE_TOPIC, queue_id);
            let offset = self.offset(level);
            let result = ctx.store.get_message(
                SCHEDULE_TOPIC,
                queue_id,
                offset,
                READ_BATCH,
                READ_MAX_BYTES,
                &AcceptAllFilter,
            );
            if result.messages.is_empty() {
                if result.next_begin_offset != offset && result.next_begin_offset >= 0 {
                    // Offset moved (data deleted, or progress from another store): follow it.
                    tracing::info!(
                        level,
                        from = offset,
                        to = result.next_begin_offset,
                        "schedule offset corrected"
                    );
                    self.set_offset(level, result.next_begin_offset);
                    continue;
                }
                tokio::select! {
                    _ = waiter.wait() => continue,
                    _ = ctx.shutdown.wait() => return,
                }
            }
            let mut wake_at = None;
            let mut next = offset;
            for rec in &result.messages {
                let m = match msg::decode_message_bytes(rec) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(level, offset = next, error = %e, "undecodable schedule record skipped");
                        next += 1;
                        self.set_offset(level, next);
                        continue;
                    }
                };
                let now = now_ms();
                let due = deliver_timestamp(m.store_timestamp_ms, delay_ms, now);
                if due > now {
                    wake_at = Some(
                        Instant::now()
                            + Duration::from_millis(u64::try_from(due - now).unwrap_or(0)),
                    );
                    break;
                }
                match deliver(&ctx, &m).await {
                    Ok(()) => {
                        next = m.queue_offset + 1;
                        self.set_offset(level, next);
                    }
                    Err(e) => {
                        tracing::warn!(level, offset = m.queue_offset, error = %e, "delayed delivery failed; retrying");
                        wake_at =
                            Some(Instant::now() + Duration::from_millis(RETRY_AFTER_ERROR_MS));
                        break;
                    }
                }
            }
            if let Some(at) = wake_at {
                if sleep_or_shutdown(&ctx, at).await {
                    return;
                }
            }
        }
    }
}

/// Java `correctDeliverTimestamp`: a due time further away than one full delay (clock went
/// backwards) is delivered now.
pub fn deliver_timestamp(store_timestamp_ms: i64, delay_ms: i64, now_ms: i64) -> i64 {
    let due = store_timestamp_ms.saturating_add(delay_ms);
    if due > now_ms.saturating_add(delay_ms) {
        now_ms
    } else {
        due
    }
}

/// Returns true when shutdown fired.
async fn sleep_or_shutdown(ctx: &BrokerContext, at: Instant) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(at) => false,
        _ = ctx.shutdown.wait() => true,
    }
}

/// The message to write back to the real topic (Java `messageTimeup`): `DELAY` removed,
/// `REAL_TOPIC`/`REAL_QID` kept, `WAIT=false`, everything else as stored.
pub fn restore_message(m: &MessageExt) -> Result<MessageToStore, String> {
    let real_topic = m
        .property(property::REAL_TOPIC)
        .ok_or("schedule record without REAL_TOPIC")?
        .to_string();
    let real_qid: i32 = m
        .property(property::REAL_QID)
        .and_then(|q| q.parse().ok())
        .ok_or("schedule record without a valid REAL_QID")?;
    let mut props = m.properties.clone();
    props.remove(property::DELAY);
    props.insert(property::WAIT.to_string(), "false".to_string());
    let mut out = MessageToStore::new(
        real_topic,
        real_qid,
        m.body.clone(),
        msg::encode_properties(&props),
    );
    out.flag = m.flag;
    out.sys_flag = m.sys_flag & !(sys_flag::BORNHOST_V6_FLAG | sys_flag::STOREHOSTADDRESS_V6_FLAG);
    out.born_timestamp_ms = m.born_timestamp_ms;
    out.born_host = m.born_host;
    out.store_host = m.store_host;
    out.reconsume_times = m.reconsume_times;
    out.prepared_transaction_offset = m.prepared_transaction_offset;
    Ok(out)
}

async fn deliver(ctx: &BrokerContext, m: &MessageExt) -> Result<(), String> {
    let restored = match restore_message(m) {
        Ok(r) => r,
        Err(e) => {
            // Unrecoverable: skipping is the only way forward (Java drops it too).
            tracing::error!(offset = m.queue_offset, error = %e, "dropping malformed delayed message");
            return Ok(());
        }
    };
    ctx.store
        .put_message(restored)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `delayOffset.json` body in the Java (fastjson) form: integer keys written bare.
pub fn encode_delay_offsets(offsets: &[(usize, i64)]) -> String {
    let mut s = String::from("{\n\t\"offsetTable\":{");
    for (i, (level, off)) in offsets.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{level}:{off}"));
    }
    s.push_str("}\n}");
    s
}

/// Parse `delayOffset.json` (bare or quoted keys; 5.x extra fields ignored).
pub fn decode_delay_offsets(text: &str) -> Result<Vec<(usize, i64)>, String> {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        #[serde(rename = "offsetTable", default)]
        offset_table: BTreeMap<String, i64>,
    }
    let w: Wrapper =
        serde_json::from_str(&persist::quote_bare_keys(text)).map_err(|e| e.to_string())?;
    w.offset_table
        .into_iter()
        .map(|(k, v)| {
            k.trim()
                .parse::<usize>()
                .map(|k| (k, v))
                .map_err(|_| format!("bad delay level key `{k}`"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_offsets_round_trip_java_form() {
        let text = encode_delay_offsets(&[(1, 5), (3, 0)]);
        assert!(text.contains("\"offsetTable\":{1:5,3:0}"), "{text}");
        assert_eq!(decode_delay_offsets(&text).unwrap(), vec![(1, 5), (3, 0)]);
        let quoted = r#"{"offsetTable":{"2":7},"dataVersion":{"counter":1}}"#;
        assert_eq!(decode_delay_offsets(quoted).unwrap(), vec![(2, 7)]);
        assert!(decode_delay_offsets("{\"offsetTable\":{x:1}}").is_err());
    }

    #[test]
    fn deliver_timestamp_correction() {
        assert_eq!(deliver_timestamp(1_000, 1_000, 1_500), 2_000);
        // Stored "in the future" by more than one delay: deliver now.
        assert_eq!(deliver_timestamp(10_000, 1_000, 1_500), 1_500);
    }
}
