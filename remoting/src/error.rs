//! Errors of the remoting crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RemotingError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    FrameTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("malformed frame: {0}")]
    MalformedFrame(String),
    #[error("malformed header: {0}")]
    MalformedHeader(String),
    #[error("missing header field `{0}`")]
    MissingField(&'static str),
    #[error("header field `{field}` has invalid value `{value}`")]
    InvalidField { field: &'static str, value: String },
    #[error("request timed out after {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("connection closed")]
    ConnectionClosed,
    #[error("malformed body: {0}")]
    MalformedBody(String),
    #[error("too many requests in flight ({limit})")]
    Busy { limit: usize },
}

/// A body that could not be decoded (NameServer protocol bodies, [`crate::body::namesrv`]).
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("invalid JSON body: {0}")]
    Json(#[source] serde_json::Error),
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("body of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("invalid compressed register body: {0}")]
    Compressed(String),
}
