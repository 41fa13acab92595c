//! Zero-copy reads of the DLedger data files: read-only shared mappings of
//! `<node_dir>/data/<20-digit start position>`, sliced into `Bytes::from_owner` values that
//! keep their mapping alive (pull bodies are never copied, and stay valid if the file is
//! later deleted).
//!
//! Only COMMITTED ranges are handed out (callers check the commit watermark). dledger never
//! rewrites committed bytes: its writer only appends past the published end, and suffix
//! truncation (zeroing) never reaches below the commit index. So the bytes behind a slice
//! are immutable for as long as it lives.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use memmap2::Mmap;

use crate::page_release::{Noted, ReleaseMark};

/// Segments mapped at most (a bound on virtual memory and fds opened while mapping); the
/// oldest mapping is dropped first (live slices keep theirs).
const MAX_MAPPED_SEGMENTS: usize = 1024;

struct Slice {
    map: Arc<Mmap>,
    off: usize,
    len: usize,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.off..self.off + self.len]
    }
}

pub(crate) struct SegmentMaps {
    dir: PathBuf,
    seg_size: u64,
    maps: RwLock<BTreeMap<u64, Arc<Mmap>>>,
    /// How far page mappings were dropped (`release_before`).
    released: Arc<ReleaseMark>,
}

impl SegmentMaps {
    pub(crate) fn new(data_dir: PathBuf, seg_size: u64) -> SegmentMaps {
        SegmentMaps {
            dir: data_dir,
            seg_size,
            maps: RwLock::new(BTreeMap::new()),
            released: Arc::new(ReleaseMark::default()),
        }
    }

    fn map_of(&self, base: u64) -> Option<Arc<Mmap>> {
        if let Some(m) = self
            .maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&base)
        {
            return Some(Arc::clone(m));
        }
        let file = File::open(self.segment_path(base)).ok()?;
        // SAFETY: read-only shared mapping of a dledger segment. Only committed ranges are
        // read through it, and dledger never modifies committed bytes (module docs); other
        // processes must not modify store files.
        let map = Arc::new(unsafe { Mmap::map(&file) }.ok()?);
        let mut g = self.maps.write().unwrap_or_else(|p| p.into_inner());
        while g.len() >= MAX_MAPPED_SEGMENTS {
            g.pop_first();
        }
        Some(Arc::clone(g.entry(base).or_insert(map)))
    }

    /// The mapping of the segment holding `len` bytes at `pos`, and their offset in it. The
    /// read is noted (`ReleaseMark`); the caller reports it done.
    fn locate(&self, pos: u64, len: usize) -> Option<(Arc<Mmap>, usize)> {
        self.released.note_read(pos, len as u64);
        let base = pos / self.seg_size * self.seg_size;
        let off = (pos - base) as usize;
        let map = self.map_of(base)?;
        if len == 0 || off.checked_add(len)? > map.len() {
            return None;
        }
        Some((map, off))
    }

    /// `len` bytes at `pos` (inside one segment), zero-copy.
    pub(crate) fn read(&self, pos: u64, len: usize) -> Option<Bytes> {
        let (map, off) = self.locate(pos, len)?;
        Some(Bytes::from_owner(Noted {
            bytes: Slice { map, off, len },
            mark: Arc::clone(&self.released),
            pos,
        }))
    }

    /// `f` over `len` bytes at `pos`, borrowed: for headers the dispatcher only looks at
    /// (a `Bytes` from [`Self::read`] costs an allocation; this runs several times for every
    /// entry on every replica).
    pub(crate) fn peek<R>(&self, pos: u64, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (map, off) = self.locate(pos, len)?;
        let r = f(&map[off..off + len]);
        self.released.note_read_done(pos);
        Some(r)
    }

    /// Bytes read below the release horizon so far (`ReleaseMark`).
    pub(crate) fn cold_read_bytes(&self) -> u64 {
        self.released.cold_read_bytes()
    }

    /// Drops the page mappings that reads may have made below `below` with
    /// `MADV_DONTNEED` (`ReleaseMark::pass`). Reads after that fault the bytes back in from
    /// the page cache.
    pub(crate) fn release_before(&self, below: u64) {
        self.released.pass(below, |from, to| {
            let maps: Vec<(u64, Arc<Mmap>)> = self
                .maps
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .range(from / self.seg_size * self.seg_size..to)
                .map(|(b, m)| (*b, Arc::clone(m)))
                .collect();
            for (base, map) in maps {
                let lo = from.max(base) - base;
                let hi = (to.min(base + self.seg_size) - base).min(map.len() as u64);
                if hi <= lo {
                    continue;
                }
                // SAFETY: a read-only SHARED file mapping: MADV_DONTNEED only drops this
                // process's page table entries; the next access maps the same file page
                // again (the bytes are immutable committed data, module docs), so live
                // slices keep reading the same contents.
                let r = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        lo as usize,
                        (hi - lo) as usize,
                    )
                };
                if let Err(e) = r {
                    tracing::debug!(error = %e, base, "madvise(DONTNEED) failed");
                }
            }
        });
    }

    /// `POSIX_FADV_DONTNEED` over `[from, to)`, one call per segment it touches. Pages
    /// still mapped somewhere (a read in flight) stay cached; a missing segment (deleted by
    /// retention) has nothing cached.
    pub(crate) fn drop_page_cache(&self, from: u64, to: u64) {
        let mut base = from / self.seg_size * self.seg_size;
        while base < to {
            let lo = from.max(base) - base;
            let hi = to.min(base + self.seg_size) - base;
            if let Ok(f) = File::open(self.segment_path(base)) {
                crate::mapped_file::drop_file_cache(&f, lo, hi - lo);
            }
            base += self.seg_size;
        }
    }

    /// The file of the segment starting at `base`.
    pub(crate) fn segment_path(&self, base: u64) -> PathBuf {
        self.dir.join(format!("{base:020}"))
    }

    /// Drop the mappings of segments below `pos` (retention deleted them): an unmapped
    /// deleted file gives its disk space back. Live slices keep theirs.
    pub(crate) fn forget_below(&self, pos: u64) {
        let mut g = self.maps.write().unwrap_or_else(|p| p.into_inner());
        let keep = g.split_off(&(pos / self.seg_size * self.seg_size));
        *g = keep;
    }

    /// Forget every mapping (live slices keep theirs).
    pub(crate) fn clear(&self) {
        self.maps.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
