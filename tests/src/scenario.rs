//! Helpers shared by the real-client scenario suites (C++ client and ali-ons): one broker
//! with a topic, a script run with its own deadline, committed-offset totals.

use crate::script::{run, ScriptOutput};
use crate::{BrokerOptions, ClientKind, Cluster};

/// Extra time the harness gives a script past its own `--timeout-ms` before killing it.
pub const HARNESS_MARGIN_MS: u64 = 20_000;

/// A namesrv + single-replica broker with `topic` created on `queues` queues.
pub fn cluster_with_topic(topic: &str, queues: i32) -> Cluster {
    let c = Cluster::start(BrokerOptions::default()).expect("start namesrv + broker");
    c.create_topic(topic, queues)
        .unwrap_or_else(|e| panic!("create topic {topic}: {e}\n{}", c.logs()));
    c
}

/// Runs a client script with `--timeout-ms timeout_ms`; panics if it cannot be run.
pub fn run_client(
    kind: ClientKind,
    script: &str,
    c: &Cluster,
    args: &[&str],
    timeout_ms: u64,
) -> ScriptOutput {
    let t = timeout_ms.to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--timeout-ms", &t]);
    run(kind, script, &all, c, timeout_ms + HARNESS_MARGIN_MS)
        .unwrap_or_else(|e| panic!("run {script} {args:?}: {e}"))
}

/// `produce ARGS` through a client script; asserts the script succeeded.
pub fn produce_with(
    kind: ClientKind,
    script: &str,
    c: &Cluster,
    args: &[&str],
    timeout_ms: u64,
) -> ScriptOutput {
    let mut all = vec!["produce"];
    all.extend_from_slice(args);
    let out = run_client(kind, script, c, &all, timeout_ms);
    out.assert_success();
    out
}

/// Sum over `queues` of the broker's committed offsets of `group` on `topic` (none = 0).
pub fn committed_total(c: &Cluster, group: &str, topic: &str, queues: i32) -> i64 {
    let mut a = c.admin_broker().expect("admin connect");
    (0..queues)
        .map(|q| {
            a.consumer_offset(group, topic, q)
                .expect("QUERY_CONSUMER_OFFSET")
                .unwrap_or(0)
        })
        .sum()
}
