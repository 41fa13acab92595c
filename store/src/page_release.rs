//! Which log pages a release pass must drop from the process's RSS (`MADV_DONTNEED`,
//! `CommitLog::release_mapped_below`). Shared by the single-replica commitlog and the
//! DLedger segment maps.
//!
//! Everything below the mark was released by an earlier pass. Reads below it map pages
//! again, so a pass drops `[lowest read since the last pass, below)` (a lagging consumer
//! must not grow RSS for good). A read maps its pages when they are touched, which for a
//! pull is when its response is written, long after the read was made and possibly after a
//! pass: so reads are noted when their bytes are dropped ([`Noted`]), after every touch.
//!
//! Reads below the last pass's end are also counted: a consumer catching up reads at
//! hundreds of MB/s, faster than a timed pass drops the pages, so the store starts a pass
//! early once enough were mapped (`StoreCore::note_cold_reads`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// madvise works on whole pages.
pub(crate) const PAGE_BYTES: u64 = 4096;
/// A page fault on a file mapping maps the cached pages around it too (Linux
/// `fault_around_bytes`, 64 KiB by default), so a read maps at least this window.
const FAULT_AROUND_BYTES: u64 = 64 * 1024;
/// How far below a read its faults may map pages: a fault maps a whole large folio of the
/// page cache at once (up to a PMD, 2 MiB). Passes that started at the lowest read itself
/// left a few pages behind at every start (~20 MB of a 1 GiB segment after catch-up reads).
const FAULT_MAP_BELOW_BYTES: u64 = 2 * 1024 * 1024;

#[derive(Debug)]
pub(crate) struct ReleaseMark {
    /// Lowest page-aligned position whose read ended since the current pass began
    /// (`u64::MAX`: none).
    lowest_read: AtomicU64,
    /// The highest end a pass was asked for: reads under it map pages that only a later
    /// pass drops again.
    horizon: AtomicU64,
    /// Bytes mapped by reads under `horizon`, ever (monotonic), in whole fault-around
    /// windows: a pull of one queue of many skips over the other queues' records, and
    /// every record it reads maps the window around it.
    cold_read_bytes: AtomicU64,
    /// The fault-around window the last cold read ended in (+1; 0 = none): a pull's
    /// consecutive records in one window count once.
    last_window: AtomicU64,
    /// Everything below was dropped by a pass (and not read since, unless `lowest_read`
    /// says so). Under a lock: passes run one at a time (the housekeeping thread, a
    /// metadata replay).
    mark: Mutex<u64>,
}

impl Default for ReleaseMark {
    fn default() -> Self {
        ReleaseMark {
            lowest_read: AtomicU64::new(u64::MAX),
            horizon: AtomicU64::new(0),
            cold_read_bytes: AtomicU64::new(0),
            last_window: AtomicU64::new(0),
            mark: Mutex::new(0),
        }
    }
}

impl ReleaseMark {
    /// A read of `len` bytes at `pos` is made (its pages are touched until it is dropped).
    pub(crate) fn note_read(&self, pos: u64, len: u64) {
        if pos < self.horizon.load(Ordering::Relaxed) {
            let first = pos / FAULT_AROUND_BYTES + 1;
            let last = (pos + len.max(1) - 1) / FAULT_AROUND_BYTES + 1;
            let before = self.last_window.swap(last, Ordering::Relaxed);
            let windows = last - first + u64::from(before != first);
            self.cold_read_bytes
                .fetch_add(windows * FAULT_AROUND_BYTES, Ordering::Relaxed);
        }
    }

    /// The bytes of a read at `pos` were dropped: whatever it touched is mapped now, and
    /// so may be pages up to `FAULT_MAP_BELOW_BYTES` below it.
    pub(crate) fn note_read_done(&self, pos: u64) {
        let from = pos.saturating_sub(FAULT_MAP_BELOW_BYTES) / PAGE_BYTES * PAGE_BYTES;
        if from < self.lowest_read.load(Ordering::Relaxed) {
            self.lowest_read.fetch_min(from, Ordering::AcqRel);
        }
    }

    /// Bytes mapped by reads below the release horizon so far (monotonic).
    pub(crate) fn cold_read_bytes(&self) -> u64 {
        self.cold_read_bytes.load(Ordering::Relaxed)
    }

    /// Runs one pass releasing what may be mapped below `below`: calls `drop_range` with
    /// the page-aligned `[from, to)` to `MADV_DONTNEED`, if there is one.
    pub(crate) fn pass(&self, below: u64, drop_range: impl FnOnce(u64, u64)) {
        let to = below / PAGE_BYTES * PAGE_BYTES;
        self.horizon.fetch_max(to, Ordering::Relaxed);
        let mut mark = self.mark.lock().unwrap_or_else(|p| p.into_inner());
        // Reads that end from here on count for the next pass.
        let read = self.lowest_read.swap(u64::MAX, Ordering::AcqRel);
        let from = (*mark).min(read);
        if from < to {
            drop_range(from, to);
        }
        if read >= to || to < *mark {
            // This pass did not cover all the read touched (a replay's pass ends below the
            // mark, and a read's pages reach above its end): keep it for the next one.
            self.lowest_read.fetch_min(read, Ordering::AcqRel);
        }
        *mark = (*mark).max(to);
    }
}

