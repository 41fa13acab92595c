//! One live TCP connection, shared by the server (one per accepted socket) and the client.
//!
//! Each connection runs two tasks:
//! - a **reader** decoding frames: responses complete the pending request with the same
//!   opaque; requests are dispatched to a processor, each in its own task, at most
//!   `max_in_flight` at a time (beyond that: SYSTEM_BUSY);
//! - a **writer** fed by a bounded channel ([`WRITE_QUEUE_CAPACITY`]): it encodes the
//!   header into a reusable buffer and writes large bodies straight from their `Bytes`
//!   (a body in several parts, such as a pull response's records, in one vectored write).
//!
//! Processors keep a [`ConnectionContext`] (e.g. a consumer's channel) to send requests
//! *to the peer* on this connection (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE):
//! we assign our own opaque and match the response by it, like
//! `remoting/src/main/java/org/apache/rocketmq/remoting/netty/NettyRemotingAbstract.java`
//! (`invokeSyncImpl`, `processResponseCommand`, `processRequestCommand`).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::codes::response;
use crate::command::{RemotingCommand, SerializeType, FLAG_ONEWAY, FLAG_RESPONSE};
use crate::error::RemotingError;
use crate::frame::{encode_head, RemotingCodec};
use crate::server::{Dispatcher, SharedProcessor};

/// Outbound commands queued per connection before senders wait (backpressure).
pub const WRITE_QUEUE_CAPACITY: usize = 1024;
/// Requests we may have outstanding on one connection (pending-response map size).
pub const MAX_PENDING_REQUESTS: usize = 65_536;
/// A single socket write that makes no progress for this long closes the connection.
pub const WRITE_TIMEOUT_MS: u64 = 60_000;
/// Bodies up to this size are copied next to their header (one syscall beats two);
/// larger bodies are written from their own `Bytes` without copying.
const INLINE_BODY_BYTES: usize = 4 * 1024;
/// Slices per vectored write (Linux's IOV_MAX is 1024; a pull answers with tens of records).
const MAX_WRITE_SLICES: usize = 64;
/// Flush the coalescing buffer once it holds this much.
const WRITE_COALESCE_BYTES: usize = 64 * 1024;
/// Initial read and write buffers per connection (they grow with traffic); small so that
/// thousands of idle connections stay cheap.
const READ_BUFFER_BYTES: usize = 8 * 1024;
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);
/// One process-wide opaque counter, like Java's `RemotingCommand.requestId`; may wrap.
static NEXT_OPAQUE: AtomicI32 = AtomicI32::new(1);

pub(crate) fn next_opaque() -> i32 {
    NEXT_OPAQUE.fetch_add(1, Ordering::Relaxed)
}

/// Who handles requests arriving on a connection.
#[derive(Clone)]
pub(crate) enum Handler {
    Server(Arc<Dispatcher>),
    Client(Arc<RwLock<Option<SharedProcessor>>>),
}

impl Handler {
    fn lookup(&self, code: i32) -> Option<SharedProcessor> {
        match self {
            Handler::Server(d) => d.lookup(code),
            Handler::Client(h) => h.read().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    fn on_closed(&self, ctx: &ConnectionContext) {
        let processors: Vec<SharedProcessor> = match self {
            Handler::Server(d) => d.processors().to_vec(),
            Handler::Client(h) => h
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
        };
        for p in processors {
            if std::panic::catch_unwind(AssertUnwindSafe(|| p.on_connection_closed(ctx))).is_err() {
                error!(conn = ctx.id(), "on_connection_closed panicked");
            }
        }
    }
}

pub(crate) struct ConnectionConfig {
    pub max_frame_size_bytes: usize,
    pub max_in_flight: usize,
}

struct Shared {
    id: u64,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    max_frame_size_bytes: usize,
    tx: mpsc::Sender<RemotingCommand>,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    closed: CancellationToken,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<i32, oneshot::Sender<RemotingCommand>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle on one connection; cheap to clone.
#[derive(Clone)]
pub struct ConnectionContext {
    shared: Arc<Shared>,
}

/// Connections compare and hash by their process-unique id (usable as map keys).
impl PartialEq for ConnectionContext {
    fn eq(&self, other: &Self) -> bool {
        self.shared.id == other.shared.id
    }
}

impl Eq for ConnectionContext {}

impl std::hash::Hash for ConnectionContext {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.shared.id.hash(state)
    }
}

impl fmt::Debug for ConnectionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionContext")
            .field("id", &self.shared.id)
            .field("peer_addr", &self.shared.peer_addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Removes a pending entry when `invoke` finishes in any way (response, timeout, drop).
struct PendingGuard<'a> {
    shared: &'a Shared,
    opaque: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending().remove(&self.opaque);
    }
}

impl ConnectionContext {
    /// Unique per process.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer_addr
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Completes when the connection is closed (by either side or by shutdown).
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }

