//! The harness itself against the real binaries, without client libraries: processes start,
//! become ready, route a created topic, and restart on the same store.

use tests::{BrokerOptions, Cluster};

#[test]
fn cluster_starts_and_routes_a_created_topic() {
    let c = Cluster::start(BrokerOptions::default()).expect("start namesrv + broker");
    c.create_topic("HarnessTopic", 4)
        .unwrap_or_else(|e| panic!("create topic: {e}\n{}", c.logs()));
    let route = c
        .admin_namesrv()
        .and_then(|mut ns| ns.route("HarnessTopic"))
        .expect("route query")
        .expect("route exists");
    assert!(
        route.contains(&c.broker_addr()),
        "route names the broker: {route}"
    );
    assert!(
        route.contains("broker-a"),
        "route names the broker: {route}"
    );
    let mut admin = c.admin_broker().expect("admin");
    for q in 0..4 {
        assert_eq!(admin.max_offset("HarnessTopic", q).expect("max offset"), 0);
    }
    let unknown = c
        .admin_namesrv()
        .and_then(|mut ns| ns.route("NoSuchTopicAnywhere"))
        .expect("route query");
    assert!(unknown.is_none(), "unknown topic routed: {unknown:?}");
}

#[test]
fn broker_turns_transparent_huge_pages_off_for_itself() {
    let mut c = Cluster::start(BrokerOptions::default()).expect("start namesrv + broker");
    let pid = c
        .broker_process()
        .and_then(|p| p.pid())
        .expect("broker is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    // Linux ≥ 5.0 reports the PR_SET_THP_DISABLE flag; older kernels have no such line.
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}

#[test]
fn broker_restarts_on_the_same_store_dir_and_keeps_an_acknowledged_topic() {
    let mut c = Cluster::start(BrokerOptions::default()).expect("start namesrv + broker");
    c.create_topic("RestartTopic", 2).expect("create topic");
    // Crash right after the acknowledgement: Java's broker writes topics.json before it answers
    // UPDATE_AND_CREATE_TOPIC (TopicConfigManager.updateTopicConfig -> persist()), so an
    // acknowledged topic survives a SIGKILL.
    c.kill_broker().expect("kill");
    // Closing the broker's connection drops it from every route (namesrv.md §1–2).
    c.wait_for(
        "the namesrv to drop the dead broker's route",
        15_000,
        || Ok(c.admin_namesrv()?.route("RestartTopic")?.is_none()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    c.start_broker()
        .unwrap_or_else(|e| panic!("restart: {e}\n{}", c.logs()));
    // The restarted broker registers its whole topic table at start-up.
    c.wait_for("the restarted broker to route RestartTopic", 20_000, || {
        Ok(c.admin_namesrv()?.route("RestartTopic")?.is_some())
    })
    .unwrap_or_else(|e| {
        panic!(
            "topic acknowledged before the crash is gone after restart ({e}); topics.json:\n{}",
            std::fs::read_to_string(c.dir().join("store/config/topics.json")).unwrap_or_default()
        )
    });
}

#[test]
fn malformed_batches_get_an_error_response_and_the_broker_keeps_serving() {
    use remoting::codes::{request, response};
    use remoting::RemotingCommand;

    let c = Cluster::start(BrokerOptions::default()).expect("start namesrv + broker");
    c.create_topic("BadBatch", 1).expect("create topic");
    let mut admin = c.admin_broker().expect("admin");
    // clients.md #6: answer any malformed batch with an error, never a crash or a hang.
    let cases: [(&str, &[u8]); 3] = [
        ("1", b"definitely not zlib"),                  // "compressed" garbage
        ("0", b"\x00\x00\x00\x10\x00\x00\x00\x00"),     // truncated inner message
        ("0", b"\x7f\xff\xff\xff\x00\x00\x00\x00xxxx"), // absurd inner length
    ];
    for (sys_flag, body) in cases {
        let mut cmd = RemotingCommand::request(request::SEND_BATCH_MESSAGE);
        for (k, v) in [
            ("producerGroup", "pg"),
            ("topic", "BadBatch"),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "4"),
            ("queueId", "0"),
            ("sysFlag", sys_flag),
            ("bornTimestamp", "0"),
            ("flag", "0"),
            ("properties", ""),
            ("reconsumeTimes", "0"),
            ("batch", "true"),
        ] {
            cmd.ext_fields.insert(k.to_string(), v.to_string());
        }
        cmd.body = bytes::Bytes::from_static(body);
        let resp = admin
            .invoke(cmd)
            .unwrap_or_else(|e| panic!("no answer to a malformed batch: {e}\n{}", c.logs()));
        assert_ne!(
            resp.code,
            response::SUCCESS,
            "malformed batch {body:?} accepted"
        );
    }
    assert_eq!(
        admin
            .max_offset("BadBatch", 0)
            .expect("broker still serves"),
        0
    );
}
