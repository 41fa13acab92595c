//! Three-replica DLedger group as real processes (issue 4 §5): leader crashes under load,
//! restarted and wiped replicas catching up, an isolated leader, consumer offsets across a
//! failover. Every wait is a bounded poll for an observable event; logs of every node are
//! printed when a test fails.
//!
//! `GROUP_KILLS=N` raises the number of leader kills (default 5).

use std::collections::BTreeMap;

use tests::group::{
    commit_offset, drain_queue, query_offset, send_message, verify_all, BackgroundProducer,
    FollowingProducer, Group, GroupOptions, ProducerState, SendOutcome, Sent, Verification,
    GROUP_NODES, MASTER_TIMEOUT_MS,
};
use tests::proxy::Fault;

const QUEUES: i32 = 4;
/// Deadline for one failover (kill → producer's first ack on the new master).
const FAILOVER_TIMEOUT_MS: u64 = 30_000;
/// Deadline for a restarted/wiped replica to catch up.
const CATCH_UP_TIMEOUT_MS: u64 = 60_000;
/// Deadline for a batch of acknowledged sends while the group is healthy.
const PROGRESS_TIMEOUT_MS: u64 = 30_000;

fn kills() -> usize {
    std::env::var("GROUP_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Unwrap a harness result, or fail with every node's log (the expression is evaluated
/// before the group is borrowed for the logs, so it may borrow the group mutably).
macro_rules! ok {
    ($g:expr, $what:expr, $e:expr $(,)?) => {
        match $e {
            Ok(v) => v,
            Err(e) => panic!("{}: {e}\n{}", $what, $g.logs()),
        }
    };
}

/// A started group with `topic` created on the master and every node registered; returns
/// the group and the master's index.
fn start_group_with_topic(topic: &str) -> (Group, usize) {
    let mut g = Group::start(GroupOptions::default()).expect("start namesrv + three-replica group");
    let m = ok!(g, "master", g.wait_master(MASTER_TIMEOUT_MS, None));
    ok!(g, "create topic", g.create_topic(m, topic, QUEUES));
    ok!(
        g,
        "all registered",
        g.wait_all_registered(MASTER_TIMEOUT_MS)
    );
    (g, m)
}

/// A producer that sends `<prefix>-i` keys continuously, refreshing its route every second.
fn spawn_producer(g: &Group, topic: &str, prefix: &str) -> BackgroundProducer {
    BackgroundProducer::spawn(
        &g.namesrv_addr(),
        g.group_name(),
        topic,
        QUEUES,
        1_000,
        prefix,
    )
}

/// Stops `producer` and checks what it acknowledged (plus `extra` acknowledged writes, e.g.
/// probes) against the queues of the current master; returns the master's index too.
fn finish_and_verify(
    g: &mut Group,
    producer: BackgroundProducer,
    topic: &str,
    extra: BTreeMap<String, (i32, i64)>,
) -> (ProducerState, Verification, usize) {
    let state = producer.finish();
    let master = ok!(g, "final master", g.wait_master(MASTER_TIMEOUT_MS, None));
    let mut acked = state.acked.clone();
    acked.extend(extra);
    let v = ok!(
        g,
        "verify",
        verify_all(&g.node_addr(master), topic, QUEUES, &acked)
    );
    (state, v, master)
}

/// Send `n` keys `<prefix>-i` through a producer that follows the namesrv's master and
/// retries each key (a refusal or error is reported on stderr: with a stable master there
/// should be none); returns the acknowledged positions.
fn send_batch(g: &Group, topic: &str, prefix: &str, n: usize) -> BTreeMap<String, (i32, i64)> {
    let mut acked = BTreeMap::new();
    let mut p = FollowingProducer::new(&g.namesrv_addr(), g.group_name(), topic, QUEUES, 1_000);
    let mut refusals = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}-{i:06}");
        let q = i32::try_from(i).unwrap_or(0) % QUEUES;
        let (sent, failures) = ok!(g, "send", p.send_until_acked(q, &key, PROGRESS_TIMEOUT_MS));
        refusals.extend(failures);
        if let Sent::Acked {
            queue_id,
            queue_offset,
            ..
        } = sent
        {
            acked.insert(key, (queue_id, queue_offset));
        }
    }
    if !refusals.is_empty() {
        eprintln!(
            "send_batch {prefix}: {} failed attempts before acknowledgement, first: {:?}",
            refusals.len(),
            refusals.iter().take(3).collect::<Vec<_>>()
        );
    }
    acked
}

