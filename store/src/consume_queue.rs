//! Consume queue of one (topic, queue): 20-byte units (phys i64, size i32, tags code i64)
//! in mapped segment files named by their first unit's byte offset (store-format.md §2).
//! Written only by the dispatcher thread; read by pulls below the published `max_offset`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::env::FileAllocator;
use crate::error::StoreError;
use crate::mapped_file::{list_offset_files, offset_to_file_name, MappedFile};

pub const CQ_UNIT_SIZE: usize = 20;
/// Largest gap of blank units the dispatcher will fill before reporting corruption.
const MAX_BLANK_FILL_UNITS: i64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqUnit {
    pub phys: i64,
    pub size: i32,
    pub tags_code: i64,
}

impl CqUnit {
    /// Java `fillPreBlank` unit: (0, Integer.MAX_VALUE, 0).
    pub fn is_blank(&self) -> bool {
        self.phys == 0 && self.size == i32::MAX && self.tags_code == 0
    }
}

pub(crate) struct ConsumeQueue {
    pub(crate) topic: String,
    pub(crate) queue_id: i32,
    dir: PathBuf,
    file_size: usize,
    files: RwLock<Vec<Arc<MappedFile>>>,
    /// Next unit index to be written (published after the unit bytes).
    max_offset: AtomicI64,
    min_offset: AtomicI64,
    /// Unit index up to which units are known flushed.
    flushed: Mutex<i64>,
    /// Queue bytes below this had their page mappings dropped (`release_mapped`).
    released_to: Mutex<i64>,
}

/// Bytes of a queue's newest units that stay mapped through a release pass: pulls of
/// caught-up consumers read there (64 KiB is ~3,300 units).
const MAPPED_TAIL_KEEP_BYTES: i64 = 64 * 1024;

impl ConsumeQueue {
    pub(crate) fn dir_for(root: &Path, topic: &str, queue_id: i32) -> PathBuf {
        root.join("consumequeue")
            .join(topic)
            .join(queue_id.to_string())
    }

    /// Loads existing files (or none). The valid end is the first unit with size 0.
    pub(crate) fn load(
        root: &Path,
        topic: &str,
        queue_id: i32,
        units_per_file: u64,
    ) -> Result<ConsumeQueue, StoreError> {
        let dir = Self::dir_for(root, topic, queue_id);
        let file_size = units_per_file as usize * CQ_UNIT_SIZE;
        let mut files = Vec::new();
        for (off, path) in list_offset_files(&dir)? {
            if off % file_size as i64 != 0 {
                return Err(StoreError::Corrupt {
                    file: path.display().to_string(),
                    offset: off,
                    reason: "consume queue file name not aligned".into(),
                });
            }
            match MappedFile::open(&path, off, file_size) {
                Ok(m) => files.push(Arc::new(m.with_random_access())),
                Err(StoreError::Corrupt { .. }) => {
                    tracing::warn!(file = %path.display(), "removing consume queue file of wrong size");
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(e),
            }
        }
        let mut max = 0i64;
        let mut min = 0i64;
        if let Some(first) = files.first() {
            min = first.start_offset() / CQ_UNIT_SIZE as i64;
        }
        if let Some(last) = files.last() {
            let units = file_size / CQ_UNIT_SIZE;
            let mut n = 0usize;
            while n < units && last.read_i32(n * CQ_UNIT_SIZE + 8) != 0 {
                n += 1;
            }
            max = last.start_offset() / CQ_UNIT_SIZE as i64 + n as i64;
        }
        let cq = ConsumeQueue {
            topic: topic.to_string(),
            queue_id,
            dir,
            file_size,
            files: RwLock::new(files),
            max_offset: AtomicI64::new(max),
            min_offset: AtomicI64::new(min.min(max)),
            flushed: Mutex::new(max),
            released_to: Mutex::new(0),
        };
        // Skip leading blank-filled units for min.
        let mut m = cq.min_offset();
        while m < max {
            match cq.unit(m) {
                Some(u) if u.is_blank() => m += 1,
                _ => break,
            }
        }
        cq.min_offset.store(m, Ordering::Release);
        Ok(cq)
    }

    pub(crate) fn max_offset(&self) -> i64 {
        self.max_offset.load(Ordering::Acquire)
    }
    pub(crate) fn min_offset(&self) -> i64 {
        self.min_offset.load(Ordering::Acquire)
    }

    fn file_for(&self, index: i64) -> Option<(Arc<MappedFile>, usize)> {
        let byte = index.checked_mul(CQ_UNIT_SIZE as i64)?;
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        let first = files.first()?.start_offset();
        if byte < first {
            return None;
        }
        let idx = ((byte - first) / self.file_size as i64) as usize;
        let f = files.get(idx)?;
        let pos = (byte - f.start_offset()) as usize;
        if pos >= self.file_size {
            return None;
        }
        Some((Arc::clone(f), pos))
    }

    /// Unit at `index` if it is in [min, max).
    pub(crate) fn unit(&self, index: i64) -> Option<CqUnit> {
        if index < 0 || index >= self.max_offset() {
            return None;
        }
        let (f, pos) = self.file_for(index)?;
        Some(CqUnit {
            phys: f.read_i64(pos),
            size: f.read_i32(pos + 8),
            tags_code: f.read_i64(pos + 12),
        })
    }

    /// Units from `index` up to the end of its file (Java reads one CQ file per pull), at most
    /// `max_units`, bounded by `max_offset`.
    pub(crate) fn units_from(&self, index: i64, max_units: usize, out: &mut Vec<CqUnit>) -> bool {
        out.clear();
        let max = self.max_offset();
        let Some((f, mut pos)) = self.file_for(index) else {
            return false;
        };
        let mut i = index;
        while i < max && pos + CQ_UNIT_SIZE <= self.file_size && out.len() < max_units {
            out.push(CqUnit {
                phys: f.read_i64(pos),
                size: f.read_i32(pos + 8),
                tags_code: f.read_i64(pos + 12),
            });
            pos += CQ_UNIT_SIZE;
            i += 1;
        }
        true
    }

    fn ensure_file(
        &self,
        index: i64,
        allocator: &dyn FileAllocator,
    ) -> Result<(Arc<MappedFile>, usize), StoreError> {
        if let Some(x) = self.file_for(index) {
            return Ok(x);
        }
        let byte = index * CQ_UNIT_SIZE as i64;
        let from = byte - byte.rem_euclid(self.file_size as i64);
        {
            let files = self.files.read().unwrap_or_else(|p| p.into_inner());
            if let Some(last) = files.last() {
                if last.start_offset() + self.file_size as i64 != from {
                    return Err(StoreError::Corrupt {
                        file: self.dir.display().to_string(),
                        offset: index,
                        reason: "consume queue would get a file gap".into(),
                    });
                }
            }
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        let path = self.dir.join(offset_to_file_name(from));
        let f = Arc::new(
            MappedFile::create(&path, from, self.file_size, allocator)?.with_random_access(),
        );
        self.files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&f));
        Ok((f, (byte - from) as usize))
    }

