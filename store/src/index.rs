//! Index files for QUERY_MESSAGE by key and UNIQ_KEY (store-format.md §4; Java
//! `store/.../index/IndexFile.java`, `IndexService.java`). Written by the dispatcher under a
//! write lock, read by queries under a read lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::env::FileAllocator;
use crate::error::StoreError;
use crate::mapped_file::MappedFile;
use crate::message::{java_string_hash, java_string_hash_continue};

const HEADER_SIZE: usize = 40;
const SLOT_SIZE: usize = 4;
const ENTRY_SIZE: usize = 20;
/// Upper bound on chain steps per file and lookup (guards against a corrupt cycle).
const MAX_CHAIN_STEPS: usize = 100_000;

/// `abs(key.hashCode())`, 0 when abs overflows (Java `indexKeyHashMethod`).
pub fn index_key_hash(key: &str) -> i32 {
    abs_hash(java_string_hash(key))
}

/// [`index_key_hash`] of the stored key `topic#key`, without joining the string.
pub fn topic_key_hash(topic: &str, key: &str) -> i32 {
    let h = java_string_hash_continue(java_string_hash(topic), "#");
    abs_hash(java_string_hash_continue(h, key))
}

fn abs_hash(h: i32) -> i32 {
    if h == i32::MIN {
        0
    } else {
        h.abs()
    }
}

struct IndexFile {
    mf: Arc<MappedFile>,
    slots: u32,
    max_index: u32,
    begin_ts: i64,
    end_ts: i64,
    begin_phy: i64,
    end_phy: i64,
    slot_count: i32,
    index_count: i32,
    /// Entry bytes below this had their page mappings dropped (`release_written_entries`).
    released_to: usize,
}

impl IndexFile {
    fn file_size(slots: u32, max_index: u32) -> usize {
        HEADER_SIZE + slots as usize * SLOT_SIZE + max_index as usize * ENTRY_SIZE
    }

    fn load(mf: Arc<MappedFile>, slots: u32, max_index: u32) -> IndexFile {
        let mut f = IndexFile {
            begin_ts: mf.read_i64(0),
            end_ts: mf.read_i64(8),
            begin_phy: mf.read_i64(16),
            end_phy: mf.read_i64(24),
            slot_count: mf.read_i32(32),
            index_count: mf.read_i32(36),
            mf,
            slots,
            max_index,
            released_to: 0,
        };
        if f.index_count < 1 || f.index_count as u32 > max_index {
            // Fresh (zeroed) or damaged header: entry 0 is never used, so counting starts at 1.
            f.index_count = f.index_count.clamp(1, max_index as i32);
        }
        f
    }

