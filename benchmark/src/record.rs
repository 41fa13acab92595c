//! Just-enough decoding of commitlog records in a PULL_MESSAGE body (message-format.md §1;
//! Apache `common/src/main/java/org/apache/rocketmq/common/message/MessageDecoder.java`, `decodes`).
//! Only TOTALSIZE, MAGICCODE, QUEUEOFFSET and BORNTIMESTAMP are read: the consumer counts
//! messages and measures end-to-end latency from the born timestamp.

use crate::error::BenchError;

pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// Smallest possible record: the fixed part with IPv4 hosts, v1 topic length, empty everything.
pub const MIN_RECORD_BYTES: usize = 91;
/// Larger than any record the broker accepts (4 MiB body + 32 KiB properties + topic + fixed part).
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024;

const QUEUE_OFFSET_AT: usize = 20;
const BORN_TIMESTAMP_AT: usize = 40;

/// The fields the benchmark needs from one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    pub queue_offset: i64,
    pub born_timestamp_ms: i64,
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

/// Walk the concatenated records, calling `f` for each. Stops at the first malformed record
/// (like the Java client, which delivers the records before it) and reports it as an error
/// together with the count delivered so far via `f`.
pub fn for_each_record(body: &[u8], mut f: impl FnMut(RecordInfo)) -> Result<usize, BenchError> {
    let mut at = 0usize;
    let mut count = 0usize;
    while at < body.len() {
        let rest = &body[at..];
        if rest.len() < MIN_RECORD_BYTES {
            return Err(BenchError::MalformedRecord {
                at_byte: at,
                reason: "truncated record",
            });
        }
        let total = be_i32(rest, 0);
        let Ok(total) = usize::try_from(total) else {
            return Err(BenchError::MalformedRecord {
                at_byte: at,
                reason: "negative size",
            });
        };
        if !(MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&total) || total > rest.len() {
            return Err(BenchError::MalformedRecord {
                at_byte: at,
                reason: "bad total size",
            });
        }
        let magic = be_i32(rest, 4);
        if magic != MAGIC_V1 && magic != MAGIC_V2 {
            return Err(BenchError::MalformedRecord {
                at_byte: at,
                reason: "bad magic",
            });
        }
        f(RecordInfo {
            queue_offset: be_i64(rest, QUEUE_OFFSET_AT),
            born_timestamp_ms: be_i64(rest, BORN_TIMESTAMP_AT),
        });
        count += 1;
        at += total;
    }
    Ok(count)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The record from message-format.md §1 (body "hello", topic T, queue 1, offset 2).
    pub const DOC_RECORD_HEX: &str =
        "0000006a daa320a7 3610a686 00000001 00000000 0000000000000002 \
        00000000000004d2 00000000 0000018bcfe56800 0a000001 0000c350 0000018bcfe56801 0a000002 \
        00002a9f 00000000 0000000000000000 00000005 68656c6c6f 01 54 0009 54414753 01 54616741";

    pub fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn decodes_documented_record_twice() {
        let one = unhex(DOC_RECORD_HEX);
        assert_eq!(one.len(), 106);
        let mut body = one.clone();
        body.extend_from_slice(&one);
        let mut seen = Vec::new();
        let n = for_each_record(&body, |r| seen.push(r)).expect("valid");
        assert_eq!(n, 2);
        assert_eq!(seen[0].queue_offset, 2);
        assert_eq!(seen[0].born_timestamp_ms, 0x18b_cfe5_6800);
    }

    #[test]
    fn stops_at_malformed_record() {
        let mut body = unhex(DOC_RECORD_HEX);
        body.extend_from_slice(&[0u8; 100]);
        let mut seen = 0;
        let err = for_each_record(&body, |_| seen += 1).expect_err("second record is zeros");
        assert_eq!(seen, 1);
        assert!(matches!(
            err,
            BenchError::MalformedRecord { at_byte: 106, .. }
        ));
        assert!(for_each_record(&body[..50], |_| {}).is_err());
    }
}
