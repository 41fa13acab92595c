//! Fast path for the JSON header every request and response carries.
//!
//! Java clients (fastjson) and our own encoder emit one shape: an object whose ints are plain
//! numbers and whose strings (member names, `language`, `remark`, every extFields key and
//! value) rarely need escapes. This scanner decodes exactly that shape in one pass with no
//! intermediate values, and gives up (`None`) on anything else: escapes, control
//! characters, non-string extFields values, numbers that are not i32, nested values in
//! unknown members, trailing bytes. The general serde decoder then handles the input, so
//! the accepted language and every error message stay those of [`crate::header`]; the
//! property test `fast_path_agrees_with_serde` checks both decode alike.

use std::borrow::Cow;

use crate::command::{ExtFieldMap, LanguageCode, RemotingCommand, SerializeType};
use crate::header::{plain_run, MAX_EXT_FIELDS};

/// Decode `bytes` if it has the common shape; `None` means "use the general decoder".
pub(crate) fn decode(bytes: &[u8]) -> Option<RemotingCommand> {
    // UTF-8 is checked once for the whole header; every string then is a slice between
    // ASCII delimiters, which are always character boundaries.
    let text = std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner {
        text,
        b: bytes,
        i: 0,
    };
    let mut cmd = RemotingCommand {
        serialize_type: SerializeType::Json,
        ..Default::default()
    };
    s.expect(b'{')?;
    if !s.eat(b'}') {
        loop {
            let key = s.plain_string()?;
            s.expect(b':')?;
            // Duplicate members: the last one wins, as in fastjson (and the serde path).
            match key {
                "code" => cmd.code = s.int()?,
                "version" => cmd.version = s.int()?,
                "opaque" => cmd.opaque = s.int()?,
                "flag" => cmd.flag = s.int()?,
                "language" => {
                    cmd.language = if s.null() {
                        LanguageCode::Java
                    } else {
                        LanguageCode::from_name(s.plain_string()?)
                    }
                }
                "remark" => {
                    cmd.remark = if s.null() {
                        None
                    } else {
                        Some(s.string()?.into_owned())
                    }
                }
                "extFields" => cmd.ext_fields = s.ext_fields()?,
                _ => s.skip_scalar()?,
            }
            if s.eat(b',') {
                continue;
            }
            s.expect(b'}')?;
            break;
        }
    }
    s.skip_ws();
    (s.i == bytes.len()).then_some(cmd)
}

