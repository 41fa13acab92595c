//! Errors of the namesrv crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NamesrvError {
    #[error("remoting: {0}")]
    Remoting(#[from] remoting::RemotingError),
    #[error("invalid configuration: {0}")]
    Config(String),
}
