//! Single-replica commitlog: preallocated mmap'd segments, one writer thread that owns the
//! tail (group commit), an async flush thread, crash recovery.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::commitlog::{
    AppendFuture, AppendRequest, AppendResult, CommitLog, LogRead, QueueOffsetTable, RecordVisitor,
    Responder, Watermark,
};
use crate::config::{FlushDiskType, StoreConfig};
use crate::env::StoreEnv;
use crate::error::StoreError;
use crate::mapped_file::{list_offset_files, offset_to_file_name, MappedFile};
use crate::message::{
    parse_record_meta, patch_record_fields, BLANK_MAGIC_CODE, MAGIC_CODE_V1, MAGIC_CODE_V2,
};
use crate::page_release::ReleaseMark;

/// Java `END_FILE_MIN_BLANK_LENGTH`: room always kept for the end-of-file marker.
const END_FILE_MIN_BLANK_LENGTH: usize = 8;
/// Upper bound on requests gathered into one write batch.
const MAX_BATCH_REQUESTS: usize = 4096;

/// An append's answer, sent once the batch it belongs to allows.
type Answer = (Responder, Result<AppendResult, StoreError>);

struct WriteReq {
    req: AppendRequest,
    done: Responder,
}

struct Shared {
    dir: PathBuf,
    seg_size: usize,
    max_record_bytes: usize,
    max_write_batch_bytes: usize,
    flush_type: FlushDiskType,
    flush_interval_ms: u64,
    env: StoreEnv,
    segments: RwLock<Vec<Arc<MappedFile>>>,
    write_pos: AtomicI64,
    flushed: AtomicI64,
    committed: Watermark,
    queue_offsets: Arc<QueueOffsetTable>,
    fsyncs: AtomicU64,
    /// How far page mappings were dropped (`release_mapped_below`).
    released: Arc<ReleaseMark>,
    flush_lock: Mutex<()>,
    failed: Mutex<Option<String>>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    stopped: AtomicBool,
}