/// Every replica holds the same keys in the same queue positions as `master`.
fn assert_replicas_identical(g: &Group, master: usize, topic: &str) {
    let mut want = Vec::new();
    for q in 0..QUEUES {
        let recs = ok!(
            g,
            "drain master",
            drain_queue(&g.node_addr(master), topic, q)
        );
        want.push(
            recs.iter()
                .map(|r| (r.queue_offset, r.body_str()))
                .collect::<Vec<_>>(),
        );
    }
    for i in (0..GROUP_NODES).filter(|&i| i != master) {
        ok!(
            g,
            "catch up",
            g.wait_caught_up(i, master, topic, QUEUES, CATCH_UP_TIMEOUT_MS)
        );
        for q in 0..QUEUES {
            let recs = ok!(g, "drain replica", drain_queue(&g.node_addr(i), topic, q));
            let got: Vec<_> = recs
                .iter()
                .map(|r| (r.queue_offset, r.body_str()))
                .collect();
            assert!(
                got == want[q as usize],
                "n{i} queue {q} differs from master n{master}: {} vs {} records, first \
                 difference at {:?}\n{}",
                got.len(),
                want[q as usize].len(),
                got.iter().zip(&want[q as usize]).position(|(a, b)| a != b),
                g.logs()
            );
        }
    }
}

/// a + b: continuous sends while the leader is SIGKILLed repeatedly; every acknowledged
/// message is consumed at its acknowledged position, offsets are dense, the restarted nodes
/// hold exactly the master's log.
#[test]
fn repeated_leader_kills_lose_no_acknowledged_message_and_restarted_nodes_catch_up() {
    let topic = "GroupKill";
    let (mut g, _) = start_group_with_topic(topic);
    let producer = spawn_producer(&g, topic, "kill");
    let mut probes = BTreeMap::new();
    let mut timelines = Vec::new();
    for k in 0..kills() {
        // Some traffic on the current master before each kill.
        let before = producer.acked_count();
        ok!(
            g,
            "progress",
            producer.wait_acked(before, 50, PROGRESS_TIMEOUT_MS)
        );
        let t = ok!(
            g,
            "failover",
            g.kill_master_and_measure(
                &producer,
                topic,
                QUEUES,
                &format!("probe{k}"),
                &mut probes,
                FAILOVER_TIMEOUT_MS
            ),
        );
        eprintln!(
            "kill {k}: n{} -> n{}: elected {} ms, writable {} ms, registered {} ms, first send {} ms",
            t.killed, t.new_master, t.elected_ms, t.writable_ms, t.registered_ms, t.first_send_ms
        );
        ok!(g, "restart killed node", g.start_node(t.killed));
        ok!(
            g,
            "all registered",
            g.wait_all_registered(MASTER_TIMEOUT_MS)
        );
        timelines.push(t);
    }
    let after = producer.acked_count();
    ok!(
        g,
        "final progress",
        producer.wait_acked(after, 50, PROGRESS_TIMEOUT_MS)
    );
    let (state, v, master) = finish_and_verify(&mut g, producer, topic, probes);
    eprintln!(
        "{} kills; acknowledged {}, consumed {} records ({} distinct), {} duplicates, {} failed \
         attempts",
        timelines.len(),
        v.acked,
        v.consumed_records,
        v.distinct_consumed,
        v.duplicates,
        state.failed_attempts
    );
    assert!(
        v.lost.is_empty() && v.moved.is_empty() && v.offset_errors.is_empty(),
        "lost {} (first {:?}), moved {:?}, offset errors {:?}\n{}",
        v.lost.len(),
        v.lost.iter().take(10).collect::<Vec<_>>(),
        v.moved.iter().take(10).collect::<Vec<_>>(),
        v.offset_errors,
        g.logs()
    );
    assert!(
        v.distinct_consumed >= v.acked,
        "consumed fewer distinct keys than acknowledged"
    );
    // b: every restarted replica dropped any uncommitted tail and holds the master's log.
    assert_replicas_identical(&g, master, topic);
}

