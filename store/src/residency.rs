//! Whether bytes read from the mapped log are in the page cache, and faulting them in.
//!
//! Reads of the log are zero-copy slices of file mappings, so a cold page is read from disk
//! by whichever thread first touches it. For a pull that is the runtime thread writing the
//! response, and in group mode that thread also runs the DLedger node loop (heartbeats,
//! replication). The broker therefore checks a pull's records with [`all_resident`] (one
//! `mincore` per span of nearby records) and, when some page is cold, touches them all on a
//! blocking thread first ([`prefault`]).

use std::sync::OnceLock;

use bytes::Bytes;

/// Records closer than this (in address order) are checked with one `mincore` over the
/// span between them: a pull's records of one queue sit a few KiB apart in the log, and one
/// system call per record cost a draining consumer a quarter of its throughput.
const MAX_SPAN_GAP_BYTES: usize = 256 * 1024;
/// Pages checked per `mincore` call at most.
const MAX_SPAN_PAGES: usize = 4096;

fn page_bytes() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n)
            .ok()
            .filter(|n| n.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// Page-aligned address range `[start, end)` under a record.
fn pages_of(r: &Bytes, page: usize) -> (usize, usize) {
    let addr = r.as_ptr() as usize;
    (addr & !(page - 1), (addr + r.len()).div_ceil(page) * page)
}

/// `mincore` over `[start, end)` (page-aligned) into `vec`; false on any error (e.g. a gap
/// in the address space between two mappings).
fn mincore_into(start: usize, end: usize, page: usize, vec: &mut Vec<u8>) -> bool {
    let pages = (end - start) / page;
    vec.clear();
    vec.resize(pages, 0);
    // SAFETY: `start` is page-aligned and `vec` holds one byte per page of the range. The
    // kernel checks that the range is mapped and reports ENOMEM otherwise.
    let rc = unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
    rc == 0
}

/// True if every page under `records` is in memory. Heap memory (cached bodies) counts as
/// resident; a failing `mincore` counts as cold (the caller then faults the pages in on a
/// blocking thread, which is always safe).
pub fn all_resident(records: &[Bytes]) -> bool {
    let page = page_bytes();
    let runs: Vec<(usize, usize)> = records
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| pages_of(r, page))
        .collect();
    let mut vec = Vec::new();
    let mut first = 0;
    while first < runs.len() {
        // One span: the following runs that start ahead of it and close to its end.
        let (start, mut end) = runs[first];
        let mut next = first + 1;
        while let Some(&(s, e)) = runs.get(next) {
            let near = s >= start && s <= end + MAX_SPAN_GAP_BYTES;
            if !near || (e.max(end) - start) / page > MAX_SPAN_PAGES {
                break;
            }
            end = end.max(e);
            next += 1;
        }
        let span_ok = mincore_into(start, end, page, &mut vec);
        for &(s, e) in &runs[first..next] {
            let resident = if span_ok {
                vec[(s - start) / page..(e - start) / page]
                    .iter()
                    .all(|v| v & 1 == 1)
            } else {
                mincore_into(s, e, page, &mut vec) && vec.iter().all(|v| v & 1 == 1)
            };
            if !resident {
                return false;
            }
        }
        first = next;
    }
    true
}

/// Reads one byte of every page under `records`, so that later reads do not fault. Blocking
/// (disk reads): call it off the async runtime.
pub fn prefault(records: &[Bytes]) {
    let page = page_bytes();
    for r in records.iter().filter(|r| !r.is_empty()) {
        // First byte, then the first byte of every following page, then the last byte.
        let first_boundary = page - (r.as_ptr() as usize & (page - 1));
        std::hint::black_box(r[0]);
        for i in (first_boundary..r.len()).step_by(page) {
            std::hint::black_box(r[i]);
        }
        std::hint::black_box(r[r.len() - 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_bytes_are_resident() {
        let b = Bytes::from(vec![7u8; 3 * 4096 + 5]);
        assert!(all_resident(&[
            b.slice(10..20),
            b.slice(4000..9000),
            Bytes::new()
        ]));
    }

    /// A mapping of a sparse file (`pages` pages, none in the page cache yet) whose faults
    /// read only their own page (no read-around).
    fn sparse_mapping(pages: usize) -> (tempfile::TempDir, Bytes) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .set_len((pages * page_bytes()) as u64)
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: the file is private to this test and never truncated while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        map.advise(memmap2::Advice::Random).unwrap();
        (dir, Bytes::from_owner(map))
    }

    #[test]
    fn a_never_read_file_region_is_cold_until_prefaulted() {
        let p = page_bytes();
        let (_dir, all) = sparse_mapping(64);
        let records = [all.slice(p + 100..3 * p + 7), all.slice(40 * p..40 * p + 1)];
        assert!(!all_resident(&records));
        prefault(&records);
        assert!(all_resident(&records));
    }

    #[test]
    fn one_cold_page_between_warm_records_is_not_charged_to_them() {
        let p = page_bytes();
        let (_dir, all) = sparse_mapping(64);
        // One span (pages 2..=6); page 4 between the two records is never read.
        let a = all.slice(2 * p..2 * p + 10);
        let b = all.slice(6 * p + 5..6 * p + 20);
        prefault(&[a.clone(), b.clone()]);
        assert!(all_resident(&[a.clone(), b.clone()]));
        let c = all.slice(4 * p + 1..4 * p + 2);
        assert!(!all_resident(&[a, c, b]));
    }
}
