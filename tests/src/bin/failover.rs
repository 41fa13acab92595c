//! Failover timing tool (issue 4 §6): runs a namesrv and a three-replica DLedger group from
//! the binaries next to this executable (or `NAMESRV_BIN` / `BROKER_BIN`), sends
//! continuously with a client that refreshes its route every `--refresh-ms`, SIGKILLs the
//! master `--kills` times (restarting it each time) and prints per kill:
//!
//! - elected: a surviving node reports itself DLedger leader of a newer term
//!   (GET_BROKER_RUNTIME_INFO `dLegerTerm` / `dLegerLeaderId`, polled);
//! - NOOP committed: it acknowledges a probe write (its term's NOOP is committed and its
//!   dispatch caught up: it is the writable leader);
//! - registered: the namesrv lists it as brokerId 0;
//! - first send: the continuous client's first acknowledgement from it;
//!
//! then median / p99 of each, and acknowledged vs consumed counts (pull of every queue from
//! offset 0 on the final master). Exit status 1 if an acknowledged message is missing.
//!
//! `cargo build --release -p tests --bin failover -p broker -p namesrv && target/release/failover --kills 20`

use std::collections::BTreeMap;
use std::process::ExitCode;

use tests::group::{
    percentile, verify_all, BackgroundProducer, Group, GroupOptions, KillTimeline,
    MASTER_TIMEOUT_MS,
};

/// Upper bound on `--kills` (each kill restarts a broker).
const MAX_KILLS: usize = 1_000;
const TOPIC: &str = "FailoverTopic";

struct Args {
    kills: usize,
    refresh_ms: u64,
    queues: i32,
    failover_timeout_ms: u64,
    /// Acknowledged sends required between kills.
    sends_between_kills: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        kills: 5,
        refresh_ms: 1_000,
        queues: 4,
        failover_timeout_ms: 30_000,
        sends_between_kills: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kills" => a.kills = val()?.parse().map_err(|e| format!("--kills: {e}"))?,
            "--refresh-ms" => {
                a.refresh_ms = val()?.parse().map_err(|e| format!("--refresh-ms: {e}"))?
            }
            "--queues" => a.queues = val()?.parse().map_err(|e| format!("--queues: {e}"))?,
            "--failover-timeout-ms" => {
                a.failover_timeout_ms = val()?
                    .parse()
                    .map_err(|e| format!("--failover-timeout-ms: {e}"))?
            }
            "--sends-between-kills" => {
                a.sends_between_kills = val()?
                    .parse()
                    .map_err(|e| format!("--sends-between-kills: {e}"))?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: failover [--kills N] [--refresh-ms MS] [--queues N] \
                            [--failover-timeout-ms MS] [--sends-between-kills N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.kills == 0 || a.kills > MAX_KILLS {
        return Err(format!("--kills must be 1..={MAX_KILLS}"));
    }
    if !(1..=64).contains(&a.queues) {
        return Err("--queues must be 1..=64".into());
    }
    Ok(a)
}

fn run(a: &Args) -> Result<bool, String> {
    let s = |e: tests::HarnessError| e.to_string();
    let mut g = Group::start(GroupOptions::default()).map_err(s)?;
    println!("group started in {}", g.dir().display());
    let m = g.wait_master(MASTER_TIMEOUT_MS, None).map_err(s)?;
    g.create_topic(m, TOPIC, a.queues).map_err(s)?;
    g.wait_all_registered(MASTER_TIMEOUT_MS).map_err(s)?;
    let producer = BackgroundProducer::spawn(
        &g.namesrv_addr(),
        g.group_name(),
        TOPIC,
        a.queues,
        a.refresh_ms,
        "fo",
    );
    let mut probes = BTreeMap::new();
    let mut timelines: Vec<KillTimeline> = Vec::new();
    let result = (|| -> Result<(), String> {
        for k in 0..a.kills {
            let before = producer.acked_count();
            producer
                .wait_acked(before, a.sends_between_kills, a.failover_timeout_ms)
                .map_err(s)?;
            let t = g
                .kill_master_and_measure(
                    &producer,
                    TOPIC,
                    a.queues,
                    &format!("probe{k}"),
                    &mut probes,
                    a.failover_timeout_ms,
                )
                .map_err(s)?;
            println!(
                "kill {:>3}: n{} -> n{}   elected {:>6} ms   NOOP committed {:>6} ms   registered {:>6} ms   first send {:>6} ms",
                k + 1,
                t.killed,
                t.new_master,
                t.elected_ms,
                t.writable_ms,
                t.registered_ms,
                t.first_send_ms
            );
            g.start_node(t.killed).map_err(s)?;
            g.wait_all_registered(MASTER_TIMEOUT_MS).map_err(s)?;
            timelines.push(t);
        }
        let after = producer.acked_count();
        producer
            .wait_acked(after, a.sends_between_kills, a.failover_timeout_ms)
            .map_err(s)
    })();
    let state = producer.finish();
    if let Err(e) = result {
        eprintln!("{e}\n{}", g.logs());
        return Err(e);
    }
    let summary = |name: &str, f: fn(&KillTimeline) -> u64| {
        let v: Vec<u64> = timelines.iter().map(f).collect();
        println!(
            "{name:<28} median {:>6} ms   p99 {:>6} ms   max {:>6} ms",
            percentile(&v, 50.0),
            percentile(&v, 99.0),
            v.iter().max().copied().unwrap_or(0)
        );
    };
    println!("--- {} kills ---", timelines.len());
    summary("kill -> elected", |t| t.elected_ms);
    summary("kill -> NOOP committed", |t| t.writable_ms);
    summary("kill -> registered master", |t| t.registered_ms);
    summary("kill -> first client send", |t| t.first_send_ms);
    let master = g.wait_master(MASTER_TIMEOUT_MS, None).map_err(s)?;
    let mut acked = state.acked.clone();
    acked.extend(probes);
    let v = verify_all(&g.node_addr(master), TOPIC, a.queues, &acked).map_err(s)?;
    println!(
        "acknowledged {}   consumed {} records ({} distinct)   duplicates {}   lost {}   \
         misplaced {}   offset errors {}   failed send attempts {}",
        v.acked,
        v.consumed_records,
        v.distinct_consumed,
        v.duplicates,
        v.lost.len(),
        v.moved.len(),
        v.offset_errors.len(),
        state.failed_attempts
    );
    for l in v.lost.iter().take(10) {
        println!("lost: {l}");
    }
    for l in v.moved.iter().chain(&v.offset_errors).take(10) {
        println!("error: {l}");
    }
    Ok(v.lost.is_empty() && v.moved.is_empty() && v.offset_errors.is_empty())
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("failover run failed: {e}");
            ExitCode::from(3)
        }
    }
}
