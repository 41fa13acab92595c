//! Errors of the namesrv-client crate.

use thiserror::Error;

/// A body that could not be decoded.
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

/// A failed call to one NameServer (or to all of them).
#[derive(Debug, Error)]
pub enum NamesrvClientError {
    #[error("no NameServer address configured")]
    NoNameServers,
    #[error("connecting to NameServer {addr} timed out after {timeout_ms} ms")]
    ConnectTimeout { addr: String, timeout_ms: u64 },
    #[error("NameServer {addr}: {source}")]
    Remoting {
        addr: String,
        #[source]
        source: remoting::RemotingError,
    },
    #[error("NameServer {addr} answered code {code}: {remark}")]
    Response {
        addr: String,
        code: i32,
        remark: String,
    },
    #[error("NameServer {addr} sent an undecodable body: {source}")]
    Body {
        addr: String,
        #[source]
        source: BodyError,
    },
    #[error("every NameServer failed: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<NamesrvClientError>),
}
