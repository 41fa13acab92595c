//! A fault-injecting TCP proxy on 127.0.0.1 for partition tests.
//!
//! One [`Proxy`] forwards every connection accepted on its listen port to a target port. Each
//! direction (`Forward` = client→target, `Backward` = target→client) has a [`Fault`] switch
//! that can be flipped at runtime:
//!
//! - `Pass`: bytes are forwarded.
//! - `Blackhole`: bytes are read and discarded; connections stay open (a partition in which
//!   packets vanish, no RST). A connection that discarded anything is closed when the
//!   direction is restored, because its byte stream lost a piece of some frame (a real healed
//!   partition would have timed the connection out too).
//! - `Drop`: every open connection is closed at once and new ones are accepted and closed
//!   immediately (a TCP connection cannot be half-refused, so `Drop` on either direction
//!   closes whole connections).
//!
//! All proxies of a test share one [`ProxyRuntime`] (a one-worker tokio runtime), so the
//! blocking test code can flip switches from any thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{HarnessError, Result};

/// Copy buffer per direction per connection.
const PUMP_BUFFER_BYTES: usize = 64 * 1024;
/// Connections open at once per proxy; more are closed at accept (bounded resources).
pub const MAX_CONNECTIONS_PER_PROXY: u64 = 256;
/// Connect timeout towards the target.
const CONNECT_TIMEOUT_MS: u64 = 2_000;

/// Which way bytes flow through a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting client to the target.
    Forward,
    /// From the target back to the client.
    Backward,
}

/// What the proxy does with bytes flowing in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Blackhole,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Faults {
    forward: Fault,
    backward: Fault,
}

impl Faults {
    fn get(self, dir: Direction) -> Fault {
        match dir {
            Direction::Forward => self.forward,
            Direction::Backward => self.backward,
        }
    }

    fn any_drop(self) -> bool {
        self.forward == Fault::Drop || self.backward == Fault::Drop
    }
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub accepted: u64,
    pub refused: u64,
    pub open: u64,
    pub forwarded_bytes: u64,
    pub backward_bytes: u64,
    pub discarded_bytes: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    open: AtomicU64,
    forwarded_bytes: AtomicU64,
    backward_bytes: AtomicU64,
    discarded_bytes: AtomicU64,
}

/// The runtime all proxies of a test run on.
pub struct ProxyRuntime {
    rt: tokio::runtime::Runtime,
}

impl ProxyRuntime {
    pub fn new() -> Result<ProxyRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("proxy")
            .enable_all()
            .build()?;
        Ok(ProxyRuntime { rt })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }
}

struct Shared {
    faults: watch::Sender<Faults>,
    target: Mutex<SocketAddr>,
    /// Cancelled (and replaced) whenever a `Drop` fault is set: closes every open connection.
    epoch: Mutex<CancellationToken>,
    counters: Counters,
}

