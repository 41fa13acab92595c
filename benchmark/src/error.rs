//! Errors of the benchmark tool.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("remoting: {0}")]
    Remoting(#[from] remoting::RemotingError),
    #[error("no route for topic `{topic}`: {reason}")]
    NoRoute { topic: String, reason: String },
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed record at byte {at_byte}: {reason}")]
    MalformedRecord {
        at_byte: usize,
        reason: &'static str,
    },
}
