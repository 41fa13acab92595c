//! Three in-process nodes with file stores (tempdirs) and TCP on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use dledger::config::DLedgerConfig;
use dledger::core::Role;
use dledger::node::{AppendBodies, AppendHandler, AppendOutcome, DLedgerError, DLedgerNode};
use tokio::sync::mpsc;

fn configs(dir: &std::path::Path) -> Vec<DLedgerConfig> {
    common::configs(dir, 1000)
}

async fn start(cfg: &DLedgerConfig) -> DLedgerNode {
    // The port may still be held for a moment by a node that was just stopped.
    let t0 = Instant::now();
    loop {
        match DLedgerNode::start(cfg.clone()).await {
            Ok(n) => return n,
            Err(DLedgerError::Transport(e)) if t0.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("start failed: {e}"),
        }
    }
}

/// One node per config, all running.
async fn start_all(cfgs: &[DLedgerConfig]) -> Vec<Option<DLedgerNode>> {
    let mut nodes = Vec::with_capacity(cfgs.len());
    for c in cfgs {
        nodes.push(Some(start(c).await));
    }
    nodes
}

/// Wait (event-driven, via the role watches) for a leader that accepts writes.
async fn wait_leader(nodes: &[Option<DLedgerNode>], within: Duration) -> usize {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let Some(n) = n else { continue };
        let mut r = n.role();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let s = *r.borrow_and_update();
                if tx.send((i, s)).is_err() {
                    return;
                }
                if r.changed().await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let res = tokio::time::timeout(within, async {
        while let Some((i, s)) = rx.recv().await {
            if s.role == Role::Leader && s.ready_for_writes {
                return Some(i);
            }
        }
        None
    })
    .await;
    for t in tasks {
        t.abort();
    }
    res.ok().flatten().expect("no leader elected in time")
}

async fn wait_commit(n: &DLedgerNode, index: u64) {
    let mut c = n.committed();
    tokio::time::timeout(Duration::from_secs(15), c.wait_for(|v| *v >= index))
        .await
        .expect("commit did not advance in time")
        .expect("node stopped");
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("entry-{i}-").repeat(1 + (i as usize % 40)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_append_kill_leader_and_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let cfgs = configs(dir.path());
    let mut nodes = start_all(&cfgs).await;
    let l = wait_leader(&nodes, Duration::from_secs(10)).await;
    let leader = nodes[l].as_ref().unwrap();

    // A follower refuses appends and names the leader.
    let f = (l + 1) % 3;
    match nodes[f]
        .as_ref()
        .unwrap()
        .append(Bytes::from_static(b"x"))
        .await
    {
        Err(DLedgerError::NotLeader { leader: Some(id) }) => assert_eq!(id, leader.id()),
        other => panic!("follower append returned {other:?}"),
    }

    // Concurrent single appends and a batch.
    let mut handles = Vec::new();
    for i in 0..40u64 {
        handles.push(tokio::spawn(leader.append(payload(i))));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap().unwrap());
    }
    let batch = leader
        .append_batch((40..60).map(payload).collect())
        .await
        .unwrap();
    assert_eq!(batch.len(), 20);
    for w in batch.windows(2) {
        assert_eq!(w[1].index, w[0].index + 1);
        assert!(w[1].pos > w[0].pos);
    }
    results.extend(batch);
    let last = results.iter().map(|r| r.index).max().unwrap();
    // Acknowledged = durable on a quorum; the leader's own fsync may finish a moment
    // later, and only then is the entry readable here (the `committed()` watch).
    wait_commit(leader, last).await;

    // Every node converges on identical entries at identical positions.
    for n in nodes.iter().flatten() {
        wait_commit(n, last).await;
        for r in &results {
            let e = n.read(r.index).unwrap();
            assert_eq!(n.entry_pos(r.index).unwrap(), r.pos);
            assert_eq!(e.index, r.index);
        }
    }
    let batch_entries = leader.read_range(batch_first(&results), last + 1).unwrap();
    for (k, e) in batch_entries.iter().enumerate() {
        assert_eq!(e.data, payload(40 + k as u64));
        // The body is also reachable by physical position: pos + 48.
        let pos = leader.entry_pos(e.index).unwrap();
        assert_eq!(
            leader.read_at(pos + 48, e.data.len() as u64).unwrap(),
            e.data
        );
    }
    let status = leader.status().await.unwrap();
    assert_eq!(status.role, Role::Leader);
    assert_eq!(status.peers.len(), 2);
    assert!(status.fsyncs > 0 && status.commit_latency.count >= 41);

    // Kill the leader (drop = crash): a new one takes over quickly.
    let old_id = leader.id();
    let t0 = Instant::now();
    nodes[l] = None;
    let l2 = wait_leader(&nodes, Duration::from_secs(5)).await;
    let failover = t0.elapsed();
    eprintln!("failover took {failover:?}");
    assert!(
        failover < Duration::from_secs(3),
        "failover took {failover:?}"
    );
    let leader2 = nodes[l2].as_ref().unwrap();
    assert_ne!(leader2.id(), old_id);
    // Committed entries survive, byte for byte.
    for r in &results {
        let e = leader2.read(r.index).unwrap();
        assert_eq!(leader2.entry_pos(r.index).unwrap(), r.pos);
        if r.index >= batch_first(&results) {
            assert_eq!(e.data, payload(40 + r.index - batch_first(&results)));
        }
    }
    let r = leader2
        .append(Bytes::from_static(b"after failover"))
        .await
        .unwrap();
    assert!(r.index > last);
    assert_eq!(
        leader2.read(r.index).unwrap().data,
        Bytes::from_static(b"after failover")
    );
}

