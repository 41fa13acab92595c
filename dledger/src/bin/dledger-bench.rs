//! Benchmark: three nodes (file stores + TCP on 127.0.0.1) in one process, committing 1 KiB
//! entries with fsync-before-ack at 1, 16 and 64 concurrent appenders.
//!
//! `cargo bench -p dledger` or
//! `cargo run --release -p dledger --bin dledger-bench [-- --secs 5 --dir /path --batch 1 --concurrency 1,16,64 --zero-ahead-bytes 4194304]`
//! Prints entries/s, p50/p99 commit latency (measured by the appenders), fsyncs/s and
//! entries per fsync (leader's storage thread).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dledger::config::DLedgerConfig;
use dledger::core::Role;
use dledger::node::DLedgerNode;
use hdrhistogram::Histogram;

struct Args {
    secs: u64,
    dir: PathBuf,
    batch: usize,
    concurrency: Vec<usize>,
    zero_ahead_bytes: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        secs: 5,
        dir: std::env::temp_dir().join(format!("dledger-bench-{}", std::process::id())),
        batch: 1,
        concurrency: vec![1, 16, 64],
        zero_ahead_bytes: dledger::storage::file_store::DEFAULT_ZERO_AHEAD_BYTES,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--bench" {
            continue; // passed by `cargo bench`
        }
        let v = it.next().ok_or(format!("missing value for {k}"))?;
        match k.as_str() {
            "--secs" => a.secs = v.parse().map_err(|_| "bad --secs")?,
            "--dir" => a.dir = PathBuf::from(v),
            "--batch" => a.batch = v.parse().map_err(|_| "bad --batch")?,
            "--zero-ahead-bytes" => {
                a.zero_ahead_bytes = v.parse().map_err(|_| "bad --zero-ahead-bytes")?
            }
            "--concurrency" => {
                a.concurrency = v
                    .split(',')
                    .map(|x| x.parse().map_err(|_| "bad --concurrency".to_string()))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.secs == 0 || a.secs > 600 || a.batch == 0 || a.batch > 1024 {
        return Err("secs must be 1..=600 and batch 1..=1024".into());
    }
    Ok(a)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_leader(nodes: &[DLedgerNode]) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut watches: Vec<_> = nodes.iter().map(|n| n.role()).collect();
    while Instant::now() < deadline {
        for (i, w) in watches.iter_mut().enumerate() {
            let s = *w.borrow_and_update();
            if s.role == Role::Leader && s.ready_for_writes {
                return Some(i);
            }
        }
        // Wake on the first role change of any node (or re-check after a short period).
        let mut first = watches[0].clone();
        let _ = tokio::time::timeout(Duration::from_millis(50), first.changed()).await;
    }
    None
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
pub async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dledger-bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("dledger-bench: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir).map_err(|e| e.to_string())?;
    let mut peers = Vec::new();
    for i in 0..3 {
        peers.push(format!(
            "n{i}-127.0.0.1:{}",
            free_port().map_err(|e| e.to_string())?
        ));
    }
    let peers = peers.join(";");
    let mut nodes = Vec::new();
    let mut runtimes = Vec::new();
    for i in 0..3 {
        let mut c = DLedgerConfig::new("bench", &peers, &format!("n{i}"), &args.dir)
            .map_err(|e| e.to_string())?;
        c.segment_size_bytes = 256 * 1024 * 1024;
        // Keep the disk use of long runs bounded.
        c.retain_segments = 4;
        c.zero_ahead_bytes = args.zero_ahead_bytes;
        // Each node on its own one-worker runtime, as the broker runs it (the store's
        // `dledger-<id>` runtime): a node's loop, transport and timers share a thread
        // instead of bouncing between the appenders' workers.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("dledger-n{i}"))
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let node = rt
            .spawn(DLedgerNode::start(c))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        nodes.push(node);
        runtimes.push(rt);
    }
    let l = wait_leader(&nodes).await.ok_or("no leader elected")?;
    let leader = Arc::new(nodes.remove(l));
    println!(
        "dledger-bench: 3 nodes, 1 KiB entries, batch {} per append, fsync before ack, {} s per run, dir {}",
        args.batch,
        args.secs,
        args.dir.display()
    );
    println!(
        "{:>10} {:>12} {:>10} {:>10} {:>10} {:>14} {:>16} {:>16}",
        "appenders",
        "entries/s",
        "p50_ms",
        "p99_ms",
        "fsyncs/s",
        "entries/fsync",
        "ldr_fsync_p50/99",
        "fol_fsync_p50/99"
    );
    let body = Bytes::from(vec![0x5au8; 1024]);
    for &conc in &args.concurrency {
        // Warm up briefly so connections and page cache are settled.
        let _ = leader.append(body.clone()).await;
        for n in nodes.iter() {
            n.reset_metrics();
        }
        leader.reset_metrics();
        let s0 = leader.status().await.map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(args.secs);
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let leader = Arc::clone(&leader);
            let body = body.clone();
            let batch = args.batch;
            tasks.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .map_err(|e| e.to_string())?;
                let mut n = 0u64;
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = if batch == 1 {
                        leader.append(body.clone()).await.map(|_| 1)
                    } else {
                        leader
                            .append_batch(vec![body.clone(); batch])
                            .await
                            .map(|v| v.len() as u64)
                    };
                    match r {
                        Ok(k) => {
                            n += k;
                            let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                        }
                        Err(_) => {
                            errors += 1;
                            tokio::task::yield_now().await;
                        }
                    }
                }
                Ok::<_, String>((n, errors, h))
            }));
        }
        let mut total = 0u64;
        let mut errors = 0u64;
        let mut hist =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        for t in tasks {
            let (n, e, h) = t.await.map_err(|e| e.to_string())??;
            total += n;
            errors += e;
            hist.add(h).map_err(|e| e.to_string())?;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let s1 = leader.status().await.map_err(|e| e.to_string())?;
        let fsyncs = s1.fsyncs - s0.fsyncs;
        let persisted = s1.entries_persisted - s0.entries_persisted;
        let mut fol = (0u64, 0u64);
        for n in nodes.iter() {
            let st = n.status().await.map_err(|e| e.to_string())?;
            fol.0 = fol.0.max(st.fsync_latency.p50_us);
            fol.1 = fol.1.max(st.fsync_latency.p99_us);
        }
        println!(
            "{:>10} {:>12.0} {:>10.2} {:>10.2} {:>10.0} {:>14.1} {:>16} {:>16}{}",
            conc,
            total as f64 / elapsed,
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            fsyncs as f64 / elapsed,
            if fsyncs > 0 {
                persisted as f64 / fsyncs as f64
            } else {
                0.0
            },
            format!(
                "{:.2}/{:.2}",
                s1.fsync_latency.p50_us as f64 / 1000.0,
                s1.fsync_latency.p99_us as f64 / 1000.0
            ),
            format!("{:.2}/{:.2}", fol.0 as f64 / 1000.0, fol.1 as f64 / 1000.0),
            if errors > 0 {
                format!("  ({errors} errors)")
            } else {
                String::new()
            }
        );
    }
    if let Ok(l) = Arc::try_unwrap(leader) {
        l.shutdown().await;
    }
    for n in nodes {
        n.shutdown().await;
    }
    // Runtimes cannot be dropped (blocking) inside this async context.
    for rt in runtimes {
        rt.shutdown_background();
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    Ok(())
}
