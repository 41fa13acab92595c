//! `benchmark disk`: the machine's own write + `fdatasync` latency, measured the way the
//! DLedger store uses the disk (append `--size` bytes, sync, repeat), with no broker involved.
//!
//! Why it exists: a group's send latency can never beat the fsync latency of the disk its
//! replicas share, and on a virtual disk that latency moves between sittings (stalls of
//! hundreds of milliseconds were seen on all three replicas at once). Recording this probe
//! next to the broker figures tells a reader which of the two moved.
//!
//! The file is preallocated by writing zeros once (as the store's zero-ahead does), so each
//! sync flushes data only, never extent metadata. Runs on a plain thread: the I/O blocks.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::DiskArgs;
use crate::stats::{live_line, per_second, render_table, round3, Latencies, LatencySnapshot};
use crate::BenchError;

/// Zeros written per call while preallocating.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// Result of a disk probe.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSummary {
    pub dir: PathBuf,
    pub size_bytes: usize,
    pub ops: u64,
    pub duration_s: f64,
    pub latency: LatencySnapshot,
}

impl DiskSummary {
    pub fn ops_per_s(&self) -> f64 {
        per_second(self.ops, self.duration_s)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "mode": "disk",
            "dir": self.dir.display().to_string(),
            "size_bytes": self.size_bytes,
            "ops": self.ops,
            "duration_s": round3(self.duration_s),
            "ops_per_s": round3(self.ops_per_s()),
        });
        self.latency.add_json(&mut v);
        v
    }

    pub fn table(&self) -> String {
        let rows = [
            ("directory", self.dir.display().to_string()),
            ("write size", format!("{} B", self.size_bytes)),
            ("write + fdatasync", self.ops.to_string()),
            ("duration", format!("{:.3} s", self.duration_s)),
            ("syncs/s", format!("{:.1}", self.ops_per_s())),
        ];
        let rows: Vec<_> = rows.into_iter().chain(self.latency.table_rows()).collect();
        render_table("disk summary", &rows)
    }
}

/// Removes the probe file however the run ends.
struct ProbeFile {
    path: PathBuf,
    file: File,
}

impl Drop for ProbeFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn open_probe(args: &DiskArgs) -> Result<ProbeFile, BenchError> {
    let path = args
        .dir
        .join(format!(".benchmark-disk-probe-{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let mut probe = ProbeFile { path, file };
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut left = args.file_bytes;
    while left > 0 {
        let n = left.min(ZERO_CHUNK_BYTES as u64) as usize;
        probe.file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    probe.file.sync_all()?;
    Ok(probe)
}

/// Run the probe on the calling thread, printing a live line per second.
pub fn run(args: DiskArgs) -> Result<DiskSummary, BenchError> {
    args.validate().map_err(BenchError::InvalidArgs)?;
    let probe = open_probe(&args)?;
    let data = vec![b'd'; args.size_bytes];
    let slots = args.file_bytes / args.size_bytes as u64;
    let latencies = Latencies::default();
    let deadline = args.duration_s.map(Duration::from_secs);
    let start = Instant::now();
    let mut next_report = Duration::from_secs(1);
    let (mut ops, mut ops_at_report) = (0u64, 0u64);
    loop {
        let elapsed = start.elapsed();
        if deadline.is_some_and(|d| elapsed >= d) || args.count.is_some_and(|c| ops >= c) {
            break;
        }
        if elapsed >= next_report {
            let lat = latencies.take_interval();
            let rate = (ops - ops_at_report) as f64;
            println!(
                "{}",
                live_line("sync", next_report.as_secs(), rate, &lat, 0, None)
            );
            ops_at_report = ops;
            next_report += Duration::from_secs(1);
        }
        // Wraps around the preallocated file: every write lands on blocks written before.
        let pos = (ops % slots) * args.size_bytes as u64;
        let t0 = Instant::now();
        probe.file.write_all_at(&data, pos)?;
        probe.file.sync_data()?;
        latencies.record(t0.elapsed());
        ops += 1;
    }
    Ok(DiskSummary {
        dir: args.dir,
        size_bytes: args.size_bytes,
        ops,
        duration_s: start.elapsed().as_secs_f64(),
        latency: latencies.total(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: PathBuf, count: u64) -> DiskArgs {
        DiskArgs {
            dir,
            size_bytes: 4096,
            file_bytes: 64 * 1024,
            count: Some(count),
            duration_s: None,
            json: true,
        }
    }

    #[test]
    fn probe_syncs_the_requested_writes_and_removes_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 40 writes of 4 KiB wrap around the 64 KiB file more than twice.
        let s = run(args(dir.path().to_path_buf(), 40)).expect("probe");
        assert_eq!(s.ops, 40);
        assert_eq!(s.latency.count, 40);
        assert!(s.latency.p50_ms > 0.0 && s.latency.max_ms >= s.latency.p99_ms);
        let v = s.to_json();
        assert_eq!(v["ops"], 40);
        for k in ["ops_per_s", "p50_ms", "p99_ms", "p999_ms", "max_ms"] {
            assert!(v[k].is_number(), "{k} missing in {v}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert!(left.is_empty(), "probe file left behind: {left:?}");
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(args(dir.path().join("absent"), 1));
        assert!(matches!(r, Err(BenchError::Io(_))), "{r:?}");
    }
}
