//! Remoting server: accept loop, one task per connection, requests dispatched by code to
//! processors. Each request runs in its own task (bounded per connection) so a long-polling
//! pull never blocks other requests on the same connection.
//!
//! API (implementation lands with the remoting work):
//! ```ignore
//! let mut dispatcher = Dispatcher::new();
//! dispatcher.register(codes::request::SEND_MESSAGE, send_processor.clone());
//! dispatcher.set_default(admin_processor);          // optional fallback
//! let server = RemotingServer::bind(addr, ServerConfig::default(), dispatcher).await?;
//! let local = server.local_addr();
//! server.run(shutdown).await;                       // until shutdown fires
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::command::RemotingCommand;
use crate::connection::ConnectionContext;

/// What a processor returns: `Ok(Some(resp))` is written back (unless the request was
/// oneway), `Ok(None)` sends nothing, `Err(e)` becomes SYSTEM_ERROR with `e` as remark.
pub type ProcessResult = Result<Option<RemotingCommand>, ProcessError>;
pub type ProcessFuture = Pin<Box<dyn Future<Output = ProcessResult> + Send + 'static>>;

/// A processor failure; the server answers SYSTEM_ERROR (1) with this text as remark.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(pub String);

impl From<crate::RemotingError> for ProcessError {
    fn from(e: crate::RemotingError) -> Self {
        ProcessError(e.to_string())
    }
}

/// Handles one family of request codes.
pub trait RequestProcessor: Send + Sync + 'static {
    fn process(&self, ctx: ConnectionContext, request: RemotingCommand) -> ProcessFuture;

    /// Called when a connection closes (e.g. to drop its client channels).
    fn on_connection_closed(&self, _ctx: &ConnectionContext) {}
}

pub type SharedProcessor = Arc<dyn RequestProcessor>;
