//! A live connection. Server side, each accepted connection gets a `ConnectionContext`
//! that processors keep (e.g. a consumer's channel) to send requests *to the client* on
//! its own connection (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE); responses
//! are matched by opaque. The client uses the same machinery.
//!
//! API (implementation lands with the remoting work):
//! ```ignore
//! ctx.id() -> u64                         // unique per process
//! ctx.peer_addr() -> SocketAddr
//! ctx.send_oneway(cmd).await -> Result<(), RemotingError>
//! ctx.invoke(cmd, timeout_ms).await -> Result<RemotingCommand, RemotingError>
//! ctx.is_closed() -> bool
//! ```