/// Log bytes handed out by a read (the owner behind a `Bytes`): tells the mark when they
/// are dropped, after the last touch of their pages.
pub(crate) struct Noted<T> {
    pub(crate) bytes: T,
    pub(crate) mark: Arc<ReleaseMark>,
    pub(crate) pos: u64,
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Noted<T> {
    fn as_ref(&self) -> &[u8] {
        self.bytes.as_ref()
    }
}

impl<T> Drop for Noted<T> {
    fn drop(&mut self) {
        self.mark.note_read_done(self.pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range one pass drops.
    fn run(m: &ReleaseMark, below: u64) -> Option<(u64, u64)> {
        let mut r = None;
        m.pass(below, |a, b| r = Some((a, b)));
        r
    }

    /// A read of `len` bytes at `pos`, made and dropped.
    fn read(m: &Arc<ReleaseMark>, pos: u64, len: u64) {
        m.note_read(pos, len);
        drop(Noted {
            bytes: [0u8; 0],
            mark: Arc::clone(m),
            pos,
        });
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn passes_drop_what_reads_mapped_and_are_page_aligned() {
        let m = Arc::new(ReleaseMark::default());
        assert_eq!(run(&m, 100), None, "less than a page");
        assert_eq!(run(&m, 10_000), Some((0, 8192)));
        assert_eq!(run(&m, 8192), None);
        assert_eq!(run(&m, 8 * MIB + 100), Some((8192, 8 * MIB)));
        read(&m, 12 * MIB, 10); // ahead of the mark: the hot tail, passes reach it later
        assert_eq!(run(&m, 8 * MIB), None);
        read(&m, 5 * MIB + 5_000, 10);
        assert_eq!(
            run(&m, 8 * MIB),
            Some((3 * MIB + 4096, 8 * MIB)),
            "from the pages its faults may have mapped below the read"
        );
        assert_eq!(run(&m, 8 * MIB), None);
    }

    #[test]
    fn a_read_is_dropped_by_the_first_pass_after_it_ends() {
        let m = Arc::new(ReleaseMark::default());
        assert_eq!(run(&m, 10 * MIB), Some((0, 10 * MIB)));
        // A pull takes its records...
        m.note_read(4 * MIB, 10);
        let held = Noted {
            bytes: [0u8; 0],
            mark: Arc::clone(&m),
            pos: 4 * MIB,
        };
        // ...a pass runs before its response is written (it touches the pages then)...
        let mut during = None;
        m.pass(20 * MIB, |a, b| {
            during = Some((a, b));
            // ...and a read that ends during a pass counts for the next one.
            read(&m, 8 * MIB, 10);
        });
        assert_eq!(during, Some((10 * MIB, 20 * MIB)));
        assert_eq!(run(&m, 20 * MIB), Some((6 * MIB, 20 * MIB)));
        drop(held);
        assert_eq!(run(&m, 20 * MIB), Some((2 * MIB, 20 * MIB)));
        assert_eq!(run(&m, 20 * MIB), None);
    }

    #[test]
    fn a_pass_ending_below_a_read_keeps_it_for_the_next_pass() {
        let m = Arc::new(ReleaseMark::default());
        assert_eq!(run(&m, 20 * MIB), Some((0, 20 * MIB)));
        read(&m, 12 * MIB, 10);
        // A metadata replay's pass behind everything.
        assert_eq!(run(&m, 4 * MIB), None);
        assert_eq!(run(&m, 20 * MIB), Some((10 * MIB, 20 * MIB)));
        // A read just below a replay's end: its pages above that end stay below the mark.
        read(&m, 7 * MIB, 10);
        assert_eq!(run(&m, 6 * MIB), Some((5 * MIB, 6 * MIB)));
        assert_eq!(run(&m, 20 * MIB), Some((5 * MIB, 20 * MIB)));
        assert_eq!(run(&m, 20 * MIB), None);
    }

    #[test]
    fn only_reads_below_the_horizon_count_as_cold() {
        let m = Arc::new(ReleaseMark::default());
        m.note_read(0, 100);
        assert_eq!(m.cold_read_bytes(), 0, "no pass yet: everything is hot");
        let _ = run(&m, 8192);
        m.note_read(8192, 500); // at the horizon: the hot tail
        assert_eq!(m.cold_read_bytes(), 0);
        m.note_read(0, 300);
        m.note_read(4096, 200);
        assert_eq!(
            m.cold_read_bytes(),
            FAULT_AROUND_BYTES,
            "two reads in one fault-around window map it once"
        );
    }

    #[test]
    fn cold_reads_count_every_fault_around_window_they_touch() {
        let m = Arc::new(ReleaseMark::default());
        let w = FAULT_AROUND_BYTES;
        let _ = run(&m, 100 * w);
        // A record across a window boundary maps both windows.
        m.note_read(w - 10, 20);
        assert_eq!(m.cold_read_bytes(), 2 * w);
        // The next record in the second window adds nothing; one in the window after does.
        m.note_read(w + 100, 10);
        assert_eq!(m.cold_read_bytes(), 2 * w);
        m.note_read(2 * w + 5, 10);
        assert_eq!(m.cold_read_bytes(), 3 * w);
        // Another queue's pull going back to an earlier window counts it again (it may have
        // been released meanwhile: over-counting only releases sooner).
        m.note_read(5, 10);
        assert_eq!(m.cold_read_bytes(), 4 * w);
    }
}