    /// Close the connection; pending invokes fail with `ConnectionClosed`.
    pub fn close(&self) {
        self.shared.closed.cancel();
        self.fail_pending();
    }

    /// Requests we sent on this connection that still await a response.
    pub fn pending_requests(&self) -> usize {
        self.shared.pending().len()
    }

    /// Send a request to the peer and wait for its response (matched by a fresh opaque).
    /// The timeout covers queueing, writing and waiting; on any exit the pending entry is
    /// removed.
    pub async fn invoke(
        &self,
        mut cmd: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, RemotingError> {
        self.check_sendable(&cmd)?;
        let opaque = next_opaque();
        cmd.opaque = opaque;
        cmd.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.pending();
            if pending.len() >= MAX_PENDING_REQUESTS {
                return Err(RemotingError::Busy {
                    limit: MAX_PENDING_REQUESTS,
                });
            }
            pending.insert(opaque, tx);
        }
        let _guard = PendingGuard {
            shared: &self.shared,
            opaque,
        };
        // Closing cancels first, then drains the map: re-check so an entry inserted in
        // between cannot wait for its full timeout.
        if self.is_closed() {
            return Err(RemotingError::ConnectionClosed);
        }
        let exchange = async {
            self.enqueue(cmd).await?;
            rx.await.map_err(|_| RemotingError::ConnectionClosed)
        };
        match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
            Ok(result) => result,
            Err(_) => Err(RemotingError::Timeout { timeout_ms }),
        }
    }

    /// Send a oneway request (fresh opaque, oneway flag); the peer never answers.
    pub async fn send_oneway(&self, mut cmd: RemotingCommand) -> Result<(), RemotingError> {
        self.check_sendable(&cmd)?;
        cmd.opaque = next_opaque();
        cmd.flag = (cmd.flag & !FLAG_RESPONSE) | FLAG_ONEWAY;
        self.enqueue(cmd).await
    }

    /// Send a response built elsewhere (e.g. a held pull answered later). The caller keeps
    /// the request's opaque (see `RemotingCommand::response_to`); the response flag is set.
    pub async fn send_response(&self, mut cmd: RemotingCommand) -> Result<(), RemotingError> {
        self.check_sendable(&cmd)?;
        cmd.flag |= FLAG_RESPONSE;
        self.enqueue(cmd).await
    }

    fn check_sendable(&self, cmd: &RemotingCommand) -> Result<(), RemotingError> {
        if self.is_closed() {
            return Err(RemotingError::ConnectionClosed);
        }
        // The header adds more; the writer re-checks the exact size.
        if cmd.body_len() + 8 > self.shared.max_frame_size_bytes {
            return Err(RemotingError::FrameTooLarge {
                size_bytes: cmd.body_len() + 8,
                limit_bytes: self.shared.max_frame_size_bytes,
            });
        }
        Ok(())
    }

    async fn enqueue(&self, cmd: RemotingCommand) -> Result<(), RemotingError> {
        tokio::select! {
            biased;
            _ = self.shared.closed.cancelled() => Err(RemotingError::ConnectionClosed),
            sent = self.shared.tx.send(cmd) => sent.map_err(|_| RemotingError::ConnectionClosed),
        }
    }

    fn complete(&self, response: RemotingCommand) {
        let waiter = self.shared.pending().remove(&response.opaque);
        match waiter {
            // The invoker may have given up in the meantime; nothing to do then.
            Some(tx) => {
                let _ = tx.send(response);
            }
            None => debug!(
                conn = self.id(),
                opaque = response.opaque,
                "response for an unknown or expired request"
            ),
        }
    }

    fn fail_pending(&self) {
        // Dropping the senders wakes every waiter with `ConnectionClosed`.
        let drained: Vec<_> = self.shared.pending().drain().collect();
        drop(drained);
    }
}