/// c: a follower whose store was deleted rejoins as an empty replica and catches up.
///
/// (It was once ignored for a "master dispatch stall": the harness compared the follower
/// with a single snapshot of the master taken right after the last acknowledged send,
/// before the master's own asynchronous dispatcher had reached it. Both sides are now
/// re-read on every poll.)
#[test]
fn follower_with_deleted_store_rejoins_and_catches_up() {
    let topic = "GroupWipe";
    let (mut g, m) = start_group_with_topic(topic);
    let mut acked = send_batch(&g, topic, "before", 120);
    let f = (m + 1) % GROUP_NODES;
    ok!(g, "kill follower", g.kill(f));
    ok!(g, "wipe", g.wipe_store(f));
    // The remaining majority keeps accepting writes without f.
    acked.extend(send_batch(&g, topic, "during", 80));
    ok!(g, "restart wiped follower", g.start_node(f));
    acked.extend(send_batch(&g, topic, "after", 40));
    let m = ok!(g, "master", g.wait_master(MASTER_TIMEOUT_MS, None));
    assert_ne!(m, f, "the wiped node cannot be elected before it caught up");
    let offs = ok!(
        g,
        "catch up",
        g.wait_caught_up(f, m, topic, QUEUES, CATCH_UP_TIMEOUT_MS)
    );
    let v = ok!(
        g,
        "verify on the wiped node",
        verify_all(&g.node_addr(f), topic, QUEUES, &acked)
    );
    eprintln!(
        "wiped replica: {} records, {} duplicates",
        v.consumed_records, v.duplicates
    );
    assert_eq!(
        offs.iter().sum::<i64>(),
        i64::try_from(v.consumed_records).unwrap_or(-1),
        "master and wiped replica hold the same number of records"
    );
    assert!(
        v.lost.is_empty() && v.moved.is_empty() && v.offset_errors.is_empty(),
        "wiped replica: {v:?}\n{}",
        g.logs()
    );
    assert_replicas_identical(&g, m, topic);
}

/// d: a leader cut off from both followers acknowledges no write; the majority elects a new
/// leader; after healing, the old leader's unacknowledged writes are gone everywhere and it
/// holds the new master's log.
#[test]
fn isolated_leader_acknowledges_nothing_and_majority_elects_a_new_leader() {
    isolated_leader_scenario("GroupSplit", Fault::Blackhole);
}

/// d, with the links refusing connections instead of swallowing bytes.
#[test]
fn leader_with_refused_links_acknowledges_nothing_and_majority_elects_a_new_leader() {
    isolated_leader_scenario("GroupSplitDrop", Fault::Drop);
}

fn isolated_leader_scenario(topic: &str, fault: Fault) {
    let (mut g, m) = start_group_with_topic(topic);
    let mut acked = send_batch(&g, topic, "before", 40);

    // The leader's replication traffic really flows through the proxies (so cutting them
    // is a partition): both directions of both of its links carried bytes.
    for j in (0..GROUP_NODES).filter(|&j| j != m) {
        for (from, to) in [(m, j), (j, m)] {
            let st = g.proxy(from, to).map(|p| p.stats()).unwrap_or_default();
            assert!(
                st.forwarded_bytes > 0,
                "link n{from}->n{to} carried nothing through its proxy: {st:?}"
            );
        }
    }
    g.isolate(m, fault);
    // Write to the isolated leader until the majority has a new writable leader.
    let mut old_leader = ok!(
        g,
        "connect old leader",
        tests::AdminClient::connect(&g.node_addr(m), 2_000)
    );
    let mut isolated_keys = Vec::new();
    let mut new_leader = None;
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(FAILOVER_TIMEOUT_MS);
    let mut probes = BTreeMap::new();
    for attempt in 0u32.. {
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader among the majority within {FAILOVER_TIMEOUT_MS} ms\n{}",
            g.logs()
        );
        let key = format!("isolated-{attempt:05}");
        // A timeout or error is the expected outcome; SUCCESS is a split-brain write.
        if let Ok(SendOutcome::Acked {
            queue_id,
            queue_offset,
        }) = send_message(&mut old_leader, g.group_name(), topic, 0, QUEUES, &key)
        {
            panic!(
                "isolated leader n{m} acknowledged {key} at {queue_id}/{queue_offset}\n{}",
                g.logs()
            );
        }
        isolated_keys.push(key);
        if let Ok(c) = tests::AdminClient::connect(&g.node_addr(m), 2_000) {
            old_leader = c; // a timed-out connection may hold a late response: start fresh
        }
        for j in (0..GROUP_NODES).filter(|&j| j != m) {
            if g.probe_leader(
                j,
                topic,
                QUEUES,
                &format!("probe-{attempt}-{j}"),
                &mut probes,
            ) {
                new_leader = Some(j);
            }
        }
        if new_leader.is_some() {
            break;
        }
    }
    let new_leader = new_leader.unwrap_or(m);
    acked.extend(probes);
    ok!(
        g,
        "new master registered",
        g.wait_master(MASTER_TIMEOUT_MS, Some(m))
    );
    acked.extend(send_batch(&g, topic, "majority", 40));
    // Still isolated: the old leader must not acknowledge anything now either.
    let late = send_message(
        &mut old_leader,
        g.group_name(),
        topic,
        1,
        QUEUES,
        "isolated-late",
    );
    assert!(
        !matches!(late, Ok(SendOutcome::Acked { .. })),
        "isolated old leader acknowledged a write after the new election: {late:?}\n{}",
        g.logs()
    );
    isolated_keys.push("isolated-late".into());

    let discarded: u64 = (0..GROUP_NODES)
        .filter(|&j| j != m)
        .flat_map(|j| [g.proxy(m, j), g.proxy(j, m)])
        .flatten()
        .map(|p| p.stats().discarded_bytes)
        .sum();
    eprintln!(
        "isolated n{m} ({fault:?}): {} writes refused or timed out, n{new_leader} elected, \
         {discarded} bytes blackholed",
        isolated_keys.len()
    );
    g.heal();
    // The deposed leader rejoins as a slave (brokerId = peer index + 1) of the new master.
    let slave_id = i64::try_from(m).unwrap_or(0) + 1;
    ok!(
        g,
        "old leader registered as slave",
        tests::group::wait_until(
            &format!("n{m} registered as slave {slave_id}"),
            MASTER_TIMEOUT_MS,
            || {
                let reg = g.registered()?;
                Ok(reg.get(&slave_id) == Some(&g.node_addr(m))
                    && reg.get(&0) == Some(&g.node_addr(new_leader)))
            }
        )
    );
    assert_replicas_identical(&g, new_leader, topic);
    let v = ok!(
        g,
        "verify",
        verify_all(&g.node_addr(new_leader), topic, QUEUES, &acked)
    );
    assert!(
        v.lost.is_empty() && v.moved.is_empty() && v.offset_errors.is_empty(),
        "after healing: {v:?}\n{}",
        g.logs()
    );
    let mut stored = Vec::new();
    for q in 0..QUEUES {
        for r in ok!(g, "drain", drain_queue(&g.node_addr(new_leader), topic, q)) {
            stored.push(r.body_str());
        }
    }
    let resurrected: Vec<_> = isolated_keys
        .iter()
        .filter(|k| stored.contains(k))
        .collect();
    assert!(
        resurrected.is_empty(),
        "writes the isolated leader never acknowledged were committed: {resurrected:?}\n{}",
        g.logs()
    );
}

