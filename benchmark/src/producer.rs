//! `benchmark producer`: N concurrent senders round-robin over the topic's master queues.
//! Sync by default (one request in flight per sender); `--async` pipelines up to
//! `--inflight` requests per sender. Retries like the Java client (codes.md §3.1).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use remoting::codes::{request, response};
use remoting::headers::send::SendMessageRequestHeaderV2;
use remoting::RemotingCommand;
use tokio::task::JoinSet;

use crate::batch;
use crate::cli::ProducerArgs;
use crate::error::BenchError;
use crate::rate::{Pacer, RateSchedule};
use crate::route::{
    self, Connections, QueueTarget, RouteCache, AUTO_CREATE_TOPIC, DEFAULT_TOPIC_QUEUE_NUMS,
};
use crate::stats::{live_line, Counters, Latencies, ProducerSummary};
use crate::uniq::{self, UniqIds};

const REPORT_INTERVAL_MS: u64 = 1000;

/// Codes after which the Java 5.x sync producer retries on another broker
/// (`DefaultMQProducer.retryResponseCodes`, codes.md §3.1).
pub fn is_retryable_code(code: i32) -> bool {
    matches!(code, 17 | 14 | 1 | 16 | 204 | 205 | 2 | 1500)
}

/// Codes for which the message is stored (the Java client returns a SendResult).
pub fn is_stored_code(code: i32) -> bool {
    matches!(
        code,
        response::SUCCESS
            | response::FLUSH_DISK_TIMEOUT
            | response::SLAVE_NOT_AVAILABLE
            | response::FLUSH_SLAVE_TIMEOUT
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

struct Shared {
    args: ProducerArgs,
    conns: Arc<Connections>,
    routes: Arc<RouteCache>,
    /// Every send, warm-up included (live lines).
    counters: Counters,
    /// Sends started at or after `measure_from` (the summary).
    measured: Counters,
    latencies: Latencies,
    /// End of the warm-up: sends starting earlier are not part of the summary.
    measure_from: Instant,
    /// Messages claimed so far (count mode without a rate).
    claimed: AtomicU64,
    round_robin: AtomicU64,
    schedule: Option<Arc<RateSchedule>>,
    /// Releases `schedule`'s slots on time (fixed-rate mode only).
    pacer: Option<Pacer>,
    deadline: Option<Instant>,
    stop: AtomicBool,
    /// One body shared by every single send (refcounted, never copied).
    body: Bytes,
    /// Every message's UNIQ_KEY, as a Java producer sets it.
    ids: UniqIds,
}

/// One unit of work: `messages` to send in one request, intended to start at `intended`.
struct Work {
    messages: usize,
    intended: Option<Instant>,
}

impl Shared {
    /// Fixed-rate mode: wait until the pacer releases a slot (`false`: the run is over).
    async fn wait_due(&self) -> bool {
        match &self.pacer {
            Some(p) => p.wait_due().await,
            None => true,
        }
    }

    fn next_work(&self) -> Option<Work> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let batch = self.args.batch as u64;
        let (first_message, intended) = match &self.schedule {
            Some(s) => {
                let (slot, at) = s.claim();
                if self.deadline.is_some_and(|d| at >= d) {
                    return None;
                }
                (slot.saturating_mul(batch), Some(at))
            }
            None => {
                if self.deadline.is_some_and(|d| Instant::now() >= d) {
                    return None;
                }
                (self.claimed.fetch_add(batch, Ordering::Relaxed), None)
            }
        };
        let messages = match self.args.count {
            Some(count) if first_message >= count => return None,
            Some(count) => (count - first_message).min(batch),
            None => batch,
        };
        Some(Work {
            messages: usize::try_from(messages).unwrap_or(1),
            intended,
        })
    }

    fn build_request(&self, q: &QueueTarget, messages: usize) -> RemotingCommand {
        let is_batch = self.args.batch > 1;
        let header = SendMessageRequestHeaderV2 {
            a: self.args.group.as_str().into(),
            b: self.args.topic.as_str().into(),
            c: AUTO_CREATE_TOPIC.into(),
            d: DEFAULT_TOPIC_QUEUE_NUMS,
            e: q.queue_id,
            f: 0,
            g: now_ms(),
            h: 0,
            // A batch's own properties are empty: its messages carry theirs.
            i: (!is_batch).then(|| self.ids.properties()),
            j: Some(0),
            k: Some(false),
            l: None,
            m: Some(is_batch),
            n: Some(q.broker_name.as_ref().into()),
        };
        let (code, body) = if is_batch {
            assert!(messages <= self.args.batch);
            (
                request::SEND_BATCH_MESSAGE,
                batch::encode_batch_with(
                    &self.body,
                    messages,
                    batch::block_len(self.body.len(), uniq::PROPERTIES_LEN),
                    || self.ids.properties(),
                ),
            )
        } else {
            (request::SEND_MESSAGE_V2, self.body.clone())
        };
        RemotingCommand::request_with_header(code, &header).with_body(body)
    }

    /// Pick the queue for `attempt`: round-robin, and on a retry prefer a queue on another
    /// broker than the one that just failed (Java `selectOneMessageQueue(lastBrokerName)`).
    fn pick(queues: &[QueueTarget], index: &mut u64, last_broker: Option<&str>) -> QueueTarget {
        assert!(!queues.is_empty());
        let len = queues.len() as u64;
        for _ in 0..len {
            let q = &queues[(*index % len) as usize];
            *index = index.wrapping_add(1);
            if last_broker != Some(&*q.broker_name) {
                return q.clone();
            }
        }
        let q = &queues[(*index % len) as usize];
        *index = index.wrapping_add(1);
        q.clone()
    }

    /// Send one request with retries; record latency from `start` on success.
    async fn send(&self, work: Work) {
        let start = work.intended.unwrap_or_else(Instant::now);
        let measured = start >= self.measure_from;
        let mut index = self.round_robin.fetch_add(1, Ordering::Relaxed);
        let mut last_broker: Option<Arc<str>> = None;
        for attempt in 0..=self.args.retries {
            if attempt > 0 {
                self.count(measured, |c| &c.retries, 1);
            }
            let queues = self.routes.get();
            if queues.is_empty() {
                break;
            }
            let q = Self::pick(&queues, &mut index, last_broker.as_deref());
            let req = self.build_request(&q, work.messages);
            let result = match self.conns.get(&q.addr).await {
                Ok(client) => client
                    .invoke(req, self.args.timeout_ms)
                    .await
                    .map_err(BenchError::from),
                Err(e) => Err(e),
            };
            match result {
                Ok(resp) if is_stored_code(resp.code) => {
                    if measured {
                        self.latencies.record(start.elapsed());
                    } else {
                        self.latencies.record_interval_only(start.elapsed());
                    }
                    self.count(measured, |c| &c.messages, work.messages as u64);
                    return;
                }
                Ok(resp) if is_retryable_code(resp.code) => {}
                Ok(_) => break,
                // Transport failures (connect, timeout, closed) are always retried.
                Err(_) => {}
            }
            last_broker = Some(q.broker_name.clone());
        }
        self.count(measured, |c| &c.failures, 1);
    }

    /// Adds `n` to one counter of the live totals and, for a measured send, of the summary.
    fn count(&self, measured: bool, which: impl Fn(&Counters) -> &AtomicU64, n: u64) {
        which(&self.counters).fetch_add(n, Ordering::Relaxed);
        if measured {
            which(&self.measured).fetch_add(n, Ordering::Relaxed);
        }
    }
}

async fn sync_sender(shared: Arc<Shared>) {
    while shared.wait_due().await {
        let Some(work) = shared.next_work() else {
            break;
        };
        shared.send(work).await;
    }
}

async fn async_sender(shared: Arc<Shared>) {
    let mut inflight = JoinSet::new();
    loop {
        while inflight.len() >= shared.args.inflight {
            inflight.join_next().await;
        }
        if !shared.wait_due().await {
            break;
        }
        let Some(work) = shared.next_work() else {
            break;
        };
        let s = shared.clone();
        inflight.spawn(async move { s.send(work).await });
    }
    while inflight.join_next().await.is_some() {}
}

/// Run the producer benchmark, printing a live line per second to stdout.
pub async fn run(args: ProducerArgs) -> Result<ProducerSummary, BenchError> {
    args.validate().map_err(BenchError::InvalidArgs)?;
    let conns = Arc::new(Connections::default());
    let queues = route::producer_queues(&conns, &args.namesrv, &args.topic).await?;
    if queues.is_empty() {
        return Err(BenchError::NoRoute {
            topic: args.topic.clone(),
            reason: "no writable queue on a master".into(),
        });
    }
    // Connect before the clock starts, as the route was looked up: the run measures sends,
    // not the set-up. A failure here is left to the senders' retries.
    let mut addrs: Vec<&str> = queues.iter().map(|q| &*q.addr).collect();
    addrs.sort_unstable();
    addrs.dedup();
    for addr in addrs {
        let _ = conns.get(addr).await;
    }
    let routes = RouteCache::new(queues);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let refresher = tokio::spawn(route::refresh_loop(
        conns.clone(),
        routes.clone(),
        args.namesrv.clone(),
        args.topic.clone(),
        true,
        stop_rx,
    ));

    let payload = vec![b'a'; args.size_bytes];
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup_s);
    let deadline = args
        .duration_s
        .map(|s| measure_from + Duration::from_secs(s));
    let schedule = args
        .rate_per_s
        .map(|r| Arc::new(RateSchedule::new(start, r)));
    let pacer = match &schedule {
        Some(s) => Some(Pacer::start(s.clone(), deadline).map_err(BenchError::Io)?),
        None => None,
    };
    let shared = Arc::new(Shared {
        body: Bytes::from(payload),
        ids: UniqIds::new(),
        schedule,
        pacer,
        deadline,
        args,
        conns: conns.clone(),
        routes,
        counters: Counters::default(),
        measured: Counters::default(),
        latencies: Latencies::default(),
        measure_from,
        claimed: AtomicU64::new(0),
        round_robin: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    let reporter = tokio::spawn(report_loop(shared.clone(), start));
    let ctrl_c = {
        let s = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                s.stop.store(true, Ordering::Relaxed);
                if let Some(p) = &s.pacer {
                    p.close();
                }
            }
        })
    };
    let mut senders = JoinSet::new();
    for _ in 0..shared.args.threads {
        let s = shared.clone();
        if s.args.async_mode {
            senders.spawn(async_sender(s));
        } else {
            senders.spawn(sync_sender(s));
        }
    }
    while senders.join_next().await.is_some() {}
    let elapsed = measure_from.elapsed();
    reporter.abort();
    let _ = reporter.await;
    ctrl_c.abort();
    let _ = stop_tx.send(true);
    let _ = refresher.await;
    conns.close_all();

    let (sent, failures, retries) = shared.measured.load();
    let a = &shared.args;
    Ok(ProducerSummary {
        topic: a.topic.clone(),
        threads: a.threads,
        size_bytes: a.size_bytes,
        batch: a.batch,
        async_mode: a.async_mode,
        rate_per_s: a.rate_per_s,
        warmup_s: a.warmup_s,
        sent,
        failures,
        retries,
        duration_s: elapsed.as_secs_f64(),
        latency: shared.latencies.total(),
    })
}

