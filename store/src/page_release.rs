//! How far a log's page mappings have been dropped from the process's RSS (the housekeeping
//! thread's `MADV_DONTNEED` passes, `CommitLog::release_mapped_below`). Shared by the
//! single-replica commitlog and the DLedger segment maps.
//!
//! Everything below the mark was released once; a read below it maps pages again and lowers
//! the mark, so the next pass drops them again (a lagging consumer must not grow RSS for
//! good).

use std::sync::atomic::{AtomicU64, Ordering};

/// madvise works on whole pages.
pub(crate) const PAGE_BYTES: u64 = 4096;

#[derive(Debug, Default)]
pub(crate) struct ReleaseMark(AtomicU64);

impl ReleaseMark {
    /// A read at `pos` (re)maps its pages.
    pub(crate) fn note_read(&self, pos: u64) {
        if pos < self.0.load(Ordering::Relaxed) {
            self.0
                .fetch_min(pos / PAGE_BYTES * PAGE_BYTES, Ordering::AcqRel);
        }
    }

    /// The page-aligned range `[from, to)` a pass releasing everything below `below` must
    /// drop now, if any. Finish the pass with `released`.
    pub(crate) fn pending(&self, below: u64) -> Option<(u64, u64)> {
        let to = below / PAGE_BYTES * PAGE_BYTES;
        let from = self.0.load(Ordering::Acquire);
        (to > from).then_some((from, to))
    }

    /// Records a finished pass over `[from, to)`, unless a read lowered the mark meanwhile
    /// (then the next pass starts there).
    pub(crate) fn released(&self, from: u64, to: u64) {
        let _ = self
            .0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_behind_the_mark_reopen_the_range_and_passes_are_page_aligned() {
        let m = ReleaseMark::default();
        assert_eq!(m.pending(100), None, "less than a page");
        let (from, to) = m.pending(10_000).unwrap();
        assert_eq!((from, to), (0, 8192));
        m.released(from, to);
        assert_eq!(m.pending(8192), None);
        m.note_read(9_000); // ahead of the mark: nothing to redo
        assert_eq!(m.pending(8192), None);
        m.note_read(5_000);
        assert_eq!(m.pending(8192), Some((4096, 8192)));
        // A read during a pass wins over the pass's end.
        let (from, to) = m.pending(20_000).unwrap();
        m.note_read(100);
        m.released(from, to);
        assert_eq!(m.pending(20_000), Some((0, 16_384)));
    }
}
