//! Three DLedger-mode MessageStores in one process on 127.0.0.1: election, replicated puts
//! with identical queues on every replica, NotLeader on followers, metadata in log order,
//! failover with dense queue offsets, restart and catch-up, retention, and a follower that
//! catches up by snapshot after the others deleted the entries it needed.

mod common;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use store::{
    AcceptAllFilter, DLedgerStoreConfig, FlushDiskType, MessageStore, MetadataKind,
    MetadataListener, StoreError, StoreRole,
};
use tokio::sync::{mpsc, watch};

const N: usize = 3;
const WAIT: Duration = Duration::from_secs(20);

/// (kind, payload, log index) as applied by a replica.
type MetaLog = Arc<Mutex<Vec<(MetadataKind, Vec<u8>, u64)>>>;

struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    peers: String,
    stores: Vec<Option<Arc<MessageStore>>>,
    meta: Vec<MetaLog>,
    meta_count: Vec<watch::Sender<usize>>,
    /// End position of the last acknowledged put (what every replica must dispatch).
    acked_end: AtomicI64,
    tune: fn(&mut DLedgerStoreConfig),
    tune_store: fn(&mut store::StoreConfig),
    /// Each replica's retention floor (`DLedgerStoreConfig::retention_floor`).
    floors: Vec<Arc<AtomicU64>>,
}

fn listener(log: MetaLog, count: watch::Sender<usize>) -> MetadataListener {
    Arc::new(move |k, p, i| {
        let mut g = log.lock().unwrap();
        g.push((k, p.to_vec(), i));
        count.send_replace(g.len());
    })
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tune: fn(&mut DLedgerStoreConfig)) -> Cluster {
        Self::start_tuned(tune, |_| {}).await
    }

    async fn start_tuned(
        tune: fn(&mut DLedgerStoreConfig),
        tune_store: fn(&mut store::StoreConfig),
    ) -> Cluster {
        let peers = testkit::dledger_peers(&testkit::free_ports(N));
        let mut c = Cluster {
            dirs: (0..N).map(|_| tempfile::tempdir().unwrap()).collect(),
            peers,
            stores: (0..N).map(|_| None).collect(),
            meta: (0..N).map(|_| Arc::new(Mutex::new(Vec::new()))).collect(),
            meta_count: (0..N).map(|_| watch::channel(0).0).collect(),
            acked_end: AtomicI64::new(0),
            tune,
            tune_store,
            floors: (0..N).map(|_| Arc::new(AtomicU64::new(0))).collect(),
        };
        let mut hs = Vec::new();
        for i in 0..N {
            hs.push(c.open_task(i));
        }
        for (i, h) in hs.into_iter().enumerate() {
            c.stores[i] = Some(h.await.unwrap());
        }
        c
    }

    fn open_task(&mut self, i: usize) -> tokio::task::JoinHandle<Arc<MessageStore>> {
        // A restarted replica starts a fresh metadata history (the listener sees it all again).
        self.meta[i].lock().unwrap().clear();
        self.meta_count[i].send_replace(0);
        let mut cfg = common::config(self.dirs[i].path(), FlushDiskType::SyncFlush);
        // Quorum fsyncs on a loaded 2-core machine can be slow; a put is still bounded.
        cfg.sync_flush_timeout_ms = 15_000;
        (self.tune_store)(&mut cfg);
        let mut dl = DLedgerStoreConfig::new("g1", &self.peers, &format!("n{i}"));
        (self.tune)(&mut dl);
        dl.retention_floor = Arc::clone(&self.floors[i]);
        dl.metadata_listener = Some(listener(
            Arc::clone(&self.meta[i]),
            self.meta_count[i].clone(),
        ));
        tokio::task::spawn_blocking(move || MessageStore::open_dledger(cfg, dl).unwrap())
    }

    async fn restart(&mut self, i: usize) {
        assert!(self.stores[i].is_none());
        let s = self.open_task(i).await.unwrap();
        self.stores[i] = Some(s);
    }

    fn note(&self, r: &store::PutMessageResult) {
        self.acked_end
            .fetch_max(r.phys_offset + r.wrote_bytes as i64, Ordering::SeqCst);
    }

    fn acked_end(&self) -> i64 {
        self.acked_end.load(Ordering::SeqCst)
    }

    /// Put on replica `i`; must be acknowledged.
    async fn put(&self, i: usize, q: i32, body: &str) -> store::PutMessageResult {
        let r = put(self.store(i), q, body).await.unwrap();
        self.note(&r);
        r
    }

    async fn put_batch(
        &self,
        i: usize,
        batch: Vec<store::MessageToStore>,
    ) -> store::PutMessageResult {
        let r = self.store(i).put_messages(batch).await.unwrap();
        self.note(&r);
        r
    }

    fn store(&self, i: usize) -> &Arc<MessageStore> {
        self.stores[i].as_ref().unwrap()
    }

    fn alive(&self) -> Vec<usize> {
        (0..N).filter(|i| self.stores[*i].is_some()).collect()
    }

    /// Waits for a replica to become writable (event-driven over the role watches).
    async fn writable(&self) -> usize {
        common::wait_writable(
            self.alive().into_iter().map(|i| (i, &**self.store(i))),
            WAIT,
        )
        .await
    }

    /// Halts (crash-like stop) replica `i`.
    async fn halt(&mut self, i: usize) {
        let s = self.stores[i].take().unwrap();
        tokio::task::spawn_blocking(move || s.halt()).await.unwrap();
    }

    /// Waits until every live replica dispatched up to `end`.
    async fn dispatched_everywhere(&self, end: i64) {
        for i in self.alive() {
            let s = Arc::clone(self.store(i));
            let s2 = Arc::clone(&s);
            let ok = tokio::task::spawn_blocking(move || s.wait_dispatched(end, WAIT))
                .await
                .unwrap();
            assert!(
                ok,
                "replica {i} did not dispatch up to {end}: dispatched {}, committed {}, role {:?}",
                s2.dispatched_offset(),
                s2.commit_log_max_offset(),
                *s2.role().borrow()
            );
        }
    }

    async fn shutdown(mut self) {
        for i in self.alive() {
            let s = self.stores[i].take().unwrap();
            tokio::task::spawn_blocking(move || s.shutdown())
                .await
                .unwrap();
        }
    }
}

