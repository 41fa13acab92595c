//! Latency histograms (hdrhistogram, microsecond resolution), the per-second live line, the
//! final summary table and the one-line JSON summary (always the last line of stdout).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Highest trackable latency: one hour in microseconds (larger values are clamped).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; failure would be a programming error.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencySnapshot {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySnapshot {
    pub fn of(h: &Histogram<u64>) -> LatencySnapshot {
        if h.is_empty() {
            return LatencySnapshot::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySnapshot {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// Adds `avg_ms`, `p50_ms`, `p99_ms`, `p999_ms` and `max_ms` to a summary's JSON object.
    pub(crate) fn add_json(&self, v: &mut Value) {
        if let Value::Object(m) = v {
            for (k, x) in [
                ("avg_ms", self.mean_ms),
                ("p50_ms", self.p50_ms),
                ("p99_ms", self.p99_ms),
                ("p999_ms", self.p999_ms),
                ("max_ms", self.max_ms),
            ] {
                m.insert(k.to_string(), json!(round3(x)));
            }
        }
    }

    /// The latency rows of a summary table.
    pub(crate) fn table_rows(&self) -> [(&'static str, String); 5] {
        let ms = |x: f64| format!("{x:.3} ms");
        [
            ("latency avg", ms(self.mean_ms)),
            ("latency p50", ms(self.p50_ms)),
            ("latency p99", ms(self.p99_ms)),
            ("latency p99.9", ms(self.p999_ms)),
            ("latency max", ms(self.max_ms)),
        ]
    }
}

/// A latency as a histogram value: whole microseconds, at least 1.
fn histogram_us(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(MAX_LATENCY_US)
        .max(1)
}

/// A histogram for the current one-second interval plus one for the whole run.
#[derive(Debug)]
pub struct Latencies {
    inner: Mutex<(Histogram<u64>, Histogram<u64>)>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            inner: Mutex::new((new_histogram(), new_histogram())),
        }
    }
}

impl Latencies {
    pub fn record(&self, latency: Duration) {
        let us = histogram_us(latency);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.saturating_record(us);
        g.1.saturating_record(us);
    }

    /// Records into the interval histogram only (a warm-up send: live lines, not the run).
    pub fn record_interval_only(&self, latency: Duration) {
        let us = histogram_us(latency);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.saturating_record(us);
    }

    /// Snapshot and reset the interval histogram.
    pub fn take_interval(&self) -> LatencySnapshot {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let s = LatencySnapshot::of(&g.0);
        g.0.reset();
        s
    }

    pub fn total(&self) -> LatencySnapshot {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        LatencySnapshot::of(&g.1)
    }
}

/// Counters shared by every sender / puller.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages acknowledged (producer) or received (consumer).
    pub messages: AtomicU64,
    /// Requests that failed after all retries (producer) / failed pulls (consumer).
    pub failures: AtomicU64,
    /// Retried attempts (producer only).
    pub retries: AtomicU64,
}

impl Counters {
    pub fn load(&self) -> (u64, u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
        )
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One live line (printed every second).
pub fn live_line(
    label: &str,
    elapsed_s: u64,
    tps: f64,
    lat: &LatencySnapshot,
    failures: u64,
    progress: Option<(u64, u64)>,
) -> String {
    let mut line = format!(
        "[{elapsed_s:>4}s] {label}_tps={tps:.0} avg={:.3}ms p50={:.3}ms p99={:.3}ms p999={:.3}ms max={:.3}ms failures={failures}",
        lat.mean_ms, lat.p50_ms, lat.p99_ms, lat.p999_ms, lat.max_ms
    );
    if let Some((done, total)) = progress {
        let pct = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        line.push_str(&format!(" progress={done}/{total} ({pct:.1}%)"));
    }
    line
}

/// Final result of a producer run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerSummary {
    pub topic: String,
    pub threads: usize,
    pub size_bytes: usize,
    pub batch: usize,
    pub async_mode: bool,
    pub rate_per_s: Option<u64>,
    /// Seconds of load before the measured part (not in `sent`, `duration_s`, `latency`).
    pub warmup_s: u64,
    pub sent: u64,
    pub failures: u64,
    pub retries: u64,
    pub duration_s: f64,
    pub latency: LatencySnapshot,
}

