//! Header codecs: JSON (serializeType 0) and ROCKETMQ binary (serializeType 1).
//!
//! Layouts from docs/protocol/frames.md §3–§4, checked against
//! `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/RemotingCommand.java`
//! (`headerEncode`, `headerDecode`), `RemotingSerializable.java` (fastjson) and
//! `RocketMQSerializable.java` (`rocketMQProtocolEncode`, `rocketMQProtocolDecode`).
//!
//! Decoding is lenient like Java's fastjson: missing members take Java defaults, unknown
//! members are ignored, extFields values given as numbers/booleans are stringified.
//! Encoding always emits extFields values as strings, keys sorted (deterministic output;
//! Java uses HashMap order, which receivers never depend on).

use std::fmt;

use bytes::{Buf, BufMut, BytesMut};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::command::{ExtFieldMap, LanguageCode, RemotingCommand, SerializeType};
use crate::error::RemotingError;

/// Upper bound on extFields entries we accept in one header (no Java request uses more
/// than ~30); bounds the work a hostile header can cause.
pub const MAX_EXT_FIELDS: usize = 4096;

// ---------------------------------------------------------------- JSON

/// Decode a JSON header into a command (body left empty).
///
/// Strict JSON forbids raw control characters inside strings; fastjson tolerates them, so
/// if parsing fails and the header holds any, they are escaped and parsing is retried.
pub fn decode_json(bytes: &[u8]) -> Result<RemotingCommand, RemotingError> {
    if let Some(cmd) = crate::header_fast::decode(bytes) {
        return Ok(cmd);
    }
    match decode_json_strict(bytes) {
        Ok(cmd) => Ok(cmd),
        Err(e) => match escape_raw_controls(bytes) {
            Some(fixed) => decode_json_strict(&fixed).map_err(|_| e),
            None => Err(e),
        },
    }
}

/// Escape raw control bytes found inside JSON strings; `None` if there are none.
fn escape_raw_controls(bytes: &[u8]) -> Option<Vec<u8>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut in_string = false;
    let mut escaped = false;
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string && b < 0x20 {
            let o = out.get_or_insert_with(|| {
                let mut v = Vec::with_capacity(bytes.len() + 16);
                v.extend_from_slice(&bytes[..i]);
                v
            });
            o.extend_from_slice(b"\\u00");
            o.push(HEX[(b >> 4) as usize]);
            o.push(HEX[(b & 0xf) as usize]);
            escaped = false;
            continue;
        }
        if let Some(o) = out.as_mut() {
            o.push(b);
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        }
    }
    out
}

pub(crate) fn decode_json_strict(bytes: &[u8]) -> Result<RemotingCommand, RemotingError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let cmd = de
        .deserialize_map(CommandVisitor)
        .map_err(|e| RemotingError::MalformedHeader(format!("json header: {e}")))?;
    de.end()
        .map_err(|e| RemotingError::MalformedHeader(format!("json header: {e}")))?;
    Ok(cmd)
}

