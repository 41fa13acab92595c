//! Message encoding: the stored-record layout (message-format.md §1), properties (§3),
//! batch bodies (§4), message ids (§5), compression (§6) and the tags hash (§7).
//!
//! Layout facts checked against apache/rocketmq `common/.../message/MessageDecoder.java`
//! (`encode`, `decode`, `decodesBatch`, `createMessageId`) and `store/.../CommitLog.java`
//! (`calMsgLength`, `checkMessageAndReturnSize`).

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, Bytes, BytesMut};
use compact_str::CompactString;

use crate::error::StoreError;

pub const MAGIC_CODE_V1: i32 = 0xDAA320A7_u32 as i32;
pub const MAGIC_CODE_V2: i32 = 0xDAA320AB_u32 as i32;
/// End-of-file marker magic in commitlog segments.
pub const BLANK_MAGIC_CODE: i32 = 0xCBD43194_u32 as i32;

pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
pub const PROPERTY_SEPARATOR: char = '\u{2}';
pub const KEY_SEPARATOR: char = ' ';

/// Field positions (IPv4 born host) used to patch records in place.
pub const QUEUE_OFFSET_POSITION: usize = 20;
pub const PHYSICAL_OFFSET_POSITION: usize = 28;
pub const SYS_FLAG_POSITION: usize = 36;
pub const BORN_TIMESTAMP_POSITION: usize = 40;
pub const BORN_HOST_POSITION: usize = 48;

/// Upper bound on topic length in a v1 record (signed byte length).
pub const TOPIC_MAX_LENGTH: usize = 127;
pub const PROPERTIES_MAX_LENGTH: usize = i16::MAX as usize;

pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

pub mod sys_flag {
    pub const COMPRESSED_FLAG: i32 = 0x1;
    pub const MULTI_TAGS_FLAG: i32 = 0x2;
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
    pub const BORNHOST_V6_FLAG: i32 = 0x10;
    pub const STOREHOSTADDRESS_V6_FLAG: i32 = 0x20;
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
    pub const COMPRESSION_LZ4_TYPE: i32 = 0x100;
    pub const COMPRESSION_ZSTD_TYPE: i32 = 0x200;
    pub const COMPRESSION_ZLIB_TYPE: i32 = 0x300;

    pub fn transaction_value(flag: i32) -> i32 {
        flag & TRANSACTION_ROLLBACK_TYPE
    }
}

/// Well-known property keys (`MessageConst`).
pub mod property {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const WAIT: &str = "WAIT";
    pub const DELAY: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const TRAN_MSG: &str = "TRAN_MSG";
    pub const PRODUCER_GROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const BUYER_ID: &str = "BUYER_ID";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_SWITCH: &str = "TRACE_ON";
    pub const UNIQ_CLIENT_MESSAGE_ID_KEYIDX: &str = "UNIQ_KEY";
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIMESTAMP: &str = "CONSUME_START_TIME";
    pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    pub const TTL: &str = "TTL";
    pub const REPLY_MESSAGE_ARRIVE_TIME: &str = "ARRIVE_TIME";
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    pub const CLUSTER: &str = "CLUSTER";
    pub const MESSAGE_TYPE: &str = "MSG_TYPE";
    pub const TRANSACTION_ID: &str = "__transactionId__";
}

/// A message as handed to the store by the broker (one per record).
#[derive(Debug, Clone)]
pub struct MessageToStore {
    /// Inline up to 24 bytes: most topics cost no allocation per message.
    pub topic: CompactString,
    pub body: Bytes,
    pub flag: i32,
    /// Already-encoded `NAME\u{1}VALUE\u{2}` form; keys for the index (KEYS, UNIQ_KEY) and the
    /// tags hash are derived from it when the record is dispatched.
    pub properties: String,
    pub queue_id: i32,
    /// Producer sysFlag; the V6 host bits are set by the encoder from the addresses.
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    // No tags code here: dispatch computes it from the stored record (TAGS hash, or the
    // delivery time in SCHEDULE_TOPIC_XXXX) exactly as Java does.
}

