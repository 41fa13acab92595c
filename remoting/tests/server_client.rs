//! Server + client on 127.0.0.1: correlation, oneway, error codes, limits, bad frames,
//! server→client requests, timeouts. Every wait is bounded and event-driven.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use remoting::codes::{request, response};
use remoting::command::SerializeType;
use remoting::frame::{encode_frame, RemotingCodec};
use remoting::{
    processor_fn, ClientConfig, Dispatcher, ProcessError, RemotingClient, RemotingCommand,
    RemotingError, RemotingServer, ServerConfig, Shutdown,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::Decoder;

const ECHO: i32 = 1000;
const FAIL: i32 = 1001;
const PANIC: i32 = 1002;
const BLOCK: i32 = 1003;
const SILENT: i32 = 1004;
const RECORD: i32 = 1005;
const ASK_CLIENT: i32 = 1006;
const BIG: i32 = 1007;
const PARTS: i32 = 1008;

/// Generous bound for any single wait on a loaded 2-core machine.
const WAIT_MS: u64 = 10_000;

struct Harness {
    addr: SocketAddr,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<()>,
    /// Receives the opaque of every RECORD request the server processed.
    recorded: mpsc::UnboundedReceiver<i32>,
    /// BLOCK requests report here when they start, then wait for a permit.
    started: mpsc::UnboundedReceiver<()>,
    release: Arc<Semaphore>,
}

async fn start(config: ServerConfig) -> Harness {
    let (rec_tx, recorded) = mpsc::unbounded_channel();
    let (start_tx, started) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let mut d = Dispatcher::new();
    d.register(
        ECHO,
        processor_fn(|_ctx, req: RemotingCommand| async move {
            if let Some(ms) = req.ext("delayMs").and_then(|v| v.parse::<u64>().ok()) {
                // The delay is the behaviour under test (out-of-order completion).
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let mut resp =
                RemotingCommand::response_to(&req, response::SUCCESS).with_body(req.body.clone());
            resp.ext_fields = req.ext_fields.clone();
            Ok(Some(resp))
        }),
    );
    d.register(
        FAIL,
        processor_fn(|_ctx, _req| async move { Err(ProcessError("boom".into())) }),
    );
    d.register(
        PANIC,
        processor_fn(|_ctx, _req| async move {
            if std::hint::black_box(true) {
                panic!("processor exploded");
            }
            Ok(None)
        }),
    );
    let rel = release.clone();
    d.register(
        BLOCK,
        processor_fn(move |_ctx, req: RemotingCommand| {
            let rel = rel.clone();
            let start_tx = start_tx.clone();
            async move {
                let _ = start_tx.send(());
                let permit = rel
                    .acquire()
                    .await
                    .map_err(|_| ProcessError("closed".into()))?;
                permit.forget();
                Ok(Some(RemotingCommand::response_to(&req, response::SUCCESS)))
            }
        }),
    );
    d.register(SILENT, processor_fn(|_ctx, _req| async move { Ok(None) }));
    d.register(
        BIG,
        processor_fn(|_ctx, req: RemotingCommand| async move {
            Ok(Some(
                RemotingCommand::response_to(&req, response::SUCCESS).with_body(vec![0u8; 4096]),
            ))
        }),
    );
    d.register(
        PARTS,
        processor_fn(|_ctx, req: RemotingCommand| async move {
            // The request body (`times` times) cut into parts of `partBytes`, an empty part
            // after each, answered as a multi-part body.
            let size = req
                .ext("partBytes")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let times = req
                .ext("times")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1);
            let mut parts = Vec::new();
            for _ in 0..times {
                let mut at = 0;
                while at < req.body.len() {
                    let end = (at + size).min(req.body.len());
                    parts.push(req.body.slice(at..end));
                    parts.push(bytes::Bytes::new());
                    at = end;
                }
            }
            Ok(Some(
                RemotingCommand::response_to(&req, response::SUCCESS).with_body_parts(parts),
            ))
        }),
    );
    d.register(
        RECORD,
        processor_fn(move |_ctx, req: RemotingCommand| {
            let rec_tx = rec_tx.clone();
            async move {
                let _ = rec_tx.send(req.opaque);
                // A response the server must drop when the request was oneway.
                Ok(Some(RemotingCommand::response_to(&req, response::SUCCESS)))
            }
        }),
    );
    d.register(
        ASK_CLIENT,
        processor_fn(|ctx, req: RemotingCommand| async move {
            // Server → client request on the client's own connection.
            let ask = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO)
                .with_body(req.body.clone());
            let answer = ctx.invoke(ask, WAIT_MS).await?;
            Ok(Some(
                RemotingCommand::response_to(&req, answer.code).with_body(answer.body),
            ))
        }),
    );
    let server = RemotingServer::bind("127.0.0.1:0".parse().unwrap(), config, d)
        .await
        .unwrap();
    let addr = server.local_addr();
    let shutdown = Shutdown::new();
    let server = tokio::spawn(server.run(shutdown.clone()));
    Harness {
        addr,
        shutdown,
        server,
        recorded,
        started,
        release,
    }
}

