//! On-disk entry layout (DLedger-compatible 48-byte header, big-endian like Java's ByteBuffer).
//!
//! | off | size | field | notes |
//! |----:|-----:|-------|-------|
//! | 0   | 4 | magic      | `1` for an entry, `-1` for the end-of-segment blank marker |
//! | 4   | 4 | size       | total entry size = 48 + body length (blank: remaining bytes) |
//! | 8   | 8 | index      | Raft log index |
//! | 16  | 8 | term       | Raft term |
//! | 24  | 8 | pos        | physical position of the entry (DLedger `POS_OFFSET` = 24) |
//! | 32  | 4 | kind       | DLedger's reserved `channel`; we store the entry kind code |
//! | 36  | 4 | header crc | CRC32C of bytes 0..36 and 40..48 (DLedger's unused `chainCrc`) |
//! | 40  | 4 | body crc   | CRC32C of the body (DLedger's unused `bodyCrc`) |
//! | 44  | 4 | body len   | i32 |
//! | 48  | n | body       | so "physical offset of the record = pos + 48" holds for the broker |
//!
//! Layout facts from openmessaging/dledger `entry/DLedgerEntry.java` and
//! `entry/DLedgerEntryCoder.java` (tag dledger-all-0.3.1.2), summarised in
//! /work/shared/docs/protocol/dledger-commitlog.md §1. Unlike DLedger we actually compute
//! both CRC fields; the header CRC covers the body CRC, so together they protect everything.

/// Size of the fixed header; the body starts here (`DLedgerEntry.BODY_OFFSET`).
pub const HEADER_SIZE_BYTES: usize = 48;
/// Offset of the `pos` field (`DLedgerEntry.POS_OFFSET`).
pub const POS_OFFSET: usize = 24;
/// Magic of a real entry (`DLedgerMmapFileStore.MAGIC_1`).
pub const ENTRY_MAGIC: i32 = 1;
/// Magic of the end-of-segment blank marker (`MmapFileList.BLANK_MAGIC_CODE`).
pub const BLANK_MAGIC: i32 = -1;
/// A blank marker needs `magic + size` (`MmapFileList.MIN_BLANK_LEN`).
pub const MIN_BLANK_LEN_BYTES: usize = 8;

/// A decoded header (body not included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    pub size_bytes: u32,
    pub index: u64,
    pub term: u64,
    pub pos: u64,
    pub kind: u32,
    pub header_crc: u32,
    pub body_crc: u32,
    pub body_len_bytes: u32,
}

/// What a slice of a segment holds at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A complete entry whose CRCs verify.
    Entry(EntryHeader),
    /// The end-of-segment blank marker covering `remaining_bytes` (incl. its own 8 bytes).
    Blank { remaining_bytes: u32 },
    /// Zero magic: never-written (preallocated) space: the end of the log.
    Empty,
}

/// Why bytes at some offset are not a valid slot. Never panics; the caller adds file+offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header/body needs (torn write or segment end).
    Truncated {
        needed_bytes: usize,
        available_bytes: usize,
    },
    BadMagic(i32),
    BadSize {
        size_bytes: u32,
        body_len_bytes: u32,
    },
    HeaderCrc {
        stored: u32,
        computed: u32,
    },
    BodyCrc {
        stored: u32,
        computed: u32,
    },
    BadBlank {
        remaining_bytes: u32,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated {
                needed_bytes,
                available_bytes,
            } => write!(
                f,
                "truncated entry: need {needed_bytes} bytes, {available_bytes} available"
            ),
            DecodeError::BadMagic(m) => write!(f, "bad magic {m}"),
            DecodeError::BadSize {
                size_bytes,
                body_len_bytes,
            } => write!(
                f,
                "inconsistent size {size_bytes} for body length {body_len_bytes}"
            ),
            DecodeError::HeaderCrc { stored, computed } => write!(
                f,
                "header crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            DecodeError::BodyCrc { stored, computed } => write!(
                f,
                "body crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            DecodeError::BadBlank { remaining_bytes } => {
                write!(f, "bad blank marker covering {remaining_bytes} bytes")
            }
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn header_crc(header: &[u8]) -> u32 {
    debug_assert!(header.len() >= HEADER_SIZE_BYTES);
    let crc = crc32c::crc32c(&header[0..36]);
    crc32c::crc32c_append(crc, &header[40..HEADER_SIZE_BYTES])
}

/// Total on-disk size of an entry with a body of `body_len_bytes`.
pub fn entry_size_bytes(body_len_bytes: usize) -> usize {
    HEADER_SIZE_BYTES + body_len_bytes
}

/// Encode the 48-byte header for an entry into `out` (exactly 48 bytes).
pub fn encode_header(
    out: &mut [u8; HEADER_SIZE_BYTES],
    index: u64,
    term: u64,
    pos: u64,
    kind: u32,
    body: &[u8],
) {
    assert!(
        body.len() <= (i32::MAX as usize) - HEADER_SIZE_BYTES,
        "body length is bounded by config before encoding"
    );
    let size = (HEADER_SIZE_BYTES + body.len()) as u32;
    out[0..4].copy_from_slice(&ENTRY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&size.to_be_bytes());
    out[8..16].copy_from_slice(&index.to_be_bytes());
    out[16..24].copy_from_slice(&term.to_be_bytes());
    out[24..32].copy_from_slice(&pos.to_be_bytes());
    out[32..36].copy_from_slice(&kind.to_be_bytes());
    out[40..44].copy_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out[44..48].copy_from_slice(&(body.len() as u32).to_be_bytes());
    let hcrc = header_crc(out);
    out[36..40].copy_from_slice(&hcrc.to_be_bytes());
}

/// Encode the blank marker that pads a segment's last `remaining_bytes`.
pub fn encode_blank(remaining_bytes: u32) -> [u8; MIN_BLANK_LEN_BYTES] {
    let mut b = [0u8; MIN_BLANK_LEN_BYTES];
    b[0..4].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&remaining_bytes.to_be_bytes());
    b
}