impl MessageToStore {
    /// A message with defaults for everything but topic, queue, body and properties.
    pub fn new(
        topic: impl Into<CompactString>,
        queue_id: i32,
        body: Bytes,
        properties: String,
    ) -> Self {
        let local = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        MessageToStore {
            topic: topic.into(),
            body,
            flag: 0,
            properties,
            queue_id,
            sys_flag: 0,
            born_timestamp_ms: 0,
            born_host: local,
            store_host: local,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }
}

/// Java `String.hashCode` over UTF-16 code units, sign-extended to i64 (the CQ tags code).
pub fn tags_hash(tags: &str) -> i64 {
    java_string_hash(tags) as i64
}

/// Java `String.hashCode` (wrapping 32-bit).
pub fn java_string_hash(s: &str) -> i32 {
    java_string_hash_continue(0, s)
}

/// Java `hashCode` of a concatenation, one part at a time: `java_string_hash(a + b)` is
/// `java_string_hash_continue(java_string_hash(a), b)` (no joined string needed).
pub fn java_string_hash_continue(mut h: i32, s: &str) -> i32 {
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h
}

/// Encodes properties as `k\u1v\u2` pairs (5.x form, trailing separator kept; both Java
/// decoders accept it). Empty keys or values are skipped because Java would drop them.
pub fn encode_properties(props: &HashMap<String, String>) -> String {
    let mut keys: Vec<&String> = props.keys().collect();
    keys.sort(); // deterministic output
    let mut out = String::new();
    for k in keys {
        let v = &props[k];
        if k.is_empty() || v.is_empty() {
            continue;
        }
        out.push_str(k);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(v);
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// Decodes with Java `string2messageProperties` rules: split on `\u2`, accept a segment only
/// if it has at least one key char before `\u1` and at least one value char after it.
pub fn decode_properties(s: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for_each_property(s, |k, v| {
        map.insert(k.to_string(), v.to_string());
    });
    map
}

/// Allocation-free iteration with the same acceptance rules as [`decode_properties`].
pub fn for_each_property<'a>(s: &'a str, mut f: impl FnMut(&'a str, &'a str)) {
    for seg in s.split(PROPERTY_SEPARATOR) {
        if let Some(idx) = seg.find(NAME_VALUE_SEPARATOR) {
            if idx >= 1 && idx + 1 < seg.len() {
                f(&seg[..idx], &seg[idx + 1..]);
            }
        }
    }
}

/// Value of one property (last occurrence wins, like a Java HashMap fill).
pub fn property_value<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    for_each_property(s, |k, v| {
        if k == key {
            found = Some(v);
        }
    });
    found
}

fn host_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

fn put_host(out: &mut BytesMut, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(a) => out.put_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out.put_slice(&a.ip().octets()),
    }
    out.put_i32(addr.port() as i32);
}

/// Length of the stored record for these field sizes (Java `calMsgLength`, v1).
pub fn record_length(
    sys_flag: i32,
    body_len: usize,
    topic_len: usize,
    properties_len: usize,
) -> usize {
    let born = if sys_flag & sys_flag::BORNHOST_V6_FLAG != 0 {
        20
    } else {
        8
    };
    let store = if sys_flag & sys_flag::STOREHOSTADDRESS_V6_FLAG != 0 {
        20
    } else {
        8
    };
    4 + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + born
        + 8
        + store
        + 4
        + 8
        + 4
        + body_len
        + 1
        + topic_len
        + 2
        + properties_len
}

/// Offsets of the fields the writer patches once the position is known.
#[derive(Debug, Clone, Copy)]
pub struct RecordPatchPoints {
    pub store_timestamp_position: usize,
}

/// The record's sysFlag: the producer's, with the V6 host bits set from the addresses.
fn stored_sys_flag(msg: &MessageToStore) -> i32 {
    let mut flag =
        msg.sys_flag & !(sys_flag::BORNHOST_V6_FLAG | sys_flag::STOREHOSTADDRESS_V6_FLAG);
    if msg.born_host.is_ipv6() {
        flag |= sys_flag::BORNHOST_V6_FLAG;
    }
    if msg.store_host.is_ipv6() {
        flag |= sys_flag::STOREHOSTADDRESS_V6_FLAG;
    }
    flag
}

/// The length [`encode_record`] will write for `msg` (if it accepts it).
pub fn encoded_record_length(msg: &MessageToStore) -> usize {
    record_length(
        stored_sys_flag(msg),
        msg.body.len(),
        msg.topic.len(),
        msg.properties.len(),
    )
}

