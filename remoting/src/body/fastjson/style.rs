//! fastjson text helpers: string literals in either flavour ([`JsonStyle`]) and
//! [`normalize`], which turns bare numeric keys into quoted ones before serde parses a body.
//!
//! Java RocketMQ serializes bodies with fastjson, whose default output is *not* standard JSON:
//! maps keyed by numbers are written with bare keys (`{0:"127.0.0.1:10911"}`). Java clients
//! accept both forms; jsoncpp-based clients are configured for the bare form. We therefore
//! emit exactly what the Java NameServer emits for the request at hand ([`JsonStyle`]) and
//! accept both forms on input ([`normalize`]).
//!
//! Facts from alibaba/fastjson `MapSerializer` and `[A4] DefaultRequestProcessor#getRouteInfoByTopic`
//! (see docs/protocol/namesrv.md §4).

use std::borrow::Cow;

/// Which JSON flavour to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// fastjson default: non-string map keys are written bare (`{0:"a"}`).
    Fastjson,
    /// `BrowserCompatible | QuoteFieldNames | MapSortField`: every key quoted, non-ASCII
    /// escaped as `\uXXXX`. Java namesrv uses it for route data when the request version
    /// is >= 401 (V4_9_4) or `acceptStandardJsonOnly=true`.
    Standard,
}

/// Append `s` as a JSON string literal. `Standard` additionally escapes non-ASCII
/// characters (fastjson `BrowserCompatible`).
pub fn write_str(out: &mut String, s: &str, style: JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => push_u_escape(out, c as u32),
            c if style == JsonStyle::Standard && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    push_u_escape(out, u32::from(*unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_u_escape(out: &mut String, unit: u32) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push_str("\\u");
    for shift in [12u32, 8, 4, 0] {
        out.push(char::from(HEX[((unit >> shift) & 0xF) as usize]));
    }
}

/// Append a map key that Java holds as a number (e.g. a `Long` brokerId).
pub fn write_number_key(out: &mut String, key: i64, style: JsonStyle) {
    match style {
        JsonStyle::Fastjson => out.push_str(&key.to_string()),
        JsonStyle::Standard => {
            out.push('"');
            out.push_str(&key.to_string());
            out.push('"');
        }
    }
}

/// Turn fastjson output into standard JSON by quoting bare object keys
/// (`{0:"a",1:"b"}` → `{"0":"a","1":"b"}`). Standard JSON passes through unchanged and
/// without a copy. Strings (including escaped quotes) are skipped correctly; anything
/// that is not JSON stays broken and is reported by the JSON parser afterwards.
pub fn normalize(input: &str) -> Cow<'_, str> {
    if !has_bare_key(input) {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len() + 16);
    scan(input, |event| match event {
        Event::Copy(s) => out.push_str(s),
        Event::BareKey(k) => {
            out.push('"');
            out.push_str(k);
            out.push('"');
        }
    });
    Cow::Owned(out)
}

fn has_bare_key(input: &str) -> bool {
    let mut found = false;
    scan(input, |event| {
        if let Event::BareKey(_) = event {
            found = true;
        }
    });
    found
}

enum Event<'a> {
    Copy(&'a str),
    BareKey(&'a str),
}

/// One pass over `input`, reporting verbatim slices and bare keys in order.
fn scan<'a>(input: &'a str, mut emit: impl FnMut(Event<'a>)) {
    let bytes = input.as_bytes();
    // Nesting is tracked only to know whether we are inside an object; bounded by input size.
    let mut stack: Vec<u8> = Vec::new();
    let mut expect_key = false;
    let mut copied_to = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                // Skip the string, honouring backslash escapes.
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                expect_key = false;
            }
            b'{' => {
                stack.push(b'{');
                expect_key = true;
            }
            b'[' => {
                stack.push(b'[');
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&b'{'),
            b':' => expect_key = false,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if expect_key => {
                // A bare key runs up to ':' or whitespace.
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b':' | b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
                if start > copied_to {
                    emit(Event::Copy(&input[copied_to..start]));
                }
                emit(Event::BareKey(&input[start..i]));
                copied_to = i;
                expect_key = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if copied_to < input.len() {
        emit(Event::Copy(&input[copied_to..]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_quotes_bare_numeric_keys_only() {
        let src =
            r#"{"brokerAddrs":{0:"127.0.0.1:10911",1:"a,b:c"},"s":"{0:\"x\"}","l":[{2:"y"}]}"#;
        let got = normalize(src);
        assert_eq!(
            got,
            r#"{"brokerAddrs":{"0":"127.0.0.1:10911","1":"a,b:c"},"s":"{0:\"x\"}","l":[{"2":"y"}]}"#
        );
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["brokerAddrs"]["1"], "a,b:c");
    }

    #[test]
    fn normalize_borrows_standard_json() {
        let src = r#"{"a":{"0":"x"},"b":[1,2,{"c":null}]}"#;
        assert!(matches!(normalize(src), Cow::Borrowed(_)));
    }

    #[test]
    fn standard_style_escapes_non_ascii() {
        let mut out = String::new();
        write_str(&mut out, "a\u{e9}\u{1F600}\"\u{1}", JsonStyle::Standard);
        assert_eq!(out, "\"a\\u00E9\\uD83D\\uDE00\\\"\\u0001\"");
        let mut plain = String::new();
        write_str(&mut plain, "a\u{e9}", JsonStyle::Fastjson);
        assert_eq!(plain, "\"a\u{e9}\"");
    }
}
