//! Rolling restart of a three-replica DLedger group with SIGTERM (issue requirement:
//! "Graceful shutdown (SIGTERM) of the leader transfers leadership first, so a rolling
//! restart causes no write error longer than one client retry").
//!
//! A route-following producer sends continuously and records every attempt with its time.
//! Each node in turn is stopped with SIGTERM, waited for, restarted on the same store and
//! waited for until it is registered again and has caught up. Round 1 restarts the
//! followers first and the master last, round 2 the master first. Asserted: nothing
//! acknowledged is lost, replicas are identical, every graceful master stop puts a new
//! master in the topic's route, and the longest run of failed attempts stays below one
//! client retry (`ERROR_STREAK_BOUND_MS`). Every wait is a bounded poll.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tests::group::{
    route_master, verify_all, FollowingProducer, Group, GroupOptions, Sent, GROUP_NODES,
    MASTER_TIMEOUT_MS,
};

const TOPIC: &str = "rolling";
const QUEUES: i32 = 4;
/// The producer's route refresh period (the harness's route-following producer, 1 s).
const REFRESH_MS: u64 = 1_000;
/// Pause after a failed attempt before the retry (the client's retry interval).
const RETRY_PAUSE_MS: u64 = 20;
/// Pause between acknowledged sends: keeps the load steady (≈ 100/s) on a shared 2-core box
/// while still sampling the outage window finely.
const SEND_PACING_MS: u64 = 10;
/// "No write error longer than one client retry": every error streak (first failed attempt
/// → start of the attempt that succeeds) must stay below this. It is under DLedger's
/// minimum election timeout (30 ticks × 10 ms, dledger/src/config.rs), so only a real
/// hand-off meets it: a stop without one (checked by sending SIGKILL instead) leaves the
/// group leaderless for an election timeout; measured 500–850 ms and 23–39 failed attempts,
/// against 20–50 ms and 1–2 failed attempts for SIGTERM.
const ERROR_STREAK_BOUND_MS: u64 = 250;
/// A node must exit within this after SIGTERM (hand-off timeout 5 s + unregister + flush).
const STOP_TIMEOUT_MS: u64 = 15_000;
/// A new master must be in the topic's route within this after the old master's SIGTERM.
const NEW_MASTER_TIMEOUT_MS: u64 = 10_000;
/// A restarted node must be registered and caught up within this.
const REJOIN_TIMEOUT_MS: u64 = 30_000;
/// Acknowledgements the producer must get after each restart before the next step.
const PROGRESS_ACKS: usize = 20;
/// The whole rolling restart must finish within this (the test is bounded to < 90 s).
const ROLLING_BUDGET_MS: u64 = 80_000;
/// Upper bound on recorded attempts (bounds memory; ~100 sends/s for < 90 s stays far below).
const MAX_ATTEMPTS: usize = 200_000;
const POLL_MS: u64 = 20;

/// Unwrap a harness result, or fail with every node's log.
macro_rules! ok {
    ($g:expr, $what:expr, $e:expr $(,)?) => {
        match $e {
            Ok(v) => v,
            Err(e) => panic!("{}: {e}\n{}", $what, $g.logs()),
        }
    };
}

/// One send attempt as the client saw it.
#[derive(Debug, Clone)]
struct Attempt {
    started: Instant,
    /// `Ok(broker address)` when acknowledged, else the error.
    outcome: Result<String, String>,
}

#[derive(Default)]
struct Recorded {
    attempts: Vec<Attempt>,
    acked: BTreeMap<String, (i32, i64)>,
}