/// Encodes one v1 record into `out` with QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP
/// left 0 (the writer patches them). Returns the record length.
pub fn encode_record(
    msg: &MessageToStore,
    max_body_bytes: usize,
    out: &mut BytesMut,
) -> Result<(usize, RecordPatchPoints), StoreError> {
    let topic = msg.topic.as_bytes();
    if !is_valid_topic(topic) {
        return Err(StoreError::illegal(format!(
            "topic must be 1..={TOPIC_MAX_LENGTH} chars of [%|a-zA-Z0-9_-]"
        )));
    }
    if msg.properties.as_bytes().contains(&0) {
        // Recovery relies on NUL-free properties to detect zero-filled torn tails.
        return Err(StoreError::illegal("properties contain a NUL byte"));
    }
    if msg.body.len() > max_body_bytes {
        return Err(StoreError::illegal(format!(
            "body {} bytes exceeds max {max_body_bytes}",
            msg.body.len()
        )));
    }
    let props = msg.properties.as_bytes();
    if props.len() > PROPERTIES_MAX_LENGTH {
        return Err(StoreError::illegal(format!(
            "properties {} bytes exceed {PROPERTIES_MAX_LENGTH}",
            props.len()
        )));
    }
    let flag = stored_sys_flag(msg);
    let len = record_length(flag, msg.body.len(), topic.len(), props.len());
    out.reserve(len);
    let start = out.len();
    out.put_i32(len as i32);
    out.put_i32(MAGIC_CODE_V1);
    out.put_i32(body_crc(&msg.body));
    out.put_i32(msg.queue_id);
    out.put_i32(msg.flag);
    out.put_i64(0); // queue offset, patched by the writer
    out.put_i64(0); // physical offset, patched by the writer
    out.put_i32(flag);
    out.put_i64(msg.born_timestamp_ms);
    put_host(out, &msg.born_host);
    let store_timestamp_position = out.len() - start;
    out.put_i64(0); // store timestamp, patched by the writer
    put_host(out, &msg.store_host);
    out.put_i32(msg.reconsume_times);
    out.put_i64(msg.prepared_transaction_offset);
    out.put_i32(msg.body.len() as i32);
    out.put_slice(&msg.body);
    out.put_i8(topic.len() as i8);
    out.put_slice(topic);
    out.put_i16(props.len() as i16);
    out.put_slice(props);
    debug_assert_eq!(out.len() - start, len);
    debug_assert_eq!(store_timestamp_position, 48 + host_len(&msg.born_host));
    Ok((
        len,
        RecordPatchPoints {
            store_timestamp_position,
        },
    ))
}

/// Java `TopicValidator`: `^[%|a-zA-Z0-9_-]+$`, at most 127 bytes.
pub fn is_valid_topic(topic: &[u8]) -> bool {
    !topic.is_empty()
        && topic.len() <= TOPIC_MAX_LENGTH
        && topic
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

/// Writes QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP into the record at the start of
/// `buf` (what the log's writer does once positions are known; a DLedger append hook does the
/// same with `entry pos + 48`). Returns the record's TOTALSIZE.
pub fn patch_record_fields(
    buf: &mut [u8],
    queue_offset: i64,
    phys_offset: i64,
    store_timestamp_ms: i64,
) -> Result<usize, StoreError> {
    if buf.len() < BORN_HOST_POSITION {
        return Err(StoreError::corrupt(
            0,
            "record shorter than its fixed header",
        ));
    }
    let total = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let sf = i32::from_be_bytes([
        buf[SYS_FLAG_POSITION],
        buf[SYS_FLAG_POSITION + 1],
        buf[SYS_FLAG_POSITION + 2],
        buf[SYS_FLAG_POSITION + 3],
    ]);
    let born_len = if sf & sys_flag::BORNHOST_V6_FLAG != 0 {
        20
    } else {
        8
    };
    let ts_pos = BORN_HOST_POSITION + born_len;
    if total <= 0 || total as usize > buf.len() || (total as usize) < ts_pos + 8 {
        return Err(StoreError::corrupt(0, format!("bad record size {total}")));
    }
    buf[QUEUE_OFFSET_POSITION..QUEUE_OFFSET_POSITION + 8]
        .copy_from_slice(&queue_offset.to_be_bytes());
    buf[PHYSICAL_OFFSET_POSITION..PHYSICAL_OFFSET_POSITION + 8]
        .copy_from_slice(&phys_offset.to_be_bytes());
    buf[ts_pos..ts_pos + 8].copy_from_slice(&store_timestamp_ms.to_be_bytes());
    Ok(total as usize)
}

/// BODYCRC as Java computes it: `CRC32(body) & 0x7FFFFFFF` (`UtilAll.crc32`).
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    pub store_size: i32,
    pub magic_code: i32,
    pub body_crc: i32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub store_timestamp_ms: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub topic: String,
    /// Raw properties string as stored.
    pub properties_string: String,
    pub properties: HashMap<String, String>,
}