struct Scanner<'a> {
    text: &'a str,
    /// `text` as bytes.
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    /// Skips whitespace, then consumes `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        self.skip_ws();
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn null(&mut self) -> bool {
        self.literal(b"null")
    }

    /// A string without escapes or control characters, borrowed from the input.
    fn plain_string(&mut self) -> Option<&'a str> {
        match self.string()? {
            Cow::Borrowed(s) => Some(s),
            Cow::Owned(_) => None,
        }
    }

    /// A string: borrowed when it has no escapes, decoded otherwise (message properties
    /// always have some: their separators are \u0001 and \u0002). Raw control characters
    /// and malformed escapes give up.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.i;
        let len = plain_run(self.b.get(start..)?)?;
        if self.b[start + len] == b'"' {
            self.i = start + len + 1;
            return self.text.get(start..start + len).map(Cow::Borrowed);
        }
        let mut out = String::with_capacity((self.b.len() - start).min(256));
        let mut i = start;
        loop {
            // Copy the run up to the next quote, backslash or control byte in one go.
            let n = plain_run(self.b.get(i..)?)?;
            out.push_str(self.text.get(i..i + n)?);
            let stop = self.b[i + n];
            i += n + 1;
            match stop {
                b'"' => break,
                b'\\' => {
                    let e = *self.b.get(i)?;
                    i += 1;
                    let simple = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let cp = self.hex4(i)?;
                            i += 4;
                            // Surrogates: only a well-formed pair is decoded here.
                            let ch = if (0xD800..0xDC00).contains(&cp) {
                                if self.b.get(i..i + 2)? != b"\\u" {
                                    return None;
                                }
                                let lo = self.hex4(i + 2)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                i += 6;
                                char::from_u32(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00))?
                            } else {
                                char::from_u32(cp)?
                            };
                            out.push(ch);
                            continue;
                        }
                        _ => return None,
                    };
                    out.push(simple);
                }
                // A control byte: the general path decides (fastjson tolerance).
                _ => return None,
            }
        }
        self.i = i;
        Some(Cow::Owned(out))
    }

    /// Four hex digits at `at` (the `XXXX` of `\uXXXX`).
    fn hex4(&self, at: usize) -> Option<u32> {
        self.b
            .get(at..at + 4)?
            .iter()
            .try_fold(0u32, |cp, &c| Some(cp << 4 | char::from(c).to_digit(16)?))
    }

    /// An integer literal that fits an i32 (no fraction, no exponent).
    fn int(&mut self) -> Option<i32> {
        self.skip_ws();
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let n = self.i - digits;
        // JSON forbids leading zeros; fractions and exponents go to the general path.
        if n == 0 || n > 11 || (n > 1 && self.b[digits] == b'0') {
            return None;
        }
        // serde_json reads "-0" as the float -0.0, which the general path refuses.
        if digits > start && n == 1 && self.b[digits] == b'0' {
            return None;
        }
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.text.get(start..self.i)?.parse().ok()
    }

    /// The value of a member we do not keep: a plain string, an int, true/false/null.
    fn skip_scalar(&mut self) -> Option<()> {
        self.skip_ws();
        match self.b.get(self.i)? {
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            b'n' => self.null().then_some(()),
            _ => self.int().map(|_| ()),
        }
    }

    /// `null` (empty) or an object of plain strings; null values are dropped.
    fn ext_fields(&mut self) -> Option<ExtFieldMap> {
        // A send request carries 13–14 fields: one allocation instead of growing 4, 8, 16.
        let mut out = ExtFieldMap::with_capacity(16);
        if self.null() {
            return Some(out);
        }
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Some(out);
        }
        loop {
            let k = self.string()?;
            self.expect(b':')?;
            if out.len() >= MAX_EXT_FIELDS {
                return None; // the general path reports it
            }
            if !self.null() {
                // An unescaped value is copied once (inline when short); an escaped one
                // (message properties) hands its decoded buffer over as it is.
                let v = self.string()?;
                out.insert(k.as_ref(), v);
            }
            if self.eat(b',') {
                continue;
            }
            self.expect(b'}')?;
            return Some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{decode_json_strict, encode_json};
    use bytes::BytesMut;
    use proptest::prelude::*;

    /// Pieces of headers: the common shape plus everything the fast path must refuse.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 _.%-]{0,12}".prop_map(|s| format!("\"{s}\"")),
            "[a-zA-Z\\\\\"\u{1}\u{e9}\u{4e2d}]{0,6}"
                .prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<i32>().prop_map(|n| n.to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            Just("1.5".to_string()),
            Just("-0".to_string()),
            Just("007".to_string()),
            Just("[1,2]".to_string()),
            Just("{\"x\":\"y\"}".to_string()),
            Just("\"\\u0041\\n\\/\"".to_string()),
            Just("\"\\ud83d\\ude00\"".to_string()),
            Just("\"\\ud83dx\"".to_string()),
            Just("\"\\udc00\"".to_string()),
            Just("\"\\x\"".to_string()),
            Just("\"a\u{1}b\"".to_string()),
        ]
    }

    fn ext_fields() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            proptest::collection::vec(("[a-z]{1,3}", value()), 0..6).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
                format!("{{ {} }}", body.join(","))
            }),
        ]
    }

    fn header() -> impl Strategy<Value = String> {
        let member = prop_oneof![
            value().prop_map(|v| format!("\"code\":{v}")),
            value().prop_map(|v| format!("\"opaque\":{v}")),
            value().prop_map(|v| format!("\"flag\":{v}")),
            value().prop_map(|v| format!("\"version\":{v}")),
            value().prop_map(|v| format!("\"language\":{v}")),
            value().prop_map(|v| format!("\"remark\":{v}")),
            value().prop_map(|v| format!("\"serializeTypeCurrentRPC\":{v}")),
            ext_fields().prop_map(|v| format!("\"extFields\":{v}")),
        ];
        (
            proptest::collection::vec(member, 0..9),
            prop_oneof![Just(""), Just(" "), Just("\n"), Just("x"), Just("}")],
        )
            .prop_map(|(members, tail)| format!("{{{}}}{tail}", members.join(",")))
    }

    proptest! {
        // Cheap cases; many of them, so that rare member/value pairs all meet.
        #![proptest_config(ProptestConfig::with_cases(8192))]

        #[test]
        fn fast_path_agrees_with_serde(text in header()) {
            if let Some(fast) = decode(text.as_bytes()) {
                let general = decode_json_strict(text.as_bytes());
                prop_assert_eq!(Some(fast), general.ok(), "{}", text);
            }
        }

        /// Our own encoder's output always takes the fast path (it escapes control
        /// characters, which the fast path decodes).
        #[test]
        fn encoded_plain_headers_take_the_fast_path(
            code in any::<i32>(),
            opaque in any::<i32>(),
            remark in proptest::option::of(".{0,20}"),
            ext in proptest::collection::btree_map(".{1,8}", ".{0,30}", 0..16),
        ) {
            let cmd = RemotingCommand {
                code,
                opaque,
                remark,
                ext_fields: ext.into_iter().collect(),
                language: LanguageCode::Java,
                version: 433,
                serialize_type: SerializeType::Json,
                ..Default::default()
            };
            let mut buf = BytesMut::new();
            encode_json(&cmd, &mut buf);
            prop_assert_eq!(decode(&buf), Some(cmd));
        }
    }
}
