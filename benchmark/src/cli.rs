//! Command-line arguments (clap derive), modelled on RocketMQ's `producer.sh` / `consumer.sh`.

use clap::{Args, Parser, Subcommand};

/// Upper bounds that keep a typo from exhausting the machine.
pub const MAX_THREADS: usize = 4096;
pub const MAX_SIZE_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_BATCH: usize = 1024;
pub const MAX_INFLIGHT_PER_SENDER: usize = 1024;
/// Longest --warmup (one hour).
pub const MAX_WARMUP_S: u64 = 3600;

#[derive(Debug, Parser)]
#[command(
    name = "benchmark",
    version,
    about = "Producer/consumer load generator for the broker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Worker threads of the load generator (default: 1 for `producer`, one per core for
    /// `consumer`). One thread drives 64 closed-loop senders past 100,000 sends/s, and a
    /// second one mostly adds cross-thread wake-ups on the two cores the brokers also use.
    #[arg(long = "io-threads", global = true)]
    pub io_threads: Option<usize>,
}

/// Upper bound of `--io-threads`.
pub const MAX_IO_THREADS: usize = 64;

impl Cli {
    /// Worker threads to start, or why the option is out of range.
    pub fn worker_threads(&self) -> Result<usize, String> {
        match self.io_threads {
            Some(n) if n == 0 || n > MAX_IO_THREADS => {
                Err(format!("--io-threads must be 1..={MAX_IO_THREADS}"))
            }
            Some(n) => Ok(n),
            None => Ok(match self.command {
                Command::Producer(_) | Command::Disk(_) => 1,
                Command::Consumer(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            }),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send messages as fast as possible (or at --rate) and report TPS and latency.
    Producer(ProducerArgs),
    /// Pull every queue of a topic and report receive TPS and end-to-end latency.
    Consumer(ConsumerArgs),
    /// Measure the disk itself: write --size bytes + fdatasync, repeated (no broker).
    Disk(DiskArgs),
    // TODO(issue 4): `Failover(FailoverArgs)` — kill the leader mid-run, measure unavailability.
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("stop").required(true).args(["count", "duration_s"])))]
pub struct ProducerArgs {
    /// NameServer address (host:port).
    #[arg(short = 'n', long = "namesrv")]
    pub namesrv: String,
    #[arg(long, default_value = "BenchmarkTest")]
    pub topic: String,
    /// Number of concurrent senders (tokio tasks).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Message body size in bytes.
    #[arg(long = "size", default_value_t = 128)]
    pub size_bytes: usize,
    /// Total messages to send.
    #[arg(long)]
    pub count: Option<u64>,
    /// Run time in seconds.
    #[arg(long = "duration")]
    pub duration_s: Option<u64>,
    /// Fixed rate: total send requests per second over all senders (a batch is one request).
    #[arg(long = "rate")]
    pub rate_per_s: Option<u64>,
    /// Seconds of the same load run before the measured --duration. Sends started (or, with
    /// --rate, intended) in it are shown in the live lines but left out of the summary.
    #[arg(long = "warmup", default_value_t = 0)]
    pub warmup_s: u64,
    /// Messages per SEND_BATCH_MESSAGE request (1 = SEND_MESSAGE_V2).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Pipeline several requests per sender instead of waiting for each response.
    #[arg(long = "async")]
    pub async_mode: bool,
    /// In-flight requests per sender with --async.
    #[arg(long, default_value_t = 16)]
    pub inflight: usize,
    /// Retries after a failed attempt (Java `retryTimesWhenSendFailed`).
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Timeout of one send attempt.
    #[arg(long = "timeout-ms", default_value_t = 3000)]
    pub timeout_ms: u64,
    #[arg(long, default_value = "benchmark_producer")]
    pub group: String,
    /// Print the summary as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

impl ProducerArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(format!("--threads must be in 1..={MAX_THREADS}"));
        }
        if self.size_bytes > MAX_SIZE_BYTES {
            return Err(format!("--size must be at most {MAX_SIZE_BYTES}"));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(format!("--batch must be in 1..={MAX_BATCH}"));
        }
        if self.batch * (self.size_bytes + 64) > crate::batch::MAX_BATCH_BODY_BYTES {
            return Err("--batch × --size exceeds the batch body limit".into());
        }
        if self.inflight == 0 || self.inflight > MAX_INFLIGHT_PER_SENDER {
            return Err(format!(
                "--inflight must be in 1..={MAX_INFLIGHT_PER_SENDER}"
            ));
        }
        if self.rate_per_s == Some(0) || self.rate_per_s > Some(crate::rate::MAX_RATE_PER_S) {
            return Err("--rate must be positive".into());
        }
        if self.duration_s == Some(0) {
            return Err("--duration must be positive".into());
        }
        if self.warmup_s > MAX_WARMUP_S {
            return Err(format!("--warmup must be at most {MAX_WARMUP_S}"));
        }
        if self.warmup_s > 0 && self.duration_s.is_none() {
            return Err("--warmup needs --duration".into());
        }
        if self.timeout_ms == 0 {
            return Err("--timeout-ms must be positive".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Args)]
pub struct ConsumerArgs {
    /// NameServer address (host:port).
    #[arg(short = 'n', long = "namesrv")]
    pub namesrv: String,
    #[arg(long, default_value = "BenchmarkTest")]
    pub topic: String,
    #[arg(long, default_value = "benchmark_consumer")]
    pub group: String,
    /// Run time in seconds (default 60 if --count is not given).
    #[arg(long = "duration", conflicts_with = "count")]
    pub duration_s: Option<u64>,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Messages per pull.
    #[arg(long = "pull-batch", default_value_t = 32)]
    pub pull_batch: i32,
    /// Long-poll hold requested from the broker.
    #[arg(long = "suspend-ms", default_value_t = 15_000)]
    pub suspend_ms: u64,
    /// Keep retrying the route lookup this long (a just auto-created topic may not be
    /// registered with the NameServer yet).
    #[arg(long = "route-wait-s", default_value_t = 30)]
    pub route_wait_s: u64,
    /// Start from offset 0 instead of the group's committed offset.
    #[arg(long = "from-start", conflicts_with = "from_end")]
    pub from_start: bool,
    /// Without a committed offset, start at the queue's end (GET_MAX_OFFSET) instead of 0,
    /// like Java's CONSUME_FROM_LAST_OFFSET: measures live end-to-end latency only.
    #[arg(long = "from-end")]
    pub from_end: bool,
    /// Print the summary as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

pub const DEFAULT_CONSUMER_DURATION_S: u64 = 60;

impl ConsumerArgs {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1024).contains(&self.pull_batch) {
            return Err("--pull-batch must be in 1..=1024".into());
        }
        if self.duration_s == Some(0) || self.count == Some(0) {
            return Err("--duration / --count must be positive".into());
        }
        if self.route_wait_s > 3600 {
            return Err("--route-wait-s must be at most 3600".into());
        }
        if self.suspend_ms > 60_000 {
            return Err("--suspend-ms must be at most 60000".into());
        }
        Ok(())
    }
}