pub struct FileCommitLog {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<WriteReq>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl FileCommitLog {
    /// Opens (recovering) the log in `<root>/commitlog` and starts its threads. Records at or
    /// after the start of the segment containing `verify_from` are fully verified; the first
    /// invalid one marks the torn tail, which is wiped.
    pub fn open(
        cfg: &StoreConfig,
        env: StoreEnv,
        queue_offsets: Arc<QueueOffsetTable>,
        verify_from: i64,
    ) -> Result<Arc<FileCommitLog>, StoreError> {
        let dir = cfg.store_path_root_dir.join("commitlog");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let seg_size = cfg.mapped_file_size_commit_log as usize;
        let segments = load_segments(&dir, seg_size)?;
        let end = recover_tail(&segments, seg_size, verify_from)?;
        let mut segments = segments;
        // Segments wholly after the valid end hold only unacknowledged bytes.
        while segments.last().is_some_and(|s| s.start_offset() > end) {
            if let Some(s) = segments.pop() {
                tracing::warn!(file = %s.path().display(), "removing segment beyond recovered end");
                let _ = std::fs::remove_file(s.path());
            }
        }
        let shared = Arc::new(Shared {
            dir,
            seg_size,
            max_record_bytes: cfg.max_record_size_bytes(),
            max_write_batch_bytes: cfg.max_write_batch_bytes,
            flush_type: cfg.flush_disk_type,
            flush_interval_ms: cfg.flush_interval_commit_log_ms.max(1),
            env,
            segments: RwLock::new(segments),
            write_pos: AtomicI64::new(end),
            flushed: AtomicI64::new(end),
            committed: Watermark::new(end),
            queue_offsets,
            fsyncs: AtomicU64::new(0),
            released: Arc::new(ReleaseMark::default()),
            flush_lock: Mutex::new(()),
            failed: Mutex::new(None),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            stopped: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel(cfg.append_queue_capacity);
        let mut threads = Vec::new();
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("store-cl-writer".into())
                .spawn(move || writer_loop(s, rx))
                .map_err(|e| StoreError::io("spawn writer", e))?,
        );
        if shared.flush_type == FlushDiskType::AsyncFlush {
            let s = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("store-cl-flush".into())
                    .spawn(move || flush_loop(s))
                    .map_err(|e| StoreError::io("spawn flusher", e))?,
            );
        }
        Ok(Arc::new(FileCommitLog {
            shared,
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        }))
    }
}

fn load_segments(dir: &Path, seg_size: usize) -> Result<Vec<Arc<MappedFile>>, StoreError> {
    let files = list_offset_files(dir)?;
    let n = files.len();
    let mut out: Vec<Arc<MappedFile>> = Vec::with_capacity(n);
    for (i, (off, path)) in files.into_iter().enumerate() {
        if off % seg_size as i64 != 0 {
            return Err(StoreError::Corrupt {
                file: path.display().to_string(),
                offset: off,
                reason: format!("segment name not a multiple of {seg_size}"),
            });
        }
        if let Some(prev) = out.last() {
            if prev.start_offset() + seg_size as i64 != off {
                return Err(StoreError::Corrupt {
                    file: path.display().to_string(),
                    offset: off,
                    reason: "gap between commitlog segments".into(),
                });
            }
        }
        match MappedFile::open(&path, off, seg_size) {
            Ok(m) => out.push(Arc::new(m)),
            Err(StoreError::Corrupt { .. }) if i + 1 == n => {
                // Crash while a new segment was being preallocated: it held no acknowledged data.
                tracing::warn!(file = %path.display(), "removing partially created last segment");
                std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Verifies records from the segment containing `verify_from` and returns the valid end.
/// Checks per record: magic, TOTALSIZE == length recomputed from its fields, BODYCRC,
/// PHYSICALOFFSET == its position, and the end-of-file slack; an end-of-file blank must
/// carry exactly the remaining length.
fn recover_tail(
    segs: &[Arc<MappedFile>],
    seg_size: usize,
    verify_from: i64,
) -> Result<i64, StoreError> {
    let Some(first) = segs.first() else {
        return Ok(0);
    };
    let start_idx = segs
        .iter()
        .position(|s| {
            s.start_offset() <= verify_from && verify_from < s.start_offset() + seg_size as i64
        })
        .unwrap_or(0);
    let _ = first;
    for (i, seg) in segs.iter().enumerate().skip(start_idx) {
        let mut pos = 0usize;
        loop {
            if pos + END_FILE_MIN_BLANK_LENGTH > seg_size {
                break;
            }
            let total = seg.read_i32(pos);
            let magic = seg.read_i32(pos + 4);
            if magic == BLANK_MAGIC_CODE
                && total as i64 == (seg_size - pos) as i64
                && i + 1 < segs.len()
            {
                pos = seg_size;
                break;
            }
            let ok = (magic == MAGIC_CODE_V1 || magic == MAGIC_CODE_V2)
                && total > 0
                && pos + total as usize + END_FILE_MIN_BLANK_LENGTH <= seg_size
                && parse_record_meta(seg.bytes_at(pos, total as usize), true)
                    .is_ok_and(|m| m.physical_offset == seg.start_offset() + pos as i64);
            if !ok {
                let end = seg.start_offset() + pos as i64;
                if total != 0 || magic != 0 {
                    tracing::warn!(offset = end, "commitlog: torn or corrupt tail truncated");
                }
                wipe_from(seg, pos)?;
                return Ok(end);
            }
            pos += total as usize;
        }
        if pos < seg_size {
            // Only reachable for a segment too small to hold a blank: treat as its end.
            let end = seg.start_offset() + pos as i64;
            wipe_from(seg, pos)?;
            return Ok(end);
        }
    }
    // Walked through a blank at the end of the last segment (cannot happen: the next segment
    // is created before the blank is written) or all segments are full.
    Ok(segs
        .last()
        .map_or(0, |s| s.start_offset() + seg_size as i64))
}

/// Zeroes `[pos, size)` so stale unacknowledged bytes can never be mistaken for records
/// later. Uses FALLOC_FL_ZERO_RANGE (keeps the blocks allocated); falls back to writing zeros.
fn wipe_from(seg: &MappedFile, pos: usize) -> Result<(), StoreError> {
    let len = seg.size() - pos;
    if len == 0 {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.path())
        .map_err(|e| StoreError::io(seg.path(), e))?;
    // SAFETY: syscall on a valid descriptor with in-range arguments.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            pos as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc != 0 {
        seg.zero(pos, len);
        seg.flush_range(pos, len)?;
    } else {
        file.sync_data()
            .map_err(|e| StoreError::io(seg.path(), e))?;
    }
    Ok(())
}

impl Shared {
    /// The segments holding some of the log bytes `[lo, hi)` (a snapshot of the list), each
    /// with the part of the range it holds, in file positions.
    fn segment_ranges(&self, lo: i64, hi: i64) -> Vec<(Arc<MappedFile>, usize, usize)> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|m| m.start_offset() < hi && m.start_offset() + m.size() as i64 > lo)
            .map(|m| {
                let start = m.start_offset();
                let end = start + m.size() as i64;
                let (from, to) = (lo.max(start) - start, hi.min(end) - start);
                (Arc::clone(m), from as usize, to as usize)
            })
            .collect()
    }

    fn fail_reason(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn segment_for(&self, phys: i64) -> Option<Arc<MappedFile>> {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let first = segs.first()?.start_offset();
        if phys < first {
            return None;
        }
        let idx = ((phys - first) / self.seg_size as i64) as usize;
        let s = segs.get(idx)?;
        debug_assert!(s.start_offset() <= phys && phys < s.start_offset() + self.seg_size as i64);
        Some(Arc::clone(s))
    }

    fn last_segment(&self) -> Option<Arc<MappedFile>> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned()
    }

    fn create_segment(&self, from: i64) -> Result<Arc<MappedFile>, StoreError> {
        let path = self.dir.join(offset_to_file_name(from));
        let seg = Arc::new(MappedFile::create(
            &path,
            from,
            self.seg_size,
            self.env.allocator.as_ref(),
        )?);
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&seg));
        Ok(seg)
    }

