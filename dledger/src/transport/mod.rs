//! Peer transport: TCP on 127.0.0.1, length-prefixed frames (`u32` big-endian length +
//! payload), one outbound connection per peer with reconnect/backoff and a bounded send
//! queue. When a queue is full messages are dropped (Raft tolerates loss; the core retries).
//! Inbound connections start with a handshake frame naming the group and the sender.

pub mod codec;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::{Message, NodeId};

const HANDSHAKE_MAGIC: u32 = 0x444c_4752; // "DLGR"
const PROTOCOL_VERSION: u8 = 1;
const MAX_GROUP_NAME_BYTES: usize = 256;
/// Inbound connections served at once (peers reconnect; stale ones end on EOF).
const MAX_INBOUND_CONNS: usize = 64;
/// Bytes gathered into one socket write before flushing.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Room asked for before each socket read of an inbound connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A message plus the runtime's side value (see [`codec`]: the next position for
/// `InstallSnapshot`, 0 otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub msg: Message,
    pub aux: u64,
}

/// Transport limits and addresses.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub self_id: NodeId,
    pub group: String,
    pub listen_addr: SocketAddr,
    /// Other voters (not including self).
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Largest frame accepted or sent; larger inbound frames close the connection.
    pub max_frame_bytes: u32,
    /// Messages queued per peer before new ones are dropped.
    pub send_queue_msgs: usize,
    /// Inbound messages queued for the node before readers wait (TCP backpressure).
    pub recv_queue_msgs: usize,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("address {0} is not loopback (peers bind/connect only on 127.0.0.1)")]
    NotLoopback(SocketAddr),
}

/// Counters, readable at any time.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub sent_msgs: AtomicU64,
    pub dropped_msgs: AtomicU64,
    pub received_msgs: AtomicU64,
    pub decode_errors: AtomicU64,
    pub connects: AtomicU64,
}

