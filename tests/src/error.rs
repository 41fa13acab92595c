//! Errors of the test harness.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum HarnessError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("remoting error: {0}")]
    Remoting(#[from] remoting::RemotingError),
    #[error("{0}")]
    Missing(String),
    #[error("timed out after {timeout_ms} ms waiting for {what}")]
    Timeout { what: String, timeout_ms: u64 },
    #[error("process `{name}` exited early with {status}")]
    ExitedEarly { name: String, status: String },
    #[error("unexpected response: {0}")]
    Unexpected(String),
    #[error("malformed record: {0}")]
    MalformedRecord(String),
}

pub type Result<T> = std::result::Result<T, HarnessError>;