pub struct Proxy {
    listen_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl Proxy {
    /// Listen on a free 127.0.0.1 port and forward to `target`.
    pub fn start(rt: &ProxyRuntime, target: SocketAddr) -> Result<Proxy> {
        Self::start_on(rt, SocketAddr::from(([127, 0, 0, 1], 0)), target)
    }

    /// Listen on `listen` (must be 127.0.0.1) and forward to `target` (must be 127.0.0.1).
    pub fn start_on(rt: &ProxyRuntime, listen: SocketAddr, target: SocketAddr) -> Result<Proxy> {
        for a in [listen, target] {
            if !a.ip().is_loopback() {
                return Err(HarnessError::Unexpected(format!(
                    "proxy address {a} is not loopback"
                )));
            }
        }
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let listen_addr = std_listener.local_addr()?;
        let listener = {
            let _guard = rt.handle().enter();
            TcpListener::from_std(std_listener)?
        };
        let shutdown = CancellationToken::new();
        let (faults, _) = watch::channel(Faults {
            forward: Fault::Pass,
            backward: Fault::Pass,
        });
        let shared = Arc::new(Shared {
            faults,
            target: Mutex::new(target),
            epoch: Mutex::new(shutdown.child_token()),
            counters: Counters::default(),
        });
        rt.handle()
            .spawn(accept_loop(listener, shared.clone(), shutdown.clone()));
        Ok(Proxy {
            listen_addr,
            shared,
            shutdown,
        })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn target(&self) -> SocketAddr {
        *lock(&self.shared.target)
    }

    /// Point new connections at another target (existing ones are closed).
    pub fn set_target(&self, target: SocketAddr) {
        *lock(&self.shared.target) = target;
        self.close_all();
    }

    /// Set the fault of one direction.
    pub fn set(&self, dir: Direction, fault: Fault) {
        self.shared.faults.send_modify(|f| match dir {
            Direction::Forward => f.forward = fault,
            Direction::Backward => f.backward = fault,
        });
        if fault == Fault::Drop {
            self.close_all();
        }
    }

    /// Set the same fault in both directions.
    pub fn cut(&self, fault: Fault) {
        self.shared.faults.send_modify(|f| {
            f.forward = fault;
            f.backward = fault;
        });
        if fault == Fault::Drop {
            self.close_all();
        }
    }

    /// Both directions back to `Pass`.
    pub fn restore(&self) {
        self.cut(Fault::Pass);
    }

    pub fn fault(&self, dir: Direction) -> Fault {
        self.shared.faults.borrow().get(dir)
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
            forwarded_bytes: c.forwarded_bytes.load(Ordering::Relaxed),
            backward_bytes: c.backward_bytes.load(Ordering::Relaxed),
            discarded_bytes: c.discarded_bytes.load(Ordering::Relaxed),
        }
    }

    /// Close every open connection now (new ones are still accepted unless a direction is
    /// `Drop`).
    pub fn close_all(&self) {
        let mut epoch = lock(&self.shared.epoch);
        epoch.cancel();
        *epoch = self.shutdown.child_token();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A poisoned lock only means another thread panicked mid-assignment of a plain value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let Ok((client, _)) = accepted else {
            // Transient accept errors (EMFILE...): keep serving.
            tokio::task::yield_now().await;
            continue;
        };
        let c = &shared.counters;
        if shared.faults.borrow().any_drop()
            || c.open.load(Ordering::Relaxed) >= MAX_CONNECTIONS_PER_PROXY
        {
            c.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        c.accepted.fetch_add(1, Ordering::Relaxed);
        let conn_token = lock(&shared.epoch).child_token();
        let target = *lock(&shared.target);
        tokio::spawn(serve(client, target, shared.clone(), conn_token));
    }
}

async fn serve(
    client: TcpStream,
    target: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
) {
    let connect = tokio::time::timeout(
        std::time::Duration::from_millis(CONNECT_TIMEOUT_MS),
        TcpStream::connect(target),
    );
    let upstream = tokio::select! {
        _ = token.cancelled() => return,
        r = connect => match r {
            Ok(Ok(s)) => s,
            _ => return, // target down: closing the client is what a dead peer looks like
        },
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    shared.counters.open.fetch_add(1, Ordering::Relaxed);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let fwd = pump(cr, uw, Direction::Forward, shared.clone(), token.clone());
    let back = pump(ur, cw, Direction::Backward, shared.clone(), token.clone());
    tokio::join!(fwd, back);
    shared.counters.open.fetch_sub(1, Ordering::Relaxed);
}

/// Copy `src` to `dst` under the direction's fault switch; any end closes the whole
/// connection (cancels `token`).
async fn pump(
    mut src: OwnedReadHalf,
    mut dst: OwnedWriteHalf,
    dir: Direction,
    shared: Arc<Shared>,
    token: CancellationToken,
) {
    let mut faults = shared.faults.subscribe();
    let mut buf = vec![0u8; PUMP_BUFFER_BYTES];
    let mut tainted = false;
    loop {
        let fault = faults.borrow_and_update().get(dir);
        if fault == Fault::Drop || (fault == Fault::Pass && tainted) {
            break;
        }
        let n = tokio::select! {
            _ = token.cancelled() => break,
            changed = faults.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            r = src.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        // The switch may have moved while we were reading: apply the current one.
        match shared.faults.borrow().get(dir) {
            Fault::Pass if !tainted => {}
            Fault::Pass | Fault::Drop => break,
            Fault::Blackhole => {
                tainted = true;
                shared
                    .counters
                    .discarded_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
        }
        let wrote = tokio::select! {
            _ = token.cancelled() => break,
            r = dst.write_all(&buf[..n]) => r,
        };
        if wrote.is_err() {
            break;
        }
        let counter = match dir {
            Direction::Forward => &shared.counters.forwarded_bytes,
            Direction::Backward => &shared.counters.backward_bytes,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    token.cancel();
    let _ = dst.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};
    use std::time::{Duration, Instant};

    const IO_TIMEOUT_MS: u64 = 5_000;
    const WAIT_MS: u64 = 5_000;

    /// An echo server on a free port (std threads, one per connection, bounded by the test).
    fn echo_server() -> SocketAddr {
        let l = StdListener::bind("127.0.0.1:0").expect("bind echo");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for s in l.incoming().take(64) {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn connect(p: &Proxy) -> StdStream {
        let s = StdStream::connect(p.listen_addr()).expect("connect proxy");
        s.set_read_timeout(Some(Duration::from_millis(IO_TIMEOUT_MS)))
            .expect("timeout");
        s
    }

    fn roundtrip(s: &mut StdStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    /// True once the peer has closed `s` (read returns 0 or an error).
    fn wait_closed(s: &mut StdStream) -> bool {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        let mut buf = [0u8; 16];
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(_) => return true,
            }
        }
        false
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn forwards_both_directions_and_counts_bytes() {
        let rt = ProxyRuntime::new().expect("runtime");
        let p = Proxy::start(&rt, echo_server()).expect("proxy");
        let mut s = connect(&p);
        let got = roundtrip(&mut s, b"hello through the proxy").expect("roundtrip");
        assert_eq!(got, b"hello through the proxy");
        // 100 KiB: more than one pump buffer.
        let big: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
        let got = roundtrip(&mut s, &big).expect("big roundtrip");
        assert_eq!(got, big);
        let expected = (23 + big.len()) as u64;
        wait_for("counters", || {
            let st = p.stats();
            st.forwarded_bytes == expected && st.backward_bytes == expected
        });
        assert_eq!(p.stats().accepted, 1);
        assert_eq!(p.stats().discarded_bytes, 0);
    }

    #[test]
    fn blackhole_swallows_bytes_then_restore_closes_the_damaged_connection() {
        let rt = ProxyRuntime::new().expect("runtime");
        let p = Proxy::start(&rt, echo_server()).expect("proxy");
        let mut s = connect(&p);
        roundtrip(&mut s, b"ping").expect("before the cut");
        p.set(Direction::Backward, Fault::Blackhole);
        // The echo happens (forward passes) but the reply vanishes.
        s.write_all(b"lost").expect("write");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut buf = [0u8; 4];
        let r = s.read(&mut buf);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut),
            "blackholed reply arrived: {r:?}"
        );
        wait_for("discarded bytes", || p.stats().discarded_bytes == 4);
        assert_eq!(p.stats().open, 1, "blackhole keeps the connection open");
        p.restore();
        s.set_read_timeout(Some(Duration::from_millis(IO_TIMEOUT_MS)))
            .expect("timeout");
        assert!(wait_closed(&mut s), "damaged connection not closed");
        // A fresh connection works again.
        let mut s2 = connect(&p);
        assert_eq!(
            roundtrip(&mut s2, b"again").expect("after restore"),
            b"again"
        );
    }

    #[test]
    fn drop_closes_open_connections_and_refuses_new_ones_until_restored() {
        let rt = ProxyRuntime::new().expect("runtime");
        let p = Proxy::start(&rt, echo_server()).expect("proxy");
        let mut s = connect(&p);
        roundtrip(&mut s, b"ping").expect("before the cut");
        p.set(Direction::Forward, Fault::Drop);
        assert!(wait_closed(&mut s), "open connection survived Drop");
        let mut s2 = connect(&p);
        assert!(wait_closed(&mut s2), "new connection accepted during Drop");
        wait_for("refused count", || p.stats().refused >= 1);
        p.restore();
        let mut s3 = connect(&p);
        assert_eq!(roundtrip(&mut s3, b"back").expect("after restore"), b"back");
    }

    #[test]
    fn forward_blackhole_stops_requests_and_target_change_redirects() {
        let rt = ProxyRuntime::new().expect("runtime");
        let p = Proxy::start(&rt, echo_server()).expect("proxy");
        p.set(Direction::Forward, Fault::Blackhole);
        assert_eq!(p.fault(Direction::Forward), Fault::Blackhole);
        assert_eq!(p.fault(Direction::Backward), Fault::Pass);
        let mut s = connect(&p);
        s.write_all(b"nope").expect("write");
        wait_for("discarded bytes", || p.stats().discarded_bytes == 4);
        assert_eq!(p.stats().forwarded_bytes, 0);
        p.restore();
        let other = echo_server();
        p.set_target(other);
        assert_eq!(p.target(), other);
        assert!(wait_closed(&mut s), "set_target keeps old connections");
        let mut s2 = connect(&p);
        assert_eq!(roundtrip(&mut s2, b"new").expect("new target"), b"new");
    }

    #[test]
    fn refuses_non_loopback_addresses() {
        let rt = ProxyRuntime::new().expect("runtime");
        let r = Proxy::start(&rt, SocketAddr::from(([10, 0, 0, 1], 1)));
        assert!(r.is_err());
    }
}