/// Upper bound of `disk --file-bytes`.
pub const MAX_DISK_FILE_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("disk_stop").required(true).args(["count", "duration_s"])))]
pub struct DiskArgs {
    /// Directory on the disk to measure (e.g. the brokers' store root); a probe file is
    /// created there and removed at the end.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// Bytes written before each fdatasync (one group commit).
    #[arg(long = "size", default_value_t = 8192)]
    pub size_bytes: usize,
    /// Size of the probe file, written with zeros first; writes wrap around inside it.
    #[arg(long = "file-bytes", default_value_t = 64 * 1024 * 1024)]
    pub file_bytes: u64,
    /// Stop after this many syncs.
    #[arg(long)]
    pub count: Option<u64>,
    /// Run time in seconds.
    #[arg(long = "duration")]
    pub duration_s: Option<u64>,
    /// Print the summary as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

impl DiskArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.size_bytes == 0 || self.size_bytes > MAX_SIZE_BYTES {
            return Err(format!("--size must be in 1..={MAX_SIZE_BYTES}"));
        }
        if self.file_bytes < self.size_bytes as u64 || self.file_bytes > MAX_DISK_FILE_BYTES {
            return Err(format!(
                "--file-bytes must be at least --size and at most {MAX_DISK_FILE_BYTES}"
            ));
        }
        if self.duration_s == Some(0) || self.count == Some(0) {
            return Err("--duration / --count must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_requires_count_or_duration() {
        assert!(Cli::try_parse_from(["benchmark", "producer", "-n", "x:1"]).is_err());
        assert!(Cli::try_parse_from([
            "benchmark",
            "producer",
            "-n",
            "x:1",
            "--count",
            "1",
            "--duration",
            "1"
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "benchmark",
            "producer",
            "-n",
            "127.0.0.1:9876",
            "--topic",
            "T",
            "--threads",
            "16",
            "--size",
            "1024",
            "--duration",
            "5",
            "--rate",
            "1000",
            "--batch",
            "4",
            "--async",
            "--json",
        ])
        .expect("parses");
        let Command::Producer(p) = cli.command else {
            panic!("producer")
        };
        assert_eq!((p.threads, p.size_bytes, p.batch), (16, 1024, 4));
        assert_eq!(
            (p.duration_s, p.rate_per_s, p.count),
            (Some(5), Some(1000), None)
        );
        assert!(p.async_mode && p.json);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn io_threads_default_per_command_and_bounds() {
        let parse = |extra: &[&str]| {
            let mut v = vec!["benchmark", "producer", "-n", "x:1", "--count", "1"];
            v.extend_from_slice(extra);
            Cli::try_parse_from(v).expect("parses")
        };
        assert_eq!(parse(&[]).worker_threads(), Ok(1));
        assert_eq!(parse(&["--io-threads", "3"]).worker_threads(), Ok(3));
        assert!(parse(&["--io-threads", "0"]).worker_threads().is_err());
        let too_many = (MAX_IO_THREADS + 1).to_string();
        assert!(parse(&["--io-threads", &too_many])
            .worker_threads()
            .is_err());
        let consumer = Cli::try_parse_from(["benchmark", "consumer", "-n", "x:1", "--count", "1"])
            .expect("parses");
        assert!(consumer.worker_threads().is_ok_and(|n| n >= 1));
    }

    #[test]
    fn consumer_parses() {
        let cli = Cli::try_parse_from([
            "benchmark",
            "consumer",
            "-n",
            "127.0.0.1:9876",
            "--topic",
            "T",
            "--group",
            "G",
            "--count",
            "10",
            "--json",
        ])
        .expect("parses");
        let Command::Consumer(c) = cli.command else {
            panic!("consumer")
        };
        assert_eq!(
            (c.group.as_str(), c.count, c.duration_s),
            ("G", Some(10), None)
        );
        assert!(c.validate().is_ok());
    }
}
