//! `benchmark` binary: parse arguments, run a sub-command, print the summary table and
//! (with `--json`) one JSON object as the last line of stdout.

use std::process::ExitCode;

use benchmark::cli::{Cli, Command};
use clap::Parser;

/// Same allocator as the broker: the load generator should not be slowed by glibc malloc
/// on the same two cores it shares with the brokers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Disk(args) = cli.command {
        // Blocking file I/O: runs on this thread, no runtime needed.
        let json = args.json;
        return finish(benchmark::disk::run(args).map(|s| (s.table(), json.then(|| s.to_json()))));
    }
    let workers = match cli.worker_threads() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("invalid arguments: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Producer(args) => {
                let json = args.json;
                benchmark::producer::run(args)
                    .await
                    .map(|s| (s.table(), json.then(|| s.to_json())))
            }
            Command::Consumer(args) => {
                let json = args.json;
                benchmark::consumer::run(args)
                    .await
                    .map(|s| (s.table(), json.then(|| s.to_json())))
            }
            Command::Disk(_) => Err(benchmark::BenchError::InvalidArgs(
                "disk runs without a runtime".into(),
            )),
        }
    });
    finish(result)
}

/// Print the summary table (and the JSON line), or the error.
fn finish(result: Result<(String, Option<serde_json::Value>), benchmark::BenchError>) -> ExitCode {
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