impl MessageExt {
    /// Offset message id (STOREHOST + PHYSICALOFFSET).
    pub fn msg_id(&self) -> String {
        create_offset_msg_id(self.store_host, self.commit_log_offset)
    }
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
    pub fn tags(&self) -> Option<&str> {
        self.property(property::TAGS)
    }
}

/// Bounds-checked big-endian reader; every read reports truncation instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                StoreError::corrupt(self.pos as i64, format!("truncated: need {n} bytes"))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn i8(&mut self) -> Result<i8, StoreError> {
        Ok(self.take(1)?[0] as i8)
    }
    pub(crate) fn i16(&mut self) -> Result<i16, StoreError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, StoreError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, StoreError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    pub(crate) fn host(&mut self, v6: bool) -> Result<SocketAddr, StoreError> {
        if v6 {
            let b = self.take(16)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            let port = self.i32()?;
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a),
                port as u16,
                0,
                0,
            )))
        } else {
            let b = self.take(4)?;
            let port = self.i32()?;
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                port as u16,
            )))
        }
    }
}

/// Lightweight view of a stored record used by recovery and dispatch (no allocation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordMeta<'a> {
    pub total_size: i32,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub store_timestamp_ms: i64,
    pub topic: &'a str,
    pub properties: &'a str,
}

/// Parses one record at the start of `buf`, checking magic and that TOTALSIZE equals the
/// length recomputed from the field lengths. With `verify` (recovery) it also checks BODYCRC
/// and that topic and properties are well-formed (valid topic chars, no NUL), which catches
/// a zero-filled torn suffix in the non-body part. Never panics.
pub(crate) fn parse_record_meta(buf: &[u8], verify: bool) -> Result<RecordMeta<'_>, StoreError> {
    let check_crc = verify;
    let mut r = Reader::new(buf);
    let total_size = r.i32()?;
    let magic = r.i32()?;
    if magic != MAGIC_CODE_V1 && magic != MAGIC_CODE_V2 {
        return Err(StoreError::corrupt(4, format!("bad magic {magic:#x}")));
    }
    if total_size < 0 || total_size as usize > buf.len() {
        return Err(StoreError::corrupt(
            0,
            format!(
                "total size {total_size} beyond {} available bytes",
                buf.len()
            ),
        ));
    }
    let buf = &buf[..total_size as usize];
    let mut r2 = Reader::new(buf);
    r2.take(8)?;
    let crc = r2.i32()?;
    let queue_id = r2.i32()?;
    let _flag = r2.i32()?;
    let queue_offset = r2.i64()?;
    let physical_offset = r2.i64()?;
    let sys_flag = r2.i32()?;
    let _born_ts = r2.i64()?;
    r2.host(sys_flag & sys_flag::BORNHOST_V6_FLAG != 0)?;
    let store_timestamp_ms = r2.i64()?;
    r2.host(sys_flag & sys_flag::STOREHOSTADDRESS_V6_FLAG != 0)?;
    let _reconsume = r2.i32()?;
    let _prep = r2.i64()?;
    let body_len = r2.i32()?;
    if body_len < 0 {
        return Err(StoreError::corrupt(r2.pos() as i64, "negative body length"));
    }
    let body = r2.take(body_len as usize)?;
    let topic_len = if magic == MAGIC_CODE_V1 {
        r2.i8()? as i32
    } else {
        r2.i16()? as i32
    };
    if topic_len < 0 {
        return Err(StoreError::corrupt(
            r2.pos() as i64,
            "negative topic length",
        ));
    }
    let topic = r2.take(topic_len as usize)?;
    let props_len = r2.i16()?;
    if props_len < 0 {
        return Err(StoreError::corrupt(
            r2.pos() as i64,
            "negative properties length",
        ));
    }
    let props = r2.take(props_len as usize)?;
    if r2.pos() != total_size as usize {
        return Err(StoreError::corrupt(
            0,
            format!("total size {total_size} != computed {}", r2.pos()),
        ));
    }
    if check_crc && body_crc(body) != crc {
        return Err(StoreError::corrupt(8, "body crc mismatch"));
    }
    if verify && (!is_valid_topic(topic) || props.contains(&0)) {
        return Err(StoreError::corrupt(0, "malformed topic or properties"));
    }
    let topic =
        std::str::from_utf8(topic).map_err(|_| StoreError::corrupt(0, "topic is not utf-8"))?;
    let properties = std::str::from_utf8(props)
        .map_err(|_| StoreError::corrupt(0, "properties are not utf-8"))?;
    Ok(RecordMeta {
        total_size,
        queue_id,
        queue_offset,
        physical_offset,
        sys_flag,
        store_timestamp_ms,
        topic,
        properties,
    })
}