/// e: consumer offsets acknowledged before a failover are not regressed after it, even when
/// the master is killed right after acknowledging them.
#[test]
fn committed_consumer_offsets_survive_a_failover() {
    let topic = "GroupOffsets";
    let cg = "group-offsets-cg";
    let (mut g, m) = start_group_with_topic(topic);
    send_batch(&g, topic, "msg", 80);
    let mut c = ok!(g, "connect master", g.admin(m));
    let committed: Vec<i64> = (0..QUEUES).map(|q| 5 + i64::from(q) * 3).collect();
    for q in 0..QUEUES {
        ok!(
            g,
            "commit",
            commit_offset(&mut c, cg, topic, q, committed[q as usize])
        );
    }
    // No waiting for the followers: the master acknowledges UPDATE_CONSUMER_OFFSET only
    // once the commit is in the replicated log, so crashing it right after the answers must
    // not lose any of them.
    ok!(g, "kill master", g.kill(m));
    let n = ok!(g, "new master", g.wait_master(FAILOVER_TIMEOUT_MS, Some(m)));
    let mut a = ok!(g, "connect new master", g.admin(n));
    for q in 0..QUEUES {
        let got = ok!(g, "query offset", query_offset(&mut a, cg, topic, q));
        assert!(
            got.is_some_and(|o| o >= committed[q as usize]),
            "queue {q}: committed {} before the failover, new master n{n} reports {got:?}\n{}",
            committed[q as usize],
            g.logs()
        );
    }
    // A commit on the new master moves forward from there, and the restarted old master
    // learns it.
    ok!(
        g,
        "commit on new master",
        commit_offset(&mut a, cg, topic, 0, 40)
    );
    ok!(g, "restart old master", g.start_node(m));
    ok!(
        g,
        "restarted node sees the new offset",
        tests::group::wait_until(
            "old master to report offset 40",
            CATCH_UP_TIMEOUT_MS,
            || {
                let Ok(mut a) = g.admin(m) else {
                    return Ok(false);
                };
                Ok(query_offset(&mut a, cg, topic, 0).ok().flatten() == Some(40))
            }
        ),
    );
}