/// A thread sending `roll-<seq>` round-robin over the queues through a
/// [`FollowingProducer`], retrying each key after `RETRY_PAUSE_MS` until acknowledged, and
/// recording every attempt.
struct Recorder {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<Recorded>>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    fn spawn(namesrv: &str, group: &str) -> Recorder {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(Recorded::default()));
        let mut p = FollowingProducer::new(namesrv, group, TOPIC, QUEUES, REFRESH_MS);
        let (stop2, state2) = (stop.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            let mut seq: u64 = 0;
            loop {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("roll-{seq:08}");
                let queue_id = i32::try_from(seq % 4).unwrap_or(0);
                let started = Instant::now();
                let sent = p.send(queue_id, &key);
                let mut s = state2.lock().unwrap_or_else(|e| e.into_inner());
                if s.attempts.len() >= MAX_ATTEMPTS {
                    break;
                }
                match sent {
                    Sent::Acked {
                        addr,
                        queue_id,
                        queue_offset,
                    } => {
                        s.acked.insert(key, (queue_id, queue_offset));
                        s.attempts.push(Attempt {
                            started,
                            outcome: Ok(addr),
                        });
                        drop(s);
                        seq += 1;
                        std::thread::sleep(Duration::from_millis(SEND_PACING_MS));
                    }
                    Sent::Failed(e) => {
                        s.attempts.push(Attempt {
                            started,
                            outcome: Err(e),
                        });
                        drop(s);
                        std::thread::sleep(Duration::from_millis(RETRY_PAUSE_MS));
                    }
                }
            }
        });
        Recorder {
            stop,
            state,
            thread: Some(thread),
        }
    }

    fn acked_count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acked
            .len()
    }

    /// Wait (bounded) until `n` more sends than `from` are acknowledged.
    fn wait_acked(&self, from: usize, n: usize, timeout_ms: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        while self.acked_count() < from + n {
            if Instant::now() >= deadline {
                let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                return Err(format!(
                    "{n} acknowledgements after {from} within {timeout_ms} ms; have {}, last \
                     attempt {:?}",
                    s.acked.len(),
                    s.attempts.last()
                ));
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        Ok(())
    }

    fn finish(mut self) -> Recorded {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *s)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A run of consecutive failed attempts.
#[derive(Debug)]
struct Streak {
    failed_attempts: usize,
    /// First failed attempt's start → the start of the attempt that succeeded (or of the
    /// last recorded attempt if none did).
    wall_ms: u64,
    first_error: String,
    last_error: String,
}

fn streaks(attempts: &[Attempt]) -> Vec<Streak> {
    let ms = |a: Instant, b: Instant| u64::try_from(b.duration_since(a).as_millis()).unwrap_or(0);
    let mut out = Vec::new();
    let mut run: Option<(usize, usize)> = None; // (first index, count)
    for (i, a) in attempts.iter().enumerate() {
        match (&a.outcome, run) {
            (Err(_), None) => run = Some((i, 1)),
            (Err(_), Some((first, n))) => run = Some((first, n + 1)),
            (Ok(_), Some((first, n))) => {
                out.push(streak_of(
                    attempts,
                    first,
                    n,
                    ms(attempts[first].started, a.started),
                ));
                run = None;
            }
            (Ok(_), None) => {}
        }
    }
    if let Some((first, n)) = run {
        let end = attempts[first + n - 1].started;
        out.push(streak_of(
            attempts,
            first,
            n,
            ms(attempts[first].started, end),
        ));
    }
    out
}

fn streak_of(attempts: &[Attempt], first: usize, n: usize, wall_ms: u64) -> Streak {
    let err = |i: usize| attempts[i].outcome.clone().err().unwrap_or_default();
    Streak {
        failed_attempts: n,
        wall_ms,
        first_error: err(first),
        last_error: err(first + n - 1),
    }
}

/// Wait until node `i` holds, in every queue, at least what `master` held when called (the
/// producer keeps writing, so "equal" would chase a moving target).
fn wait_reached(g: &Group, i: usize, master: usize) {
    let want = ok!(g, "master offsets", g.max_offsets(master, TOPIC, QUEUES));
    let deadline = Instant::now() + Duration::from_millis(REJOIN_TIMEOUT_MS);
    loop {
        let have = g.max_offsets(i, TOPIC, QUEUES).unwrap_or_default();
        if have.len() == want.len() && have.iter().zip(&want).all(|(h, w)| h >= w) {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "n{i} did not reach master n{master}'s offsets {want:?} within \
                 {REJOIN_TIMEOUT_MS} ms; has {have:?}\n{}",
                g.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// SIGTERM node `i`; if it was the master, wait until the topic's route names another
/// running node as master (returns ms from the signal); then wait for the exit, restart it
/// on the same store, and wait until it is registered and has caught up.
fn roll_node(g: &mut Group, rec: &Recorder, i: usize, round: usize) -> Option<u64> {
    let was_master = ok!(g, "registered master", g.registered_master()) == Some(i);
    let old_addr = g.node_addr(i);
    println!(
        "round {round}: SIGTERM n{i} ({})",
        if was_master { "master" } else { "follower" }
    );
    let t0 = Instant::now();
    ok!(g, format!("SIGTERM n{i}"), g.sigterm(i));
    let mut new_master_ms = None;
    if was_master {
        // Requirement (3): the route moves to another master while the old one shuts down.
        let deadline = t0 + Duration::from_millis(NEW_MASTER_TIMEOUT_MS);
        let namesrv = g.namesrv_addr();
        loop {
            let m = route_master(&namesrv, TOPIC, g.group_name()).ok().flatten();
            if let Some(m) = m.filter(|m| *m != old_addr) {
                let j = g.node_of_addr(&m);
                assert!(
                    j.is_some_and(|j| j != i && g.is_running(j)),
                    "route names {m} as master, not a running node of the group"
                );
                new_master_ms = Some(u64::try_from(t0.elapsed().as_millis()).unwrap_or(0));
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no new master in the route of {TOPIC} within {NEW_MASTER_TIMEOUT_MS} ms \
                     after SIGTERM of master n{i}; namesrv lists {:?}\n{}",
                    g.registered().ok(),
                    g.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }
    let status = ok!(
        g,
        format!("n{i} to exit"),
        g.wait_stopped(i, STOP_TIMEOUT_MS)
    );
    let stopped_ms = t0.elapsed().as_millis();
    assert!(
        status.success(),
        "n{i} exited with {status} after SIGTERM\n{}",
        g.logs()
    );
    if let Some(ms) = new_master_ms {
        println!("  new master in the route after {ms} ms; n{i} exited after {stopped_ms} ms");
    } else {
        println!("  n{i} exited after {stopped_ms} ms");
    }
    ok!(g, format!("restart n{i}"), g.start_node(i));
    println!("  n{i} answers again after {} ms", t0.elapsed().as_millis());
    ok!(
        g,
        "all registered",
        g.wait_all_registered(REJOIN_TIMEOUT_MS)
    );
    let master = ok!(g, "master", g.wait_master(MASTER_TIMEOUT_MS, None));
    // Caught up: the restarted node holds what the master held at this point.
    if master != i {
        wait_reached(g, i, master);
    }
    let from = rec.acked_count();
    ok!(
        g,
        "progress after restart",
        rec.wait_acked(from, PROGRESS_ACKS, REJOIN_TIMEOUT_MS)
    );
    println!("  n{i} back after {} ms", t0.elapsed().as_millis());
    new_master_ms
}

#[test]
fn rolling_sigterm_restart_keeps_writes_flowing() {
    let started = Instant::now();
    let mut g = Group::start(GroupOptions::default()).expect("start namesrv + three-replica group");
    let m0 = ok!(g, "master", g.wait_master(MASTER_TIMEOUT_MS, None));
    ok!(g, "create topic", g.create_topic(m0, TOPIC, QUEUES));
    ok!(
        g,
        "all registered",
        g.wait_all_registered(REJOIN_TIMEOUT_MS)
    );

    let rec = Recorder::spawn(&g.namesrv_addr(), g.group_name());
    ok!(
        g,
        "first sends",
        rec.wait_acked(0, PROGRESS_ACKS, REJOIN_TIMEOUT_MS)
    );

    let mut handoffs = Vec::new();
    for round in 1..=2 {
        let master = ok!(g, "master", g.wait_master(MASTER_TIMEOUT_MS, None));
        let followers: Vec<usize> = (0..GROUP_NODES).filter(|&j| j != master).collect();
        // Round 1: followers first, master last. Round 2: master first.
        let order: Vec<usize> = if round == 1 {
            followers.iter().copied().chain([master]).collect()
        } else {
            [master]
                .into_iter()
                .chain(followers.iter().copied())
                .collect()
        };
        for i in order {
            if let Some(ms) = roll_node(&mut g, &rec, i, round) {
                handoffs.push(ms);
            }
            assert!(
                started.elapsed() < Duration::from_millis(ROLLING_BUDGET_MS),
                "rolling restart exceeded {ROLLING_BUDGET_MS} ms"
            );
        }
    }
    // Round 1 stops the master once (last); round 2 stops it first, and the hand-off makes
    // one of that round's "followers" master, so it is usually stopped as master again.
    assert!(
        handoffs.len() >= 2,
        "at least one master SIGTERM per round: {handoffs:?}"
    );

    let recorded = rec.finish();
    let master = ok!(g, "final master", g.wait_master(MASTER_TIMEOUT_MS, None));
    let sends = recorded.attempts.len();
    let failed = recorded
        .attempts
        .iter()
        .filter(|a| a.outcome.is_err())
        .count();
    let runs = streaks(&recorded.attempts);
    let worst_ms = runs.iter().map(|s| s.wall_ms).max().unwrap_or(0);
    let worst_len = runs.iter().map(|s| s.failed_attempts).max().unwrap_or(0);
    println!(
        "rolling restart: {sends} send attempts, {} acknowledged, {failed} failed in {} \
         streaks; max error streak {worst_ms} ms / {worst_len} attempts (bound \
         {ERROR_STREAK_BOUND_MS} ms); new master in route after {handoffs:?} ms; total {} ms",
        recorded.acked.len(),
        runs.len(),
        started.elapsed().as_millis()
    );
    for s in &runs {
        println!(
            "  streak: {} attempts over {} ms; first error {:?}, last error {:?}",
            s.failed_attempts, s.wall_ms, s.first_error, s.last_error
        );
    }

    // (1) Nothing acknowledged lost, at its acknowledged position, on every replica.
    ok!(
        g,
        "replicas caught up",
        (0..GROUP_NODES).filter(|&j| j != master).try_for_each(|j| g
            .wait_caught_up(j, master, TOPIC, QUEUES, REJOIN_TIMEOUT_MS)
            .map(|_| ()))
    );
    for j in 0..GROUP_NODES {
        let v = ok!(
            g,
            format!("verify n{j}"),
            verify_all(&g.node_addr(j), TOPIC, QUEUES, &recorded.acked)
        );
        assert!(
            v.lost.is_empty() && v.moved.is_empty() && v.offset_errors.is_empty(),
            "n{j}: lost {:?} moved {:?} offset errors {:?}",
            v.lost.iter().take(10).collect::<Vec<_>>(),
            v.moved.iter().take(10).collect::<Vec<_>>(),
            v.offset_errors
        );
        println!(
            "n{j}: {} acknowledged all present; {} records, {} duplicates",
            v.acked, v.consumed_records, v.duplicates
        );
    }

    // (2) No error streak longer than one client retry.
    assert!(
        worst_ms <= ERROR_STREAK_BOUND_MS,
        "an error streak lasted {worst_ms} ms (bound {ERROR_STREAK_BOUND_MS} ms): {:?}",
        runs.iter().max_by_key(|s| s.wall_ms)
    );
    assert!(
        recorded.acked.len() >= 2 * GROUP_NODES * PROGRESS_ACKS,
        "the producer made progress throughout"
    );
}