    fn write_unit(
        &self,
        index: i64,
        u: CqUnit,
        allocator: &dyn FileAllocator,
    ) -> Result<(), StoreError> {
        let (f, pos) = self.ensure_file(index, allocator)?;
        let mut b = [0u8; CQ_UNIT_SIZE];
        b[..8].copy_from_slice(&u.phys.to_be_bytes());
        b[8..12].copy_from_slice(&u.size.to_be_bytes());
        b[12..].copy_from_slice(&u.tags_code.to_be_bytes());
        f.write_at(pos, &b);
        Ok(())
    }

    /// Appends the unit for queue offset `index`. Already present (re-dispatch) -> Ok(false).
    pub(crate) fn put(
        &self,
        index: i64,
        u: CqUnit,
        allocator: &dyn FileAllocator,
    ) -> Result<bool, StoreError> {
        let max = self.max_offset();
        if index < max {
            return Ok(false);
        }
        if index > i64::MAX / CQ_UNIT_SIZE as i64 / 2 {
            return Err(StoreError::Corrupt {
                file: self.dir.display().to_string(),
                offset: index,
                reason: "queue offset out of range".into(),
            });
        }
        let no_files = self
            .files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if no_files && index > 0 {
            // First unit at a non-zero index: blank-fill the start of its file (Java fillPreBlank).
            let byte = index * CQ_UNIT_SIZE as i64;
            let from_unit = (byte - byte.rem_euclid(self.file_size as i64)) / CQ_UNIT_SIZE as i64;
            self.max_offset.store(from_unit, Ordering::Release);
            *self.flushed.lock().unwrap_or_else(|p| p.into_inner()) = from_unit;
            self.min_offset.store(index, Ordering::Release);
        }
        let mut next = self.max_offset();
        if index - next > MAX_BLANK_FILL_UNITS {
            return Err(StoreError::Corrupt {
                file: self.dir.display().to_string(),
                offset: index,
                reason: format!("queue offset jumps from {next} to {index}"),
            });
        }
        while next < index {
            tracing::warn!(topic = %self.topic, queue = self.queue_id, next, "filling blank consume queue unit");
            let blank = CqUnit {
                phys: 0,
                size: i32::MAX,
                tags_code: 0,
            };
            self.write_unit(next, blank, allocator)?;
            next += 1;
            self.max_offset.store(next, Ordering::Release);
        }
        self.write_unit(index, u, allocator)?;
        self.max_offset.store(index + 1, Ordering::Release);
        Ok(true)
    }