fn batch_first(results: &[dledger::node::AppendResult]) -> u64 {
    results[40].index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_follower_behind_retention_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfgs = configs(dir.path());
    let mut nodes = start_all(&cfgs).await;
    let l = wait_leader(&nodes, Duration::from_secs(10)).await;
    let body = Bytes::from(vec![7u8; 1024]);
    let mut last = 0;
    for _ in 0..10 {
        let rs = nodes[l]
            .as_ref()
            .unwrap()
            .append_batch(vec![body.clone(); 20])
            .await
            .unwrap();
        last = rs.last().unwrap().index;
    }
    // Stop a follower cleanly and wipe its disk.
    let f = (l + 1) % 3;
    let follower = nodes[f].take().unwrap();
    follower.shutdown().await;
    std::fs::remove_dir_all(cfgs[f].node_dir()).unwrap();

    // More entries, then retention on the leader drops the old segments.
    let leader = nodes[l].as_ref().unwrap();
    for _ in 0..5 {
        let rs = leader.append_batch(vec![body.clone(); 20]).await.unwrap();
        last = rs.last().unwrap().index;
    }
    let compact_to = last - 30;
    leader.compact(compact_to).await.unwrap();
    let st = leader.status().await.unwrap();
    assert_eq!(st.first_index, compact_to);
    let positions: Vec<u64> = (compact_to..=last)
        .map(|i| leader.entry_pos(i).unwrap())
        .collect();

    // The wiped follower restarts empty and must converge via snapshot + appends.
    nodes[f] = Some(start(&cfgs[f]).await);
    let fnode = nodes[f].as_ref().unwrap();
    wait_commit(fnode, last).await;
    // It restarted its log at the leader's snapshot point (not from index 1).
    assert_eq!(fnode.status().await.unwrap().first_index, compact_to);
    assert!(fnode.read(compact_to - 1).is_err());
    for (k, i) in (compact_to..=last).enumerate() {
        assert_eq!(fnode.read(i).unwrap().data, body);
        assert_eq!(fnode.entry_pos(i).unwrap(), positions[k], "position of {i}");
    }
    // And it keeps replicating new entries.
    let leader = nodes[l].as_ref().unwrap();
    let r = leader.append(Bytes::from_static(b"tail")).await.unwrap();
    wait_commit(fnode, r.index).await;
    assert_eq!(
        fnode.read(r.index).unwrap().data,
        Bytes::from_static(b"tail")
    );
    assert_eq!(fnode.entry_pos(r.index).unwrap(), r.pos);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cluster_restart_keeps_committed_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cfgs = configs(dir.path());
    let mut nodes = start_all(&cfgs).await;
    let l = wait_leader(&nodes, Duration::from_secs(10)).await;
    let rs = nodes[l]
        .as_ref()
        .unwrap()
        .append_batch((0..30).map(payload).collect())
        .await
        .unwrap();
    let term_before = nodes[l].as_ref().unwrap().role().borrow().term;
    for n in nodes.iter_mut() {
        n.take().unwrap().shutdown().await;
    }
    for (k, c) in cfgs.iter().enumerate() {
        nodes[k] = Some(start(c).await);
    }
    let l = wait_leader(&nodes, Duration::from_secs(10)).await;
    let leader = nodes[l].as_ref().unwrap();
    assert!(leader.role().borrow().term > term_before);
    // The new leader's NOOP commits everything before it.
    for (k, r) in rs.iter().enumerate() {
        let e = leader.read(r.index).unwrap();
        assert_eq!(e.data, payload(k as u64));
        assert_eq!(leader.entry_pos(r.index).unwrap(), r.pos);
    }
    let r = leader.append(Bytes::from_static(b"again")).await.unwrap();
    assert!(r.index > rs.last().unwrap().index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer_moves_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let cfgs = configs(dir.path());
    let nodes = start_all(&cfgs).await;
    let l = wait_leader(&nodes, Duration::from_secs(10)).await;
    let leader = nodes[l].as_ref().unwrap();
    let r = leader.append(Bytes::from_static(b"before")).await.unwrap();
    let target = (l + 1) % 3;
    let target_id = nodes[target].as_ref().unwrap().id();
    leader.transfer_leadership(target_id).await.unwrap();
    let mut role = nodes[target].as_ref().unwrap().role();
    tokio::time::timeout(
        Duration::from_secs(5),
        role.wait_for(|s| s.role == Role::Leader && s.ready_for_writes),
    )
    .await
    .expect("transfer did not complete")
    .unwrap();
    let new_leader = nodes[target].as_ref().unwrap();
    assert_eq!(
        new_leader.read(r.index).unwrap().data,
        Bytes::from_static(b"before")
    );
    let r2 = new_leader
        .append(Bytes::from_static(b"after"))
        .await
        .unwrap();
    assert!(r2.index > r.index);
    // The old leader now refuses writes.
    assert!(matches!(
        nodes[l]
            .as_ref()
            .unwrap()
            .append(Bytes::from_static(b"x"))
            .await,
        Err(DLedgerError::NotLeader { .. }) | Err(DLedgerError::NotReady)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_hook_sees_the_final_position_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let cfgs = configs(dir.path());
    let nodes = start_all(&cfgs).await;
    let l = wait_leader(&nodes, Duration::from_secs(10)).await;
    let leader = nodes[l].as_ref().unwrap();
    // Like the broker's PHYSICALOFFSET: write pos + 48 into the body before it is proposed.
    // 3000-byte bodies make entries roll over 64 KiB segments (blank markers).
    let mut results = Vec::new();
    let mut plain = Vec::new();
    for round in 0..6 {
        // Plain appends interleave with the hooked ones.
        plain.push(tokio::spawn(leader.append(Bytes::from(vec![0xee; 1500]))));
        let bodies = (0..10)
            .map(|k| bytes::BytesMut::from(&vec![(round * 10 + k) as u8; 3000][..]))
            .collect();
        let rs = leader
            .append_batch_with_pos(bodies, |body, pos| {
                body[..8].copy_from_slice(&(pos + 48).to_be_bytes());
            })
            .await
            .unwrap();
        results.extend(rs);
    }
    for p in plain {
        p.await.unwrap().unwrap();
    }
    let last = results.iter().map(|r| r.index).max().unwrap();
    for n in nodes.iter().flatten() {
        wait_commit(n, last).await;
        for r in &results {
            let e = n.read(r.index).unwrap();
            let embedded = u64::from_be_bytes(e.data[..8].try_into().unwrap());
            assert_eq!(embedded, r.pos + 48, "index {}", r.index);
            assert_eq!(n.entry_pos(r.index).unwrap(), r.pos);
            assert_eq!(n.read_at(embedded, 8).unwrap(), e.data.slice(..8));
        }
    }
    assert!(
        results.last().unwrap().pos > 64 * 1024,
        "must span segments"
    );
}

/// Reports every `done` call (with the position `place` saw) to the test.
struct Reporter {
    id: usize,
    placed_pos: std::sync::atomic::AtomicU64,
    tx: mpsc::UnboundedSender<(usize, AppendOutcome, u64)>,
}

impl AppendHandler for Reporter {
    fn place(&self, _body: &mut [u8], pos: u64) {
        self.placed_pos
            .store(pos, std::sync::atomic::Ordering::Relaxed);
    }
    fn done(&self, outcome: AppendOutcome) {
        let placed = self.placed_pos.load(std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send((self.id, outcome, placed));
    }
}

/// `append_with_handler`: every handler is answered exactly once, with the entry's result
/// (at the position it placed the entry at) once committed, at once for a refused append,
/// and with an error for appends that can no longer commit when the node stops; and no
/// handler is kept once answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_appends_are_answered_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfgs = configs(dir.path());
    let mut nodes = start_all(&cfgs).await;
    let l = wait_leader(&nodes, Duration::from_secs(10)).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let append = |node: &DLedgerNode, id: usize, len: usize| {
        let handler = std::sync::Arc::new(Reporter {
            id,
            placed_pos: std::sync::atomic::AtomicU64::new(u64::MAX),
            tx: tx.clone(),
        });
        let body = bytes::BytesMut::from(&vec![id as u8; len][..]);
        node.append_with_handler(AppendBodies::from_buf([body]), handler);
    };

    // Healthy group: committed, one result each, in order.
    let leader = nodes[l].as_ref().unwrap();
    for id in 0..20 {
        append(leader, id, 100);
    }
    let mut last_index = 0;
    for expect in 0..20 {
        let (id, outcome, placed) = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("callback in time")
            .unwrap();
        assert_eq!(id, expect);
        let r = outcome.expect("committed");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].pos, placed, "committed where it was placed");
        assert!(r[0].index > last_index);
        last_index = r[0].index;
    }
    // An append may be answered once a quorum holds it, before the leader's own fsync
    // publishes the commit index that reads go by: wait for that, then read them all back.
    let mut committed = leader.committed();
    tokio::time::timeout(
        Duration::from_secs(15),
        committed.wait_for(|c| *c >= last_index),
    )
    .await
    .expect("commit index published in time")
    .unwrap();
    let bodies = leader.read_range(last_index - 19, last_index + 1).unwrap();
    let firsts: Vec<u8> = bodies.iter().map(|e| e.data[0]).collect();
    assert_eq!(firsts, (0..20u8).collect::<Vec<_>>());

    // Refused before it reaches the loop: answered at once, on this thread.
    append(leader, 100, 64 * 1024 * 1024);
    match rx.try_recv() {
        Ok((100, Err(DLedgerError::Invalid(_)), _)) => {}
        other => panic!("oversized append: {other:?}"),
    }

    // No quorum: the appends cannot commit; stopping the leader answers each with an error.
    for (i, n) in nodes.iter_mut().enumerate() {
        if i != l {
            *n = None;
        }
    }
    let leader = nodes[l].take().unwrap();
    for id in 200..205 {
        append(&leader, id, 100);
    }
    leader.shutdown().await;
    let mut failed = Vec::new();
    for _ in 0..5 {
        let (id, outcome, _) = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("callback in time")
            .unwrap();
        assert!(outcome.is_err(), "append {id} cannot have committed");
        failed.push(id);
    }
    failed.sort_unstable();
    assert_eq!(failed, (200..205).collect::<Vec<_>>());
    // Exactly once: nothing else arrives, and every handler (holding a sender) is gone once
    // answered.
    drop(tx);
    assert!(rx.recv().await.is_none());
}