type QueueView = Vec<(i64, i64, Bytes)>;

/// (queue offset, phys offset, record bytes) of every message of a queue.
fn queue_view(s: &MessageStore, topic: &str, q: i32) -> QueueView {
    let mut out = Vec::new();
    // From the first retained message (0 unless retention deleted some).
    let mut off = s.min_offset_in_queue(topic, q).max(0);
    for _ in 0..1000 {
        let r = s.get_message(topic, q, off, 32, 1 << 20, &AcceptAllFilter);
        if r.messages.is_empty() {
            break;
        }
        for (b, qo) in r.messages.iter().zip(&r.message_queue_offsets) {
            let m = common::decode(b);
            assert_eq!(m.queue_offset, *qo);
            out.push((*qo, m.commit_log_offset, b.clone()));
        }
        off = r.next_begin_offset;
    }
    out
}

/// Like a pulling consumer: from `from`, follow `next_begin_offset` (through removed or
/// blank units) to the end of the queue.
fn consume_from(s: &MessageStore, topic: &str, q: i32, from: i64) -> QueueView {
    let mut out = Vec::new();
    let mut off = from;
    for _ in 0..10_000 {
        let r = s.get_message(topic, q, off, 32, 1 << 20, &AcceptAllFilter);
        for (b, qo) in r.messages.iter().zip(&r.message_queue_offsets) {
            out.push((*qo, common::decode(b).commit_log_offset, b.clone()));
        }
        if r.next_begin_offset <= off || r.next_begin_offset >= r.max_offset {
            break;
        }
        off = r.next_begin_offset;
    }
    out
}

fn assert_dense(v: &QueueView, n: usize) {
    assert_eq!(v.len(), n, "queue size");
    for (k, (qo, _, _)) in v.iter().enumerate() {
        assert_eq!(*qo, k as i64, "dense queue offsets");
    }
}