/// Decodes one record (copying the body). Errors on anything malformed; never panics.
pub fn decode_message(buf: &[u8]) -> Result<MessageExt, StoreError> {
    decode_message_bytes(&Bytes::copy_from_slice(buf))
}

/// Decodes one record; the body shares `buf` (no copy).
pub fn decode_message_bytes(buf: &Bytes) -> Result<MessageExt, StoreError> {
    let mut r = Reader::new(buf);
    let store_size = r.i32()?;
    let magic_code = r.i32()?;
    if magic_code != MAGIC_CODE_V1 && magic_code != MAGIC_CODE_V2 {
        return Err(StoreError::corrupt(4, format!("bad magic {magic_code:#x}")));
    }
    if store_size < 0 || store_size as usize > buf.len() {
        return Err(StoreError::corrupt(0, "store size beyond buffer"));
    }
    let body_crc_v = r.i32()?;
    let queue_id = r.i32()?;
    let flag = r.i32()?;
    let queue_offset = r.i64()?;
    let commit_log_offset = r.i64()?;
    let sys_flag = r.i32()?;
    let born_timestamp_ms = r.i64()?;
    let born_host = r.host(sys_flag & sys_flag::BORNHOST_V6_FLAG != 0)?;
    let store_timestamp_ms = r.i64()?;
    let store_host = r.host(sys_flag & sys_flag::STOREHOSTADDRESS_V6_FLAG != 0)?;
    let reconsume_times = r.i32()?;
    let prepared_transaction_offset = r.i64()?;
    let body_len = r.i32()?;
    if body_len < 0 {
        return Err(StoreError::corrupt(r.pos() as i64, "negative body length"));
    }
    let body_start = r.pos();
    r.take(body_len as usize)?;
    let body = buf.slice(body_start..body_start + body_len as usize);
    let topic_len = if magic_code == MAGIC_CODE_V1 {
        r.i8()? as i32
    } else {
        r.i16()? as i32
    };
    if topic_len < 0 {
        return Err(StoreError::corrupt(r.pos() as i64, "negative topic length"));
    }
    let topic = String::from_utf8(r.take(topic_len as usize)?.to_vec())
        .map_err(|_| StoreError::corrupt(0, "topic is not utf-8"))?;
    let props_len = r.i16()?;
    if props_len < 0 {
        return Err(StoreError::corrupt(
            r.pos() as i64,
            "negative properties length",
        ));
    }
    let properties_string = String::from_utf8(r.take(props_len as usize)?.to_vec())
        .map_err(|_| StoreError::corrupt(0, "properties are not utf-8"))?;
    if r.pos() != store_size as usize {
        return Err(StoreError::corrupt(0, "store size does not match fields"));
    }
    let properties = decode_properties(&properties_string);
    Ok(MessageExt {
        store_size,
        magic_code,
        body_crc: body_crc_v,
        queue_id,
        flag,
        queue_offset,
        commit_log_offset,
        sys_flag,
        born_timestamp_ms,
        born_host,
        store_timestamp_ms,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties_string,
        properties,
    })
}

/// Decodes concatenated records (a pull body); stops with an error at the first bad one.
pub fn decode_messages(buf: &Bytes) -> Result<Vec<MessageExt>, StoreError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let m = decode_message_bytes(&buf.slice(pos..))?;
        pos += m.store_size as usize;
        out.push(m);
    }
    Ok(out)
}

