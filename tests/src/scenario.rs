//! Helpers shared by the real-client scenario suites (C++ client and ali-ons): one broker
//! with a topic, a script run with its own deadline, committed-offset totals, and the
//! scenarios both suites run the same way (each with its own client).

use crate::check::{assert_delivered, received_by_body, sent_by_body};
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

/// One real client's script, as the shared scenarios below drive it.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub kind: ClientKind,
    pub script: &'static str,
    /// Queues of the topics the scenarios create.
    pub queues: i32,
    /// Deadline of one script run.
    pub timeout_ms: u64,
    /// Name in assertion messages ("C++ consumer", "ali-ons").
    pub label: &'static str,
}

impl Client {
    pub fn run(&self, c: &Cluster, args: &[&str]) -> ScriptOutput {
        run_client(self.kind, self.script, c, args, self.timeout_ms)
    }

    pub fn produce(&self, c: &Cluster, args: &[&str]) -> ScriptOutput {
        produce_with(self.kind, self.script, c, args, self.timeout_ms)
    }

    pub fn consume(&self, c: &Cluster, topic: &str, group: &str, expect: usize) -> ScriptOutput {
        let n = expect.to_string();
        self.run(
            c,
            &[
                "consume", "--topic", topic, "--group", group, "--expect", &n,
            ],
        )
    }
}

/// 30 messages over TagA/TagB/TagC; a consumer subscribed to `expr` (two of them, in
/// `keep`) receives exactly those 20.
pub fn tag_filter_delivers_only_subscribed_tags(
    client: Client,
    topic: &str,
    group: &str,
    keep: [&str; 2],
) {
    let c = cluster_with_topic(topic, client.queues);
    let sent = client.produce(
        &c,
        &[
            "--topic",
            topic,
            "--prefix",
            "tags",
            "--tags",
            "TagA,TagB,TagC",
            "--sync",
            "30",
        ],
    );
    let want: std::collections::BTreeMap<String, _> = sent_by_body(&sent)
        .into_iter()
        .filter(|(_, e)| e.str("tags").is_some_and(|t| keep.contains(&t)))
        .collect();
    assert_eq!(want.len(), 20);
    let expr = format!("{} || {}", keep[0], keep[1]);
    let out = client.run(
        &c,
        &[
            "consume", "--topic", topic, "--group", group, "--expr", &expr, "--expect", "20",
        ],
    );
    assert_delivered(&want, &out, &format!("{} with tag filter", client.label));
}

/// A consumer receives `n` messages and commits on shutdown; a restarted consumer of the
/// same group receives only the `n` sent afterwards.
pub fn consumer_resumes_from_committed_offset(client: Client, topic: &str, group: &str, n: usize) {
    let c = cluster_with_topic(topic, client.queues);
    let count = n.to_string();
    let first =
        sent_by_body(&client.produce(&c, &["--topic", topic, "--prefix", "r1", "--sync", &count]));
    let out1 = client.consume(&c, topic, group, n);
    assert_delivered(&first, &out1, "first consumer");
    let committed = |c: &Cluster| committed_total(c, group, topic, client.queues);
    assert_eq!(committed(&c), n as i64, "offsets committed on shutdown");

    let second =
        sent_by_body(&client.produce(&c, &["--topic", topic, "--prefix", "r2", "--sync", &count]));
    let out2 = client.consume(&c, topic, group, n);
    let got = received_by_body(&out2);
    let old: Vec<_> = got.keys().filter(|b| first.contains_key(*b)).collect();
    assert!(old.is_empty(), "restarted consumer re-received {old:?}");
    assert_delivered(&second, &out2, "restarted consumer");
    assert_eq!(committed(&c), 2 * n as i64);
}