    /// Returns the segment and in-segment position where `len` bytes can be written,
    /// rolling over (new segment first, then the blank marker) when needed.
    fn ensure_room(&self, len: usize) -> Result<(Arc<MappedFile>, usize), StoreError> {
        let wp = self.write_pos.load(Ordering::Acquire);
        let seg = match self.last_segment() {
            Some(s) if s.start_offset() + self.seg_size as i64 > wp => s,
            _ => {
                let from = wp - wp.rem_euclid(self.seg_size as i64);
                self.create_segment(from)?
            }
        };
        let pos = (wp - seg.start_offset()) as usize;
        if pos + len + END_FILE_MIN_BLANK_LENGTH <= self.seg_size {
            return Ok((seg, pos));
        }
        let next_from = seg.start_offset() + self.seg_size as i64;
        let next = self.create_segment(next_from)?; // fails cleanly before touching the old one
        let remaining = self.seg_size - pos;
        assert!(
            remaining >= END_FILE_MIN_BLANK_LENGTH,
            "end-of-file slack violated"
        );
        let mut blank = [0u8; 8];
        blank[..4].copy_from_slice(&(remaining as i32).to_be_bytes());
        blank[4..].copy_from_slice(&BLANK_MAGIC_CODE.to_be_bytes());
        seg.write_at(pos, &blank);
        self.write_pos.store(next_from, Ordering::Release);
        Ok((next, 0))
    }

    fn flush_to(&self, end: i64) -> Result<(), StoreError> {
        let _g = self.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
        let from = self.flushed.load(Ordering::Acquire);
        if end <= from {
            return Ok(());
        }
        let segs: Vec<Arc<MappedFile>> = {
            let all = self.segments.read().unwrap_or_else(|p| p.into_inner());
            all.iter()
                .filter(|s| {
                    let s_end = s.start_offset() + self.seg_size as i64;
                    s_end > from && s.start_offset() < end
                })
                .cloned()
                .collect()
        };
        for s in segs {
            let a = from.max(s.start_offset());
            let b = end.min(s.start_offset() + self.seg_size as i64);
            s.flush_range((a - s.start_offset()) as usize, (b - a) as usize)?;
        }
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.flushed.store(end, Ordering::Release);
        Ok(())
    }

    fn mark_failed(&self, reason: String) {
        tracing::error!(%reason, "commitlog flush failed; refusing further writes");
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }
}

fn writer_loop(s: Arc<Shared>, mut rx: mpsc::Receiver<WriteReq>) {
    let mut batch: Vec<WriteReq> = Vec::with_capacity(64);
    let mut results: Vec<Answer> = Vec::with_capacity(64);
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.req.records.len();
        batch.push(first);
        while batch.len() < MAX_BATCH_REQUESTS && bytes < s.max_write_batch_bytes {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.req.records.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        write_batch(&s, &mut batch, &mut results);
        for (done, res) in results.drain(..) {
            done.send(res);
        }
    }
    tracing::debug!("commitlog writer stopped");
}

