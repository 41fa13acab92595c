//! Request/response client with timeouts, used by namesrv-client, the broker (to talk to
//! NameServers), tests and the benchmark.
//!
//! ```ignore
//! let client = RemotingClient::connect("127.0.0.1:9876", ClientConfig::default()).await?;
//! let resp = client.invoke(cmd, timeout_ms).await?;   // opaque assigned by the client
//! client.invoke_oneway(cmd).await?;
//! client.set_request_handler(handler);                // server->client requests
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::command::RemotingCommand;
use crate::connection::{spawn_connection, ConnectionConfig, ConnectionContext, Handler};
use crate::error::RemotingError;
use crate::frame::DEFAULT_MAX_FRAME_SIZE_BYTES;
use crate::server::SharedProcessor;

/// Server→client requests handled concurrently on one client connection.
const CLIENT_MAX_IN_FLIGHT: usize = 256;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub max_frame_size_bytes: usize,
    pub connect_timeout_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_frame_size_bytes: DEFAULT_MAX_FRAME_SIZE_BYTES,
            // Java's NettyClientConfig.connectTimeoutMillis default.
            connect_timeout_ms: 3000,
        }
    }
}

struct ClientInner {
    conn: ConnectionContext,
    handler: Arc<RwLock<Option<SharedProcessor>>>,
}

impl Drop for ClientInner {
    // The connection tasks do not own the client: closing here stops them once the last
    // clone of the client is gone.
    fn drop(&mut self) {
        self.conn.close();
    }
}

/// One connection to a server; clones share it.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for RemotingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotingClient")
            .field("conn", &self.inner.conn)
            .finish()
    }
}

impl RemotingClient {
    /// Connect to `addr` (`"host:port"`).
    pub async fn connect(
        addr: &str,
        config: ClientConfig,
    ) -> Result<RemotingClient, RemotingError> {
        let timeout_ms = config.connect_timeout_ms;
        let stream =
            tokio::time::timeout(Duration::from_millis(timeout_ms), TcpStream::connect(addr))
                .await
                .map_err(|_| RemotingError::Timeout { timeout_ms })??;
        let handler = Arc::new(RwLock::new(None));
        let conn = spawn_connection(
            stream,
            ConnectionConfig {
                max_frame_size_bytes: config.max_frame_size_bytes,
                max_in_flight: CLIENT_MAX_IN_FLIGHT,
            },
            Handler::Client(handler.clone()),
            None,
            None,
        )?;
        Ok(RemotingClient {
            inner: Arc::new(ClientInner { conn, handler }),
        })
    }

    /// Send a request and wait for the response; the opaque is assigned here.
    pub async fn invoke(
        &self,
        cmd: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, RemotingError> {
        self.inner.conn.invoke(cmd, timeout_ms).await
    }

    /// Send a oneway request (no response will come).
    pub async fn invoke_oneway(&self, cmd: RemotingCommand) -> Result<(), RemotingError> {
        self.inner.conn.send_oneway(cmd).await
    }

    /// Handle requests the server sends on this connection (NOTIFY_CONSUMER_IDS_CHANGED,
    /// CHECK_TRANSACTION_STATE, …). Without a handler they get REQUEST_CODE_NOT_SUPPORTED.
    pub fn set_request_handler(&self, handler: SharedProcessor) {
        *self
            .inner
            .handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    pub fn is_closed(&self) -> bool {
        self.inner.conn.is_closed()
    }

    pub async fn closed(&self) {
        self.inner.conn.closed().await
    }

    pub fn close(&self) {
        self.inner.conn.close()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.conn.local_addr()
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.conn.peer_addr()
    }

    /// The underlying connection (e.g. for `pending_requests`).
    pub fn connection(&self) -> &ConnectionContext {
        &self.inner.conn
    }
}
