//! A node whose log lost acknowledged entries must stay "recovering" (no votes, no campaigns)
//! across restarts until it has caught up, even if its term changed in between (the hard
//! state rewritten by the term change must keep the durable commit that reveals the loss).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use dledger::config::DLedgerConfig;
use dledger::core::{Message, MsgKind};
use dledger::node::{DLedgerError, DLedgerNode};
use dledger::storage::{FileStore, FileStoreConfig, HardStateFile, HardStateRecord, StoredEntry};
use dledger::transport::{Envelope, Transport, TransportConfig};
use tokio::sync::mpsc;

fn configs(dir: &std::path::Path) -> Vec<DLedgerConfig> {
    common::configs(dir, 7)
}

fn store_cfg(c: &DLedgerConfig) -> FileStoreConfig {
    FileStoreConfig {
        dir: c.node_dir().join("data"),
        segment_size_bytes: c.segment_size_bytes,
        max_entry_size_bytes: c.max_entry_size_bytes,
        disk_quota_bytes: None,
        cache_bytes: 1024 * 1024,
        zero_ahead_bytes: 16 * 1024,
    }
}

async fn start(cfg: &DLedgerConfig) -> DLedgerNode {
    // The port may still be held for a moment by a node that was just stopped.
    let t0 = Instant::now();
    loop {
        match DLedgerNode::start(cfg.clone()).await {
            Ok(n) => return n,
            Err(DLedgerError::Transport(_)) if t0.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("start failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_loss_survives_a_term_change_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfgs = configs(dir.path());
    let victim = &cfgs[0];
    let victim_id = victim.self_node_id();

    // The victim had entries 1..=10 (term 1) and a durable commit of 10, then lost 6..=10
    // (e.g. a damaged tail): truncate through the file store API.
    let data = victim.node_dir().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = FileStore::open(store_cfg(victim)).unwrap();
    let entries: Vec<StoredEntry> = (1..=10)
        .map(|i| StoredEntry {
            index: i,
            term: 1,
            kind: 0,
            data: Bytes::from(vec![i as u8; 64]),
        })
        .collect();
    store.write_entries(&entries).unwrap();
    store.sync_and_publish().unwrap();
    store.truncate_suffix(6).unwrap();
    assert_eq!(store.last_index(), 5);
    drop(store);
    let hs_file = HardStateFile::new(&victim.node_dir());
    hs_file
        .store(&HardStateRecord {
            term: 1,
            vote: 0,
            commit: 10,
        })
        .unwrap();

    let node = start(victim).await;
    let st = node.status().await.unwrap();
    assert!(st.recovering, "a commit beyond the log is a data loss");
    assert_eq!(st.last_index, 5);

    // A fake peer (n1) with a higher term reaches the victim: the term change is persisted
    // while the victim is still recovering (a heartbeat carries no entries to catch up with).
    let (in_tx, _in_rx) = mpsc::channel(64);
    let fake = Transport::start(
        TransportConfig {
            self_id: cfgs[1].self_node_id(),
            group: "test-group".into(),
            listen_addr: cfgs[1].self_addr().unwrap(),
            peers: vec![(victim_id, victim.self_addr().unwrap())],
            max_frame_bytes: 1024 * 1024,
            send_queue_msgs: 64,
            recv_queue_msgs: 64,
            reconnect_min_ms: 10,
            reconnect_max_ms: 100,
        },
        in_tx,
    )
    .await
    .unwrap();
    let mut role = node.role();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Resend until the term shows up (the first frame may race the connection setup).
    while role.borrow_and_update().term < 5 {
        assert!(Instant::now() < deadline, "term change never arrived");
        fake.send(Envelope {
            msg: Message {
                from: cfgs[1].self_node_id(),
                to: victim_id,
                term: 5,
                kind: MsgKind::Heartbeat { commit: 0, ctx: 0 },
            },
            aux: 0,
        });
        let _ = tokio::time::timeout(Duration::from_millis(200), role.changed()).await;
    }
    // The new term is durable once the hard-state file says so (the node persists it before
    // answering); wait for that on disk, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if hs_file.load().unwrap().term == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "term 5 never persisted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = node.status().await.unwrap();
    assert!(st.recovering, "a heartbeat does not end recovery");
    node.shutdown().await;
    drop(fake);

    let hs = hs_file.load().unwrap();
    assert_eq!(hs.term, 5);
    assert!(
        hs.commit >= 10,
        "the persisted commit went backwards to {} (clamped to the log)",
        hs.commit
    );

    // Restart: the loss is still known, so the node still refuses to vote.
    let node = start(victim).await;
    let st = node.status().await.unwrap();
    assert!(st.recovering, "data loss forgotten after a term change");
    assert_eq!(st.term, 5);
    assert_eq!(st.last_index, 5);
    node.shutdown().await;
}