/// One inner message of a SEND_BATCH_MESSAGE body (message-format.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub flag: i32,
    pub body: Bytes,
    pub properties: String,
}

/// Splits a batch body; bodies share `body` (no copy). `max_items` bounds the work.
pub fn decode_batch(body: &Bytes, max_items: usize) -> Result<Vec<BatchItem>, StoreError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        if out.len() >= max_items {
            return Err(StoreError::illegal(format!(
                "batch has more than {max_items} messages"
            )));
        }
        let mut r = Reader::new(&body[pos..]);
        let total = r.i32()?;
        let _magic = r.i32()?;
        let _crc = r.i32()?;
        let flag = r.i32()?;
        let blen = r.i32()?;
        if blen < 0 {
            return Err(StoreError::corrupt(
                pos as i64,
                "negative body length in batch",
            ));
        }
        let bstart = pos + r.pos();
        r.take(blen as usize)?;
        let plen = r.i16()?;
        if plen < 0 {
            return Err(StoreError::corrupt(
                pos as i64,
                "negative properties length in batch",
            ));
        }
        let props = r.take(plen as usize)?;
        if total as i64 != r.pos() as i64 {
            return Err(StoreError::corrupt(pos as i64, "batch item size mismatch"));
        }
        let properties = String::from_utf8(props.to_vec())
            .map_err(|_| StoreError::corrupt(pos as i64, "batch properties not utf-8"))?;
        out.push(BatchItem {
            flag,
            body: body.slice(bstart..bstart + blen as usize),
            properties,
        });
        pos += r.pos();
    }
    Ok(out)
}

/// Encodes batch items as a Java client does (`MessageDecoder.encodeMessages`), for tests and tools.
pub fn encode_batch(items: &[BatchItem]) -> Bytes {
    let mut out = BytesMut::new();
    for it in items {
        let p = it.properties.as_bytes();
        let total = 4 + 4 + 4 + 4 + 4 + it.body.len() + 2 + p.len();
        out.put_i32(total as i32);
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(it.flag);
        out.put_i32(it.body.len() as i32);
        out.put_slice(&it.body);
        out.put_i16(p.len() as i16);
        out.put_slice(p);
    }
    out.freeze()
}

/// Inflates a compressed body (sysFlag bit 0). ZLIB (and type 0 = legacy zlib) only;
/// `max_len` bounds the output.
pub fn inflate_body(sys_flag: i32, body: &[u8], max_len: usize) -> Result<Bytes, StoreError> {
    if sys_flag & sys_flag::COMPRESSED_FLAG == 0 {
        return Ok(Bytes::copy_from_slice(body));
    }
    let ctype = sys_flag & sys_flag::COMPRESSION_TYPE_MASK;
    if ctype != 0 && ctype != sys_flag::COMPRESSION_ZLIB_TYPE {
        return Err(StoreError::UnsupportedCompression {
            compression_type: ctype,
        });
    }
    let mut out = Vec::new();
    let mut dec = flate2::read::ZlibDecoder::new(body).take(max_len as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| StoreError::corrupt(0, format!("zlib: {e}")))?;
    if out.len() > max_len {
        return Err(StoreError::illegal(format!(
            "inflated body exceeds {max_len} bytes"
        )));
    }
    Ok(Bytes::from(out))
}

/// Offset message id: store host address + port (i32) + physical offset (i64), upper-case hex
/// (32 chars for IPv4, 56 for IPv6).
pub fn create_offset_msg_id(store_host: SocketAddr, phys_offset: i64) -> String {
    // Built on the stack, hex-encoded into one exactly sized string (one allocation per send).
    let mut raw = [0u8; 16 + 4 + 8];
    let ip_len = match store_host.ip() {
        IpAddr::V4(a) => {
            raw[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            raw[..16].copy_from_slice(&a.octets());
            16
        }
    };
    raw[ip_len..ip_len + 4].copy_from_slice(&(store_host.port() as i32).to_be_bytes());
    raw[ip_len + 4..ip_len + 12].copy_from_slice(&phys_offset.to_be_bytes());
    let raw = &raw[..ip_len + 12];
    let mut s = String::with_capacity(raw.len() * 2);
    for &b in raw {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xF) as usize] as char);
    }
    s
}

