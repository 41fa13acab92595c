//! `benchmark consumer`: one long-polling puller per queue of the topic (codes.md §3.6).
//! Starts from the group's committed offset (QUERY_CONSUMER_OFFSET) or 0, commits progress
//! through the pull's COMMIT_OFFSET bit and a final UPDATE_CONSUMER_OFFSET, and measures
//! end-to-end latency as receive time − the record's born timestamp.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use remoting::codes::{request, response};
use remoting::headers::offset::{
    GetMaxOffsetRequestHeader, QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use remoting::headers::pull::{sys_flag, PullMessageRequestHeader, PullMessageResponseHeader};
use remoting::{RemotingClient, RemotingCommand};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::cli::{ConsumerArgs, DEFAULT_CONSUMER_DURATION_S};
use crate::error::BenchError;
use crate::record;
use crate::route::{self, Connections, RouteCache};
use crate::stats::{live_line, ConsumerSummary, Counters, Latencies};

const REPORT_INTERVAL_MS: u64 = 1000;
const OFFSET_CALL_TIMEOUT_MS: u64 = 3000;
/// Extra client-side wait on top of the broker's long-poll hold (Java uses 30 s vs 15 s).
const PULL_TIMEOUT_MARGIN_MS: u64 = 5000;
/// Back-off after an error answer (Java `pullTimeDelayMillsWhenException` is 1000 ms) and
/// after a transport failure (shorter, so a failover is followed quickly).
const ERROR_BACKOFF_MS: u64 = 1000;
const TRANSPORT_BACKOFF_MS: u64 = 200;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

struct Shared {
    args: ConsumerArgs,
    conns: Arc<Connections>,
    routes: Arc<RouteCache>,
    counters: Counters,
    e2e: Latencies,
    count_reached: Notify,
}

impl Shared {
    /// Current master address of `(broker, queue)`; follows route refreshes.
    fn addr_of(&self, broker: &str, queue_id: i32) -> Option<Arc<str>> {
        self.routes
            .get()
            .iter()
            .find(|q| &*q.broker_name == broker && q.queue_id == queue_id)
            .map(|q| q.addr.clone())
    }

    async fn client(&self, broker: &str, queue_id: i32) -> Result<RemotingClient, BenchError> {
        let addr = self
            .addr_of(broker, queue_id)
            .ok_or_else(|| BenchError::NoRoute {
                topic: self.args.topic.clone(),
                reason: format!("queue {broker}/{queue_id} has no master"),
            })?;
        self.conns.get(&addr).await
    }

    /// Where a queue's pull starts: 0 with `--from-start`; else the committed offset; else
    /// the queue end with `--from-end`, or 0.
    async fn start_offset(&self, broker: &str, queue_id: i32) -> i64 {
        if self.args.from_start {
            return 0;
        }
        if let Some(o) = self.query_offset(broker, queue_id).await {
            return o;
        }
        if self.args.from_end {
            return self.max_offset(broker, queue_id).await.unwrap_or(0);
        }
        0
    }

    async fn offset_call(&self, broker: &str, queue_id: i32, req: RemotingCommand) -> Option<i64> {
        let client = self.client(broker, queue_id).await.ok()?;
        match client.invoke(req, OFFSET_CALL_TIMEOUT_MS).await {
            Ok(resp) if resp.code == response::SUCCESS => resp
                .ext("offset")
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|o| *o >= 0),
            // QUERY_NOT_FOUND or anything else: no offset.
            _ => None,
        }
    }

    async fn max_offset(&self, broker: &str, queue_id: i32) -> Option<i64> {
        let header = GetMaxOffsetRequestHeader {
            topic: self.args.topic.clone(),
            queue_id,
            committed: None,
        };
        let req = RemotingCommand::request_with_header(request::GET_MAX_OFFSET, &header);
        self.offset_call(broker, queue_id, req).await
    }

    async fn query_offset(&self, broker: &str, queue_id: i32) -> Option<i64> {
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: self.args.group.clone(),
            topic: self.args.topic.clone(),
            queue_id,
            set_zero_if_not_found: Some(false),
        };
        let req = RemotingCommand::request_with_header(request::QUERY_CONSUMER_OFFSET, &header);
        self.offset_call(broker, queue_id, req).await
    }

    async fn commit_offset(&self, broker: &str, queue_id: i32, offset: i64) {
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: self.args.group.clone(),
            topic: self.args.topic.clone(),
            queue_id,
            commit_offset: offset,
        };
        let req = RemotingCommand::request_with_header(request::UPDATE_CONSUMER_OFFSET, &header);
        if let Ok(client) = self.client(broker, queue_id).await {
            // Best effort: the pull's commit bit already carried most progress.
            let _ = client.invoke(req, OFFSET_CALL_TIMEOUT_MS).await;
        }
    }

    fn pull_request(&self, queue_id: i32, offset: i64, committed: i64) -> RemotingCommand {
        let mut flags = sys_flag::SUSPEND | sys_flag::SUBSCRIPTION;
        if committed > 0 {
            flags |= sys_flag::COMMIT_OFFSET;
        }
        let header = PullMessageRequestHeader {
            consumer_group: self.args.group.clone(),
            topic: self.args.topic.clone(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: self.args.pull_batch,
            sys_flag: flags,
            commit_offset: committed,
            suspend_timeout_millis: i64::try_from(self.args.suspend_ms).unwrap_or(15_000),
            subscription: Some("*".to_string()),
            sub_version: 0,
            expression_type: Some("TAG".to_string()),
            ..Default::default()
        };
        RemotingCommand::request_with_header(request::PULL_MESSAGE, &header)
    }

    /// Count the records of a SUCCESS body and record their end-to-end latency.
    fn consume(&self, body: &[u8]) {
        let now = now_ms();
        let n = record::for_each_record(body, |r| {
            let ms = u64::try_from(now - r.born_timestamp_ms).unwrap_or(0);
            self.e2e.record(Duration::from_millis(ms));
        });
        let n = match n {
            Ok(n) => n as u64,
            Err(_) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let total = self.counters.messages.fetch_add(n, Ordering::Relaxed) + n;
        if self.args.count.is_some_and(|c| total >= c) {
            self.count_reached.notify_one();
        }
    }
}

/// Sleep for `ms` unless `stop` fires first; returns false if stopped.
async fn backoff(stop: &mut watch::Receiver<bool>, ms: u64) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

async fn puller(
    shared: Arc<Shared>,
    broker: Arc<str>,
    queue_id: i32,
    mut stop: watch::Receiver<bool>,
) {
    let start_offset = shared.start_offset(&broker, queue_id).await;
    let mut offset = start_offset;
    let timeout_ms = shared.args.suspend_ms + PULL_TIMEOUT_MARGIN_MS;
    while !*stop.borrow() {
        let client = match shared.client(&broker, queue_id).await {
            Ok(c) => c,
            Err(_) => {
                shared.counters.failures.fetch_add(1, Ordering::Relaxed);
                if !backoff(&mut stop, TRANSPORT_BACKOFF_MS).await {
                    break;
                }
                continue;
            }
        };
        let req = shared.pull_request(queue_id, offset, offset);
        // Dropping the invoke future on stop cancels the held long poll on our side.
        let resp = tokio::select! {
            r = client.invoke(req, timeout_ms) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let resp = match resp {
            Ok(r) => r,
            Err(_) => {
                shared.counters.failures.fetch_add(1, Ordering::Relaxed);
                if !backoff(&mut stop, TRANSPORT_BACKOFF_MS).await {
                    break;
                }
                continue;
            }
        };
        let header = resp.decode_header::<PullMessageResponseHeader>();
        match (resp.code, header) {
            (response::SUCCESS, Ok(h)) => {
                shared.consume(&resp.body);
                offset = h.next_begin_offset;
            }
            (
                response::PULL_NOT_FOUND
                | response::PULL_RETRY_IMMEDIATELY
                | response::PULL_OFFSET_MOVED,
                Ok(h),
            ) => offset = h.next_begin_offset,
            _ => {
                shared.counters.failures.fetch_add(1, Ordering::Relaxed);
                if !backoff(&mut stop, ERROR_BACKOFF_MS).await {
                    break;
                }
            }
        }
    }
    if offset != start_offset {
        shared.commit_offset(&broker, queue_id, offset).await;
    }
}

/// Look the route up, retrying once a second for up to `--route-wait-s`.
async fn wait_for_queues(
    conns: &Connections,
    args: &ConsumerArgs,
) -> Result<Vec<route::QueueTarget>, BenchError> {
    let give_up = Instant::now() + Duration::from_secs(args.route_wait_s);
    loop {
        let result = route::fetch_route(conns, &args.namesrv, &args.topic)
            .await
            .map(|r| route::subscribe_queues(&r));
        let err = match result {
            Ok(q) if !q.is_empty() => return Ok(q),
            Ok(_) => BenchError::NoRoute {
                topic: args.topic.clone(),
                reason: "no readable queue on a master".into(),
            },
            Err(e) => e,
        };
        if Instant::now() >= give_up {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(route::ROUTE_REFRESH_INTERVAL_MS)).await;
    }
}

/// Run the consumer benchmark, printing a live line per second to stdout.
pub async fn run(args: ConsumerArgs) -> Result<ConsumerSummary, BenchError> {
    args.validate().map_err(BenchError::InvalidArgs)?;
    let conns = Arc::new(Connections::default());
    let queues = wait_for_queues(&conns, &args).await?;
    let routes = RouteCache::new(queues.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let refresher = tokio::spawn(route::refresh_loop(
        conns.clone(),
        routes.clone(),
        args.namesrv.clone(),
        args.topic.clone(),
        false,
        stop_rx.clone(),
    ));
    let duration = match (args.duration_s, args.count) {
        (Some(s), _) => Some(Duration::from_secs(s)),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(DEFAULT_CONSUMER_DURATION_S)),
    };
    let shared = Arc::new(Shared {
        args,
        conns: conns.clone(),
        routes,
        counters: Counters::default(),
        e2e: Latencies::default(),
        count_reached: Notify::new(),
    });
    let start = Instant::now();
    let mut pullers = JoinSet::new();
    for q in &queues {
        pullers.spawn(puller(
            shared.clone(),
            q.broker_name.clone(),
            q.queue_id,
            stop_rx.clone(),
        ));
    }
    let reporter = tokio::spawn(report_loop(shared.clone(), start));
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = deadline => {}
        _ = shared.count_reached.notified() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let elapsed = start.elapsed();
    let _ = stop_tx.send(true);
    while pullers.join_next().await.is_some() {}
    reporter.abort();
    let _ = reporter.await;
    let _ = refresher.await;
    conns.close_all();

    let (received, failures, _) = shared.counters.load();
    Ok(ConsumerSummary {
        topic: shared.args.topic.clone(),
        group: shared.args.group.clone(),
        queues: queues.len(),
        received,
        failures,
        duration_s: elapsed.as_secs_f64(),
        e2e: shared.e2e.total(),
    })
}

async fn report_loop(shared: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_millis(REPORT_INTERVAL_MS)).into(),
        Duration::from_millis(REPORT_INTERVAL_MS),
    );
    let mut last = 0u64;
    let mut last_at = start;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (received, failures, _) = shared.counters.load();
        let tps = (received - last) as f64 / now.duration_since(last_at).as_secs_f64().max(1e-9);
        let lat = shared.e2e.take_interval();
        let progress = shared.args.count.map(|c| (received, c));
        println!(
            "{}",
            live_line(
                "recv",
                now.duration_since(start).as_secs(),
                tps,
                &lat,
                failures,
                progress
            )
        );
        last = received;
        last_at = now;
    }
}
