//! `benchmark` binary: parse arguments, run a sub-command, print the summary table and
//! (with `--json`) one JSON object as the last line of stdout.

use std::future::Future;
use std::process::ExitCode;

use benchmark::cli::{Cli, Command};
use benchmark::BenchError;
use clap::Parser;
use serde_json::Value;

/// Same allocator as the broker: the load generator should not be slowed by glibc malloc
/// on the same two cores it shares with the brokers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The summary table and, with `--json`, the JSON line.
type Report = (String, Option<Value>);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workers = match cli.worker_threads() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("invalid arguments: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Producer(args) => on_runtime(workers, async move {
            let json = args.json;
            benchmark::producer::run(args)
                .await
                .map(|s| (s.table(), json.then(|| s.to_json())))
        }),
        Command::Consumer(args) => on_runtime(workers, async move {
            let json = args.json;
            benchmark::consumer::run(args)
                .await
                .map(|s| (s.table(), json.then(|| s.to_json())))
        }),
        // Blocking file I/O on this thread: no runtime.
        Command::Disk(args) => {
            let json = args.json;
            benchmark::disk::run(args).map(|s| (s.table(), json.then(|| s.to_json())))
        }
    };
    match result {
        Ok((table, json)) => {
            println!("{table}");
            if let Some(v) = json {
                println!("{v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run a broker sub-command on a tokio runtime of `workers` threads.
fn on_runtime(
    workers: usize,
    f: impl Future<Output = Result<Report, BenchError>>,
) -> Result<Report, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(f)
}
