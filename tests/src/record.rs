//! Decoder for commitlog records as they appear in QUERY_MESSAGE / VIEW_MESSAGE_BY_ID / PULL
//! bodies (docs/protocol/message-format.md §1–§3; Apache `MessageDecoder.decode`).
//! Independent of the broker's own encoder on purpose: it checks the broker's bytes.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{HarnessError, Result};

const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;
const FLAG_COMPRESSED: i32 = 0x1;
const FLAG_BORNHOST_V6: i32 = 0x10;
const FLAG_STOREHOST_V6: i32 = 0x20;
/// Bound on an inflated body (the broker's default max message size is 4 MiB).
const MAX_INFLATED_BODY_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub total_size: i32,
    pub body_crc: i32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub store_timestamp_ms: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    /// Body as the application sees it (inflated if the compressed bit is set).
    pub body: Vec<u8>,
    pub topic: String,
    pub properties: HashMap<String, String>,
}

impl Record {
    /// The offset message id: store host + physical offset, upper-case hex (message-format.md §5).
    pub fn offset_msg_id(&self) -> String {
        let mut bytes = Vec::with_capacity(28);
        match self.store_host.ip() {
            IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
        }
        bytes.extend_from_slice(&i32::from(self.store_host.port()).to_be_bytes());
        bytes.extend_from_slice(&self.physical_offset.to_be_bytes());
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                HarnessError::MalformedRecord(format!(
                    "need {n} bytes at {} of {}",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn host(&mut self, v6: bool) -> Result<SocketAddr> {
        let ip = if v6 {
            let b = self.take(16)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            let b = self.take(4)?;
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        };
        let port = self.i32()?;
        let port = u16::try_from(port)
            .map_err(|_| HarnessError::MalformedRecord(format!("port {port} out of range")))?;
        Ok(SocketAddr::new(ip, port))
    }
}

/// Decode every record in `buf` (records are concatenated; each starts with its total size).
pub fn decode_records(buf: &[u8]) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < 4 {
            return Err(HarnessError::MalformedRecord("trailing bytes".into()));
        }
        let total = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let total = usize::try_from(total)
            .ok()
            .filter(|t| *t >= 4 && *t <= rest.len())
            .ok_or_else(|| {
                HarnessError::MalformedRecord(format!(
                    "total size {total} with {} bytes left",
                    rest.len()
                ))
            })?;
        out.push(decode_record(&rest[..total])?);
        pos += total;
    }
    Ok(out)
}

/// Decode exactly one record; its TOTALSIZE must equal `buf.len()`.
pub fn decode_record(buf: &[u8]) -> Result<Record> {
    let mut c = Cursor { buf, pos: 0 };
    let total_size = c.i32()?;
    let magic = c.i32()?;
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err(HarnessError::MalformedRecord(format!(
            "bad magic {magic:#x}"
        )));
    }
    let body_crc = c.i32()?;
    let queue_id = c.i32()?;
    let flag = c.i32()?;
    let queue_offset = c.i64()?;
    let physical_offset = c.i64()?;
    let sys_flag = c.i32()?;
    let born_timestamp_ms = c.i64()?;
    let born_host = c.host(sys_flag & FLAG_BORNHOST_V6 != 0)?;
    let store_timestamp_ms = c.i64()?;
    let store_host = c.host(sys_flag & FLAG_STOREHOST_V6 != 0)?;
    let reconsume_times = c.i32()?;
    let prepared_transaction_offset = c.i64()?;
    let body_len = c.i32()?;
    let body_len = usize::try_from(body_len)
        .map_err(|_| HarnessError::MalformedRecord(format!("body length {body_len}")))?;
    let raw_body = c.take(body_len)?;
    let crc = (crc32(raw_body) & 0x7FFF_FFFF) as i32;
    if crc != body_crc {
        return Err(HarnessError::MalformedRecord(format!(
            "body crc {body_crc:#x} != computed {crc:#x}"
        )));
    }
    let body = if sys_flag & FLAG_COMPRESSED != 0 {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(raw_body)
            .take(MAX_INFLATED_BODY_BYTES)
            .read_to_end(&mut out)
            .map_err(|e| HarnessError::MalformedRecord(format!("inflate: {e}")))?;
        out
    } else {
        raw_body.to_vec()
    };
    let topic_len = if magic == MAGIC_V1 {
        usize::from(c.take(1)?[0])
    } else {
        let b = c.take(2)?;
        usize::from(u16::from_be_bytes([b[0], b[1]]))
    };
    let topic = String::from_utf8_lossy(c.take(topic_len)?).into_owned();
    let props_len = {
        let b = c.take(2)?;
        i16::from_be_bytes([b[0], b[1]])
    };
    let props_len = usize::try_from(props_len)
        .map_err(|_| HarnessError::MalformedRecord(format!("properties length {props_len}")))?;
    let properties = parse_properties(&String::from_utf8_lossy(c.take(props_len)?));
    if usize::try_from(total_size).ok() != Some(c.pos) || c.pos != buf.len() {
        return Err(HarnessError::MalformedRecord(format!(
            "TOTALSIZE {total_size} but the fields span {} bytes",
            c.pos
        )));
    }
    Ok(Record {
        total_size,
        body_crc,
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_timestamp_ms,
        born_host,
        store_timestamp_ms,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties,
    })
}

/// `key 0x01 value 0x02 ...`; segments without a key or value are dropped, like Java.
pub fn parse_properties(s: &str) -> HashMap<String, String> {
    s.split('\u{2}')
        .filter_map(|seg| {
            let (k, v) = seg.split_once('\u{1}')?;
            (!k.is_empty() && !v.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// CRC-32 (IEEE), as Java's `java.util.zip.CRC32`; bitwise since test data is small.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verified example of message-format.md §1 (produced by Java's MessageDecoder.encode).
    const EXAMPLE_HEX: &str =
        "0000006adaa320a73610a6860000000100000000000000000000000200000000000004d200000000\
        0000018bcfe568000a0000010000c3500000018bcfe568010a00000200002a9f000000000000000000000000\
        0000000568656c6c6f015400095441475301546167 41";

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_the_documented_java_record() {
        let bytes = unhex(EXAMPLE_HEX);
        assert_eq!(bytes.len(), 106);
        let r = decode_record(&bytes).unwrap();
        assert_eq!(r.queue_id, 1);
        assert_eq!(r.queue_offset, 2);
        assert_eq!(r.physical_offset, 1234);
        assert_eq!(r.body, b"hello");
        assert_eq!(r.topic, "T");
        assert_eq!(r.property("TAGS"), Some("TagA"));
        assert_eq!(r.born_host, "10.0.0.1:50000".parse().unwrap());
        assert_eq!(r.offset_msg_id(), "0A00000200002A9F00000000000004D2");
    }

    #[test]
    fn rejects_a_corrupted_body() {
        let mut bytes = unhex(EXAMPLE_HEX);
        bytes[88] ^= 1; // first body byte
        assert!(decode_record(&bytes).is_err());
    }

    #[test]
    fn properties_drop_empty_segments() {
        let p = parse_properties("A\u{1}1\u{2}\u{1}x\u{2}B\u{1}\u{2}C\u{1}3");
        assert_eq!(p.len(), 2);
        assert_eq!(p["A"], "1");
        assert_eq!(p["C"], "3");
    }
}