    /// Removes units whose record starts at or after `phys` (recovery: they are re-dispatched).
    pub(crate) fn truncate_from_phys(&self, phys: i64) {
        let mut max = self.max_offset();
        let min = self.min_offset();
        while max > min {
            let Some(u) = self.unit(max - 1) else { break };
            if !u.is_blank() && u.phys < phys {
                break;
            }
            if let Some((f, pos)) = self.file_for(max - 1) {
                f.write_at(pos, &[0u8; CQ_UNIT_SIZE]);
            }
            max -= 1;
            self.max_offset.store(max, Ordering::Release);
        }
        // Drop files that start at or after the new end (but keep at least the end's file).
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        while files.len() > 1
            && files
                .last()
                .is_some_and(|f| f.start_offset() > max * CQ_UNIT_SIZE as i64)
        {
            if let Some(f) = files.pop() {
                let _ = std::fs::remove_file(f.path());
            }
        }
        // Units rewritten below the release mark must be released again: restart it at the
        // start of the file now holding the end (a file start keeps `release_mapped`'s
        // invariant). The files lock is let go first: `release_mapped` takes the mark first.
        let end_file_start = files
            .last()
            .map(|f| f.start_offset())
            .filter(|s| *s <= max * CQ_UNIT_SIZE as i64)
            .unwrap_or(0);
        drop(files);
        let mut released = self.released_to.lock().unwrap_or_else(|p| p.into_inner());
        *released = (*released).min(end_file_start);
        drop(released);
        let mut fl = self.flushed.lock().unwrap_or_else(|p| p.into_inner());
        *fl = (*fl).min(max);
    }

    /// Drops this process's page mappings of units more than `MAPPED_TAIL_KEEP_BYTES` behind
    /// the newest (`MappedFile::release_range`: dirty pages stay in the page cache and are
    /// written back as usual). Without this every unit written stayed in RSS: 20 bytes per
    /// message, 30 MB after 1.5M messages. A read of an older unit maps its page again.
    pub(crate) fn release_mapped(&self) {
        const PAGE: usize = crate::page_release::PAGE_BYTES as usize;
        let mut released = self.released_to.lock().unwrap_or_else(|p| p.into_inner());
        let target = self.max_offset() * CQ_UNIT_SIZE as i64 - MAPPED_TAIL_KEEP_BYTES;
        if target <= *released {
            return;
        }
        // `released` is always a file's end or a whole number of pages into a file (files
        // need not be page multiples: 300,000 units are 6,000,000 bytes), so each pass
        // starts exactly where the previous one stopped.
        for f in self.files.read().unwrap_or_else(|p| p.into_inner()).iter() {
            let (start, end) = (f.start_offset(), f.start_offset() + self.file_size as i64);
            if end <= *released {
                continue;
            }
            if start >= target {
                break;
            }
            let lo = ((*released).max(start) - start) as usize;
            let hi = if end <= target {
                self.file_size
            } else {
                (target - start) as usize / PAGE * PAGE
            };
            if hi > lo {
                f.release_range(lo, hi);
                *released = start + hi as i64;
            }
        }
    }

    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let mut fl = self.flushed.lock().unwrap_or_else(|p| p.into_inner());
        let max = self.max_offset();
        if max <= *fl {
            return Ok(());
        }
        let from_b = *fl * CQ_UNIT_SIZE as i64;
        let to_b = max * CQ_UNIT_SIZE as i64;
        let files: Vec<Arc<MappedFile>> = self
            .files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|f| {
                f.start_offset() + self.file_size as i64 > from_b && f.start_offset() < to_b
            })
            .cloned()
            .collect();
        for f in files {
            let a = from_b.max(f.start_offset());
            let b = to_b.min(f.start_offset() + self.file_size as i64);
            f.flush_range((a - f.start_offset()) as usize, (b - a) as usize)?;
        }
        *fl = max;
        Ok(())
    }

    /// Deletes files whose units all reference data below `min_phys` (never the last file)
    /// and advances `min_offset` past such units.
    pub(crate) fn delete_expired(&self, min_phys: i64) -> usize {
        let mut deleted = 0;
        loop {
            let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
            if files.len() < 2 {
                break;
            }
            let f = Arc::clone(&files[0]);
            let last_pos = self.file_size - CQ_UNIT_SIZE;
            let last_phys = f.read_i64(last_pos);
            let last_size = f.read_i32(last_pos + 8);
            if last_size == i32::MAX || last_phys + last_size as i64 <= min_phys {
                files.remove(0);
                drop(files);
                let _ = std::fs::remove_file(f.path());
                deleted += 1;
                let next_min = (f.start_offset() + self.file_size as i64) / CQ_UNIT_SIZE as i64;
                self.min_offset.fetch_max(next_min, Ordering::AcqRel);
            } else {
                break;
            }
        }
        let mut m = self.min_offset();
        let max = self.max_offset();
        while m < max {
            match self.unit(m) {
                Some(u) if u.is_blank() || u.phys < min_phys => m += 1,
                _ => break,
            }
        }
        self.min_offset.fetch_max(m, Ordering::AcqRel);
        deleted
    }

    pub(crate) fn destroy(&self) {
        self.files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
