//! The logical remoting command. Both the JSON and the ROCKETMQ binary header decode into
//! this struct; responses are answered in the request's `serialize_type`.
//!
//! Mirrors `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/RemotingCommand.java`
//! and `LanguageCode.java` (frames.md §2).

pub use crate::ext_fields::ExtFieldMap;

use bytes::Bytes;

use crate::error::RemotingError;

/// Flag bit 0: this command is a response.
pub const FLAG_RESPONSE: i32 = 0x1;
/// Flag bit 1: a oneway request; no response may be sent.
pub const FLAG_ONEWAY: i32 = 0x2;

/// Version ordinal we put in every command we send: `MQVersion.Version.V4_9_7` = 407
/// (`common/src/main/java/org/apache/rocketmq/common/MQVersion.java`). Clients only
/// need >= 407, NameServers >= 37. See frames.md §5.
pub const OUR_VERSION: i32 = 407;

/// Header encoding of a frame (high byte of the frame's second int).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    #[default]
    Json = 0,
    RocketMq = 1,
}

/// Sender implementation language (frames.md §2). Unknown values are kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum LanguageCode {
    #[default]
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
    NodeJs,
}

impl LanguageCode {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> LanguageCode {
        use LanguageCode::*;
        match code {
            0 => Java,
            1 => Cpp,
            2 => Dotnet,
            3 => Python,
            4 => Delphi,
            5 => Erlang,
            6 => Ruby,
            8 => Http,
            9 => Go,
            10 => Php,
            11 => Oms,
            12 => Rust,
            13 => NodeJs,
            _ => Other,
        }
    }

    pub fn name(self) -> &'static str {
        use LanguageCode::*;
        match self {
            Java => "JAVA",
            Cpp => "CPP",
            Dotnet => "DOTNET",
            Python => "PYTHON",
            Delphi => "DELPHI",
            Erlang => "ERLANG",
            Ruby => "RUBY",
            Other => "OTHER",
            Http => "HTTP",
            Go => "GO",
            Php => "PHP",
            Oms => "OMS",
            Rust => "RUST",
            NodeJs => "NODE_JS",
        }
    }

    pub fn from_name(name: &str) -> LanguageCode {
        use LanguageCode::*;
        match name {
            "JAVA" => Java,
            "CPP" => Cpp,
            "DOTNET" => Dotnet,
            "PYTHON" => Python,
            "DELPHI" => Delphi,
            "ERLANG" => Erlang,
            "RUBY" => Ruby,
            "HTTP" => Http,
            "GO" => Go,
            "PHP" => Php,
            "OMS" => Oms,
            "RUST" => Rust,
            "NODE_JS" => NodeJs,
            _ => Other,
        }
    }
}

/// One request or response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    /// The custom header as string→string (Java `extFields`).
    pub ext_fields: ExtFieldMap,
    pub body: Bytes,
    /// More body bytes, written on the wire right after `body` (outbound only: decoding never
    /// fills it). A pull response carries its records here as they sit in the mapped log, so
    /// they reach the socket without being copied into one buffer first.
    pub body_tail: Vec<Bytes>,
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A new request with our language/version; `opaque` is assigned by the sender.
    pub fn request(code: i32) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::Java,
            version: OUR_VERSION,
            ..Default::default()
        }
    }

    /// A request whose extFields come from a typed header.
    pub fn request_with_header<H: crate::headers::CommandHeader>(code: i32, header: &H) -> Self {
        let mut cmd = RemotingCommand::request(code);
        header.write_to(&mut cmd.ext_fields);
        cmd
    }

    /// A response to `request`: copies opaque and header encoding, sets the response flag.
    pub fn response_to(request: &RemotingCommand, code: i32) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::Java,
            version: OUR_VERSION,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            serialize_type: request.serialize_type,
            ..Default::default()
        }
    }

    /// A response with a remark (errors).
    pub fn error_response(request: &RemotingCommand, code: i32, remark: impl Into<String>) -> Self {
        let mut r = RemotingCommand::response_to(request, code);
        r.remark = Some(remark.into());
        r
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// A body made of several parts, sent back to back without concatenating them.
    pub fn with_body_parts(mut self, parts: Vec<Bytes>) -> Self {
        self.body = Bytes::new();
        self.body_tail = parts;
        self
    }

    /// The body's length on the wire (`body` plus `body_tail`).
    pub fn body_len(&self) -> usize {
        self.body.len() + self.body_tail.iter().map(Bytes::len).sum::<usize>()
    }

    /// Every body part in wire order (`body` first; empty parts included).
    pub fn body_parts(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.body).chain(self.body_tail.iter())
    }

    /// The whole body as one buffer: `body` itself when there is no tail, else a copy of all
    /// parts (for in-process readers; the wire path never calls this).
    pub fn body_contiguous(&self) -> Bytes {
        if self.body_tail.is_empty() {
            return self.body.clone();
        }
        let mut buf = bytes::BytesMut::with_capacity(self.body_len());
        for part in self.body_parts() {
            buf.extend_from_slice(part);
        }
        buf.freeze()
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    pub fn with_header<H: crate::headers::CommandHeader>(mut self, header: &H) -> Self {
        header.write_to(&mut self.ext_fields);
        self
    }

    /// Decode this command's extFields into a typed header.
    pub fn decode_header<H: crate::headers::CommandHeader>(&self) -> Result<H, RemotingError> {
        H::read_from(&self.ext_fields)
    }

    /// Decodes the typed header by moving its fields out of extFields (no copies of string
    /// values); for handlers that own the request and do not read those fields again.
    pub fn take_header<H: crate::headers::CommandHeader>(&mut self) -> Result<H, RemotingError> {
        H::take_from(&mut self.ext_fields)
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// Add one extField (e.g. `MSG_REGION`).
    pub fn with_ext(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.ext_fields.insert(key.into(), value.into());
        self
    }

    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key)
    }
}