/// Records bound for consecutive bytes of one segment, written with one `pwritev`.
struct Run {
    seg: Option<Arc<MappedFile>>,
    start: usize,
    end: usize,
    bufs: Vec<bytes::BytesMut>,
}

impl Run {
    fn write(&mut self) -> Result<(), StoreError> {
        let r = match &self.seg {
            Some(seg) => seg.write_vectored_at(self.start, &self.bufs),
            None => Ok(()),
        };
        self.seg = None;
        self.bufs.clear();
        r
    }

    /// Appends `records` at `pos` of `seg`, first writing out the current run if the new
    /// bytes do not continue it.
    fn push(
        &mut self,
        seg: &Arc<MappedFile>,
        pos: usize,
        records: bytes::BytesMut,
    ) -> Result<(), StoreError> {
        let continues = self
            .seg
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, seg) && self.end == pos);
        if !continues {
            self.write()?;
            self.seg = Some(Arc::clone(seg));
            self.start = pos;
            self.end = pos;
        }
        self.end += records.len();
        self.bufs.push(records);
        Ok(())
    }
}

fn write_batch(s: &Shared, batch: &mut Vec<WriteReq>, results: &mut Vec<Answer>) {
    let now_ms = s.env.clock.now_ms();
    let mut offsets = s.queue_offsets.lock();
    let batch_from = results.len();
    let mut run = Run {
        seg: None,
        start: 0,
        end: 0,
        bufs: Vec::with_capacity(batch.len()),
    };
    // WAIT=false answers under SYNC_FLUSH: sent once their bytes are written.
    let mut after_write: Vec<Answer> = Vec::new();
    let mut write_err: Option<StoreError> = None;
    for WriteReq { mut req, done } in batch.drain(..) {
        if let Some(reason) = s.fail_reason() {
            results.push((done, Err(StoreError::ReadOnly { reason })));
            continue;
        }
        let len = req.records.len();
        if len == 0
            || len
                > s.max_record_bytes
                    .saturating_mul(req.record_count.max(1) as usize)
            || len + END_FILE_MIN_BLANK_LENGTH > s.seg_size
        {
            results.push((
                done,
                Err(StoreError::illegal(format!(
                    "append of {len} bytes does not fit a segment"
                ))),
            ));
            continue;
        }
        let (seg, pos) = match s.ensure_room(len) {
            Ok(x) => x,
            Err(e) => {
                results.push((done, Err(e)));
                continue;
            }
        };
        let base_qo = if req.assign_queue_offsets {
            offsets
                .get(req.topic.as_str())
                .and_then(|q| q.get(&req.queue_id))
                .copied()
                .unwrap_or(0)
        } else {
            0
        };
        let phys_base = seg.start_offset() + pos as i64;
        let mut off = 0usize;
        let mut i = 0i64;
        let mut bad = false;
        while off < len {
            let qo = if req.assign_queue_offsets {
                base_qo + i
            } else {
                0
            };
            let phys = phys_base + off as i64;
            match patch_record_fields(&mut req.records[off..], qo, phys, now_ms) {
                Ok(total) => {
                    off += total;
                    i += 1;
                }
                Err(_) => {
                    bad = true;
                    break;
                }
            }
        }
        if bad || i != req.record_count as i64 {
            results.push((
                done,
                Err(StoreError::illegal("malformed encoded records in append")),
            ));
            continue;
        }
        if let Err(e) = run.push(&seg, pos, std::mem::take(&mut req.records)) {
            write_err.get_or_insert(e);
        }
        s.write_pos.store(phys_base + len as i64, Ordering::Release);
        if req.assign_queue_offsets {
            match offsets.get_mut(req.topic.as_str()) {
                Some(q) => {
                    q.insert(req.queue_id, base_qo + i);
                }
                None => {
                    offsets
                        .entry(req.topic.to_string())
                        .or_default()
                        .insert(req.queue_id, base_qo + i);
                }
            }
        }
        let res = Ok(AppendResult {
            phys_offset: phys_base,
            queue_offset: base_qo,
            wrote_bytes: len as i32,
            store_timestamp_ms: now_ms,
        });
        if req.wait_durable || s.flush_type == FlushDiskType::AsyncFlush {
            results.push((done, res));
        } else {
            // WAIT=false under SYNC_FLUSH (Java `isWaitStoreMsgOK`): answer after the write;
            // the record still becomes visible to consumers only once flushed.
            after_write.push((done, res));
        }
    }
    drop(offsets);
    if let Err(e) = run.write() {
        write_err.get_or_insert(e);
    }
    if let Some(e) = write_err {
        // Space was preallocated: a failed write is an I/O fault. Nothing of this batch is
        // acknowledged or published.
        let reason = e.to_string();
        s.mark_failed(reason.clone());
        for (_, res) in results[batch_from..]
            .iter_mut()
            .chain(after_write.iter_mut())
        {
            if res.is_ok() {
                *res = Err(StoreError::ReadOnly {
                    reason: reason.clone(),
                });
            }
        }
        results.extend(after_write);
        return;
    }
    for (done, res) in after_write {
        done.send(res);
    }
    let end = s.write_pos.load(Ordering::Acquire);
    if s.flush_type == FlushDiskType::SyncFlush {
        // Group commit: one flush covers every request in this batch.
        if let Err(e) = s.flush_to(end) {
            let reason = e.to_string();
            s.mark_failed(reason.clone());
            for (_, res) in results[batch_from..].iter_mut() {
                if res.is_ok() {
                    *res = Err(StoreError::ReadOnly {
                        reason: reason.clone(),
                    });
                }
            }
            return;
        }
    }
    s.committed.publish(end);
}