async fn client(addr: SocketAddr) -> RemotingClient {
    RemotingClient::connect(&addr.to_string(), ClientConfig::default())
        .await
        .unwrap()
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_millis(WAIT_MS), fut)
        .await
        .expect("bounded wait exceeded")
}

/// Read exactly one frame from a raw socket.
async fn read_frame(stream: &mut TcpStream) -> Option<RemotingCommand> {
    let mut codec = RemotingCodec::default();
    let mut buf = BytesMut::new();
    loop {
        if let Some(cmd) = codec.decode(&mut buf).unwrap() {
            return Some(cmd);
        }
        let mut chunk = [0u8; 4096];
        let n = within(stream.read(&mut chunk)).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// True once the peer has closed the socket (EOF or reset), bounded.
async fn peer_closed(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    loop {
        match within(stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_matched_by_opaque() {
    let h = start(ServerConfig::default()).await;
    let c = client(h.addr).await;
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = RemotingCommand::request(ECHO).with_body(format!("req-{i}"));
            // Later requests finish first, forcing out-of-order responses.
            req.ext_fields
                .insert("delayMs", ((64 - i) % 16 * 3).to_string());
            let resp = c.invoke(req, WAIT_MS).await.unwrap();
            assert_eq!(resp.code, response::SUCCESS);
            assert!(resp.is_response());
            assert_eq!(&resp.body[..], format!("req-{i}").as_bytes());
        }));
    }
    for t in tasks {
        within(t).await.unwrap();
    }
    assert_eq!(c.connection().pending_requests(), 0);
    h.shutdown.trigger();
    within(h.server).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_requests_get_binary_responses() {
    let h = start(ServerConfig::default()).await;
    let c = client(h.addr).await;
    let mut req = RemotingCommand::request(ECHO).with_body("bin");
    req.serialize_type = SerializeType::RocketMq;
    req.ext_fields.insert("k", "v");
    let resp = c.invoke(req, WAIT_MS).await.unwrap();
    assert_eq!(resp.serialize_type, SerializeType::RocketMq);
    assert_eq!(resp.ext("k"), Some("v"));
    assert_eq!(&resp.body[..], b"bin");
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_codes_unknown_failure_panic() {
    let h = start(ServerConfig::default()).await;
    let c = client(h.addr).await;

    let resp = c
        .invoke(RemotingCommand::request(999), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 999 not supported")
    );

    let resp = c
        .invoke(RemotingCommand::request(FAIL), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert_eq!(resp.remark.as_deref(), Some("boom"));

    let resp = c
        .invoke(RemotingCommand::request(PANIC), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("processor exploded"));

    // The connection and the server survived the panic.
    let resp = c
        .invoke(RemotingCommand::request(ECHO).with_body("alive"), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(&resp.body[..], b"alive");
    assert!(!c.is_closed());
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_requests_are_never_answered() {
    let mut h = start(ServerConfig::default()).await;
    let mut raw = TcpStream::connect(h.addr).await.unwrap();

    // A oneway request to a processor that returns a response anyway…
    let mut oneway = RemotingCommand::request(RECORD);
    oneway.opaque = 11;
    oneway.mark_oneway();
    raw.write_all(&encode_frame(&oneway).unwrap())
        .await
        .unwrap();
    assert_eq!(within(h.recorded.recv()).await, Some(11));
    // …a oneway request with an unknown code and one to a failing processor…
    let mut unknown = RemotingCommand::request(999);
    unknown.opaque = 12;
    unknown.mark_oneway();
    let mut failing = RemotingCommand::request(FAIL);
    failing.opaque = 13;
    failing.mark_oneway();
    raw.write_all(&encode_frame(&unknown).unwrap())
        .await
        .unwrap();
    raw.write_all(&encode_frame(&failing).unwrap())
        .await
        .unwrap();
    // …then a normal request after them, to a processor that records its arrival.
    let mut normal = RemotingCommand::request(RECORD);
    normal.opaque = 14;
    raw.write_all(&encode_frame(&normal).unwrap())
        .await
        .unwrap();
    assert_eq!(within(h.recorded.recv()).await, Some(14));
    // The first frame back is the normal request's answer; nothing else follows it
    // (checked with an echo round-trip that must come next).
    let first = read_frame(&mut raw).await.unwrap();
    assert_eq!(first.opaque, 14);
    let mut echo = RemotingCommand::request(ECHO);
    echo.opaque = 15;
    raw.write_all(&encode_frame(&echo).unwrap()).await.unwrap();
    let second = read_frame(&mut raw).await.unwrap();
    assert_eq!(second.opaque, 15);

    // Through the client API too.
    let c = client(h.addr).await;
    c.invoke_oneway(RemotingCommand::request(RECORD))
        .await
        .unwrap();
    assert!(within(h.recorded.recv()).await.is_some());
    assert_eq!(c.connection().pending_requests(), 0);
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limit_answers_system_busy() {
    let mut h = start(ServerConfig {
        max_in_flight_per_connection: 2,
        ..ServerConfig::default()
    })
    .await;
    let c = client(h.addr).await;
    let blocked: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.invoke(RemotingCommand::request(BLOCK), WAIT_MS).await })
        })
        .collect();
    // Both are being processed (each holds an in-flight slot).
    within(h.started.recv()).await.unwrap();
    within(h.started.recv()).await.unwrap();

    let busy = c
        .invoke(RemotingCommand::request(ECHO), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(busy.code, response::SYSTEM_BUSY);

    h.release.add_permits(2);
    for b in blocked {
        assert_eq!(within(b).await.unwrap().unwrap().code, response::SUCCESS);
    }
    // Slots are free again.
    let ok = c
        .invoke(RemotingCommand::request(ECHO), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(ok.code, response::SUCCESS);
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() {
    let h = start(ServerConfig {
        max_frame_size_bytes: 1024,
        ..ServerConfig::default()
    })
    .await;
    let good = client(h.addr).await;
    let ok = good
        .invoke(RemotingCommand::request(ECHO), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(ok.code, response::SUCCESS);

    // Oversize: a length claiming 1 MB.
    let mut oversize = TcpStream::connect(h.addr).await.unwrap();
    oversize
        .write_all(&[0x00, 0x10, 0x00, 0x00, 0, 0, 0, 2, b'{', b'}'])
        .await
        .unwrap();
    assert!(peer_closed(&mut oversize).await);

    // A frame under the limit is served; a frame over it closes that connection. (The
    // exact boundary is checked in golden.rs; here the opaque's digit count varies.)
    let under = {
        let probe = encode_frame(&RemotingCommand::request(ECHO)).unwrap();
        RemotingCommand::request(ECHO).with_body(vec![1u8; 1024 - probe.len() - 16])
    };
    let resp = good.invoke(under.clone(), WAIT_MS).await.unwrap();
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(resp.body, under.body);
    let mut over = TcpStream::connect(h.addr).await.unwrap();
    let frame = encode_frame(&under.with_body(vec![1u8; 1024])).unwrap();
    over.write_all(&frame).await.unwrap();
    assert!(peer_closed(&mut over).await);

    // A response too large for the frame limit becomes a SYSTEM_ERROR, not a silent drop.
    let resp = good
        .invoke(RemotingCommand::request(BIG), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(resp.body.is_empty());

    // Malformed JSON header.
    let mut garbage = TcpStream::connect(h.addr).await.unwrap();
    garbage
        .write_all(&[0, 0, 0, 7, 0, 0, 0, 3, b'{', b'x', b'}'])
        .await
        .unwrap();
    assert!(peer_closed(&mut garbage).await);

    // Negative length.
    let mut negative = TcpStream::connect(h.addr).await.unwrap();
    negative.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    assert!(peer_closed(&mut negative).await);

    // The well-behaved connection still works.
    let ok = good
        .invoke(RemotingCommand::request(ECHO).with_body("still"), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(&ok.body[..], b"still");
    assert!(!good.is_closed());
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_invokes_the_client_on_its_own_connection() {
    let h = start(ServerConfig::default()).await;
    let c = client(h.addr).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    c.set_request_handler(processor_fn(move |_ctx, req: RemotingCommand| {
        let seen_tx = seen_tx.clone();
        async move {
            let _ = seen_tx.send(req.code);
            let mut body = b"client says: ".to_vec();
            body.extend_from_slice(&req.body);
            Ok(Some(
                RemotingCommand::response_to(&req, response::SUCCESS).with_body(body),
            ))
        }
    }));
    let resp = c
        .invoke(
            RemotingCommand::request(ASK_CLIENT).with_body("hello"),
            WAIT_MS,
        )
        .await
        .unwrap();
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(&resp.body[..], b"client says: hello");
    assert_eq!(
        within(seen.recv()).await,
        Some(request::GET_CONSUMER_RUNNING_INFO)
    );
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_handler_answers_not_supported() {
    let h = start(ServerConfig::default()).await;
    let c = client(h.addr).await;
    let resp = c
        .invoke(RemotingCommand::request(ASK_CLIENT), WAIT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED);
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_timeout_cleans_up_pending_entry() {
    let h = start(ServerConfig::default()).await;
    let c = client(h.addr).await;
    let err = c
        .invoke(RemotingCommand::request(SILENT), 100)
        .await
        .unwrap_err();
    assert!(matches!(err, RemotingError::Timeout { timeout_ms: 100 }));
    assert_eq!(c.connection().pending_requests(), 0);
    // A dropped (cancelled) invoke cleans up too.
    let pending = {
        let c = c.clone();
        tokio::spawn(async move { c.invoke(RemotingCommand::request(SILENT), WAIT_MS).await })
    };
    // Wait until the request is registered, bounded.
    within(async {
        while c.connection().pending_requests() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    pending.abort();
    let _ = pending.await;
    assert_eq!(c.connection().pending_requests(), 0);
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_and_fails_pending() {
    let h = start(ServerConfig::default()).await;
    let c = client(h.addr).await;
    let pending = {
        let c = c.clone();
        tokio::spawn(async move { c.invoke(RemotingCommand::request(SILENT), WAIT_MS).await })
    };
    within(async {
        while c.connection().pending_requests() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    h.shutdown.trigger();
    within(h.server).await.unwrap();
    within(c.closed()).await;
    assert!(matches!(
        within(pending).await.unwrap(),
        Err(RemotingError::ConnectionClosed)
    ));
    assert!(matches!(
        c.invoke(RemotingCommand::request(ECHO), WAIT_MS).await,
        Err(RemotingError::ConnectionClosed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_extra_connections() {
    let h = start(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    })
    .await;
    let first = client(h.addr).await;
    assert_eq!(
        first
            .invoke(RemotingCommand::request(ECHO), WAIT_MS)
            .await
            .unwrap()
            .code,
        response::SUCCESS
    );
    let mut second = TcpStream::connect(h.addr).await.unwrap();
    assert!(peer_closed(&mut second).await);
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_round_trip() {
    let h = start(ServerConfig::default()).await;
    let c = client(h.addr).await;
    let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let resp = c
        .invoke(
            RemotingCommand::request(ECHO).with_body(body.clone()),
            WAIT_MS,
        )
        .await
        .unwrap();
    assert_eq!(&resp.body[..], &body[..]);
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_responses_oneway_to_client_and_close_hook() {
    use remoting::{ConnectionContext, ProcessFuture, RequestProcessor};

    struct Deferred {
        closed_tx: mpsc::UnboundedSender<u64>,
    }
    impl RequestProcessor for Deferred {
        fn process(&self, ctx: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
            Box::pin(async move {
                // Tell the client something (oneway), then answer later from another task,
                // like a held long-poll pull.
                let notify = RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED);
                ctx.send_oneway(notify).await?;
                tokio::spawn(async move {
                    let resp = RemotingCommand::response_to(&req, response::PULL_NOT_FOUND);
                    let _ = ctx.send_response(resp).await;
                });
                Ok(None)
            })
        }
        fn on_connection_closed(&self, ctx: &ConnectionContext) {
            let _ = self.closed_tx.send(ctx.id());
        }
    }

    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
    let mut d = Dispatcher::new();
    d.register_many(
        &[request::PULL_MESSAGE, request::LITE_PULL_MESSAGE],
        Arc::new(Deferred { closed_tx }),
    );
    let server = RemotingServer::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default(), d)
        .await
        .unwrap();
    let addr = server.local_addr();
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));

    let c = client(addr).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    c.set_request_handler(processor_fn(move |_ctx, req: RemotingCommand| {
        let seen_tx = seen_tx.clone();
        async move {
            let _ = seen_tx.send((req.code, req.is_oneway()));
            // Must not be sent back: the request was oneway.
            Ok(Some(RemotingCommand::response_to(&req, response::SUCCESS)))
        }
    }));
    for code in [request::PULL_MESSAGE, request::LITE_PULL_MESSAGE] {
        let resp = c
            .invoke(RemotingCommand::request(code), WAIT_MS)
            .await
            .unwrap();
        assert_eq!(resp.code, response::PULL_NOT_FOUND);
        assert_eq!(
            within(seen.recv()).await,
            Some((request::NOTIFY_CONSUMER_IDS_CHANGED, true))
        );
    }
    c.close();
    // The server notices the close and runs the processor's hook.
    assert!(within(closed_rx.recv()).await.is_some());
    shutdown.trigger();
}

/// A multi-part body arrives as one body, in order, whether it is copied next to its header
/// (small) or written with vectored writes (large, many windows of slices, partial writes
/// under a slow reader), also when other responses are queued around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_part_bodies_arrive_whole_and_in_order() {
    let h = start(ServerConfig::default()).await;
    let c = client(h.addr).await;
    let pattern = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 7 + i / 251) as u8).collect() };
    // (body bytes, part bytes): inline, just above inline, many slices, megabytes.
    let cases = [
        (100, 7),
        (5_000, 1_000),
        (300 * 1024, 1024),
        (3 * 1024 * 1024 + 5, 4093),
    ];
    for (len, part) in cases {
        let body = pattern(len);
        let mut req = RemotingCommand::request(PARTS).with_body(body.clone());
        req.ext_fields.insert("partBytes", part.to_string());
        // Echoes queued on the same connection around the multi-part response.
        let echoes: Vec<_> = (0..4)
            .map(|i| {
                c.invoke(
                    RemotingCommand::request(ECHO).with_body(format!("echo-{i}")),
                    WAIT_MS,
                )
            })
            .collect();
        let (resp, echoed) = within(async {
            tokio::join!(c.invoke(req, WAIT_MS), futures::future::join_all(echoes))
        })
        .await;
        let resp = resp.unwrap();
        assert_eq!(resp.code, response::SUCCESS);
        assert_eq!(
            resp.body.len(),
            len,
            "body of {len} bytes in {part}-byte parts"
        );
        assert!(resp.body[..] == body[..], "body of {len} bytes differs");
        for (i, e) in echoed.into_iter().enumerate() {
            assert_eq!(e.unwrap().body, format!("echo-{i}").as_bytes());
        }
    }

    // More than the server's send buffer can grow to (4 MiB by default) towards a reader
    // with a 4 KiB receive buffer: vectored writes stop part-way through a slice and must
    // resume at the right byte.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(h.addr).await.unwrap();
    let body = pattern(6 * 1024 * 1024 + 3);
    let mut req = RemotingCommand::request(PARTS).with_body(body.clone());
    req.opaque = 42;
    req.ext_fields.insert("partBytes", "4093");
    slow.write_all(&encode_frame(&req).unwrap()).await.unwrap();
    let resp = read_frame(&mut slow).await.expect("a response");
    assert_eq!(resp.opaque, 42);
    assert_eq!(resp.body.len(), body.len());
    assert!(resp.body[..] == body[..], "a slowly read body differs");
    h.shutdown.trigger();
}

/// The frame limit counts every part of a body: a response too large in parts becomes a
/// SYSTEM_ERROR like any other, and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_part_bodies_count_against_the_frame_limit() {
    let h = start(ServerConfig {
        max_frame_size_bytes: 64 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let c = client(h.addr).await;
    let parts_of = |times: usize| {
        let mut req = RemotingCommand::request(PARTS).with_body(vec![3u8; 40 * 1024]);
        req.ext_fields.insert("partBytes", "1024");
        req.ext_fields.insert("times", times.to_string());
        req
    };
    let once = c.invoke(parts_of(1), WAIT_MS).await.unwrap();
    assert_eq!(once.code, response::SUCCESS);
    assert_eq!(once.body.len(), 40 * 1024);
    let twice = c.invoke(parts_of(2), WAIT_MS).await.unwrap();
    assert_eq!(
        twice.code,
        response::SYSTEM_ERROR,
        "80 KiB in parts > 64 KiB"
    );
    assert!(twice.body.is_empty());
    let again = c.invoke(parts_of(1), WAIT_MS).await.unwrap();
    assert_eq!(again.code, response::SUCCESS);
    h.shutdown.trigger();

    // The whole-frame encoder agrees.
    let mut frame = RemotingCommand::request(ECHO);
    frame.body_tail = vec![bytes::Bytes::from(vec![1u8; 40 * 1024]); 2];
    assert_eq!(frame.body_len(), 80 * 1024);
    let mut dst = BytesMut::new();
    let mut limited = RemotingCodec::new(64 * 1024);
    assert!(tokio_util::codec::Encoder::encode(&mut limited, &frame, &mut dst).is_err());
    let encoded = encode_frame(&frame).unwrap();
    let decoded = RemotingCodec::default()
        .decode(&mut BytesMut::from(&encoded[..]))
        .unwrap()
        .unwrap();
    assert_eq!(decoded.body, frame.body_contiguous());
}
