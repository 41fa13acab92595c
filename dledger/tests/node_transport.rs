//! Live transport on 127.0.0.1: delivery, reconnect after the peer restarts, rejection of
//! oversized frames, and dropping (not blocking) when a peer is down.

use std::net::SocketAddr;
use std::time::Duration;

use dledger::core::{Message, MsgKind};
use dledger::transport::{Envelope, Transport, TransportConfig};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], testkit::free_port()))
}

fn tcfg(id: u64, me: SocketAddr, peer: (u64, SocketAddr)) -> TransportConfig {
    TransportConfig {
        self_id: id,
        group: "g".into(),
        listen_addr: me,
        peers: vec![peer],
        max_frame_bytes: 1 << 20,
        send_queue_msgs: 64,
        recv_queue_msgs: 64,
        reconnect_min_ms: 5,
        reconnect_max_ms: 50,
    }
}

fn hb(from: u64, to: u64, ctx: u64) -> Envelope {
    Envelope {
        msg: Message {
            from,
            to,
            term: 1,
            kind: MsgKind::Heartbeat { commit: 0, ctx },
        },
        aux: 0,
    }
}

/// Keep sending until the receiver gets a message (the first ones may be dropped while the
/// connection is being set up — Raft tolerates that, and so does this test).
async fn deliver(t: &Transport, rx: &mut mpsc::Receiver<Envelope>, from: u64, to: u64) -> Envelope {
    for ctx in 0..400u64 {
        t.send(hb(from, to, ctx));
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(25), rx.recv()).await {
            return m;
        }
    }
    panic!("no delivery within 10 s");
}

#[tokio::test]
async fn delivers_and_reconnects() {
    let (a, b) = (free_addr(), free_addr());
    let (txa, _rxa) = mpsc::channel(64);
    let (txb, mut rxb) = mpsc::channel(64);
    let ta = Transport::start(tcfg(1, a, (2, b)), txa).await.unwrap();
    let tb = Transport::start(tcfg(2, b, (1, a)), txb).await.unwrap();
    let got = deliver(&ta, &mut rxb, 1, 2).await;
    assert_eq!((got.msg.from, got.msg.to), (1, 2));
    // Restart b: a reconnects by itself.
    drop(tb);
    drop(rxb);
    let (txb, mut rxb) = mpsc::channel(64);
    let mut tb = None;
    for _ in 0..100 {
        match Transport::start(tcfg(2, b, (1, a)), txb.clone()).await {
            Ok(t) => {
                tb = Some(t);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let _tb = tb.expect("rebind");
    let got = deliver(&ta, &mut rxb, 1, 2).await;
    assert_eq!(got.msg.from, 1);
    assert!(
        ta.stats()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

/// Handshake frame of node `from` for group "g".
fn handshake(from: u64) -> Vec<u8> {
    let mut hs = vec![];
    hs.extend_from_slice(&0x444c_4752u32.to_be_bytes());
    hs.push(1);
    hs.extend_from_slice(&from.to_be_bytes());
    hs.extend_from_slice(&1u16.to_be_bytes());
    hs.push(b'g');
    let mut frame = (hs.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hs);
    frame
}

/// Frames arrive however TCP cuts them: several in one segment, one split over many.
#[tokio::test]
async fn frames_cut_anywhere_by_the_stream_arrive_whole_and_in_order() {
    let a = free_addr();
    let (txa, mut rxa) = mpsc::channel(64);
    let ta = Transport::start(tcfg(1, a, (2, free_addr())), txa)
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(ta.local_addr())
        .await
        .unwrap();
    s.set_nodelay(true).unwrap();
    let mut bytes = handshake(2);
    for ctx in 0..20u64 {
        let mut frame = bytes::BytesMut::new();
        dledger::transport::codec::encode(&hb(2, 1, ctx).msg, 0, &mut frame);
        bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&frame);
    }
    // Cut sizes 1..=7 bytes for the first half, then everything left in one write.
    let half = bytes.len() / 2;
    let (mut at, mut cut) = (0, 1);
    while at < half {
        let end = (at + cut).min(half);
        s.write_all(&bytes[at..end]).await.unwrap();
        s.flush().await.unwrap();
        tokio::task::yield_now().await;
        at = end;
        cut = cut % 7 + 1;
    }
    s.write_all(&bytes[half..]).await.unwrap();
    for ctx in 0..20u64 {
        let got = tokio::time::timeout(Duration::from_secs(5), rxa.recv())
            .await
            .expect("frame delivered")
            .unwrap();
        assert_eq!(got, hb(2, 1, ctx));
    }
}

#[tokio::test]
async fn oversized_and_garbage_frames_close_the_connection() {
    let (a, b) = (free_addr(), free_addr());
    let (txa, mut rxa) = mpsc::channel(64);
    let ta = Transport::start(tcfg(1, a, (2, b)), txa).await.unwrap();
    // Handshake as node 2, then a frame claiming 2 GiB.
    let mut s = tokio::net::TcpStream::connect(ta.local_addr())
        .await
        .unwrap();
    let mut hs = vec![];
    hs.extend_from_slice(&0x444c_4752u32.to_be_bytes());
    hs.push(1);
    hs.extend_from_slice(&2u64.to_be_bytes());
    hs.extend_from_slice(&1u16.to_be_bytes());
    hs.push(b'g');
    s.write_all(&(hs.len() as u32).to_be_bytes()).await.unwrap();
    s.write_all(&hs).await.unwrap();
    s.write_all(&(u32::MAX / 2).to_be_bytes()).await.unwrap();
    // The server closes: reading returns EOF (0 bytes), bounded by a timeout.
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut s, &mut buf),
    )
    .await
    .expect("server must close the connection")
    .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(rxa.try_recv().is_err());
}

#[tokio::test]
async fn sending_to_a_dead_peer_never_blocks() {
    let (a, b) = (free_addr(), free_addr());
    let (txa, _rxa) = mpsc::channel(64);
    let ta = Transport::start(tcfg(1, a, (2, b)), txa).await.unwrap();
    let t0 = std::time::Instant::now();
    let mut dropped = 0;
    for i in 0..10_000 {
        if !ta.send(hb(1, 2, i)) {
            dropped += 1;
        }
    }
    assert!(dropped > 0, "bounded queue must drop");
    assert!(t0.elapsed() < Duration::from_secs(2));
}
