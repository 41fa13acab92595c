//! Remoting server: accept loop, one task per connection, requests dispatched by code to
//! processors. Each request runs in its own task (bounded per connection) so a long-polling
//! pull never blocks other requests on the same connection.
//!
//! Behaviour follows `remoting/src/main/java/org/apache/rocketmq/remoting/netty/NettyRemotingServer.java`
//! and `NettyRemotingAbstract.java` (`processRequestCommand`: unknown code →
//! REQUEST_CODE_NOT_SUPPORTED, rejected → SYSTEM_BUSY, exception → SYSTEM_ERROR, oneway never
//! answered), with per-connection limits instead of Java's shared thread pools.
//!
//! ```ignore
//! let mut dispatcher = Dispatcher::new();
//! dispatcher.register(codes::request::SEND_MESSAGE, send_processor.clone());
//! dispatcher.set_default(admin_processor);          // optional fallback
//! let server = RemotingServer::bind(addr, ServerConfig::default(), dispatcher).await?;
//! let local = server.local_addr();
//! server.run(shutdown).await;                       // until shutdown fires
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::command::RemotingCommand;
use crate::connection::{spawn_connection, ConnectionConfig, ConnectionContext, Handler};
use crate::error::RemotingError;
use crate::frame::DEFAULT_MAX_FRAME_SIZE_BYTES;
use crate::shutdown::Shutdown;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// What a processor returns: `Ok(Some(resp))` is written back (unless the request was
/// oneway), `Ok(None)` sends nothing, `Err(e)` becomes SYSTEM_ERROR with `e` as remark.
pub type ProcessResult = Result<Option<RemotingCommand>, ProcessError>;
pub type ProcessFuture = Pin<Box<dyn Future<Output = ProcessResult> + Send + 'static>>;

/// A processor failure; the server answers SYSTEM_ERROR (1) with this text as remark.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(pub String);

impl From<String> for ProcessError {
    fn from(s: String) -> Self {
        ProcessError(s)
    }
}

impl From<&str> for ProcessError {
    fn from(s: &str) -> Self {
        ProcessError(s.to_string())
    }
}

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

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted frame including its 4-byte length field (Netty semantics).
    pub max_frame_size_bytes: usize,
    /// Requests processed concurrently per connection; more get SYSTEM_BUSY.
    pub max_in_flight_per_connection: usize,
    /// Open connections; further accepts are closed immediately.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame_size_bytes: DEFAULT_MAX_FRAME_SIZE_BYTES,
            // Long-polling pulls hold a slot each; a consumer with many queues on one
            // connection needs many.
            max_in_flight_per_connection: 4096,
            max_connections: 10_000,
        }
    }
}

/// Routes request codes to processors.
#[derive(Clone, Default)]
pub struct Dispatcher {
    table: HashMap<i32, SharedProcessor>,
    default: Option<SharedProcessor>,
    /// Every distinct processor, for `on_connection_closed`.
    all: Vec<SharedProcessor>,
}

impl Dispatcher {
    pub fn new() -> Dispatcher {
        Dispatcher::default()
    }

    pub fn register(&mut self, code: i32, processor: SharedProcessor) {
        self.remember(&processor);
        self.table.insert(code, processor);
    }

    pub fn register_many(&mut self, codes: &[i32], processor: SharedProcessor) {
        for &code in codes {
            self.register(code, processor.clone());
        }
    }

    /// Handles every code without a registered processor.
    pub fn set_default(&mut self, processor: SharedProcessor) {
        self.remember(&processor);
        self.default = Some(processor);
    }

    pub fn lookup(&self, code: i32) -> Option<SharedProcessor> {
        self.table.get(&code).or(self.default.as_ref()).cloned()
    }

    pub(crate) fn processors(&self) -> &[SharedProcessor] {
        &self.all
    }

    fn remember(&mut self, processor: &SharedProcessor) {
        if !self.all.iter().any(|p| Arc::ptr_eq(p, processor)) {
            self.all.push(processor.clone());
        }
    }
}

/// A bound listener ready to serve.
pub struct RemotingServer {
    listener: TcpListener,
    config: ServerConfig,
    dispatcher: Arc<Dispatcher>,
    local_addr: SocketAddr,
}

impl RemotingServer {
    pub async fn bind(
        addr: SocketAddr,
        config: ServerConfig,
        dispatcher: Dispatcher,
    ) -> Result<RemotingServer, RemotingError> {
        assert!(config.max_in_flight_per_connection > 0);
        assert!(config.max_connections > 0);
        assert!(config.max_frame_size_bytes >= 8);
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(RemotingServer {
            listener,
            config,
            dispatcher: Arc::new(dispatcher),
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accept connections until `shutdown` fires; then every connection is closed.
    pub async fn run(self, shutdown: Shutdown) {
        info!(addr = %self.local_addr, "remoting server listening");
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        // Connections hang off a child token so that shutdown closes them all.
        let connections = shutdown.child();
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                warn!(%peer, limit = self.config.max_connections, "too many connections; closing");
                drop(stream);
                continue;
            };
            let config = ConnectionConfig {
                max_frame_size_bytes: self.config.max_frame_size_bytes,
                max_in_flight: self.config.max_in_flight_per_connection,
            };
            let handler = Handler::Server(self.dispatcher.clone());
            if let Err(e) = spawn_connection(
                stream,
                config,
                handler,
                Some(connections.token()),
                Some(permit),
            ) {
                warn!(%peer, error = %e, "could not set up connection");
            }
        }
        connections.trigger();
        info!(addr = %self.local_addr, "remoting server stopped");
    }
}

/// A processor made from an async closure (tests, tools, small handlers).
pub struct FnProcessor<F>(pub F);

impl<F, Fut> RequestProcessor for FnProcessor<F>
where
    F: Fn(ConnectionContext, RemotingCommand) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProcessResult> + Send + 'static,
{
    fn process(&self, ctx: ConnectionContext, request: RemotingCommand) -> ProcessFuture {
        Box::pin((self.0)(ctx, request))
    }
}

/// Wrap an async closure as a [`SharedProcessor`].
pub fn processor_fn<F, Fut>(f: F) -> SharedProcessor
where
    F: Fn(ConnectionContext, RemotingCommand) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProcessResult> + Send + 'static,
{
    Arc::new(FnProcessor(f))
}
