//! SEND_BATCH_MESSAGE body encoder (message-format.md §4; Apache
//! `common/src/main/java/org/apache/rocketmq/common/message/MessageDecoder.java`, `encodeMessage`).
//!
//! One block per inner message:
//! `TOTALSIZE i32 | MAGICCODE i32 (0) | BODYCRC i32 (0) | FLAG i32 | BODY i32+B | PROPERTIES i16+P`.

use bytes::{BufMut, Bytes, BytesMut};

/// Java's `maxMessageSize` default; a larger body would be rejected by the broker anyway.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Properties travel with a signed 16-bit length.
pub const MAX_PROPERTIES_BYTES: usize = i16::MAX as usize;
/// Keep a whole batch well inside remoting's 16 MiB frame limit.
pub const MAX_BATCH_BODY_BYTES: usize = 15 * 1024 * 1024;
/// Fixed part of one block: totalSize + magic + bodyCrc + flag + bodyLen + propertiesLen.
pub const BLOCK_FIXED_BYTES: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// Size of one encoded block.
pub fn block_len(body_bytes: usize, properties_bytes: usize) -> usize {
    BLOCK_FIXED_BYTES + body_bytes + properties_bytes
}

/// Append one inner message block to `dst`.
pub fn encode_block(dst: &mut BytesMut, flag: i32, body: &[u8], properties: &str) {
    assert!(
        body.len() <= MAX_BODY_BYTES,
        "body exceeds {MAX_BODY_BYTES} bytes"
    );
    assert!(
        properties.len() <= MAX_PROPERTIES_BYTES,
        "properties exceed {MAX_PROPERTIES_BYTES} bytes"
    );
    let total = block_len(body.len(), properties.len());
    dst.reserve(total);
    // Casts are safe: both lengths are bounded by the asserts above.
    dst.put_i32(total as i32);
    dst.put_i32(0); // MAGICCODE: ignored by the broker
    dst.put_i32(0); // BODYCRC: the broker recomputes it
    dst.put_i32(flag);
    dst.put_i32(body.len() as i32);
    dst.put_slice(body);
    dst.put_i16(properties.len() as i16);
    dst.put_slice(properties.as_bytes());
}

/// Encode a batch of `(flag, body, properties)` messages.
pub fn encode_batch<'a, I>(messages: I) -> Bytes
where
    I: IntoIterator<Item = (i32, &'a [u8], &'a str)>,
{
    let mut dst = BytesMut::new();
    for (flag, body, properties) in messages {
        encode_block(&mut dst, flag, body, properties);
        assert!(dst.len() <= MAX_BATCH_BODY_BYTES, "batch body too large");
    }
    dst.freeze()
}

/// `count` blocks of the same body, each with its own properties from `properties` (a
/// Java `MessageBatch` gives every message its own UNIQ_KEY); `block_len` sizes the buffer.
pub fn encode_batch_with(
    body: &[u8],
    count: usize,
    block_len: usize,
    mut properties: impl FnMut() -> String,
) -> Bytes {
    let mut dst = BytesMut::with_capacity(count * block_len);
    for _ in 0..count {
        encode_block(&mut dst, 0, body, &properties());
        assert!(dst.len() <= MAX_BATCH_BODY_BYTES, "batch body too large");
    }
    dst.freeze()
}

/// One decoded block: `(flag, body, properties)`.
pub type Block<'a> = (i32, &'a [u8], &'a [u8]);

/// Decode a batch body back into `(flag, body, properties)` slices (used by tests and the
/// fake broker). Returns `None` on any inconsistency.
pub fn decode_batch(mut buf: &[u8]) -> Option<Vec<Block<'_>>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < BLOCK_FIXED_BYTES {
            return None;
        }
        let total = usize::try_from(i32::from_be_bytes(buf[0..4].try_into().ok()?)).ok()?;
        if total < BLOCK_FIXED_BYTES || total > buf.len() {
            return None;
        }
        let flag = i32::from_be_bytes(buf[12..16].try_into().ok()?);
        let body_len = usize::try_from(i32::from_be_bytes(buf[16..20].try_into().ok()?)).ok()?;
        let props_at = 20usize.checked_add(body_len)?;
        if props_at + 2 > total {
            return None;
        }
        let body = &buf[20..props_at];
        let props_len = usize::try_from(i16::from_be_bytes(
            buf[props_at..props_at + 2].try_into().ok()?,
        ))
        .ok()?;
        if props_at + 2 + props_len != total {
            return None;
        }
        out.push((flag, body, &buf[props_at + 2..total]));
        buf = &buf[total..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// message-format.md §4 example (4.9.7, one message, body `x`):
    /// `00000070 00000000 00000000 00000000 00000001 78 0059 4b455953016b02554e49515f4b455901…`
    #[test]
    fn matches_documented_example() {
        // The doc elides the properties after `UNIQ_KEY\x01`; pad to the documented 0x59 bytes.
        let mut props = String::from("KEYS\u{1}k\u{2}UNIQ_KEY\u{1}");
        while props.len() < 0x59 {
            props.push('A');
        }
        let body = encode_batch([(0, &b"x"[..], props.as_str())]);
        assert_eq!(body.len(), 0x70);
        let expected_prefix =
            "00000070000000000000000000000000000000017800594b455953016b02554e49515f4b455901";
        assert_eq!(&hex(&body)[..expected_prefix.len()], expected_prefix);
    }

    #[test]
    fn layout_of_two_blocks() {
        let body = encode_batch([(7, &b"abc"[..], "P\u{1}v"), (-1, &b""[..], "")]);
        let first = block_len(3, 3);
        assert_eq!(first, 22 + 6);
        assert_eq!(body.len(), first + block_len(0, 0));
        assert_eq!(&body[0..4], &(first as i32).to_be_bytes());
        assert_eq!(&body[12..16], &7i32.to_be_bytes());
        assert_eq!(&body[16..20], &3i32.to_be_bytes());
        assert_eq!(&body[20..23], b"abc");
        assert_eq!(&body[23..25], &3i16.to_be_bytes());
        assert_eq!(&body[25..28], b"P\x01v");
        assert_eq!(&body[first..first + 4], &22i32.to_be_bytes());
        assert_eq!(&body[first + 12..first + 16], &(-1i32).to_be_bytes());
        let decoded = decode_batch(&body).expect("decodes");
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0], (7, &b"abc"[..], &b"P\x01v"[..]));
        assert_eq!(decoded[1], (-1, &b""[..], &b""[..]));
    }

    #[test]
    fn batches_give_every_message_its_own_properties() {
        let payload = vec![0xABu8; 100];
        let mut n = 0;
        let all = encode_batch_with(&payload, 5, block_len(100, 3), || {
            n += 1;
            format!("K\u{1}{n}")
        });
        let one = block_len(100, 3);
        assert_eq!(all.len(), 5 * one);
        let blocks = decode_batch(&all).expect("decodes");
        assert_eq!(blocks.len(), 5);
        for (i, (f, b, p)) in blocks.iter().enumerate() {
            assert!(*f == 0 && *b == &payload[..]);
            assert_eq!(*p, format!("K\u{1}{}", i + 1).as_bytes());
        }
        assert!(decode_batch(&all[..one + 3]).is_none());
    }
}
