//! Broker restart on the same store dir: with flushDiskType=SYNC_FLUSH every acknowledged
//! message survives a SIGKILL, queue offsets stay dense, and new sends continue after them.

use std::collections::BTreeMap;

use tests::check::{assert_delivered, sent_by_body};
use tests::script::run;
use tests::{BrokerOptions, ClientKind, Cluster};

const QUEUES: i32 = 4;

fn max_offsets(c: &Cluster, topic: &str) -> Vec<i64> {
    let mut a = c.admin_broker().expect("admin");
    (0..QUEUES)
        .map(|q| a.max_offset(topic, q).expect("GET_MAX_OFFSET"))
        .collect()
}

#[test]
fn sigkilled_sync_flush_broker_loses_no_acknowledged_message() {
    let topic = "Durable";
    let mut c = Cluster::start(BrokerOptions::default()).expect("start namesrv + broker");
    c.create_topic(topic, QUEUES).expect("create topic");

    let cpp = run(
        ClientKind::Cpp,
        "cpp_client.py",
        &[
            "produce",
            "--topic",
            topic,
            "--prefix",
            "before",
            "--sync",
            "30",
            "--async",
            "8",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("run C++ producer");
    cpp.assert_success();
    let ons = run(
        ClientKind::Node,
        "ons_client.js",
        &[
            "produce",
            "--topic",
            topic,
            "--prefix",
            "ons-before",
            "--sync",
            "10",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("run ali-ons producer");
    ons.assert_success();
    let mut sent: BTreeMap<String, _> = sent_by_body(&cpp);
    sent.extend(sent_by_body(&ons));
    assert_eq!(sent.len(), 48);
    let before = max_offsets(&c, topic);
    assert_eq!(
        before.iter().sum::<i64>(),
        48,
        "offsets before the crash: {before:?}"
    );

    c.kill_broker().expect("SIGKILL broker");
    c.start_broker()
        .unwrap_or_else(|e| panic!("restart broker on the same store: {e}\n{}", c.logs()));
    c.wait_for_route(topic).expect("route after restart");
    let after = max_offsets(&c, topic);
    assert_eq!(after, before, "per-queue max offsets survive the restart");

    let more = run(
        ClientKind::Cpp,
        "cpp_client.py",
        &[
            "produce",
            "--topic",
            topic,
            "--prefix",
            "after",
            "--sync",
            "8",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("run C++ producer after restart");
    more.assert_success();
    sent.extend(sent_by_body(&more));
    assert_eq!(sent.len(), 56);

    // Read everything back from offset 0 of every queue.
    let pulled = run(
        ClientKind::Cpp,
        "cpp_client.py",
        &[
            "pull",
            "--topic",
            topic,
            "--expect",
            "56",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("run C++ pull consumer");
    let dups = assert_delivered(&sent, &pulled, "after a SIGKILL restart");
    assert_eq!(dups, 0, "a pull from 0 sees every message once");
    // Queue offsets are dense per queue: 0..max without holes or repeats.
    let mut per_queue: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for e in pulled.of_kind("received") {
        per_queue
            .entry(e.i64("queue_id").expect("queue_id"))
            .or_default()
            .push(e.i64("queue_offset").expect("queue_offset"));
    }
    for (q, mut offs) in per_queue {
        offs.sort_unstable();
        let want: Vec<i64> = (0..offs.len() as i64).collect();
        assert_eq!(offs, want, "queue {q} offsets");
    }
}

#[test]
fn sigterm_restart_keeps_committed_consumer_offsets() {
    let topic = "DurableOffsets";
    let group = "cg_durable_offsets";
    let mut c = Cluster::start(BrokerOptions::default()).expect("start namesrv + broker");
    c.create_topic(topic, QUEUES).expect("create topic");
    let sent = run(
        ClientKind::Node,
        "ons_client.js",
        &[
            "produce",
            "--topic",
            topic,
            "--prefix",
            "o",
            "--sync",
            "8",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("producer");
    sent.assert_success();
    let consumed = run(
        ClientKind::Node,
        "ons_client.js",
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            group,
            "--expect",
            "8",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("consumer");
    consumed.assert_success();
    let committed = |c: &Cluster| -> i64 {
        let mut a = c.admin_broker().expect("admin");
        (0..QUEUES)
            .map(|q| {
                a.consumer_offset(group, topic, q)
                    .expect("offset")
                    .unwrap_or(0)
            })
            .sum()
    };
    assert_eq!(committed(&c), 8);
    c.stop_broker().expect("SIGTERM broker");
    c.start_broker()
        .unwrap_or_else(|e| panic!("restart broker: {e}\n{}", c.logs()));
    assert_eq!(committed(&c), 8, "consumer offsets survive a clean restart");
}

#[test]
fn sigterm_async_flush_broker_flushes_everything_on_the_way_out() {
    let topic = "DurableAsync";
    let opts = BrokerOptions {
        flush_disk_type: "ASYNC_FLUSH".into(),
        ..BrokerOptions::default()
    };
    let mut c = Cluster::start(opts).expect("start namesrv + broker");
    c.create_topic(topic, QUEUES).expect("create topic");
    let out = run(
        ClientKind::Node,
        "ons_client.js",
        &[
            "produce",
            "--topic",
            topic,
            "--prefix",
            "async",
            "--sync",
            "20",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("producer");
    out.assert_success();
    let sent = sent_by_body(&out);
    // Consume queues are built after the put is acknowledged (as Java's reput service does);
    // under a loaded CI the dispatcher can trail the producer's exit for a moment.
    tests::group::wait_until("all 20 messages dispatched", 10_000, || {
        Ok(max_offsets(&c, topic).iter().sum::<i64>() == 20)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", max_offsets(&c, topic), c.logs()));
    let before = max_offsets(&c, topic);
    assert_eq!(before.iter().sum::<i64>(), 20);
    // A graceful stop flushes the store (no crash-recovery guesswork involved).
    c.stop_broker().expect("SIGTERM broker");
    c.start_broker()
        .unwrap_or_else(|e| panic!("restart broker: {e}\n{}", c.logs()));
    assert_eq!(
        max_offsets(&c, topic),
        before,
        "offsets after a clean restart"
    );
    let pulled = run(
        ClientKind::Cpp,
        "cpp_client.py",
        &[
            "pull",
            "--topic",
            topic,
            "--expect",
            "20",
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("pull consumer");
    assert_delivered(&sent, &pulled, "after a clean ASYNC_FLUSH restart");
}