    fn write_header(&self) {
        let mut h = [0u8; HEADER_SIZE];
        h[0..8].copy_from_slice(&self.begin_ts.to_be_bytes());
        h[8..16].copy_from_slice(&self.end_ts.to_be_bytes());
        h[16..24].copy_from_slice(&self.begin_phy.to_be_bytes());
        h[24..32].copy_from_slice(&self.end_phy.to_be_bytes());
        h[32..36].copy_from_slice(&self.slot_count.to_be_bytes());
        h[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        self.mf.write_at(0, &h);
    }

    fn is_full(&self) -> bool {
        self.index_count as u32 >= self.max_index
    }

    fn entry_pos(&self, n: i32) -> usize {
        HEADER_SIZE + self.slots as usize * SLOT_SIZE + n as usize * ENTRY_SIZE
    }

    /// Adds an entry for a key whose [`index_key_hash`] is `hash`.
    fn put(&mut self, hash: i32, phys: i64, store_ts: i64) {
        debug_assert!(!self.is_full());
        debug_assert!(hash >= 0);
        let slot_pos = HEADER_SIZE + (hash as u32 % self.slots) as usize * SLOT_SIZE;
        let mut prev = self.mf.read_i32(slot_pos);
        if prev <= 0 || prev >= self.index_count {
            prev = 0;
        }
        let diff = if self.begin_ts <= 0 {
            0
        } else {
            ((store_ts - self.begin_ts) / 1000).clamp(0, i32::MAX as i64) as i32
        };
        let mut e = [0u8; ENTRY_SIZE];
        e[0..4].copy_from_slice(&hash.to_be_bytes());
        e[4..12].copy_from_slice(&phys.to_be_bytes());
        e[12..16].copy_from_slice(&diff.to_be_bytes());
        e[16..20].copy_from_slice(&prev.to_be_bytes());
        self.mf.write_at(self.entry_pos(self.index_count), &e);
        self.mf.write_at(slot_pos, &self.index_count.to_be_bytes());
        if self.index_count <= 1 {
            self.begin_phy = phys;
            self.begin_ts = store_ts;
        }
        if prev == 0 {
            self.slot_count += 1;
        }
        self.index_count += 1;
        self.end_phy = phys;
        self.end_ts = store_ts;
        self.write_header();
    }

    fn select(&self, key: &str, max: usize, begin: i64, end: i64, out: &mut Vec<i64>) {
        let hash = index_key_hash(key);
        let slot_pos = HEADER_SIZE + (hash as u32 % self.slots) as usize * SLOT_SIZE;
        let mut n = self.mf.read_i32(slot_pos);
        let mut steps = 0;
        while n > 0 && n < self.index_count && out.len() < max && steps < MAX_CHAIN_STEPS {
            steps += 1;
            let p = self.entry_pos(n);
            let h = self.mf.read_i32(p);
            let phys = self.mf.read_i64(p + 4);
            let diff = self.mf.read_i32(p + 12) as i64;
            let prev = self.mf.read_i32(p + 16);
            let ts = self.begin_ts + diff * 1000;
            if h == hash && ts >= begin && ts <= end && !out.contains(&phys) {
                out.push(phys);
            }
            if ts < begin || prev >= n {
                break;
            }
            n = prev;
        }
    }
}

pub(crate) struct IndexService {
    dir: PathBuf,
    slots: u32,
    max_index: u32,
    files: Vec<IndexFile>,
}

impl IndexService {
    pub(crate) fn load(
        root: &Path,
        slots: u32,
        max_index: u32,
    ) -> Result<IndexService, StoreError> {
        let dir = root.join("index");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let size = IndexFile::file_size(slots, max_index);
        let mut names = Vec::new();
        for ent in std::fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let ent = ent.map_err(|e| StoreError::io(&dir, e))?;
            if let Some(n) = ent.file_name().to_str() {
                if n.len() == 17 && n.bytes().all(|b| b.is_ascii_digit()) {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        let mut files = Vec::new();
        for n in names {
            let path = dir.join(&n);
            match MappedFile::open(&path, 0, size) {
                Ok(mf) => files.push(IndexFile::load(
                    Arc::new(mf.with_random_access()),
                    slots,
                    max_index,
                )),
                Err(StoreError::Corrupt { .. }) => {
                    tracing::warn!(file = %path.display(), "removing index file of wrong size");
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(IndexService {
            dir,
            slots,
            max_index,
            files,
        })
    }

    /// Physical offset of the last indexed record, if any.
    pub(crate) fn last_phys(&self) -> Option<i64> {
        self.files
            .last()
            .filter(|f| f.index_count > 1)
            .map(|f| f.end_phy)
    }

    pub(crate) fn last_update(&self) -> (i64, i64) {
        self.files
            .last()
            .map(|f| (f.end_ts, f.end_phy))
            .unwrap_or((0, 0))
    }

    /// Indexes `phys` under a key whose [`index_key_hash`] is `key_hash` (only the hash is
    /// stored, as in Java's index file).
    pub(crate) fn put(
        &mut self,
        key_hash: i32,
        phys: i64,
        store_ts: i64,
        now_ms: i64,
        allocator: &dyn FileAllocator,
    ) -> Result<(), StoreError> {
        if self.files.last().is_none_or(|f| f.is_full()) {
            let mut name = format_ts_name(now_ms);
            // Names must be unique and increasing even within one millisecond.
            if let Some(last) = self.files.last() {
                let last_name = last
                    .mf
                    .path()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string();
                if name <= last_name {
                    let v: u64 = last_name.parse().unwrap_or(0);
                    name = format!("{:017}", v + 1);
                }
            }
            // Parted flushes only cover the file being written: finish the full one first.
            if let Some(full) = self.files.last() {
                full.mf.flush_range(0, full.mf.size())?;
            }
            let path = self.dir.join(&name);
            let size = IndexFile::file_size(self.slots, self.max_index);
            let mf = Arc::new(MappedFile::create(&path, 0, size, allocator)?.with_random_access());
            let f = IndexFile::load(mf, self.slots, self.max_index);
            f.write_header();
            self.files.push(f);
        }
        if let Some(f) = self.files.last_mut() {
            f.put(key_hash, phys, store_ts);
        }
        Ok(())
    }

    /// Candidate physical offsets for `key` (newest files first), de-duplicated.
    pub(crate) fn query(&self, key: &str, max: usize, begin: i64, end: i64) -> Vec<i64> {
        let mut out = Vec::new();
        for f in self.files.iter().rev() {
            if out.len() >= max {
                break;
            }
            let matched = (begin <= f.begin_ts && end >= f.end_ts)
                || (begin >= f.begin_ts && begin <= f.end_ts)
                || (end >= f.begin_ts && end <= f.end_ts);
            if matched && f.index_count > 1 {
                f.select(key, max, begin, end, &mut out);
            }
            if f.begin_ts < begin && f.begin_ts > 0 {
                break;
            }
        }
        out
    }

    /// Drops this process's page mappings of the entries written so far (whole pages), and
    /// all of a full file's: entries are appended once and read back only by key queries,
    /// yet every one stayed in RSS (20 bytes per key, ~30 MB after 1.5M messages). The
    /// slot table of the file being written stays mapped: puts touch its pages at random.
    pub(crate) fn release_written_entries(&mut self) {
        const PAGE: usize = crate::page_release::PAGE_BYTES as usize;
        let last = self.files.len().saturating_sub(1);
        for (i, f) in self.files.iter_mut().enumerate() {
            let size = f.mf.size();
            let (from, to) = if i < last || f.is_full() {
                (0, size)
            } else {
                let first = f.entry_pos(0).div_ceil(PAGE) * PAGE;
                (first, f.entry_pos(f.index_count) / PAGE * PAGE)
            };
            let from = f.released_to.max(from);
            if to > from {
                f.mf.release_range(from, to);
                f.released_to = to;
            }
        }
    }

    /// Flushes part `part` (0-based) of `parts` of the current file's slot table; the last
    /// part also flushes the header and the entries. Once all parts have been flushed in
    /// turn, everything put before the first of them is on disk. In parts because puts
    /// dirty slot pages all over the table: one msync of all of them is a write burst
    /// (~20 MB per broker) that the log's fsyncs queue behind.
    pub(crate) fn flush_part(&self, part: u32, parts: u32) -> Result<(), StoreError> {
        debug_assert!(part < parts);
        let Some(f) = self.files.last() else {
            return Ok(());
        };
        let slots_bytes = f.slots as usize * SLOT_SIZE;
        let parts = parts.max(1) as usize;
        let part = (part as usize).min(parts - 1);
        let from = HEADER_SIZE + slots_bytes * part / parts;
        let to = HEADER_SIZE + slots_bytes * (part + 1) / parts;
        f.mf.flush_range(from, to - from)?;
        if part + 1 == parts {
            let end = f.entry_pos(f.index_count).min(f.mf.size());
            f.mf.flush_range(0, HEADER_SIZE)?;
            let entries = f.entry_pos(0);
            f.mf.flush_range(entries, end.saturating_sub(entries))?;
        }
        Ok(())
    }

    /// Deletes files whose newest entry is below `min_phys` (never the last file).
    pub(crate) fn delete_expired(&mut self, min_phys: i64) -> usize {
        let mut n = 0;
        while self.files.len() > 1 && self.files[0].end_phy < min_phys {
            let f = self.files.remove(0);
            let _ = std::fs::remove_file(f.mf.path());
            n += 1;
        }
        n
    }
}

/// `yyyyMMddHHmmssSSS` (UTC) for index file names.
pub(crate) fn format_ts_name(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{:03}",
        y,
        m,
        d,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        milli
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The dispatcher hashes `topic` and `key` apart; queries hash the joined key.
        #[test]
        fn topic_key_hash_is_the_joined_keys_hash(topic in "\\PC{0,12}", key in "\\PC{0,40}") {
            prop_assert_eq!(topic_key_hash(&topic, &key), index_key_hash(&format!("{topic}#{key}")));
        }
    }

    #[test]
    fn hash_of_a_known_key() {
        // Java: Math.abs("TopicA#order-1".hashCode()) == 12101377
        assert_eq!(index_key_hash("TopicA#order-1"), 12_101_377);
        assert_eq!(topic_key_hash("TopicA", "order-1"), 12_101_377);
    }
}
