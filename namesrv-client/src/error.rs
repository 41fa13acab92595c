//! Errors of the namesrv-client crate.

use thiserror::Error;

/// A body that could not be decoded (defined next to the bodies, in `remoting`).
pub use remoting::body::BodyError;

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