fn flush_loop(s: Arc<Shared>) {
    let interval = Duration::from_millis(s.flush_interval_ms);
    loop {
        {
            let g = s.stop.lock().unwrap_or_else(|p| p.into_inner());
            if *g {
                break;
            }
            let (g, _) = s
                .stop_cv
                .wait_timeout(g, interval)
                .unwrap_or_else(|p| p.into_inner());
            if *g {
                break;
            }
        }
        // Up to the published end, not `write_pos`: the writer advances `write_pos` per
        // request but writes a batch's bytes (`pwritev`) only at its end, so `flushed` must
        // never claim bytes a flush could have run ahead of.
        let end = s.committed.get();
        if let Err(e) = s.flush_to(end) {
            s.mark_failed(e.to_string());
        }
    }
}

impl CommitLog for FileCommitLog {
    fn append(&self, req: AppendRequest) -> AppendFuture {
        let (done, answer) = Responder::new();
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return AppendFuture::ready(Err(StoreError::ShutDown));
        };
        match tx.try_send(WriteReq { req, done }) {
            Ok(()) => answer,
            // The writer's queue is full: wait for room (backpressure) off the lock.
            Err(mpsc::error::TrySendError::Full(w)) => {
                let tx = tx.clone();
                drop(guard);
                AppendFuture::boxed(async move {
                    // A refused request drops its responder, which answers `ShutDown`.
                    let _ = tx.send(w).await;
                    answer.await
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => answer,
        }
    }

    fn committed_offset(&self) -> i64 {
        self.shared.committed.get()
    }

    fn wait_committed_beyond(&self, offset: i64, timeout: Duration) -> i64 {
        self.shared.committed.wait_beyond(offset, timeout)
    }

    fn read_next(&self, from: i64, committed: i64, visit: RecordVisitor<'_>) -> LogRead {
        let s = &self.shared;
        if from >= committed {
            return LogRead::NotYet;
        }
        let Some(seg) = s.segment_for(from) else {
            let min = self.min_offset();
            if from < min {
                return LogRead::Skip { next: min };
            }
            return LogRead::NotYet;
        };
        let seg_end = seg.start_offset() + s.seg_size as i64;
        let pos = (from - seg.start_offset()) as usize;
        if pos + END_FILE_MIN_BLANK_LENGTH > s.seg_size {
            return LogRead::Skip { next: seg_end };
        }
        let avail = (committed.min(seg_end) - from) as usize;
        if avail < END_FILE_MIN_BLANK_LENGTH {
            return LogRead::NotYet;
        }
        let total = seg.read_i32(pos);
        let magic = seg.read_i32(pos + 4);
        if magic == BLANK_MAGIC_CODE {
            return LogRead::Skip { next: seg_end };
        }
        if (magic != MAGIC_CODE_V1 && magic != MAGIC_CODE_V2)
            || total <= 0
            || total as usize > avail
        {
            return LogRead::Corrupt {
                reason: format!("bad record header at {from}: size {total} magic {magic:#x}"),
                next: seg_end,
            };
        }
        LogRead::Record {
            phys: from,
            next: from + total as i64,
            visited: visit(from, seg.bytes_at(pos, total as usize)),
        }
    }

    fn read(&self, phys: i64, size: usize) -> Option<Bytes> {
        let s = &self.shared;
        if phys < 0 || size == 0 || phys.checked_add(size as i64)? > s.committed.get() {
            return None;
        }
        let seg = s.segment_for(phys)?;
        let pos = (phys - seg.start_offset()) as usize;
        if pos + size > s.seg_size {
            return None;
        }
        s.released.note_read(phys as u64, size as u64);
        Some(seg.slice_noted(pos, size, &s.released, phys as u64))
    }

    fn min_offset(&self) -> i64 {
        let segs = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner());
        match segs.first() {
            Some(s) => s.start_offset(),
            None => self.shared.write_pos.load(Ordering::Acquire),
        }
    }

    fn max_offset(&self) -> i64 {
        self.shared.write_pos.load(Ordering::Acquire)
    }

    fn flushed_offset(&self) -> i64 {
        self.shared.flushed.load(Ordering::Acquire)
    }

    fn cold_read_bytes(&self) -> u64 {
        self.shared.released.cold_read_bytes()
    }

    fn release_mapped_below(&self, below: i64) {
        let s = &self.shared;
        // Not limited to flushed bytes: records are written with `pwrite`, so the mapping
        // only ever holds pages the dispatcher and pulls *read*, and dropping a mapping never
        // drops data (dirty page-cache pages stay dirty until written back). At 100 MB/s with
        // ASYNC_FLUSH the flush runs ~0.5 s behind, and waiting for it kept up to 136 MiB of
        // log mapped.
        s.released.pass(below.max(0) as u64, |from, to| {
            // Page-aligned (segment starts are too), so consecutive passes leave no page
            // behind.
            for (m, lo, hi) in s.segment_ranges(from as i64, to as i64) {
                m.release_range(lo, hi);
            }
        });
    }

    fn drop_page_cache(&self, from: i64, to: i64) {
        for (m, lo, hi) in self.shared.segment_ranges(from, to) {
            m.drop_cache_range(lo, hi);
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Everything written and published (see `flush_loop`).
        let end = self.shared.committed.get();
        self.shared.flush_to(end)
    }

    fn delete_expired(
        &self,
        expire_before_ms: i64,
        force: bool,
        max_phys: i64,
        max_files: usize,
    ) -> usize {
        let s = &self.shared;
        let mut deleted = 0;
        loop {
            if deleted >= max_files {
                break;
            }
            let mut segs = s.segments.write().unwrap_or_else(|p| p.into_inner());
            if segs.len() < 2 {
                break;
            }
            let first = Arc::clone(&segs[0]);
            let end = first.start_offset() + s.seg_size as i64;
            if end > max_phys {
                break;
            }
            let expired = force || first.modified_ms().is_some_and(|m| m < expire_before_ms);
            if !expired {
                break;
            }
            segs.remove(0);
            drop(segs);
            if let Err(e) = std::fs::remove_file(first.path()) {
                tracing::warn!(file = %first.path().display(), error = %e, "delete segment failed");
            } else {
                tracing::info!(file = %first.path().display(), "deleted expired commitlog segment");
            }
            deleted += 1;
        }
        deleted
    }

    fn disk_bytes(&self) -> u64 {
        let n = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        n as u64 * self.shared.seg_size as u64
    }

    fn shutdown(&self) {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        // Dropping the sender lets the writer drain what is queued and exit.
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        {
            let mut g = self.shared.stop.lock().unwrap_or_else(|p| p.into_inner());
            *g = true;
            self.shared.stop_cv.notify_all();
        }
        let threads: Vec<JoinHandle<()>> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "final commitlog flush failed");
        }
        self.shared.committed.notify();
    }

    fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }
}

impl Drop for FileCommitLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}