struct CommandVisitor;

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = RemotingCommand;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a RemotingCommand JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RemotingCommand, A::Error> {
        let mut cmd = RemotingCommand {
            serialize_type: SerializeType::Json,
            ..Default::default()
        };
        // Duplicate members: the last one wins, as in fastjson.
        while let Some(key) = map.next_key::<Member>()? {
            match key {
                Member::Code => cmd.code = map.next_value::<LenientI32>()?.0,
                Member::Language => cmd.language = map.next_value::<LenientLanguage>()?.0,
                Member::Version => cmd.version = map.next_value::<LenientI32>()?.0,
                Member::Opaque => cmd.opaque = map.next_value::<LenientI32>()?.0,
                Member::Flag => cmd.flag = map.next_value::<LenientI32>()?.0,
                Member::Remark => cmd.remark = map.next_value::<LenientString>()?.0,
                Member::ExtFields => cmd.ext_fields = map.next_value::<ExtFields>()?.0,
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(cmd)
    }
}

/// A member name of the command object, matched without allocating.
enum Member {
    Code,
    Language,
    Version,
    Opaque,
    Flag,
    Remark,
    ExtFields,
    Other,
}

impl<'de> serde::Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Member;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Member, E> {
                Ok(match v {
                    "code" => Member::Code,
                    "language" => Member::Language,
                    "version" => Member::Version,
                    "opaque" => Member::Opaque,
                    "flag" => Member::Flag,
                    "remark" => Member::Remark,
                    "extFields" => Member::ExtFields,
                    _ => Member::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// An int given as a number, a numeric string, or null (→ 0, Java default).
struct LenientI32(i32);

impl<'de> serde::Deserialize<'de> for LenientI32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientI32;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an int")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientI32, E> {
                i32::try_from(v)
                    .map(LenientI32)
                    .map_err(|_| E::custom("int out of range"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientI32, E> {
                i32::try_from(v)
                    .map(LenientI32)
                    .map_err(|_| E::custom("int out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientI32, E> {
                v.trim()
                    .parse()
                    .map(LenientI32)
                    .map_err(|_| E::custom("not an int"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientI32, E> {
                Ok(LenientI32(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// Language by name (JSON) or ordinal; unknown → OTHER (Java: null).
struct LenientLanguage(LanguageCode);

impl<'de> serde::Deserialize<'de> for LenientLanguage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientLanguage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a language name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(LanguageCode::from_name(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(
                    u8::try_from(v)
                        .map(LanguageCode::from_code)
                        .unwrap_or(LanguageCode::Other),
                ))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(
                    u8::try_from(v)
                        .map(LanguageCode::from_code)
                        .unwrap_or(LanguageCode::Other),
                ))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(LanguageCode::Java))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string or null.
struct LenientString(Option<String>);

impl<'de> serde::Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(LenientString(stringify_value(
            serde_json::Value::deserialize(d)?,
        )))
    }
}

/// JSON value → the string Java would hold: strings as-is, numbers/bools as text,
/// null → absent, objects/arrays as their JSON text.
fn stringify_value(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Bool(b) => Some(if b { "true" } else { "false" }.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// extFields: string→string; null map → empty; null values dropped.
struct ExtFields(ExtFieldMap);

impl<'de> serde::Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an extFields object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<ExtFields, E> {
                Ok(ExtFields(ExtFieldMap::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtFields, A::Error> {
                let mut out = ExtFieldMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    if out.len() >= MAX_EXT_FIELDS {
                        return Err(de::Error::custom("too many extFields"));
                    }
                    if let Some(v) = map.next_value::<LenientString>()?.0 {
                        out.insert(k, v);
                    }
                }
                Ok(ExtFields(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Append the JSON header of `cmd` to `dst` (fastjson layout: members sorted, nulls
/// omitted, enums by name; frames.md §3).
pub fn encode_json(cmd: &RemotingCommand, dst: &mut BytesMut) {
    // The header is written through a cursor into space sized up front (strings exactly,
    // ints at their widest), then cut to length: no capacity check or call per piece.
    let ext_bytes: usize = cmd
        .ext_fields
        .iter()
        .map(|(k, v)| json_str_len(k) + json_str_len(v) + 2)
        .sum();
    let max = JSON_FIXED_MAX_BYTES
        + ext_bytes
        + cmd.remark.as_deref().map_or(0, |r| json_str_len(r) + 10)
        + cmd.language.name().len();
    let start = dst.len();
    dst.resize(start + max, 0);
    let mut out = Cursor {
        buf: &mut dst[start..],
        at: 0,
    };
    out.put(b"{\"code\":");
    out.int(i64::from(cmd.code));
    if !cmd.ext_fields.is_empty() {
        out.put(b",\"extFields\":{");
        // Already in key order: fastjson's sorted layout without a sort.
        for (i, (k, v)) in cmd.ext_fields.iter().enumerate() {
            if i > 0 {
                out.put(b",");
            }
            out.json_str(k);
            out.put(b":");
            out.json_str(v);
        }
        out.put(b"}");
    }
    out.put(b",\"flag\":");
    out.int(i64::from(cmd.flag));
    out.put(b",\"language\":\"");
    out.put(cmd.language.name().as_bytes());
    out.put(b"\",\"opaque\":");
    out.int(i64::from(cmd.opaque));
    if let Some(remark) = &cmd.remark {
        out.put(b",\"remark\":");
        out.json_str(remark);
    }
    out.put(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    out.int(i64::from(cmd.version));
    out.put(b"}");
    let len = out.at;
    dst.truncate(start + len);
}

/// Bytes an escape adds to one input byte: 1 for `\n`-style escapes, 5 for `\u00XX`, 0 for
/// bytes a JSON string holds as they are.
const JSON_ESCAPE_EXTRA_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = 5;
        c += 1;
    }
    let mut i = 0;
    let short = [b'"', b'\\', b'\n', b'\r', b'\t', 0x08, 0x0c];
    while i < short.len() {
        t[short[i] as usize] = 1;
        i += 1;
    }
    t
};

/// Length of the run at the start of `s` that a JSON string holds as it is (None: all of
/// `s`); it ends at a quote, a backslash or a control byte.
#[inline]
pub(crate) fn plain_run(s: &[u8]) -> Option<usize> {
    s.iter()
        .position(|&c| JSON_ESCAPE_EXTRA_BYTES[usize::from(c)] != 0)
}

/// Length of `s` as a JSON string literal, quotes included.
fn json_str_len(s: &str) -> usize {
    let extra: usize = s
        .bytes()
        .map(|b| usize::from(JSON_ESCAPE_EXTRA_BYTES[usize::from(b)]))
        .sum();
    2 + s.len() + extra
}

/// Upper bound of everything `encode_json` writes besides extFields, the remark and the
/// language name: member names and punctuation (101 bytes) and four i32s (11 bytes each at
/// most).
const JSON_FIXED_MAX_BYTES: usize = 145;

/// Writes into space already sized for the whole header.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    #[inline]
    fn put(&mut self, s: &[u8]) {
        self.buf[self.at..self.at + s.len()].copy_from_slice(s);
        self.at += s.len();
    }

    fn int(&mut self, v: i64) {
        // Digits from the right; i64::MIN has 19 digits and a sign.
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = v.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if v < 0 {
            at -= 1;
            digits[at] = b'-';
        }
        self.put(&digits[at..]);
    }

    /// A JSON string literal; control characters as \uXXXX like fastjson (frames.md §3).
    fn json_str(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.put(b"\"");
        let mut rest = s.as_bytes();
        // Most strings need no escape: one copy.
        while let Some(n) = plain_run(rest) {
            self.put(&rest[..n]);
            let b = rest[n];
            match b {
                b'"' => self.put(b"\\\""),
                b'\\' => self.put(b"\\\\"),
                b'\n' => self.put(b"\\n"),
                b'\r' => self.put(b"\\r"),
                b'\t' => self.put(b"\\t"),
                0x08 => self.put(b"\\b"),
                0x0c => self.put(b"\\f"),
                _ => self.put(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
            }
            rest = &rest[n + 1..];
        }
        self.put(rest);
        self.put(b"\"");
    }
}

// ---------------------------------------------------------------- ROCKETMQ binary

/// Decode a ROCKETMQ binary header (frames.md §4). Zero-length strings are `null` in
/// Java: an empty remark is `None`, entries with an empty key or value are dropped.
pub fn decode_binary(mut buf: &[u8]) -> Result<RemotingCommand, RemotingError> {
    fn need(buf: &[u8], n: usize, what: &str) -> Result<(), RemotingError> {
        if buf.remaining() < n {
            Err(RemotingError::MalformedHeader(format!(
                "binary header truncated reading {what}"
            )))
        } else {
            Ok(())
        }
    }
    fn len_of(v: i64, max: usize, what: &str) -> Result<usize, RemotingError> {
        usize::try_from(v)
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| RemotingError::MalformedHeader(format!("bad {what} length {v}")))
    }
    fn string(buf: &mut &[u8], n: usize, what: &str) -> Result<Option<String>, RemotingError> {
        if n == 0 {
            return Ok(None);
        }
        let s = std::str::from_utf8(&buf[..n])
            .map_err(|_| RemotingError::MalformedHeader(format!("{what} is not UTF-8")))?
            .to_string();
        buf.advance(n);
        Ok(Some(s))
    }

    need(buf, 17, "fixed fields")?;
    let code = buf.get_i16() as i32;
    let language = LanguageCode::from_code(buf.get_u8());
    let version = buf.get_i16() as i32;
    let opaque = buf.get_i32();
    let flag = buf.get_i32();
    let remark_len = len_of(buf.get_i32() as i64, buf.remaining(), "remark")?;
    let remark = string(&mut buf, remark_len, "remark")?;
    need(buf, 4, "extFields length")?;
    let ext_len = len_of(buf.get_i32() as i64, buf.remaining(), "extFields")?;
    let mut ext = &buf[..ext_len];
    let mut ext_fields = ExtFieldMap::new();
    while ext.has_remaining() {
        if ext_fields.len() >= MAX_EXT_FIELDS {
            return Err(RemotingError::MalformedHeader("too many extFields".into()));
        }
        need(ext, 2, "key length")?;
        let klen = len_of(ext.get_i16() as i64, ext.remaining(), "key")?;
        let key = string(&mut ext, klen, "key")?;
        need(ext, 4, "value length")?;
        let vlen = len_of(ext.get_i32() as i64, ext.remaining(), "value")?;
        let value = string(&mut ext, vlen, "value")?;
        if let (Some(k), Some(v)) = (key, value) {
            ext_fields.insert(k, v);
        }
    }
    buf.advance(ext_len);
    // Java ignores trailing bytes after the map; so do we.
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: bytes::Bytes::new(),
        body_tail: Vec::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

/// Append the ROCKETMQ binary header of `cmd` to `dst`. Like Java, `code` and `version`
/// are truncated to i16. Fails only if a key is longer than i16::MAX bytes.
pub fn encode_binary(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), RemotingError> {
    dst.put_i16(cmd.code as i16);
    dst.put_u8(cmd.language.code());
    dst.put_i16(cmd.version as i16);
    dst.put_i32(cmd.opaque);
    dst.put_i32(cmd.flag);
    match &cmd.remark {
        Some(r) if !r.is_empty() => {
            dst.put_i32(len_i32(r.len())?);
            dst.put_slice(r.as_bytes());
        }
        _ => dst.put_i32(0),
    }
    let mut total = 0usize;
    for (k, v) in &cmd.ext_fields {
        if k.len() > i16::MAX as usize {
            return Err(RemotingError::MalformedHeader(format!(
                "extFields key of {} bytes",
                k.len()
            )));
        }
        total += 2 + k.len() + 4 + v.len();
    }
    dst.put_i32(len_i32(total)?);
    for (k, v) in &cmd.ext_fields {
        dst.put_i16(k.len() as i16);
        dst.put_slice(k.as_bytes());
        dst.put_i32(len_i32(v.len())?);
        dst.put_slice(v.as_bytes());
    }
    Ok(())
}

fn len_i32(n: usize) -> Result<i32, RemotingError> {
    i32::try_from(n).map_err(|_| RemotingError::MalformedHeader(format!("length {n} too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The space `encode_json` sizes up front holds its longest outputs: the widest ints,
    /// and strings made of every byte that needs an escape.
    #[test]
    fn json_encode_fits_its_worst_cases() {
        let widest = RemotingCommand {
            code: i32::MIN,
            flag: i32::MIN,
            opaque: i32::MIN,
            version: i32::MIN,
            ..Default::default()
        };
        let escaped: String = (0u8..0x20).map(char::from).chain(['"', '\\']).collect();
        let all_escaped = RemotingCommand {
            remark: Some(escaped.clone()),
            ext_fields: [(escaped.as_str(), escaped.as_str()), ("k", "v")]
                .into_iter()
                .collect(),
            ..widest.clone()
        };
        for cmd in [widest, all_escaped] {
            let mut buf = BytesMut::new();
            encode_json(&cmd, &mut buf);
            assert_eq!(decode_json_strict(&buf).ok(), Some(cmd));
        }
    }

    #[test]
    fn json_escapes_control_chars() {
        let mut cmd = RemotingCommand::request(310);
        cmd.ext_fields.insert("i", "TAGS\u{1}A\u{2}\"q\"\\");
        let mut buf = BytesMut::new();
        encode_json(&cmd, &mut buf);
        let text = std::str::from_utf8(&buf).unwrap();
        assert!(text.contains(r#""i":"TAGS\u0001A\u0002\"q\"\\""#), "{text}");
        let back = decode_json(&buf).unwrap();
        assert_eq!(back.ext_fields, cmd.ext_fields);
    }

    #[test]
    fn json_lenient_inputs() {
        let raw = br#"{"code":"10","extFields":{"queueId":1,"batch":"0","unit":true,"x":null,"o":{"a":1}},"flag":0,"opaque":9,"unknown":[1,2],"remark":null,"language":"CPP","version":63}"#;
        let cmd = decode_json(raw).unwrap();
        assert_eq!(cmd.code, 10);
        assert_eq!(cmd.opaque, 9);
        assert_eq!(cmd.language, LanguageCode::Cpp);
        assert_eq!(cmd.version, 63);
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext("queueId"), Some("1"));
        assert_eq!(cmd.ext("batch"), Some("0"));
        assert_eq!(cmd.ext("unit"), Some("true"));
        assert_eq!(cmd.ext("x"), None);
        assert_eq!(cmd.ext("o"), Some(r#"{"a":1}"#));
    }

    #[test]
    fn json_raw_control_chars_in_strings_are_tolerated() {
        let raw = b"{\"code\":310,\"extFields\":{\"i\":\"TAGS\x01A\x02\\\"x\"},\n\t\"opaque\":3}";
        let cmd = decode_json(raw).unwrap();
        assert_eq!(cmd.ext("i"), Some("TAGS\u{1}A\u{2}\"x"));
        assert_eq!(cmd.opaque, 3);
        assert!(decode_json(b"{\"code\":\x01}").is_err());
    }

    #[test]
    fn json_minimal_defaults() {
        let cmd = decode_json(br#"{"code":0,"flag":1,"opaque":7}"#).unwrap();
        assert_eq!(cmd.language, LanguageCode::Java);
        assert_eq!(cmd.version, 0);
        assert!(cmd.is_response());
        assert!(cmd.ext_fields.is_empty());
        assert!(decode_json(b"[1]").is_err());
        assert!(decode_json(br#"{"code":1} x"#).is_err());
        assert!(decode_json(br#"{"code":99999999999}"#).is_err());
    }
}
