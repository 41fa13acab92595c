//! RocketMQ remoting protocol: frames, command headers (JSON and ROCKETMQ binary),
//! request/response codes, typed custom headers, and a tokio client and server.
//!
//! Module map (mini-redis style):
//! - [`command`]: `RemotingCommand`, the logical message (both header encodings decode into it).
//! - [`frame`]: the length-prefixed frame codec (tokio-util `Decoder`/`Encoder`).
//! - [`header`]: JSON and ROCKETMQ binary header codecs.
//! - [`codes`]: request and response codes.
//! - [`headers`]: typed custom headers (`CommandHeader`) for every request family.
//! - [`server`]: accept loop, per-connection tasks, dispatch by code to processors.
//! - [`connection`]: a connection handle used for server→client requests and by the client.
//! - [`client`]: request/response client with timeouts (used by namesrv-client, tests, benchmark).
//! - [`body`]: JSON bodies (heartbeat, lock, route, stats) and fastjson-compatible emitters.
//! - [`shutdown`]: cooperative shutdown signal.

pub mod body;
pub mod client;
pub mod codes;
pub mod command;
pub mod connection;
pub mod error;
pub mod ext_fields;
pub mod frame;
pub mod header;
mod header_fast;
pub mod headers;
pub mod server;
pub mod shutdown;

pub use client::{ClientConfig, RemotingClient};
pub use command::{LanguageCode, RemotingCommand, SerializeType};
/// The string type of extFields values (used by [`command_header!`]).
pub use compact_str::CompactString;
pub use connection::ConnectionContext;
pub use error::RemotingError;
pub use server::{
    processor_fn, Dispatcher, ProcessError, ProcessFuture, ProcessResult, RemotingServer,
    RequestProcessor, ServerConfig, SharedProcessor,
};
pub use shutdown::Shutdown;