async fn report_loop(shared: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_millis(REPORT_INTERVAL_MS)).into(),
        Duration::from_millis(REPORT_INTERVAL_MS),
    );
    let mut last_sent = 0u64;
    let mut last_at = start;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (sent, failures, _) = shared.counters.load();
        let secs = now.duration_since(last_at).as_secs_f64().max(1e-9);
        let tps = (sent - last_sent) as f64 / secs;
        let lat = shared.latencies.take_interval();
        let progress = shared.args.count.map(|c| (sent, c));
        // An interval that began in the warm-up reports it.
        let label = if last_at < shared.measure_from {
            "warmup"
        } else {
            "send"
        };
        println!(
            "{}",
            live_line(
                label,
                now.duration_since(start).as_secs(),
                tps,
                &lat,
                failures,
                progress
            )
        );
        last_sent = sent;
        last_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, id: i32) -> QueueTarget {
        QueueTarget {
            broker_name: Arc::from(name),
            addr: Arc::from("127.0.0.1:1"),
            queue_id: id,
        }
    }

    #[test]
    fn pick_round_robins_and_avoids_failed_broker() {
        let queues = vec![q("a", 0), q("a", 1), q("b", 0), q("b", 1)];
        let mut i = 0;
        let picked: Vec<_> = (0..5)
            .map(|_| Shared::pick(&queues, &mut i, None))
            .collect();
        assert_eq!(
            picked.iter().map(|t| t.queue_id).collect::<Vec<_>>(),
            vec![0, 1, 0, 1, 0]
        );
        let mut i = 1; // next would be a/1
        let r = Shared::pick(&queues, &mut i, Some("a"));
        assert_eq!((&*r.broker_name, r.queue_id), ("b", 0));
        // Only one broker: the retry still gets a queue.
        let single = vec![q("a", 0)];
        let mut i = 0;
        assert_eq!(&*Shared::pick(&single, &mut i, Some("a")).broker_name, "a");
    }

    #[test]
    fn retry_codes_match_java() {
        for c in [17, 14, 1, 16, 204, 205, 2, 1500] {
            assert!(is_retryable_code(c));
        }
        assert!(!is_retryable_code(13));
        assert!(
            is_stored_code(0) && is_stored_code(10) && is_stored_code(11) && is_stored_code(12)
        );
        assert!(!is_stored_code(1));
    }
}