async fn put(s: &MessageStore, q: i32, body: &str) -> Result<store::PutMessageResult, StoreError> {
    s.put_message(common::msg("TopicA", q, body.as_bytes(), "KEYS\u{1}k\u{2}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_puts_identical_everywhere_and_followers_refuse() {
    let c = Cluster::start().await;
    let l = c.writable().await;
    let leader = c.store(l);
    assert!(leader.is_writable());
    let role: StoreRole = leader.role().borrow().clone();
    assert!(role.is_leader && role.writable);
    assert_eq!(role.leader_id.as_deref(), Some(format!("n{l}").as_str()));
    assert_eq!(role.self_index, l);

    let mut acked = Vec::new();
    for k in 0..20 {
        let r = c.put(l, k % 2, &format!("m{k}")).await;
        acked.push((k % 2, r));
    }
    // One batch = one entry; consecutive queue offsets, phys = entry pos + 48 + offset.
    let batch: Vec<_> = (0..5)
        .map(|k| common::msg("TopicA", 1, format!("b{k}").as_bytes(), ""))
        .collect();
    let br = c.put_batch(l, batch).await;
    c.dispatched_everywhere(c.acked_end()).await;
    assert_eq!(br.queue_offset, 10);
    let ids: Vec<&str> = br.msg_id.split(',').collect();
    assert_eq!(ids.len(), 5);

    // Acknowledged queue offsets are what consumers see.
    for (q, r) in &acked {
        let v = leader.get_message("TopicA", *q, r.queue_offset, 1, 1 << 20, &AcceptAllFilter);
        assert_eq!(v.message_queue_offsets, vec![r.queue_offset]);
        let m = common::decode(&v.messages[0]);
        assert_eq!(m.commit_log_offset, r.phys_offset);
        assert_eq!(
            leader.look_message_by_offset(r.phys_offset).unwrap(),
            v.messages[0]
        );
        // Zero copy: both reads are slices of the same mapping of the dledger segment.
        let again = leader.get_message("TopicA", *q, r.queue_offset, 1, 1 << 20, &AcceptAllFilter);
        assert_eq!(again.messages[0].as_ptr(), v.messages[0].as_ptr());
    }

    let base0 = queue_view(leader, "TopicA", 0);
    let base1 = queue_view(leader, "TopicA", 1);
    assert_dense(&base0, 10);
    assert_dense(&base1, 15);
    // Batch records are contiguous inside one entry.
    let b: Vec<i64> = base1[10..].iter().map(|(_, p, _)| *p).collect();
    for w in b.windows(2) {
        assert!(w[1] > w[0]);
    }
    for i in 0..N {
        let s = c.store(i);
        assert_eq!(queue_view(s, "TopicA", 0), base0, "replica {i} queue 0");
        assert_eq!(queue_view(s, "TopicA", 1), base1, "replica {i} queue 1");
        // The index is built on every replica too.
        assert_eq!(
            s.query_message("TopicA", "k", 64, 0, i64::MAX)
                .messages
                .len(),
            20
        );
        if i != l {
            assert!(!s.is_writable());
            match put(s, 0, "x").await {
                Err(StoreError::NotLeader { leader }) => {
                    assert_eq!(leader.as_deref(), Some(format!("n{l}").as_str()))
                }
                other => panic!("follower put: {other:?}"),
            }
            assert!(matches!(
                s.append_metadata(MetadataKind::TopicConfig, Bytes::from_static(b"t"))
                    .await,
                Err(StoreError::NotLeader { .. })
            ));
        }
    }
    let st = leader.dledger_status().await.unwrap();
    assert_eq!(st.peers.len(), N - 1);

    // Dropping the dispatched log pages from RSS (housekeeping does it every second) keeps
    // every read intact: the mapping faults the same committed bytes back in.
    for i in 0..N {
        let s = c.store(i);
        let before: Vec<Bytes> = s
            .get_message("TopicA", 1, 0, 32, 1 << 20, &AcceptAllFilter)
            .messages;
        s.release_mapped_pages(0);
        let after = s.get_message("TopicA", 1, 0, 32, 1 << 20, &AcceptAllFilter);
        assert_eq!(after.messages, before, "replica {i}");
        assert_eq!(queue_view(s, "TopicA", 0), base0, "replica {i} queue 0");
    }
    c.shutdown().await;
}

async fn wait_meta(c: &Cluster, i: usize, n: usize) {
    let mut w = c.meta_count[i].subscribe();
    tokio::time::timeout(WAIT, w.wait_for(|v| *v >= n))
        .await
        .unwrap_or_else(|_| panic!("replica {i} did not apply {n} metadata entries"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_applied_in_log_order_on_every_replica_and_replayed_on_restart() {
    let mut c = Cluster::start().await;
    let l = c.writable().await;
    let leader = Arc::clone(c.store(l));
    let kinds = [
        MetadataKind::TopicConfig,
        MetadataKind::SubscriptionGroup,
        MetadataKind::ConsumerOffsets,
        MetadataKind::DelayOffsets,
        MetadataKind::Custom(42),
    ];
    for k in 0..10usize {
        let payload = Bytes::from(format!("meta-{k}"));
        leader
            .append_metadata(kinds[k % kinds.len()], payload)
            .await
            .unwrap();
        // Resolved only once the leader's own listener applied it.
        assert_eq!(c.meta[l].lock().unwrap().len(), k + 1);
        // Interleaved messages are dispatched normally.
        c.put(l, 0, &format!("m{k}")).await;
    }
    for i in 0..N {
        wait_meta(&c, i, 10).await;
    }
    let expect = c.meta[l].lock().unwrap().clone();
    assert_eq!(expect.len(), 10);
    for (k, (kind, p, _)) in expect.iter().enumerate() {
        assert_eq!(*kind, kinds[k % kinds.len()]);
        assert_eq!(p, format!("meta-{k}").as_bytes());
    }
    assert!(expect.windows(2).all(|w| w[0].2 < w[1].2), "log order");
    for i in 0..N {
        assert_eq!(*c.meta[i].lock().unwrap(), expect, "replica {i}");
        // Each dispatcher walked the whole log itself: delivering a metadata entry must not
        // walk again the messages since the previous one (that scan mapped seconds of
        // traffic into RSS and stalled dispatch).
        assert_eq!(c.store(i).metadata_replay_steps(), 0, "replica {i}");
    }
    // A restarted follower replays the same history (its dispatch checkpoint is past it).
    let f = (l + 1) % N;
    c.dispatched_everywhere(c.acked_end()).await;
    let s = c.stores[f].take().unwrap();
    tokio::task::spawn_blocking(move || s.shutdown())
        .await
        .unwrap();
    c.restart(f).await;
    wait_meta(&c, f, 10).await;
    assert_eq!(*c.meta[f].lock().unwrap(), expect);
    assert!(
        c.store(f).metadata_replay_steps() > 0,
        "the restart replayed"
    );
    // A listener registered late gets the history too.
    let late = Arc::new(Mutex::new(Vec::new()));
    let (tx, _rx) = watch::channel(0);
    leader.set_metadata_listener(listener(Arc::clone(&late), tx));
    assert_eq!(*late.lock().unwrap(), expect);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_acknowledged_messages_and_dense_offsets_then_restart_catches_up() {
    let mut c = Cluster::start().await;
    let l1 = c.writable().await;
    let mut bodies = Vec::new();
    for k in 0..15 {
        let b = format!("before-{k}");
        let r = c.put(l1, 0, &b).await;
        assert_eq!(r.queue_offset, k as i64);
        bodies.push(b);
    }
    c.halt(l1).await;

    let l2 = c.writable().await;
    assert_ne!(l2, l1);
    for k in 0..15 {
        let b = format!("after-{k}");
        let r = c.put(l2, 0, &b).await;
        // Dense across the leader change: every acknowledged message kept its offset.
        assert_eq!(r.queue_offset, 15 + k as i64);
        bodies.push(b);
    }
    let end = c.acked_end();
    c.dispatched_everywhere(end).await;
    let view = queue_view(c.store(l2), "TopicA", 0);
    assert_dense(&view, 30);
    for ((_, _, rec), b) in view.iter().zip(&bodies) {
        assert_eq!(common::decode(rec).body.as_ref(), b.as_bytes());
    }
    for i in c.alive() {
        assert_eq!(queue_view(c.store(i), "TopicA", 0), view, "replica {i}");
    }

    // The old leader comes back as a follower, catches up and serves identical queues.
    c.restart(l1).await;
    c.dispatched_everywhere(end).await;
    assert_eq!(queue_view(c.store(l1), "TopicA", 0), view);
    assert!(!c.store(l1).is_writable() || c.writable().await == l1);

    // Leadership transfer: the target becomes writable and continues the offsets.
    let cur = c.writable().await;
    let target = (cur + 1) % N;
    c.store(cur)
        .transfer_leadership(Some(&format!("n{target}")))
        .await
        .unwrap();
    let mut w = c.store(target).role();
    tokio::time::timeout(WAIT, w.wait_for(|r| r.writable))
        .await
        .expect("transfer target did not become writable")
        .unwrap();
    let r = c.put(target, 0, "after-transfer").await;
    assert_eq!(r.queue_offset, 30);
    c.shutdown().await;
}

/// The broker's layout: every node's tasks on the caller's (multi-threaded) runtime. One
/// worker, so a stop that blocked that worker would starve the node's own shutdown and only
/// return after the store's stop timeout (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn nodes_on_the_callers_runtime_fail_over_stop_from_its_worker_and_restart() {
    let mut c =
        Cluster::start_with(|dl| dl.runtime = Some(tokio::runtime::Handle::current())).await;
    let l1 = c.writable().await;
    for k in 0..5 {
        c.put(l1, 0, &format!("a{k}")).await;
    }
    // A crash drops the node: its tasks on the shared runtime go with it.
    c.halt(l1).await;
    let l2 = c.writable().await;
    for k in 0..5 {
        let r = c.put(l2, 0, &format!("b{k}")).await;
        assert_eq!(r.queue_offset, 5 + k);
    }
    // A clean stop called right on the runtime's only worker (a spawned task; the test body
    // itself runs on the test thread).
    let s = c.stores[l2].take().unwrap();
    let stop_ms = tokio::spawn(async move {
        let started = std::time::Instant::now();
        s.shutdown();
        started.elapsed().as_millis()
    })
    .await
    .unwrap();
    assert!(stop_ms < 8_000, "stop starved its node for {stop_ms} ms");
    // Both come back on the same ports and serve identical, dense queues.
    c.restart(l1).await;
    c.restart(l2).await;
    let l = c.writable().await;
    let r = c.put(l, 0, "c").await;
    assert_eq!(r.queue_offset, 10);
    c.dispatched_everywhere(c.acked_end()).await;
    let view = queue_view(c.store(l), "TopicA", 0);
    assert_dense(&view, 11);
    for i in 0..N {
        assert_eq!(queue_view(c.store(i), "TopicA", 0), view, "replica {i}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_across_a_leader_crash_stay_dense_and_lose_nothing_acknowledged() {
    let mut c = Cluster::start().await;
    let l1 = c.writable().await;
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 40;
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let stores: Vec<Option<Arc<MessageStore>>> = c.stores.clone();
        let ack_tx = ack_tx.clone();
        writers.push(tokio::spawn(async move {
            let mut k = 0;
            let mut attempts = 0;
            // Bounded: each message is retried on other replicas until acknowledged.
            while k < PER_WRITER && attempts < 20_000 {
                attempts += 1;
                let body = format!("w{w}-{k}");
                let mut done = false;
                for s in stores.iter().flatten() {
                    if !s.is_writable() {
                        continue;
                    }
                    if let Ok(r) = put(s, (w % 2) as i32, &body).await {
                        let _ = ack_tx.send((
                            (w % 2) as i32,
                            r.queue_offset,
                            body.clone(),
                            r.phys_offset + r.wrote_bytes as i64,
                        ));
                        done = true;
                        break;
                    }
                }
                if done {
                    k += 1;
                } else {
                    // Nobody writable right now: wait for a role change on any replica.
                    let mut rs: Vec<_> = stores.iter().flatten().map(|s| s.role()).collect();
                    let (tx, mut rx) = mpsc::channel::<()>(1);
                    let waits: Vec<_> = rs
                        .drain(..)
                        .map(|mut r| {
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                let _ = r.wait_for(|v| v.writable).await;
                                let _ = tx.send(()).await;
                            })
                        })
                        .collect();
                    let _ = tokio::time::timeout(WAIT, rx.recv()).await;
                    for t in waits {
                        t.abort();
                    }
                }
            }
            k
        }));
    }
    drop(ack_tx);
    // Crash the leader once some messages are in.
    let mut acked = Vec::new();
    while acked.len() < 30 {
        acked.push(ack_rx.recv().await.unwrap());
    }
    c.halt(l1).await;
    while let Some(a) = ack_rx.recv().await {
        acked.push(a);
    }
    for w in writers {
        assert_eq!(w.await.unwrap(), PER_WRITER);
    }
    assert_eq!(acked.len(), WRITERS * PER_WRITER);
    let l2 = c.writable().await;
    let end = acked.iter().map(|a| a.3).max().unwrap();
    c.dispatched_everywhere(end).await;
    for q in 0..2 {
        let view = queue_view(c.store(l2), "TopicA", q);
        // Dense: no holes; unacknowledged attempts may have committed too (at-least-once).
        for (k, (qo, _, _)) in view.iter().enumerate() {
            assert_eq!(*qo, k as i64, "queue {q} dense");
        }
        for (aq, qo, body, _) in acked.iter().filter(|a| a.0 == q) {
            let (_, _, rec) = &view[*qo as usize];
            assert_eq!(*aq, q);
            assert_eq!(
                common::decode(rec).body.as_ref(),
                body.as_bytes(),
                "acked at {qo}"
            );
        }
        for i in c.alive() {
            assert_eq!(queue_view(c.store(i), "TopicA", q), view, "replica {i}");
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_serves_identical_queues_and_continues_offsets() {
    let mut c = Cluster::start().await;
    let l = c.writable().await;
    for k in 0..12 {
        c.put(l, 0, &format!("m{k}")).await;
    }
    let end = c.acked_end();
    c.dispatched_everywhere(end).await;
    let view = queue_view(c.store(l), "TopicA", 0);
    assert_dense(&view, 12);
    for i in 0..N {
        let s = c.stores[i].take().unwrap();
        tokio::task::spawn_blocking(move || s.shutdown())
            .await
            .unwrap();
    }
    for i in 0..N {
        c.restart(i).await;
    }
    // Queues are served from the checkpoint at once, before any election.
    for i in 0..N {
        assert_eq!(queue_view(c.store(i), "TopicA", 0), view, "replica {i}");
    }
    let l = c.writable().await;
    let r = c.put(l, 0, "again").await;
    assert_eq!(r.queue_offset, 12);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_tail_of_an_isolated_leader_is_never_dispatched_and_gets_replaced() {
    let mut c = Cluster::start().await;
    let l = c.writable().await;
    for k in 0..5 {
        c.put(l, 0, &format!("m{k}")).await;
    }
    c.dispatched_everywhere(c.acked_end()).await;
    let followers: Vec<usize> = (0..N).filter(|i| *i != l).collect();
    for &f in &followers {
        let s = c.stores[f].take().unwrap();
        tokio::task::spawn_blocking(move || s.shutdown())
            .await
            .unwrap();
    }
    // Alone, the leader writes these into its log but can never commit them.
    for k in 0..3 {
        let r = tokio::time::timeout(WAIT, put(c.store(l), 0, &format!("lost-{k}")))
            .await
            .expect("an uncommittable put must fail in bounded time");
        assert!(r.is_err(), "put without quorum acknowledged: {r:?}");
    }
    assert_eq!(queue_view(c.store(l), "TopicA", 0).len(), 5);
    c.halt(l).await;
    for &f in &followers {
        c.restart(f).await;
    }
    let l2 = c.writable().await;
    for k in 0..5 {
        let r = c.put(l2, 0, &format!("new-{k}")).await;
        assert_eq!(r.queue_offset, 5 + k as i64);
    }
    // The old leader rejoins: its uncommitted suffix is replaced by the new leader's entries.
    c.restart(l).await;
    let end = c.acked_end();
    c.dispatched_everywhere(end).await;
    let view = queue_view(c.store(l2), "TopicA", 0);
    assert_dense(&view, 10);
    for (k, (_, _, rec)) in view.iter().enumerate().skip(5) {
        assert_eq!(
            common::decode(rec).body.as_ref(),
            format!("new-{}", k - 5).as_bytes()
        );
    }
    for i in 0..N {
        assert_eq!(queue_view(c.store(i), "TopicA", 0), view, "replica {i}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_across_segment_ends_and_a_full_queue_rebuild_from_the_log() {
    let mut c = Cluster::start().await;
    let l = c.writable().await;
    let big = "x".repeat(3000);
    // > 2 segments (128 KiB each) of single entries and 3-message batch entries.
    for k in 0..60 {
        if k % 4 == 3 {
            let batch: Vec<_> = (0..3)
                .map(|j| common::msg("TopicA", 1, format!("{big}-{k}-{j}").as_bytes(), ""))
                .collect();
            c.put_batch(l, batch).await;
        } else {
            c.put(l, 1, &format!("{big}-{k}")).await;
        }
    }
    assert!(c.acked_end() > 2 * common::SEG as i64);
    let end = c.acked_end();
    c.dispatched_everywhere(end).await;
    let view = queue_view(c.store(l), "TopicA", 1);
    assert_dense(&view, 45 + 15 * 3);
    for (_, phys, rec) in &view {
        assert_eq!(c.store(l).look_message_by_offset(*phys).as_ref(), Some(rec));
    }
    // A follower loses its consume queues and checkpoint: rebuilt from the replicated log
    // (blank segment ends, batch entries, NOOPs) to the same bytes and offsets.
    let f = (l + 1) % N;
    let s = c.stores[f].take().unwrap();
    tokio::task::spawn_blocking(move || s.shutdown())
        .await
        .unwrap();
    let root = c.dirs[f].path().to_path_buf();
    std::fs::remove_dir_all(root.join("consumequeue")).unwrap();
    let _ = std::fs::remove_file(root.join("dispatch_checkpoint"));
    c.restart(f).await;
    c.dispatched_everywhere(end).await;
    for i in 0..N {
        assert_eq!(queue_view(c.store(i), "TopicA", 1), view, "replica {i}");
    }
    // Drop-behind with nothing kept: the dispatched log leaves the page cache, and the queue
    // reads the same records back from disk. Checked on the segments written in full (the
    // folio holding the log's end stays until a later pass covers it whole) of the replicas
    // this process did not restart (the restarted one's previous instance may still map them).
    for i in 0..N {
        let s = c.store(i);
        s.release_mapped_pages(0);
        s.drop_log_page_cache(0);
        let dir = c.dirs[i].path().join(format!("dledger-n{i}")).join("data");
        let full: Vec<u64> = segment_files(&c, i)
            .into_iter()
            .filter(|b| b + common::SEG <= end as u64)
            .collect();
        assert!(full.len() >= 2, "replica {i}: segments {full:?}");
        if i != f {
            for base in full {
                let path = dir.join(format!("{base:020}"));
                let cached = common::cached_pages(&path, 0, common::SEG);
                assert_eq!(
                    cached, 0,
                    "replica {i}: segment {base} still has {cached} pages cached"
                );
            }
        }
        assert_eq!(
            queue_view(s, "TopicA", 1),
            view,
            "replica {i} after the drop"
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_inflight_limit_is_refused_busy_and_offsets_stay_dense() {
    // The in-flight limit is at least one max entry (one 128 KiB segment here).
    let c = Cluster::start_with(|dl| dl.max_inflight_bytes = 1).await;
    let l = c.writable().await;
    let body = "y".repeat(3500);
    let mut tasks = Vec::new();
    for k in 0..120 {
        let s = Arc::clone(c.store(l));
        let b = format!("{body}-{k}");
        tasks.push(tokio::spawn(async move { (put(&s, 0, &b).await, b) }));
    }
    let mut acked = Vec::new();
    let mut busy = 0;
    let mut unknown = 0;
    for t in tasks {
        match t.await.unwrap() {
            (Ok(r), b) => {
                c.note(&r);
                acked.push((r.queue_offset, b));
            }
            (Err(StoreError::Busy { .. }), _) => busy += 1,
            // Outcome unknown (slow fsyncs on a loaded machine): may still commit.
            (Err(StoreError::FlushTimeout { .. }), _) => unknown += 1,
            (Err(e), _) => panic!("unexpected put error {e:?}"),
        }
    }
    assert!(busy > 0, "the flood never hit the in-flight limit");
    // Committed after everything before it: its end covers every entry of the flood.
    let last = c.put(l, 0, "last").await;
    c.dispatched_everywhere(c.acked_end()).await;
    let view = queue_view(c.store(l), "TopicA", 0);
    assert_dense(&view, last.queue_offset as usize + 1);
    assert!(view.len() <= acked.len() + unknown + 1);
    for (qo, b) in &acked {
        assert_eq!(
            common::decode(&view[*qo as usize].2).body.as_ref(),
            b.as_bytes()
        );
    }
    for i in 0..N {
        assert_eq!(queue_view(c.store(i), "TopicA", 0), view, "replica {i}");
    }
    c.shutdown().await;
}

/// Waits (bounded) until `cond` holds on replica `i`; retention compacts in the background
/// and announces nothing, so this re-checks every 10 ms.
async fn eventually(c: &Cluster, i: usize, what: &str, cond: impl Fn(&MessageStore) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond(c.store(i)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica {i}: {what} did not happen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (queue offset, phys offset) of a queue view, for readable assertion messages.
fn offsets(v: &QueueView) -> Vec<(i64, i64)> {
    v.iter().map(|(q, p, _)| (*q, *p)).collect()
}

fn segment_files(c: &Cluster, i: usize) -> Vec<u64> {
    let dir = c.dirs[i].path().join(format!("dledger-n{i}")).join("data");
    let mut v: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Lifts replica `i`'s retention floor and deletes every expired segment but the one being
/// written; a second pass drops the consume-queue units of the deleted segments.
async fn compact_to_last_segment(c: &Cluster, i: usize) {
    c.floors[i].store(u64::MAX, Ordering::SeqCst);
    assert!(c.store(i).delete_expired_files(true) >= 1, "replica {i}");
    let last = *segment_files(c, i).last().unwrap();
    eventually(c, i, "compaction to the last segment", |s| {
        s.commit_log_min_offset() == last as i64
    })
    .await;
    c.store(i).delete_expired_files(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments_on_every_replica_only_below_the_floor() {
    // Expired = written before now (fileReservedTime 0); 128 KiB segments.
    let mut c = Cluster::start_tuned(|_| {}, |s| s.file_reserved_time_hours = 0).await;
    let l = c.writable().await;
    let big = "r".repeat(3000);
    for k in 0..150 {
        c.put(l, 0, &format!("{big}-{k}")).await;
    }
    let end = c.acked_end();
    assert!(end > 3 * common::SEG as i64);
    c.dispatched_everywhere(end).await;
    let before = queue_view(c.store(l), "TopicA", 0);
    assert_dense(&before, 150);

    // No complete metadata round known (floor 0): nothing may go, expired or not.
    for i in 0..N {
        assert_eq!(c.store(i).delete_expired_files(true), 0, "replica {i}");
        assert_eq!(c.store(i).commit_log_min_offset(), 0);
    }
    // A floor inside the second segment keeps it and everything after it.
    let floor_phys = before[60].1;
    assert!(floor_phys > common::SEG as i64 && floor_phys < 2 * common::SEG as i64);
    // One entry per message, the last one is message 149: message 60 is entry last - 89.
    let floor_index = c.store(l).dledger_status().await.unwrap().last_index - 89;
    for f in &c.floors {
        f.store(floor_index, Ordering::SeqCst);
    }
    for i in 0..N {
        let files = segment_files(&c, i);
        assert_eq!(c.store(i).delete_expired_files(true), 1, "replica {i}");
        eventually(&c, i, "compaction", |s| {
            s.commit_log_min_offset() == common::SEG as i64
        })
        .await;
        eventually(&c, i, "file removal", |_| {
            segment_files(&c, i) == files[1..].to_vec()
        })
        .await;
        // The next pass drops the consume-queue entries of the deleted segment.
        c.store(i).delete_expired_files(true);
        let q_min = c.store(i).min_offset_in_queue("TopicA", 0);
        let first_kept = before.iter().position(|(_, p, _)| *p >= common::SEG as i64);
        assert!(q_min > 0 && q_min <= first_kept.unwrap() as i64, "{q_min}");
    }
    // Everything retained reads the same on every replica; below it, nothing.
    for i in 0..N {
        let v = queue_view(c.store(i), "TopicA", 0);
        assert!(
            v[..] == before[(v[0].0) as usize..],
            "replica {i}: {:?}",
            offsets(&v)
        );
        let low = c
            .store(i)
            .get_message("TopicA", 0, 0, 1, 1 << 20, &AcceptAllFilter);
        assert!(
            low.messages.is_empty(),
            "replica {i} served a deleted message"
        );
        assert_eq!(low.min_offset, c.store(i).min_offset_in_queue("TopicA", 0));
    }

    // Lifting the floor lets every segment but the one being written go.
    for i in 0..N {
        compact_to_last_segment(&c, i).await;
    }
    // Writes go on, and a restarted follower recovers from its compacted log.
    let r = c.put(l, 0, "after retention").await;
    assert_eq!(r.queue_offset, 150);
    let f = (l + 1) % N;
    c.halt(f).await;
    c.restart(f).await;
    c.dispatched_everywhere(c.acked_end()).await;
    let (vf, vl) = (
        queue_view(c.store(f), "TopicA", 0),
        queue_view(c.store(l), "TopicA", 0),
    );
    assert!(
        !vf.is_empty() && vf == vl,
        "follower {:?} leader {:?}",
        offsets(&vf),
        offsets(&vl)
    );
    assert!(c.store(f).commit_log_min_offset() >= 3 * common::SEG as i64);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leaders_retention_catches_up_by_snapshot_and_serves_the_same_queue()
{
    let mut c = Cluster::start_tuned(|_| {}, |s| s.file_reserved_time_hours = 0).await;
    let l = c.writable().await;
    for k in 0..20 {
        c.put(l, 0, &format!("early-{k}")).await;
    }
    c.dispatched_everywhere(c.acked_end()).await;
    let f = (l + 1) % N;
    let f_end_before = c.store(f).commit_log_max_offset();
    c.halt(f).await;

    // While f is down the others write ~3.5 segments and delete all but the last one, so
    // the entries f needs next exist nowhere: the leader must send a snapshot.
    let big = "s".repeat(3000);
    for k in 0..150 {
        c.put(l, 0, &format!("{big}-{k}")).await;
    }
    c.dispatched_everywhere(c.acked_end()).await;
    for i in c.alive() {
        compact_to_last_segment(&c, i).await;
    }
    let log_start = c.store(l).commit_log_min_offset();
    assert!(log_start > f_end_before, "f's next entry must be gone");

    c.restart(f).await;
    let r = c.put(l, 0, "after the snapshot").await;
    assert_eq!(r.queue_offset, 170, "queue offsets continue on the leader");
    c.dispatched_everywhere(c.acked_end()).await;

    // f's log restarted at the leader's position; what both retain reads identically.
    assert_eq!(c.store(f).commit_log_min_offset(), log_start);
    // A consumer reading f from offset 0 (following next_begin_offset, as clients do) gets
    // exactly what the leader retains: units of f's old log point at deleted bytes and the
    // messages f never received are blank-filled, so neither is ever served.
    let (vf, vl) = (
        consume_from(c.store(f), "TopicA", 0, 0),
        consume_from(c.store(l), "TopicA", 0, 0),
    );
    assert!(
        !vl.is_empty() && vf == vl,
        "follower {:?} leader {:?}",
        offsets(&vf),
        offsets(&vl)
    );
    assert_eq!(vf.last().map(|m| m.0), Some(170));
    assert!(vf.iter().all(|(_, p, _)| *p >= log_start));
    // The next cleanup pass moves f's queue minimum past the units it cannot serve.
    c.store(f).delete_expired_files(false);
    assert_eq!(
        c.store(f).min_offset_in_queue("TopicA", 0),
        c.store(l).min_offset_in_queue("TopicA", 0)
    );
    assert_eq!(queue_view(c.store(f), "TopicA", 0), vl);
    // f is a full member again: it can become the leader and keep the queue dense.
    c.halt(l).await;
    let nl = c.writable().await;
    let r = c.put(nl, 0, "after failover").await;
    assert_eq!(r.queue_offset, 171);
    c.shutdown().await;
}
