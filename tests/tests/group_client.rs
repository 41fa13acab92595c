//! A real client against the three-replica group (issue 4 §5 f): rocketmq-client-cpp 1.x
//! (PyPI `rocketmq==0.4.4`, tests/clients/cpp/cpp_client.py) sends and consumes through the
//! namesrv before and after the master is SIGKILLed. The client processes are fresh after
//! the failover, so they find the new master through the namesrv route, which needs the
//! new master to know (and register) the topic created on the old one.

use std::collections::BTreeSet;

use tests::group::{ClientRun, Group, GroupOptions, MASTER_TIMEOUT_MS};

const TOPIC: &str = "GroupCpp";
const QUEUES: i32 = 4;
const PER_PHASE: usize = 20;
const CLIENT_TIMEOUT_MS: u64 = 90_000;

macro_rules! ok {
    ($g:expr, $what:expr, $e:expr $(,)?) => {
        match $e {
            Ok(v) => v,
            Err(e) => panic!("{}: {e}\n{}", $what, $g.logs()),
        }
    };
}

fn check(g: &Group, what: &str, run: &ClientRun) {
    assert!(
        run.success,
        "{what}: client failed; last events {:?}\nstderr:\n{}\n{}",
        run.events.iter().rev().take(10).collect::<Vec<_>>(),
        run.stderr_tail,
        g.logs()
    );
}

fn produce(g: &Group, prefix: &str) -> BTreeSet<String> {
    let n = PER_PHASE.to_string();
    let args = [
        "produce",
        "--topic",
        TOPIC,
        "--prefix",
        prefix,
        "--sync",
        &n,
        "--timeout-ms",
        "60000",
    ];
    let run = ok!(
        g,
        "run producer",
        g.run_cpp_client(&args, CLIENT_TIMEOUT_MS)
    );
    check(g, &format!("produce {prefix}"), &run);
    let sent: BTreeSet<String> = run.field_of("sent", "body").into_iter().collect();
    assert_eq!(sent.len(), PER_PHASE, "producer {prefix} reported {sent:?}");
    sent
}

fn consume(g: &Group, group: &str, expect: usize) -> BTreeSet<String> {
    let n = expect.to_string();
    let args = [
        "consume",
        "--topic",
        TOPIC,
        "--group",
        group,
        "--expect",
        &n,
        "--timeout-ms",
        "60000",
    ];
    let run = ok!(
        g,
        "run consumer",
        g.run_cpp_client(&args, CLIENT_TIMEOUT_MS)
    );
    check(g, &format!("consume {group}"), &run);
    run.field_of("received", "body").into_iter().collect()
}

#[test]
fn cpp_client_sends_and_consumes_before_and_after_a_failover() {
    let mut g = Group::start(GroupOptions::default()).expect("start group");
    let m = ok!(g, "master", g.wait_master(MASTER_TIMEOUT_MS, None));
    ok!(g, "create topic", g.create_topic(m, TOPIC, QUEUES));
    ok!(
        g,
        "all registered",
        g.wait_all_registered(MASTER_TIMEOUT_MS)
    );

    let before = produce(&g, "before");
    let got = consume(&g, "cg_before", PER_PHASE);
    assert_eq!(got, before, "consumed before the failover");

    ok!(g, "kill master", g.kill(m));
    let n = ok!(g, "new master", g.wait_master(MASTER_TIMEOUT_MS, Some(m)));
    // The new master routes the topic (replicated topic table).
    ok!(
        g,
        "route to the new master",
        tests::group::wait_until(
            "the topic routed to the new master",
            MASTER_TIMEOUT_MS,
            || {
                Ok(
                    tests::group::route_master(&g.namesrv_addr(), TOPIC, g.group_name())?
                        .as_deref()
                        == Some(g.node_addr(n).as_str()),
                )
            }
        )
    );

    let after = produce(&g, "after");
    // A new group reads the whole replicated log from the new master.
    let all: BTreeSet<String> = before.union(&after).cloned().collect();
    let got = consume(&g, "cg_after", all.len());
    assert_eq!(
        got, all,
        "consumed after the failover (new group, from offset 0)"
    );
}