/// `count` per second over `duration_s`; 0 for an empty duration.
pub fn per_second(count: u64, duration_s: f64) -> f64 {
    if duration_s > 0.0 {
        count as f64 / duration_s
    } else {
        0.0
    }
}

impl ProducerSummary {
    pub fn send_tps(&self) -> f64 {
        per_second(self.sent, self.duration_s)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "mode": "producer",
            "topic": self.topic,
            "threads": self.threads,
            "size_bytes": self.size_bytes,
            "batch": self.batch,
            "async": self.async_mode,
            "rate": self.rate_per_s,
            "warmup_s": self.warmup_s,
            "sent": self.sent,
            "failures": self.failures,
            "retries": self.retries,
            "duration_s": round3(self.duration_s),
            "send_tps": round3(self.send_tps()),
        });
        self.latency.add_json(&mut v);
        v
    }

    pub fn table(&self) -> String {
        let rows = [
            ("topic", self.topic.clone()),
            ("senders", self.threads.to_string()),
            ("message size", format!("{} B", self.size_bytes)),
            ("batch", self.batch.to_string()),
            (
                "mode",
                if self.async_mode { "async" } else { "sync" }.to_string(),
            ),
            (
                "rate limit",
                self.rate_per_s
                    .map_or("none".to_string(), |r| format!("{r} sends/s")),
            ),
            ("warm-up", format!("{} s (not measured)", self.warmup_s)),
            ("sent", self.sent.to_string()),
            ("failures", self.failures.to_string()),
            ("retries", self.retries.to_string()),
            ("duration", format!("{:.3} s", self.duration_s)),
            ("send TPS", format!("{:.1}", self.send_tps())),
        ];
        let rows: Vec<_> = rows.into_iter().chain(self.latency.table_rows()).collect();
        render_table("producer summary", &rows)
    }
}

/// Final result of a consumer run.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerSummary {
    pub topic: String,
    pub group: String,
    pub queues: usize,
    pub received: u64,
    pub failures: u64,
    pub duration_s: f64,
    /// End-to-end latency: receive time − born timestamp (millisecond clock resolution).
    pub e2e: LatencySnapshot,
}

impl ConsumerSummary {
    pub fn recv_tps(&self) -> f64 {
        per_second(self.received, self.duration_s)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "mode": "consumer",
            "topic": self.topic,
            "group": self.group,
            "queues": self.queues,
            "received": self.received,
            "failures": self.failures,
            "duration_s": round3(self.duration_s),
            "recv_tps": round3(self.recv_tps()),
            "e2e_avg_ms": round3(self.e2e.mean_ms),
            "e2e_p50_ms": round3(self.e2e.p50_ms),
            "e2e_p99_ms": round3(self.e2e.p99_ms),
            "e2e_p999_ms": round3(self.e2e.p999_ms),
            "e2e_max_ms": round3(self.e2e.max_ms),
        })
    }

    pub fn table(&self) -> String {
        let rows = [
            ("topic", self.topic.clone()),
            ("group", self.group.clone()),
            ("queues", self.queues.to_string()),
            ("received", self.received.to_string()),
            ("failed pulls", self.failures.to_string()),
            ("duration", format!("{:.3} s", self.duration_s)),
            ("recv TPS", format!("{:.1}", self.recv_tps())),
            ("e2e avg", format!("{:.3} ms", self.e2e.mean_ms)),
            ("e2e p50", format!("{:.3} ms", self.e2e.p50_ms)),
            ("e2e p99", format!("{:.3} ms", self.e2e.p99_ms)),
            ("e2e p99.9", format!("{:.3} ms", self.e2e.p999_ms)),
            ("e2e max", format!("{:.3} ms", self.e2e.max_ms)),
        ];
        render_table("consumer summary", &rows)
    }
}

