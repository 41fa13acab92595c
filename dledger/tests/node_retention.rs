//! Retention: with `retain_segments`, old segment files are deleted once their entries are
//! committed, `first_index` moves forward, and retained entries stay readable.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dledger::config::DLedgerConfig;
use dledger::core::Role;
use dledger::node::DLedgerNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments_and_keeps_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let mut cfg =
        DLedgerConfig::new("ret", &format!("n0-127.0.0.1:{port}"), "n0", dir.path()).unwrap();
    cfg.segment_size_bytes = 64 * 1024;
    cfg.max_entry_size_bytes = 4 * 1024;
    cfg.retain_segments = 2;
    let node = DLedgerNode::start(cfg.clone()).await.unwrap();
    let mut role = node.role();
    tokio::time::timeout(
        Duration::from_secs(10),
        role.wait_for(|s| s.role == Role::Leader && s.ready_for_writes),
    )
    .await
    .unwrap()
    .unwrap();
    let mut last = None;
    for i in 0..10u8 {
        let rs = node
            .append_batch(vec![Bytes::from(vec![i; 1000]); 40])
            .await
            .unwrap();
        last = rs.last().copied();
    }
    let last = last.unwrap();
    let data_dir = cfg.node_dir().join("data");
    let segments = || {
        std::fs::read_dir(&data_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().len() == 20)
                    .unwrap_or(false)
            })
            .count()
    };
    // (Counted by position: retention may already have run on a tick since the appends.)
    assert!(
        last.pos >= 3 * cfg.segment_size_bytes,
        "400 KiB of entries span several segments"
    );
    // Retention runs on the node's tick; wait (bounded) until it has acted.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = node.status().await.unwrap();
        if st.first_index > 1 && segments() <= 3 {
            assert!(st.first_index <= last.index);
            break;
        }
        assert!(Instant::now() < deadline, "retention did not run: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The newest entries are intact.
    assert_eq!(
        node.read(last.index).unwrap().data,
        Bytes::from(vec![9u8; 1000])
    );
    node.shutdown().await;
    // And the prefix truncation survives a restart.
    let node = DLedgerNode::start(cfg).await.unwrap();
    let st = node.status().await.unwrap();
    assert!(st.first_index > 1);
    assert_eq!(node.entry_pos(last.index).unwrap(), last.pos);
    node.shutdown().await;
}