/// Inverse of [`create_offset_msg_id`]: returns (store host, physical offset).
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, i64), StoreError> {
    let bytes = id.as_bytes();
    if bytes.len() != 32 && bytes.len() != 56 {
        return Err(StoreError::illegal(format!(
            "msg id length {} not 32/56",
            bytes.len()
        )));
    }
    let mut raw = Vec::with_capacity(28);
    for pair in bytes.chunks(2) {
        let hi = hex_val(pair[0])?;
        let lo = hex_val(pair[1])?;
        raw.push((hi << 4) | lo);
    }
    let mut r = Reader::new(&raw);
    let host = r.host(raw.len() == 28)?;
    let off = r.i64()?;
    Ok((host, off))
}

fn hex_val(c: u8) -> Result<u8, StoreError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(StoreError::illegal("msg id is not hex")),
    }
}

/// Adds (or replaces) a property in an encoded properties string.
pub fn set_property(props: &str, key: &str, value: &str) -> String {
    let mut out = String::with_capacity(props.len() + key.len() + value.len() + 2);
    for_each_property(props, |k, v| {
        if k != key {
            out.push_str(k);
            out.push(NAME_VALUE_SEPARATOR);
            out.push_str(v);
            out.push(PROPERTY_SEPARATOR);
        }
    });
    out.push_str(key);
    out.push(NAME_VALUE_SEPARATOR);
    out.push_str(value);
    out.push(PROPERTY_SEPARATOR);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn golden_msg() -> MessageToStore {
        let mut m = MessageToStore::new(
            "T",
            1,
            Bytes::from_static(b"hello"),
            "TAGS\u{1}TagA".to_string(),
        );
        m.born_timestamp_ms = 0x18bcfe56800;
        m.born_host = "10.0.0.1:50000".parse().unwrap();
        m.store_host = "10.0.0.2:10911".parse().unwrap();
        m
    }

    /// message-format.md §1 verified example (produced by Java `MessageDecoder.encode`).
    #[test]
    fn encode_matches_java_golden_bytes() {
        let expected = hex(
            "0000006a daa320a7 3610a686 00000001 00000000 0000000000000002 00000000000004d2 00000000
             0000018bcfe56800 0a000001 0000c350 0000018bcfe56801 0a000002 00002a9f 00000000 0000000000000000
             00000005 68656c6c6f 01 54 0009 54414753 01 54616741",
        );
        let m = golden_msg();
        let mut buf = BytesMut::new();
        let (len, pp) = encode_record(&m, 1024, &mut buf).unwrap();
        assert_eq!(len, 106);
        // The writer patches these three fields in place.
        assert_eq!(
            patch_record_fields(&mut buf, 2, 1234, 0x18bcfe56801).unwrap(),
            106
        );
        assert_eq!(pp.store_timestamp_position, 56);
        assert_eq!(&buf[..], &expected[..]);

        let d = decode_message(&buf).unwrap();
        assert_eq!(d.msg_id(), "0A00000200002A9F00000000000004D2");
        assert_eq!(d.topic, "T");
        assert_eq!(d.queue_offset, 2);
        assert_eq!(d.tags(), Some("TagA"));
        assert_eq!(&d.body[..], b"hello");
        let meta = parse_record_meta(&buf, true).unwrap();
        assert_eq!(meta.total_size, 106);
        assert_eq!(meta.store_timestamp_ms, 0x18bcfe56801);
    }

    #[test]
    fn ipv6_hosts_set_flags_and_round_trip() {
        let mut m = golden_msg();
        m.born_host = "[::1]:4000".parse().unwrap();
        m.store_host = "[fe80::2]:10911".parse().unwrap();
        let mut buf = BytesMut::new();
        let (len, pp) = encode_record(&m, 1024, &mut buf).unwrap();
        assert_eq!(len, 106 + 24);
        assert_eq!(pp.store_timestamp_position, 68);
        let d = decode_message(&buf).unwrap();
        assert_eq!(d.sys_flag & 0x30, 0x30);
        assert_eq!(d.born_host, m.born_host);
        assert_eq!(d.store_host, m.store_host);
        assert_eq!(d.msg_id().len(), 56);
    }

    #[test]
    fn tags_hash_is_java_string_hash() {
        assert_eq!(tags_hash("A"), 65);
        assert_eq!(tags_hash("TagA"), 2598919);
        assert_eq!(tags_hash("中"), 20013);
        assert_eq!(tags_hash(""), 0);
        // Wrapping arithmetic: a long string overflows i32 and stays sign-extended.
        let h = tags_hash("this is a fairly long tag string");
        assert_eq!(
            h,
            java_string_hash("this is a fairly long tag string") as i64
        );
    }

    #[test]
    fn properties_follow_java_rules() {
        let p = decode_properties(
            "KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA\u{2}\u{1}x\u{2}E\u{1}\u{2}WAIT\u{1}true",
        );
        assert_eq!(p.len(), 3);
        assert_eq!(p["KEYS"], "k1 k2");
        assert_eq!(p["WAIT"], "true");
        let enc = encode_properties(&p);
        assert_eq!(decode_properties(&enc), p);
        let s = set_property("A\u{1}1\u{2}B\u{1}2", "A", "3");
        assert_eq!(decode_properties(&s)["A"], "3");
        assert_eq!(decode_properties(&s)["B"], "2");
    }

    #[test]
    fn offset_msg_id_round_trip() {
        let h: SocketAddr = "10.0.0.2:10911".parse().unwrap();
        let id = create_offset_msg_id(h, 1234);
        assert_eq!(id, "0A00000200002A9F00000000000004D2");
        assert_eq!(decode_offset_msg_id(&id).unwrap(), (h, 1234));
        let h6: SocketAddr = "[fe80::2]:10911".parse().unwrap();
        let id6 = create_offset_msg_id(h6, 77);
        assert_eq!(id6.len(), 56);
        assert_eq!(decode_offset_msg_id(&id6).unwrap(), (h6, 77));
        assert!(decode_offset_msg_id("XYZ").is_err());
        assert!(decode_offset_msg_id(&"G".repeat(32)).is_err());
    }

    #[test]
    fn batch_round_trip_matches_doc_layout() {
        let items = vec![
            BatchItem {
                flag: 0,
                body: Bytes::from_static(b"x"),
                properties: "KEYS\u{1}k\u{2}".into(),
            },
            BatchItem {
                flag: 7,
                body: Bytes::from_static(b"yz"),
                properties: String::new(),
            },
        ];
        let enc = encode_batch(&items);
        // First block: total = 4*5 + 1 + 2 + 7
        assert_eq!(&enc[..4], &30i32.to_be_bytes());
        assert_eq!(decode_batch(&enc, 10).unwrap(), items);
        assert!(decode_batch(&enc, 1).is_err());
        assert!(decode_batch(&enc.slice(..enc.len() - 1), 10).is_err());
    }

    #[test]
    fn inflate_zlib_body() {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        e.write_all(&[b'a'; 5000]).unwrap();
        let z = e.finish().unwrap();
        let out = inflate_body(0x301, &z, 10_000).unwrap();
        assert_eq!(out.len(), 5000);
        assert!(inflate_body(0x301, &z, 100).is_err());
        assert!(matches!(
            inflate_body(0x101, &z, 10_000),
            Err(StoreError::UnsupportedCompression { .. })
        ));
        assert!(inflate_body(0x301, b"not zlib", 100).is_err());
    }

    fn encoded_golden() -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_record(&golden_msg(), 1024, &mut buf).unwrap();
        buf.to_vec()
    }

    proptest! {
        #[test]
        fn decode_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_message(&data);
            let _ = parse_record_meta(&data, true);
            let _ = decode_batch(&Bytes::from(data.clone()), 100);
            let _ = decode_messages(&Bytes::from(data));
        }

        #[test]
        fn truncated_record_is_an_error(cut in 0usize..106) {
            let rec = encoded_golden();
            prop_assert!(decode_message(&rec[..cut]).is_err());
            prop_assert!(parse_record_meta(&rec[..cut], true).is_err());
        }

        #[test]
        fn mutated_record_never_panics_and_crc_catches_body_flips(pos in 0usize..106, val in any::<u8>()) {
            let mut rec = encoded_golden();
            let old = rec[pos];
            rec[pos] = val;
            let _ = decode_message(&rec);
            let r = parse_record_meta(&rec, true);
            // Body bytes are 88..93: any change there must fail the CRC.
            if (88..93).contains(&pos) && old != val {
                prop_assert!(r.is_err());
            }
        }
    }
}
