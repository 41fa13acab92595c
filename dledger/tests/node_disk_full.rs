//! A full disk refuses appends with a clear error and corrupts nothing: every acknowledged
//! entry is intact after a restart, and the node accepts writes again once space exists.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::free_port;
use dledger::config::DLedgerConfig;
use dledger::core::Role;
use dledger::node::{DLedgerError, DLedgerNode};

async fn leader_ready(n: &DLedgerNode) {
    let mut r = n.role();
    tokio::time::timeout(
        Duration::from_secs(10),
        r.wait_for(|s| s.role == Role::Leader && s.ready_for_writes),
    )
    .await
    .expect("single node did not become leader")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_appends_and_keeps_acknowledged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let peers = format!("n0-127.0.0.1:{}", free_port());
    let mut cfg = DLedgerConfig::new("solo", &peers, "n0", dir.path()).unwrap();
    cfg.segment_size_bytes = 64 * 1024;
    cfg.max_entry_size_bytes = 4 * 1024;
    cfg.disk_quota_bytes = Some(2 * 64 * 1024);
    let node = DLedgerNode::start(cfg.clone()).await.unwrap();
    leader_ready(&node).await;

    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..1000u32 {
        let body = Bytes::from(vec![(i % 251) as u8; 1000]);
        match node.append(body.clone()).await {
            Ok(r) => acked.push((r.index, r.pos, body)),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    match refused {
        Some(DLedgerError::Storage(msg)) => assert!(msg.contains("disk full"), "{msg}"),
        other => panic!("expected a disk-full refusal, got {other:?}"),
    }
    assert!(acked.len() > 100, "two segments hold more than 100 entries");
    // Still refused while the disk is full.
    assert!(matches!(
        node.append(Bytes::from_static(b"more")).await,
        Err(DLedgerError::Storage(_))
    ));
    node.shutdown().await;

    // Restart with space: everything acknowledged is intact, and writes work again.
    cfg.disk_quota_bytes = None;
    let node = DLedgerNode::start(cfg).await.unwrap();
    leader_ready(&node).await;
    for (index, pos, body) in &acked {
        assert_eq!(&node.read(*index).unwrap().data, body);
        assert_eq!(node.entry_pos(*index).unwrap(), *pos);
    }
    let r = node
        .append(Bytes::from_static(b"space again"))
        .await
        .unwrap();
    assert!(r.index > acked.last().unwrap().0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_failure_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let peers = format!("n0-127.0.0.1:{}", free_port());
    let cfg = DLedgerConfig::new("solo", &peers, "n0", dir.path()).unwrap();
    let node = DLedgerNode::start(cfg.clone()).await.unwrap();
    leader_ready(&node).await;
    let ok = node.append(Bytes::from_static(b"durable")).await.unwrap();
    let mut role = node.role();
    node.inject_fsync_failure();
    match node.append(Bytes::from_static(b"lost")).await {
        Err(DLedgerError::Storage(msg)) => assert!(msg.contains("fsync"), "{msg}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(node.fatal_error().is_some_and(|m| m.contains("fsync")));
    // Fail-stop: the node no longer leads nor accepts anything.
    tokio::time::timeout(
        Duration::from_secs(5),
        role.wait_for(|s| s.role != Role::Leader && !s.ready_for_writes),
    )
    .await
    .expect("node kept its role after an fsync failure")
    .ok();
    match node.append(Bytes::from_static(b"after")).await {
        Err(DLedgerError::Storage(msg)) => assert!(msg.contains("fsync"), "{msg}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    drop(node);
    // What was acknowledged before is intact.
    let node = DLedgerNode::start(cfg).await.unwrap();
    leader_ready(&node).await;
    assert_eq!(
        node.read(ok.index).unwrap().data,
        Bytes::from_static(b"durable")
    );
    node.shutdown().await;
}
