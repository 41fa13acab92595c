//! Two consumer processes in one group (clustering) share a topic's queues: together they
//! consume everything, exercising GET_CONSUMER_LIST_BY_GROUP, NOTIFY_CONSUMER_IDS_CHANGED and
//! the clients' rebalance against our broker.

use std::time::{Duration, Instant};

use tests::check::{acked_union, assert_same_messages, sent_by_body};
use tests::script::{run, ScriptOutput, ScriptRun};
use tests::{BrokerOptions, ClientKind, Cluster};

const QUEUES: i32 = 4;
const CONSUME_TIMEOUT_MS: u64 = 90_000;

fn two_consumers_share_a_group(kind: ClientKind, script: &str, group: &str) {
    let topic = "Shared";
    let count = 40;
    let c = Cluster::start(BrokerOptions::default()).expect("start namesrv + broker");
    c.create_topic(topic, QUEUES).expect("create topic");
    let stop_file = c.dir().join("stop-consumers");
    let stop = stop_file.to_string_lossy().into_owned();
    let timeout = CONSUME_TIMEOUT_MS.to_string();
    let args = [
        "consume",
        "--topic",
        topic,
        "--group",
        group,
        "--stop-file",
        &stop,
        "--timeout-ms",
        &timeout,
    ];
    let mut a = ScriptRun::start(kind, script, &args, &c).expect("consumer A");
    let mut b = ScriptRun::start(kind, script, &args, &c).expect("consumer B");
    a.wait_event("started", 60_000).expect("A started");
    b.wait_event("started", 60_000).expect("B started");
    // Both must have sent a heartbeat before we produce, so the broker knows the group.
    c.wait_for("two consumers in the group", 30_000, || {
        Ok(c.admin_broker()?.consumer_ids(group)?.len() == 2)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));

    let produced = run(
        ClientKind::Cpp,
        "cpp_client.py",
        &[
            "produce",
            "--topic",
            topic,
            "--prefix",
            "shared",
            "--sync",
            &count.to_string(),
            "--timeout-ms",
            "60000",
        ],
        &c,
        80_000,
    )
    .expect("producer");
    produced.assert_success();
    let sent = sent_by_body(&produced);

    // Wait until the two together acknowledged everything, then tell both to stop.
    let deadline = Instant::now() + Duration::from_millis(CONSUME_TIMEOUT_MS);
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    loop {
        seen_a.extend(a.poll(100));
        seen_b.extend(b.poll(100));
        if acked_union(&[&seen_a, &seen_b]).len() >= sent.len() || Instant::now() >= deadline {
            break;
        }
    }
    std::fs::write(&stop_file, b"stop").expect("write stop file");
    let out_a: ScriptOutput = a.finish(30_000).expect("A output");
    let out_b: ScriptOutput = b.finish(30_000).expect("B output");
    let mut all = tests::check::received_by_body(&out_a);
    for (body, evs) in tests::check::received_by_body(&out_b) {
        all.entry(body).or_default().extend(evs);
    }
    // ali-ons ignores NOTIFY_CONSUMER_IDS_CHANGED and rebalances every 10 s, so its first
    // consumer may still pull every queue while the second takes half: duplicates are allowed
    // (at-least-once), losses are not.
    let per = |o: &ScriptOutput| o.of_kind("received").len();
    eprintln!("deliveries: A {}, B {}", per(&out_a), per(&out_b));
    let context = format!(
        "two consumers in group {group}\n--- A ---\n{}\n--- B ---\n{}",
        out_a.describe(),
        out_b.describe()
    );
    assert_same_messages(&sent, &all, &context);
    out_a.assert_success();
    out_b.assert_success();

    // Both consumers were already waiting in long-polling pulls (held up to 15-20 s by the
    // clients) when the messages arrived: the arrival must wake the held pulls.
    let slowest_ms = all
        .values()
        .flat_map(|evs| evs.iter())
        .filter_map(|e| Some(e.i64("recv_ms")? - e.i64("born_ms")?))
        .max()
        .unwrap_or(0);
    assert!(
        slowest_ms < 8_000,
        "slowest delivery took {slowest_ms} ms after the send: held pulls are not woken by new \
         messages"
    );

    // Both shut down (UNREGISTER_CLIENT): the group has no live consumer left.
    c.wait_for("the group to have no consumers", 15_000, || {
        Ok(c.admin_broker()?.consumer_ids(group)?.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
}

#[test]
fn two_cpp_consumers_in_one_group_consume_everything() {
    two_consumers_share_a_group(ClientKind::Cpp, "cpp_client.py", "cpp_cg_shared");
}

#[test]
fn two_ons_consumers_in_one_group_consume_everything() {
    two_consumers_share_a_group(ClientKind::Node, "ons_client.js", "ons_cg_shared");
}