/// A running transport. Dropping it aborts every task and closes every socket.
pub struct Transport {
    queues: HashMap<NodeId, mpsc::Sender<Envelope>>,
    stats: Arc<TransportStats>,
    tasks: Vec<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl Drop for Transport {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Transport {
    /// Bind the listener and start one sender task per peer. Received messages go to `inbound`.
    pub async fn start(
        cfg: TransportConfig,
        inbound: mpsc::Sender<Envelope>,
    ) -> Result<Transport, TransportError> {
        for a in std::iter::once(&cfg.listen_addr).chain(cfg.peers.iter().map(|p| &p.1)) {
            if !a.ip().is_loopback() {
                return Err(TransportError::NotLoopback(*a));
            }
        }
        let listener =
            TcpListener::bind(cfg.listen_addr)
                .await
                .map_err(|source| TransportError::Bind {
                    addr: cfg.listen_addr,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: cfg.listen_addr,
                source,
            })?;
        let stats = Arc::new(TransportStats::default());
        let cfg = Arc::new(cfg);
        let mut tasks = Vec::new();
        let mut queues = HashMap::new();
        for (id, addr) in &cfg.peers {
            let (tx, rx) = mpsc::channel(cfg.send_queue_msgs.max(1));
            queues.insert(*id, tx);
            tasks.push(tokio::spawn(sender_task(
                Arc::clone(&cfg),
                *addr,
                rx,
                Arc::clone(&stats),
            )));
        }
        tasks.push(tokio::spawn(accept_task(
            Arc::clone(&cfg),
            listener,
            inbound,
            Arc::clone(&stats),
        )));
        Ok(Transport {
            queues,
            stats,
            tasks,
            local_addr,
        })
    }

    /// Queue `msg` for its recipient. Returns false if it was dropped (queue full / unknown).
    pub fn send(&self, env: Envelope) -> bool {
        let Some(q) = self.queues.get(&env.msg.to) else {
            self.stats.dropped_msgs.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match q.try_send(env) {
            Ok(()) => true,
            Err(_) => {
                self.stats.dropped_msgs.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

fn handshake_frame(cfg: &TransportConfig) -> Bytes {
    let group = cfg.group.as_bytes();
    let glen = group.len().min(MAX_GROUP_NAME_BYTES);
    let mut b = BytesMut::with_capacity(4 + 4 + 1 + 8 + 2 + glen);
    b.put_u32((4 + 1 + 8 + 2 + glen) as u32);
    b.put_u32(HANDSHAKE_MAGIC);
    b.put_u8(PROTOCOL_VERSION);
    b.put_u64(cfg.self_id);
    b.put_u16(glen as u16);
    b.put_slice(&group[..glen]);
    b.freeze()
}

/// Parse a handshake payload; returns the sender id if it belongs to our group.
pub fn parse_handshake(payload: &[u8], group: &str) -> Option<NodeId> {
    if payload.len() < 15 {
        return None;
    }
    let magic = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    if magic != HANDSHAKE_MAGIC || payload[4] != PROTOCOL_VERSION {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&payload[5..13]);
    let glen = u16::from_be_bytes([payload[13], payload[14]]) as usize;
    let g = payload.get(15..15 + glen)?;
    let want = group.as_bytes();
    (payload.len() == 15 + glen && g == &want[..want.len().min(MAX_GROUP_NAME_BYTES)])
        .then_some(u64::from_be_bytes(id))
}

async fn sender_task(
    cfg: Arc<TransportConfig>,
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Envelope>,
    stats: Arc<TransportStats>,
) {
    let mut backoff_ms = cfg.reconnect_min_ms.max(1);
    let mut buf = BytesMut::with_capacity(WRITE_BATCH_BYTES);
    loop {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                // While disconnected, drop what is queued: it is stale by the time we connect.
                while rx.try_recv().is_ok() {
                    stats.dropped_msgs.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(cfg.reconnect_max_ms.max(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        stats.connects.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(&handshake_frame(&cfg)).await.is_err() {
            continue;
        }
        backoff_ms = cfg.reconnect_min_ms.max(1);
        loop {
            let Some(first) = rx.recv().await else {
                return; // transport dropped
            };
            buf.clear();
            let mut msg = Some(first);
            while let Some(m) = msg.take() {
                let len = codec::encoded_len(&m.msg);
                if len > cfg.max_frame_bytes as usize {
                    tracing::warn!(to = m.msg.to, len, "dropping message over max frame size");
                    stats.dropped_msgs.fetch_add(1, Ordering::Relaxed);
                } else {
                    buf.put_u32(len as u32);
                    codec::encode(&m.msg, m.aux, &mut buf);
                    stats.sent_msgs.fetch_add(1, Ordering::Relaxed);
                }
                if buf.len() < WRITE_BATCH_BYTES {
                    msg = rx.try_recv().ok();
                }
            }
            if stream.write_all(&buf).await.is_err() {
                break; // reconnect
            }
        }
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
    }
}

async fn accept_task(
    cfg: Arc<TransportConfig>,
    listener: TcpListener,
    inbound: mpsc::Sender<Envelope>,
    stats: Arc<TransportStats>,
) {
    // Connection tasks are tracked so dropping the transport (abort) also closes them.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => {
                let Ok((stream, _)) = acc else {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(cfg.reconnect_min_ms.max(1))).await;
                    continue;
                };
                if conns.len() >= MAX_INBOUND_CONNS {
                    tracing::warn!("too many inbound connections; refusing one");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                conns.spawn(conn_task(
                    Arc::clone(&cfg),
                    stream,
                    inbound.clone(),
                    Arc::clone(&stats),
                ));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Reads length-prefixed frames from the socket straight into one buffer and splits each
/// large frame off it: no zeroed buffer per frame and no copy of a follower's batches of
/// entries. Frames split off share the chunk they were read into, which lives as long as the
/// last of them (a follower's entry cache keeps them), so small frames are copied out
/// instead: one entry of a few hundred bytes must not pin a 64 KiB chunk (at 2,000 sends/s
/// that pinned ~4 KiB of touched memory per entry, 7 MB/s of follower RSS, none of it
/// counted by the entry cache's byte limit). Frames that decode into plain fields (responses,
/// votes, heartbeats) cannot pin anything and are split off without a copy.
struct FrameReader<R> {
    stream: R,
    buf: BytesMut,
}

/// Frames up to this size are copied out of the read buffer (see [`FrameReader`]); a frame
/// split off instead fills at least a quarter of the chunk it pins.
const MAX_COPIED_FRAME_BYTES: usize = READ_CHUNK_BYTES / 4;
/// A read goes into the buffer's spare room as long as it has this much; below that, a new
/// chunk (or the reclaimed front of this one) is reserved first.
const MIN_READ_ROOM_BYTES: usize = 16 * 1024;

impl<R: tokio::io::AsyncRead + Unpin> FrameReader<R> {
    fn new(stream: R) -> FrameReader<R> {
        FrameReader {
            stream,
            buf: BytesMut::new(),
        }
    }

    async fn next(&mut self, max_frame_bytes: u32) -> Result<Bytes, &'static str> {
        loop {
            let want = match self.buf.get(..4) {
                Some(head) => {
                    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                    if len > max_frame_bytes {
                        return Err("frame over max size");
                    }
                    let (len, total) = (len as usize, 4 + len as usize);
                    if self.buf.len() >= total {
                        self.buf.advance(4);
                        // Only frames whose messages keep slices of them can pin the chunk;
                        // the others are split off for free and dropped once decoded.
                        if len <= MAX_COPIED_FRAME_BYTES
                            && codec::keeps_frame_bytes(&self.buf[..len])
                        {
                            let frame = Bytes::copy_from_slice(&self.buf[..len]);
                            self.buf.advance(len);
                            return Ok(frame);
                        }
                        return Ok(self.buf.split_to(len).freeze());
                    }
                    total - self.buf.len()
                }
                None => 4 - self.buf.len(),
            };
            // Bounded: `want` is at most one frame of `max_frame_bytes`.
            if self.buf.capacity() - self.buf.len() < want.max(MIN_READ_ROOM_BYTES) {
                self.buf.reserve(want.max(READ_CHUNK_BYTES));
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|_| "connection closed")?;
            if n == 0 {
                return Err("connection closed");
            }
        }
    }
}

async fn conn_task(
    cfg: Arc<TransportConfig>,
    stream: TcpStream,
    inbound: mpsc::Sender<Envelope>,
    stats: Arc<TransportStats>,
) {
    let mut r = FrameReader::new(stream);
    let Ok(hs) = r.next(1024).await else {
        return;
    };
    let Some(peer) = parse_handshake(&hs, &cfg.group) else {
        tracing::warn!("rejecting connection with bad handshake");
        return;
    };
    if !cfg.peers.iter().any(|p| p.0 == peer) {
        tracing::warn!(peer, "rejecting connection from unknown peer");
        return;
    }
    loop {
        let frame = match r.next(cfg.max_frame_bytes).await {
            Ok(f) => f,
            Err(why) => {
                tracing::debug!(peer, why, "peer connection ended");
                return;
            }
        };
        match codec::decode(frame) {
            Ok((msg, aux)) if msg.from == peer && msg.to == cfg.self_id => {
                stats.received_msgs.fetch_add(1, Ordering::Relaxed);
                if inbound.send(Envelope { msg, aux }).await.is_err() {
                    return; // node gone
                }
            }
            Ok(_) => {
                stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer, "message with wrong from/to; closing");
                return;
            }
            Err(e) => {
                stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer, error = %e, "corrupt frame; closing connection");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// A frame's payload of `len` bytes with message tag `tag`, the rest filled with `fill`.
    fn tagged(tag: u8, len: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![fill; len];
        v[codec::TAG_OFFSET] = tag;
        v
    }

    /// Small AppendEntries frames come out as their own allocations, so keeping their
    /// entries (a follower's entry cache does) pins no read chunk; large frames, and small
    /// frames that decode into plain fields, are split off without a copy.
    #[tokio::test]
    async fn small_frames_are_copied_out_and_large_ones_shared() {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let mut r = FrameReader::new(rx);
        let small: Vec<Vec<u8>> = (0..200u32)
            .map(|i| tagged(codec::TAG_APPEND, 300, i as u8))
            .collect();
        let large = tagged(codec::TAG_APPEND, MAX_COPIED_FRAME_BYTES + 1, 7);
        let reply = tagged(codec::TAG_APPEND_RESP, 60, 9);
        let mut wire = Vec::new();
        for s in &small {
            wire.extend(framed(s));
        }
        wire.extend(framed(&large));
        wire.extend(framed(&small[0]));
        wire.extend(framed(&reply));
        tx.write_all(&wire).await.expect("write");

        let mut kept = Vec::new();
        for s in &small {
            let f = r.next(1 << 20).await.expect("frame");
            assert_eq!(&f[..], &s[..]);
            assert!(f.is_unique(), "a small frame shares the read buffer");
            kept.push(f);
        }
        let big = r.next(1 << 20).await.expect("frame");
        assert_eq!(&big[..], &large[..]);
        assert!(!big.is_unique(), "a large frame was copied");
        let last = r.next(1 << 20).await.expect("frame");
        assert_eq!(&last[..], &small[0][..]);
        assert!(last.is_unique());
        let f = r.next(1 << 20).await.expect("frame");
        assert_eq!(&f[..], &reply[..]);
        assert!(!f.is_unique(), "a reply was copied");
        drop(tx);
        assert_eq!(r.next(1 << 20).await, Err("connection closed"));
    }

    /// A frame that arrives a byte at a time still comes out whole, and an oversized length
    /// is refused before anything is buffered for it.
    #[tokio::test]
    async fn frames_split_across_reads_and_oversized_ones() {
        let (mut tx, rx) = tokio::io::duplex(16);
        let mut r = FrameReader::new(rx);
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let wire = framed(&payload);
        let writer = tokio::spawn(async move {
            for b in wire {
                tx.write_all(&[b]).await.expect("write");
            }
            tx.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
            tx
        });
        assert_eq!(&r.next(1 << 20).await.expect("frame")[..], &payload[..]);
        assert_eq!(r.next(1 << 20).await, Err("frame over max size"));
        drop(writer.await.expect("join"));
    }
}