/// a + d under load: the producer sends continuously while the master (twice) or a follower
/// (once) is partitioned from the other replicas and healed again; no acknowledged message
/// is lost and every replica ends with the master's log (the deposed leaders dropped their
/// unacknowledged tails).
#[test]
fn partitions_under_load_lose_no_acknowledged_message() {
    let topic = "GroupPartitions";
    let (mut g, _) = start_group_with_topic(topic);
    let producer = spawn_producer(&g, topic, "part");
    let rounds = [
        (true, Fault::Blackhole),
        (false, Fault::Drop),
        (true, Fault::Drop),
    ];
    for (round, (isolate_master, fault)) in rounds.into_iter().enumerate() {
        let before = producer.acked_count();
        ok!(
            g,
            "progress",
            producer.wait_acked(before, 50, PROGRESS_TIMEOUT_MS)
        );
        let master = ok!(g, "master", g.wait_master(MASTER_TIMEOUT_MS, None));
        let victim = if isolate_master {
            master
        } else {
            (master + 1) % GROUP_NODES
        };
        let t0 = std::time::Instant::now();
        g.isolate(victim, fault);
        if isolate_master {
            ok!(
                g,
                "new master",
                g.wait_master(FAILOVER_TIMEOUT_MS, Some(victim))
            );
        }
        // The majority side keeps (or resumes) acknowledging writes.
        let n = producer.acked_count();
        ok!(
            g,
            "progress during the partition",
            producer.wait_acked(n, 50, FAILOVER_TIMEOUT_MS)
        );
        eprintln!(
            "round {round}: isolated n{victim} ({fault:?}, master {isolate_master}); 50 acks on \
             the majority side after {} ms",
            t0.elapsed().as_millis()
        );
        g.heal();
        ok!(
            g,
            "all registered after healing",
            g.wait_all_registered(MASTER_TIMEOUT_MS)
        );
    }
    let after = producer.acked_count();
    ok!(
        g,
        "final progress",
        producer.wait_acked(after, 50, PROGRESS_TIMEOUT_MS)
    );
    let (state, v, master) = finish_and_verify(&mut g, producer, topic, BTreeMap::new());
    eprintln!(
        "partitions: acknowledged {}, consumed {} records, {} duplicates, {} failed attempts",
        v.acked, v.consumed_records, v.duplicates, state.failed_attempts
    );
    assert!(
        v.lost.is_empty() && v.moved.is_empty() && v.offset_errors.is_empty(),
        "lost {} (first {:?}), moved {:?}, offset errors {:?}\n{}",
        v.lost.len(),
        v.lost.iter().take(10).collect::<Vec<_>>(),
        v.moved.iter().take(10).collect::<Vec<_>>(),
        v.offset_errors,
        g.logs()
    );
    assert_replicas_identical(&g, master, topic);
}

/// Every replica SIGKILLed at once under load, then restarted: an acknowledged message was
/// fsynced by a majority before its acknowledgement, so none is lost, and the group
/// elects a master again from what is on disk.
#[test]
fn whole_group_crash_under_load_loses_no_acknowledged_message() {
    let topic = "GroupCrash";
    let (mut g, m) = start_group_with_topic(topic);
    let producer = spawn_producer(&g, topic, "crash");
    ok!(
        g,
        "progress",
        producer.wait_acked(0, 300, PROGRESS_TIMEOUT_MS)
    );
    // Master last: its in-flight writes cannot commit once both followers are gone.
    for i in (0..GROUP_NODES).filter(|&i| i != m).chain([m]) {
        ok!(g, "kill", g.kill(i));
    }
    let acked_before_restart = producer.acked_count();
    for i in 0..GROUP_NODES {
        ok!(g, "restart", g.start_node(i));
    }
    ok!(
        g,
        "progress after the restart",
        producer.wait_acked(acked_before_restart, 50, FAILOVER_TIMEOUT_MS)
    );
    let (_, v, master) = finish_and_verify(&mut g, producer, topic, BTreeMap::new());
    eprintln!(
        "whole-group crash: {} acknowledged before the crash, {} in total, {} records, {} \
         duplicates",
        acked_before_restart, v.acked, v.consumed_records, v.duplicates
    );
    assert!(
        v.lost.is_empty() && v.moved.is_empty() && v.offset_errors.is_empty(),
        "lost {} (first {:?}), moved {:?}, offset errors {:?}\n{}",
        v.lost.len(),
        v.lost.iter().take(10).collect::<Vec<_>>(),
        v.moved.iter().take(10).collect::<Vec<_>>(),
        v.offset_errors,
        g.logs()
    );
    assert_replicas_identical(&g, master, topic);
}