/// Start the reader and writer tasks of a freshly connected/accepted socket.
pub(crate) fn spawn_connection(
    stream: TcpStream,
    config: ConnectionConfig,
    handler: Handler,
    parent: Option<&CancellationToken>,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<ConnectionContext, RemotingError> {
    assert!(config.max_in_flight > 0, "max_in_flight must be positive");
    let peer_addr = stream.peer_addr()?;
    let local_addr = stream.local_addr()?;
    // Request/response traffic: latency matters more than packet count.
    stream.set_nodelay(true)?;
    let (read_half, write_half) = stream.into_split();
    let (tx, rx) = mpsc::channel(WRITE_QUEUE_CAPACITY);
    let closed = match parent {
        Some(p) => p.child_token(),
        None => CancellationToken::new(),
    };
    let ctx = ConnectionContext {
        shared: Arc::new(Shared {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            peer_addr,
            local_addr,
            max_frame_size_bytes: config.max_frame_size_bytes,
            tx,
            pending: Mutex::new(HashMap::new()),
            closed: closed.clone(),
        }),
    };
    tokio::spawn(write_loop(
        ctx.id(),
        rx,
        write_half,
        config.max_frame_size_bytes,
        closed,
    ));
    let framed = FramedRead::with_capacity(
        read_half,
        RemotingCodec::new(config.max_frame_size_bytes),
        READ_BUFFER_BYTES,
    );
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    let reader_ctx = ctx.clone();
    tokio::spawn(async move {
        read_loop(
            &reader_ctx,
            framed,
            &handler,
            in_flight,
            config.max_in_flight,
        )
        .await;
        reader_ctx.close();
        handler.on_closed(&reader_ctx);
        drop(permit);
        debug!(conn = reader_ctx.id(), peer = %reader_ctx.peer_addr(), "connection closed");
    });
    Ok(ctx)
}

async fn read_loop(
    ctx: &ConnectionContext,
    mut framed: FramedRead<tokio::net::tcp::OwnedReadHalf, RemotingCodec>,
    handler: &Handler,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = ctx.shared.closed.cancelled() => return,
            next = framed.next() => next,
        };
        match next {
            None => return,
            Some(Err(RemotingError::Io(e))) => {
                debug!(conn = ctx.id(), peer = %ctx.peer_addr(), error = %e, "read failed");
                return;
            }
            Some(Err(e)) => {
                warn!(conn = ctx.id(), peer = %ctx.peer_addr(), error = %e,
                    "closing connection after a malformed frame");
                return;
            }
            Some(Ok(cmd)) if cmd.is_response() => ctx.complete(cmd),
            Some(Ok(cmd)) => dispatch(ctx, handler, &in_flight, max_in_flight, cmd).await,
        }
    }
}

fn short_response(opaque: i32, st: SerializeType, code: i32, remark: String) -> RemotingCommand {
    let mut r = RemotingCommand {
        opaque,
        serialize_type: st,
        ..Default::default()
    };
    r = RemotingCommand::response_to(&r, code);
    r.remark = Some(remark);
    r
}

async fn dispatch(
    ctx: &ConnectionContext,
    handler: &Handler,
    in_flight: &Arc<Semaphore>,
    max_in_flight: usize,
    request: RemotingCommand,
) {
    let oneway = request.is_oneway();
    let (opaque, st, code) = (request.opaque, request.serialize_type, request.code);
    let Some(processor) = handler.lookup(code) else {
        debug!(conn = ctx.id(), code, "request code not supported");
        if !oneway {
            let remark = format!(" request type {code} not supported");
            let resp = short_response(opaque, st, response::REQUEST_CODE_NOT_SUPPORTED, remark);
            let _ = ctx.enqueue(resp).await;
        }
        return;
    };
    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
        warn!(
            conn = ctx.id(),
            code,
            limit = max_in_flight,
            "too many requests in flight"
        );
        if !oneway {
            let remark = format!(
                "[REJECTREQUEST]system busy, {max_in_flight} requests in flight on this connection"
            );
            let resp = short_response(opaque, st, response::SYSTEM_BUSY, remark);
            let _ = ctx.enqueue(resp).await;
        }
        return;
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let _permit = permit;
        // Catch panics both in the synchronous part of `process` and in its future: a
        // faulty processor must cost one request, never the connection or the server.
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            processor.process(ctx.clone(), request)
        })) {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        let response = match outcome {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                debug!(conn = ctx.id(), code, error = %e, "processor failed");
                short_response(opaque, st, response::SYSTEM_ERROR, e.0)
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                error!(conn = ctx.id(), code, panic = %what, "processor panicked");
                short_response(
                    opaque,
                    st,
                    response::SYSTEM_ERROR,
                    format!("processor panicked: {what}"),
                )
            }
        };
        if oneway {
            return; // never answer a oneway request (frames.md §2)
        }
        let mut response = response;
        response.opaque = opaque;
        response.flag |= FLAG_RESPONSE;
        response.serialize_type = st;
        if let Err(e) = ctx.enqueue(response).await {
            debug!(conn = ctx.id(), code, error = %e, "response not sent");
        }
    });
}