pub(crate) fn render_table(title: &str, rows: &[(&str, String)]) -> String {
    let kw = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let vw = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let rule = format!("+{}+{}+", "-".repeat(kw + 2), "-".repeat(vw + 2));
    let mut out = format!("{title}\n{rule}\n");
    for (k, v) in rows {
        out.push_str(&format!("| {k:<kw$} | {v:>vw$} |\n"));
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer_summary() -> ProducerSummary {
        let lat = Latencies::default();
        for ms in 1..=1000u64 {
            lat.record(Duration::from_micros(ms * 1000));
        }
        ProducerSummary {
            topic: "T".into(),
            threads: 4,
            size_bytes: 128,
            batch: 1,
            async_mode: false,
            rate_per_s: None,
            warmup_s: 0,
            sent: 1000,
            failures: 2,
            retries: 3,
            duration_s: 2.0,
            latency: lat.total(),
        }
    }

    #[test]
    fn snapshot_percentiles_in_ms() {
        let s = producer_summary().latency;
        assert_eq!(s.count, 1000);
        // hdrhistogram with 3 significant digits: values within 0.1 %.
        assert!((s.p50_ms - 500.0).abs() <= 0.5, "{}", s.p50_ms);
        assert!((s.p99_ms - 990.0).abs() <= 1.0, "{}", s.p99_ms);
        assert!((s.p999_ms - 999.0).abs() <= 1.0, "{}", s.p999_ms);
        assert!((s.max_ms - 1000.0).abs() <= 1.0, "{}", s.max_ms);
        assert!((s.mean_ms - 500.5).abs() <= 0.6, "{}", s.mean_ms);
    }

    #[test]
    fn producer_json_shape() {
        let v = producer_summary().to_json();
        for key in [
            "send_tps",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "failures",
            "sent",
            "duration_s",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["sent"], 1000);
        assert_eq!(v["failures"], 2);
        assert_eq!(v["send_tps"], 500.0);
        assert_eq!(v["duration_s"], 2.0);
        // One line, parseable back.
        let line = v.to_string();
        assert!(!line.contains('\n'));
        let back: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back, v);
    }

    #[test]
    fn consumer_json_shape() {
        let s = ConsumerSummary {
            topic: "T".into(),
            group: "G".into(),
            queues: 4,
            received: 300,
            failures: 0,
            duration_s: 1.5,
            e2e: LatencySnapshot::default(),
        };
        let v = s.to_json();
        for key in [
            "recv_tps",
            "received",
            "duration_s",
            "e2e_p50_ms",
            "e2e_p99_ms",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["recv_tps"], 200.0);
        assert!(s.table().contains("| received"));
    }

    #[test]
    fn warmup_latency_stays_out_of_the_total() {
        let lat = Latencies::default();
        lat.record_interval_only(Duration::from_millis(50));
        lat.record(Duration::from_millis(5));
        assert_eq!(lat.take_interval().count, 2);
        let total = lat.total();
        assert_eq!(total.count, 1);
        assert!(total.max_ms < 6.0, "{}", total.max_ms);
    }

    #[test]
    fn interval_resets_total_does_not() {
        let lat = Latencies::default();
        lat.record(Duration::from_millis(5));
        assert_eq!(lat.take_interval().count, 1);
        assert_eq!(lat.take_interval().count, 0);
        assert_eq!(lat.total().count, 1);
    }

    #[test]
    fn table_and_live_line() {
        let t = producer_summary().table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "producer summary");
        // Every table row has the same width.
        let w = lines[1].len();
        assert!(lines[1..].iter().all(|l| l.len() == w));
        assert!(t.contains("| send TPS"));
        let l = live_line(
            "send",
            3,
            1234.4,
            &producer_summary().latency,
            2,
            Some((50, 200)),
        );
        assert!(l.starts_with("[   3s] send_tps=1234 "), "{l}");
        assert!(l.ends_with("failures=2 progress=50/200 (25.0%)"), "{l}");
    }
}