/// Decode what lies at the start of `buf` (which runs to the end of the segment).
/// Verifies both CRCs of an entry. Never panics on any input.
pub fn decode_slot(buf: &[u8]) -> Result<Slot, DecodeError> {
    if buf.len() < MIN_BLANK_LEN_BYTES {
        // Too little room even for a blank: only all-zero space is acceptable.
        if buf.iter().all(|b| *b == 0) {
            return Ok(Slot::Empty);
        }
        return Err(DecodeError::Truncated {
            needed_bytes: MIN_BLANK_LEN_BYTES,
            available_bytes: buf.len(),
        });
    }
    let magic = be_u32(buf, 0) as i32;
    match magic {
        0 => {
            // Preallocated space is zero; a header with zero magic but other bytes set is a
            // torn write of a header whose first page did not land.
            let hdr_len = buf.len().min(HEADER_SIZE_BYTES);
            if buf[..hdr_len].iter().all(|b| *b == 0) {
                Ok(Slot::Empty)
            } else {
                Err(DecodeError::BadMagic(0))
            }
        }
        BLANK_MAGIC => {
            let remaining = be_u32(buf, 4);
            if remaining as usize != buf.len() {
                return Err(DecodeError::BadBlank {
                    remaining_bytes: remaining,
                });
            }
            Ok(Slot::Blank {
                remaining_bytes: remaining,
            })
        }
        ENTRY_MAGIC => {
            if buf.len() < HEADER_SIZE_BYTES {
                return Err(DecodeError::Truncated {
                    needed_bytes: HEADER_SIZE_BYTES,
                    available_bytes: buf.len(),
                });
            }
            let h = &buf[..HEADER_SIZE_BYTES];
            let stored_hcrc = be_u32(h, 36);
            let computed_hcrc = header_crc(h);
            if stored_hcrc != computed_hcrc {
                return Err(DecodeError::HeaderCrc {
                    stored: stored_hcrc,
                    computed: computed_hcrc,
                });
            }
            let size = be_u32(h, 4);
            let body_len = be_u32(h, 44);
            if (size as u64) != HEADER_SIZE_BYTES as u64 + body_len as u64 {
                return Err(DecodeError::BadSize {
                    size_bytes: size,
                    body_len_bytes: body_len,
                });
            }
            if buf.len() < size as usize {
                return Err(DecodeError::Truncated {
                    needed_bytes: size as usize,
                    available_bytes: buf.len(),
                });
            }
            let body = &buf[HEADER_SIZE_BYTES..size as usize];
            let stored_bcrc = be_u32(h, 40);
            let computed_bcrc = crc32c::crc32c(body);
            if stored_bcrc != computed_bcrc {
                return Err(DecodeError::BodyCrc {
                    stored: stored_bcrc,
                    computed: computed_bcrc,
                });
            }
            Ok(Slot::Entry(EntryHeader {
                size_bytes: size,
                index: be_u64(h, 8),
                term: be_u64(h, 16),
                pos: be_u64(h, 24),
                kind: be_u32(h, 32),
                header_crc: stored_hcrc,
                body_crc: stored_bcrc,
                body_len_bytes: body_len,
            }))
        }
        other => Err(DecodeError::BadMagic(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_dledger_offsets() {
        let mut h = [0u8; HEADER_SIZE_BYTES];
        encode_header(&mut h, 5, 2, 4096, 0, &[1, 2, 3]);
        assert_eq!(&h[0..4], &[0, 0, 0, 1]);
        assert_eq!(&h[4..8], &[0, 0, 0, 0x33]);
        assert_eq!(u64::from_be_bytes(h[8..16].try_into().unwrap()), 5);
        assert_eq!(u64::from_be_bytes(h[16..24].try_into().unwrap()), 2);
        assert_eq!(
            u64::from_be_bytes(h[POS_OFFSET..POS_OFFSET + 8].try_into().unwrap()),
            4096
        );
        assert_eq!(&h[44..48], &[0, 0, 0, 3]);
        let mut buf = h.to_vec();
        buf.extend_from_slice(&[1, 2, 3]);
        match decode_slot(&buf) {
            Ok(Slot::Entry(e)) => {
                assert_eq!((e.index, e.term, e.pos, e.body_len_bytes), (5, 2, 4096, 3))
            }
            other => panic!("unexpected {other:?}"),
        }
        buf[49] ^= 1;
        assert!(matches!(
            decode_slot(&buf),
            Err(DecodeError::BodyCrc { .. })
        ));
    }
}
