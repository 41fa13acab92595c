//! Buffers that put records are encoded into.
//!
//! A record used to be one allocation, and a second one (the shared header `bytes` adds the
//! first time a `Vec`-backed buffer is cloned) when DLedger kept it in its entry cache and
//! handed it to the peer transport. Small records are now carved from a per-thread chunk:
//! every record is a slice of one shared allocation, so neither happens per message.
//!
//! A chunk is freed when the last record cut from it is dropped, so it can outlive its
//! records' neighbours by at most one chunk per encoding thread; records large enough to
//! make that matter get a buffer of their own.

use std::cell::RefCell;

use bytes::BytesMut;

/// One chunk holds ~200 records of 1 KiB.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Records from this size up get a dedicated buffer (a chunk holds at least 16 of the rest).
pub const DEDICATED_MIN_BYTES: usize = CHUNK_BYTES / 16;

thread_local! {
    static CHUNK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// An empty buffer with room for exactly `len_bytes` (writes beyond that reallocate, as
/// with any `BytesMut`).
pub fn region(len_bytes: usize) -> BytesMut {
    if len_bytes >= DEDICATED_MIN_BYTES {
        return BytesMut::with_capacity(len_bytes);
    }
    CHUNK.with(|chunk| {
        let mut chunk = chunk.borrow_mut();
        debug_assert!(chunk.is_empty(), "the chunk only ever holds spare capacity");
        if chunk.capacity() < len_bytes {
            *chunk = BytesMut::with_capacity(CHUNK_BYTES);
        }
        // `chunk` keeps [0, len) of its spare capacity and `rest` the remainder; both
        // share the chunk's allocation.
        let rest = chunk.split_off(len_bytes);
        std::mem::replace(&mut *chunk, rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn regions_are_disjoint_slices_of_one_chunk() {
        let mut a = region(100);
        let mut b = region(200);
        assert!(a.is_empty() && a.capacity() == 100);
        assert!(b.capacity() == 200);
        a.put_bytes(1, 100);
        b.put_bytes(2, 200);
        let (a, b) = (a.freeze(), b.freeze());
        assert!(a.iter().all(|&x| x == 1) && b.iter().all(|&x| x == 2));
        // Adjacent in memory: the same allocation.
        assert_eq!(a.as_ptr() as usize + 100, b.as_ptr() as usize);
    }

    #[test]
    fn large_records_and_full_chunks_get_new_buffers() {
        let big = region(DEDICATED_MIN_BYTES);
        assert_eq!(big.capacity(), DEDICATED_MIN_BYTES);
        let mut last = region(DEDICATED_MIN_BYTES - 1);
        for _ in 0..40 {
            let next = region(DEDICATED_MIN_BYTES - 1);
            assert_eq!(next.capacity(), DEDICATED_MIN_BYTES - 1);
            last = next;
        }
        assert!(last.is_empty());
    }
}