async fn write_loop(
    conn_id: u64,
    mut rx: mpsc::Receiver<RemotingCommand>,
    mut out: OwnedWriteHalf,
    max_frame_size_bytes: usize,
    closed: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(WRITE_BUFFER_BYTES);
    let result: Result<(), RemotingError> = async {
        loop {
            let first = tokio::select! {
                biased;
                _ = closed.cancelled() => return Ok(()),
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => return Ok(()),
                },
            };
            // Coalesce whatever is already queued into few writes.
            let mut next = Some(first);
            let mut yielded = false;
            while let Some(cmd) = next.take() {
                match encode_head(&cmd, &mut buf, max_frame_size_bytes) {
                    Err(e) => {
                        warn!(conn = conn_id, code = cmd.code, error = %e,
                            "dropping an outbound command that cannot be encoded");
                        // A response must still answer its request, or the peer waits for
                        // its timeout: send a short SYSTEM_ERROR instead.
                        if cmd.is_response() {
                            let fallback = short_response(
                                cmd.opaque,
                                cmd.serialize_type,
                                response::SYSTEM_ERROR,
                                format!("response could not be encoded: {e}"),
                            );
                            if encode_head(&fallback, &mut buf, max_frame_size_bytes).is_err() {
                                warn!(conn = conn_id, "fallback response could not be encoded");
                            }
                        }
                    }
                    Ok(()) if cmd.body_len() <= INLINE_BODY_BYTES => {
                        for part in cmd.body_parts() {
                            buf.extend_from_slice(part);
                        }
                    }
                    Ok(()) => {
                        // The buffered frames, this head and the body parts in one syscall.
                        let mut slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&buf[..])
                            .chain(cmd.body_parts().map(|b| &b[..]))
                            .filter(|s| !s.is_empty())
                            .map(std::io::IoSlice::new)
                            .collect();
                        write_slices_timed(&mut out, &mut slices).await?;
                        buf.clear();
                    }
                }
                if buf.len() >= WRITE_COALESCE_BYTES {
                    write_timed(&mut out, &buf).await?;
                    buf.clear();
                }
                next = rx.try_recv().ok();
                if next.is_none() && !yielded {
                    // Requests and responses come in bursts (one group commit answers many
                    // sends, whose tasks are ready right now): let them run before writing,
                    // so one syscall carries the burst instead of one frame.
                    yielded = true;
                    tokio::task::yield_now().await;
                    next = rx.try_recv().ok();
                }
            }
            if !buf.is_empty() {
                write_timed(&mut out, &buf).await?;
                buf.clear();
            }
        }
    }
    .await;
    if let Err(e) = result {
        debug!(conn = conn_id, error = %e, "write failed; closing connection");
    }
    closed.cancel();
    let _ = out.shutdown().await;
}

/// Write every slice, in order, with vectored writes of up to [`MAX_WRITE_SLICES`] slices
/// (a short write resumes at the first byte not taken, also inside a slice).
async fn write_slices_timed(
    out: &mut OwnedWriteHalf,
    mut slices: &mut [std::io::IoSlice<'_>],
) -> Result<(), RemotingError> {
    with_write_timeout(async {
        while !slices.is_empty() {
            let window = slices.len().min(MAX_WRITE_SLICES);
            let n = out.write_vectored(&slices[..window]).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
            }
            std::io::IoSlice::advance_slices(&mut slices, n);
        }
        Ok(())
    })
    .await
}

async fn write_timed(out: &mut OwnedWriteHalf, data: &[u8]) -> Result<(), RemotingError> {
    with_write_timeout(out.write_all(data)).await
}

/// A write whose bytes are not all taken within [`WRITE_TIMEOUT_MS`] fails (the connection
/// closes: the peer stopped reading).
async fn with_write_timeout(
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<(), RemotingError> {
    match tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), write).await {
        Ok(r) => r.map_err(RemotingError::Io),
        Err(_) => Err(RemotingError::Timeout {
            timeout_ms: WRITE_TIMEOUT_MS,
        }),
    }
}
