//! End-to-end runs of the `benchmark` binary against a tiny in-process fake NameServer +
//! broker built from `remoting::server`. The fake decodes what the tool sends with its own
//! (independent) parsing, stores v1 commitlog records, and serves them to pulls, so the
//! tool is tested without the real broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use remoting::body::{fastjson, BrokerData, QueueData, TopicRouteData};
use remoting::codes::{request, response};
use remoting::headers::namesrv::GetRouteInfoRequestHeader;
use remoting::headers::offset::{
    GetMaxOffsetRequestHeader, QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use remoting::headers::pull::{PullMessageRequestHeader, PullMessageResponseHeader};
use remoting::headers::send::{SendMessageRequestHeader, SendMessageResponseHeader};
use remoting::{
    processor_fn, Dispatcher, ProcessResult, RemotingCommand, RemotingServer, ServerConfig,
    Shutdown,
};
use serde_json::Value;

const TOPIC: &str = "BenchT";
const QUEUES: usize = 4;
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// The fake's stand-in for a long-poll hold when a queue has nothing new.
const EMPTY_PULL_HOLD_MS: u64 = 20;

#[derive(Default)]
struct Fake {
    addr: OnceLock<String>,
    /// Master address advertised in routes; defaults to our own address.
    route_master: Mutex<Option<String>>,
    /// A demoted master answers sends with SERVICE_NOT_AVAILABLE (retryable).
    demoted: std::sync::atomic::AtomicBool,
    /// Sends refused while demoted, for tests to await.
    refused_tx: OnceLock<tokio::sync::watch::Sender<usize>>,
    /// Total stored messages, for tests to await progress.
    stored_tx: OnceLock<tokio::sync::watch::Sender<usize>>,
    queues: Mutex<Vec<Vec<Bytes>>>,
    send_requests: AtomicU64,
    batch_requests: AtomicU64,
    /// Answer the first N send requests with SYSTEM_ERROR (retryable). A retry is sent only
    /// after its failed attempt was counted, so with N ≤ 2 no batch can fail more than twice:
    /// the tool's 2 retries always succeed and the outcome is deterministic.
    fail_first: AtomicU64,
    failed_sends: AtomicU64,
    /// The first send request is answered only after this many milliseconds (a slow start).
    stall_first_send_ms: AtomicU64,
    offsets: Mutex<HashMap<i32, i64>>,
    pulls_with_commit_bit: AtomicU64,
}

/// (flag, body, properties).
type Message = (i32, Vec<u8>, Vec<u8>);

/// Independent parse of a batch body (message-format.md §4) into (flag, body, properties).
fn parse_batch(mut b: &[u8]) -> Option<Vec<Message>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let rd = |b: &[u8], at: usize| -> Option<i32> {
            Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let total = rd(b, 0)? as usize;
        let (magic, crc, flag, blen) = (rd(b, 4)?, rd(b, 8)?, rd(b, 12)?, rd(b, 16)? as usize);
        if magic != 0 || crc != 0 || total > b.len() {
            return None;
        }
        let body = b.get(20..20 + blen)?.to_vec();
        let plen = i16::from_be_bytes(b.get(20 + blen..22 + blen)?.try_into().ok()?) as usize;
        let props = b.get(22 + blen..22 + blen + plen)?.to_vec();
        if 22 + blen + plen != total {
            return None;
        }
        out.push((flag, body, props));
        b = &b[total..];
    }
    Some(out)
}

/// A v1 commitlog record (message-format.md §1) with IPv4 hosts.
fn record(
    queue_id: i32,
    queue_offset: i64,
    flag: i32,
    born_ms: i64,
    body: &[u8],
    props: &[u8],
) -> Bytes {
    let total = 91 + body.len() + TOPIC.len() + props.len();
    let mut r = BytesMut::with_capacity(total);
    r.put_i32(total as i32);
    r.put_u32(0xDAA3_20A7);
    r.put_i32(0);
    r.put_i32(queue_id);
    r.put_i32(flag);
    r.put_i64(queue_offset);
    r.put_i64(0);
    r.put_i32(0);
    r.put_i64(born_ms);
    r.put_slice(&[127, 0, 0, 1]);
    r.put_i32(1);
    r.put_i64(born_ms);
    r.put_slice(&[127, 0, 0, 1]);
    r.put_i32(2);
    r.put_i32(0);
    r.put_i64(0);
    r.put_i32(body.len() as i32);
    r.put_slice(body);
    r.put_u8(TOPIC.len() as u8);
    r.put_slice(TOPIC.as_bytes());
    r.put_i16(props.len() as i16);
    r.put_slice(props);
    assert_eq!(r.len(), total);
    r.freeze()
}

impl Fake {
    fn route(&self, req: &RemotingCommand) -> ProcessResult {
        let h: GetRouteInfoRequestHeader = req.decode_header()?;
        if h.topic != TOPIC {
            return Ok(Some(RemotingCommand::error_response(
                req,
                response::TOPIC_NOT_EXIST,
                "no route",
            )));
        }
        let addr = self
            .route_master
            .lock()
            .unwrap()
            .clone()
            .or_else(|| self.addr.get().cloned())
            .unwrap_or_default();
        let route = TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_addrs: [(0i64, addr)].into_iter().collect(),
                broker_name: "fake-a".into(),
                cluster: "C".into(),
                ..Default::default()
            }],
            queue_datas: vec![QueueData {
                broker_name: "fake-a".into(),
                perm: 6,
                read_queue_nums: QUEUES as i32,
                write_queue_nums: QUEUES as i32,
                topic_sys_flag: 0,
            }],
            ..Default::default()
        };
        // fastjson's bare numeric keys: the tool must cope with both JSON flavours.
        let body = fastjson::topic_route_data(&route);
        Ok(Some(
            RemotingCommand::response_to(req, response::SUCCESS).with_body(body.into_bytes()),
        ))
    }

    fn send(&self, req: &RemotingCommand) -> ProcessResult {
        let n = self.send_requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= self.fail_first.load(Ordering::Relaxed) {
            self.failed_sends.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(RemotingCommand::error_response(
                req,
                response::SYSTEM_ERROR,
                "injected",
            )));
        }
        if self.demoted.load(Ordering::Relaxed) {
            if let Some(tx) = self.refused_tx.get() {
                tx.send_modify(|n| *n += 1);
            }
            return Ok(Some(RemotingCommand::error_response(
                req,
                response::SERVICE_NOT_AVAILABLE,
                "not master",
            )));
        }
        let h = SendMessageRequestHeader::decode_any(req)?;
        assert_eq!(h.topic, TOPIC);
        assert_eq!(h.default_topic, "TBW102");
        assert!(h.born_timestamp > 0);
        let qid = h.queue_id;
        assert!((0..QUEUES as i32).contains(&qid), "queue {qid}");
        let messages: Vec<Message> = if req.code == request::SEND_BATCH_MESSAGE {
            assert_eq!(h.batch, Some(true));
            self.batch_requests.fetch_add(1, Ordering::Relaxed);
            parse_batch(&req.body).ok_or("bad batch body")?
        } else {
            assert_eq!(req.code, request::SEND_MESSAGE_V2);
            let props = h.properties.clone().unwrap_or_default().into_bytes();
            vec![(h.flag, req.body.to_vec(), props)]
        };
        let mut queues = self.queues.lock().unwrap();
        let q = &mut queues[qid as usize];
        let first = q.len() as i64;
        for (i, (flag, body, props)) in messages.iter().enumerate() {
            q.push(record(
                qid,
                first + i as i64,
                *flag,
                h.born_timestamp,
                body,
                props,
            ));
        }
        let total: usize = queues.iter().map(Vec::len).sum();
        drop(queues);
        if let Some(tx) = self.stored_tx.get() {
            tx.send_replace(total);
        }
        let resp = SendMessageResponseHeader {
            msg_id: "7F0000010000000200000000000000000".into(),
            queue_id: qid,
            queue_offset: first,
            ..Default::default()
        };
        Ok(Some(
            RemotingCommand::response_to(req, response::SUCCESS).with_header(&resp),
        ))
    }

    async fn pull(self: Arc<Self>, req: RemotingCommand) -> ProcessResult {
        let h: PullMessageRequestHeader = req.decode_header()?;
        assert_eq!(h.topic, TOPIC);
        if h.sys_flag & 0x1 != 0 {
            self.pulls_with_commit_bit.fetch_add(1, Ordering::Relaxed);
            self.offsets
                .lock()
                .unwrap()
                .insert(h.queue_id, h.commit_offset);
        }
        let (body, max) = {
            let queues = self.queues.lock().unwrap();
            let q = &queues[h.queue_id as usize];
            let from = (h.queue_offset.max(0) as usize).min(q.len());
            let to = (from + h.max_msg_nums as usize).min(q.len());
            let mut body = BytesMut::new();
            for r in &q[from..to] {
                body.put_slice(r);
            }
            (body.freeze(), q.len() as i64)
        };
        let found = !body.is_empty();
        if !found {
            tokio::time::sleep(Duration::from_millis(EMPTY_PULL_HOLD_MS)).await;
        }
        let n = crate_count(&body);
        let header = PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: h.queue_offset + n,
            min_offset: 0,
            max_offset: max,
            ..Default::default()
        };
        let code = if found {
            response::SUCCESS
        } else {
            response::PULL_NOT_FOUND
        };
        Ok(Some(
            RemotingCommand::response_to(&req, code)
                .with_header(&header)
                .with_body(body),
        ))
    }

    fn query_offset(&self, req: &RemotingCommand) -> ProcessResult {
        let h: QueryConsumerOffsetRequestHeader = req.decode_header()?;
        Ok(Some(match self.offsets.lock().unwrap().get(&h.queue_id) {
            Some(o) => RemotingCommand::response_to(req, response::SUCCESS)
                .with_ext("offset", o.to_string()),
            None => RemotingCommand::error_response(req, response::QUERY_NOT_FOUND, "none"),
        }))
    }

    fn max_offset(&self, req: &RemotingCommand) -> ProcessResult {
        let h: GetMaxOffsetRequestHeader = req.decode_header()?;
        let n = self.queues.lock().unwrap()[h.queue_id as usize].len();
        Ok(Some(
            RemotingCommand::response_to(req, response::SUCCESS).with_ext("offset", n.to_string()),
        ))
    }

    fn update_offset(&self, req: &RemotingCommand) -> ProcessResult {
        let h: UpdateConsumerOffsetRequestHeader = req.decode_header()?;
        self.offsets
            .lock()
            .unwrap()
            .insert(h.queue_id, h.commit_offset);
        Ok(Some(RemotingCommand::response_to(req, response::SUCCESS)))
    }

    fn stored(&self) -> Vec<usize> {
        self.queues.lock().unwrap().iter().map(Vec::len).collect()
    }
}

fn crate_count(body: &[u8]) -> i64 {
    let mut n = 0;
    let mut at = 0;
    while at + 4 <= body.len() {
        at += i32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
        n += 1;
    }
    n
}

struct Harness {
    fake: Arc<Fake>,
    addr: SocketAddr,
    shutdown: Shutdown,
}

async fn start_fake() -> Harness {
    let fake = Arc::new(Fake {
        queues: Mutex::new(vec![Vec::new(); QUEUES]),
        ..Default::default()
    });
    let mut d = Dispatcher::new();
    let f = fake.clone();
    d.register(
        request::GET_ROUTEINFO_BY_TOPIC,
        processor_fn(move |_c, r| {
            let out = f.route(&r);
            async move { out }
        }),
    );
    let f = fake.clone();
    d.register_many(
        &[request::SEND_MESSAGE_V2, request::SEND_BATCH_MESSAGE],
        processor_fn(move |_c, r| {
            let stall_ms = f.stall_first_send_ms.swap(0, Ordering::Relaxed);
            let out = f.send(&r);
            async move {
                // Simulated broker latency, not synchronisation: nothing waits on it.
                tokio::time::sleep(Duration::from_millis(stall_ms)).await;
                out
            }
        }),
    );
    let f = fake.clone();
    d.register(
        request::PULL_MESSAGE,
        processor_fn(move |_c, r| f.clone().pull(r)),
    );
    let f = fake.clone();
    d.register(
        request::QUERY_CONSUMER_OFFSET,
        processor_fn(move |_c, r| {
            let out = f.query_offset(&r);
            async move { out }
        }),
    );
    let f = fake.clone();
    d.register(
        request::GET_MAX_OFFSET,
        processor_fn(move |_c, r| {
            let out = f.max_offset(&r);
            async move { out }
        }),
    );
    let f = fake.clone();
    d.register(
        request::UPDATE_CONSUMER_OFFSET,
        processor_fn(move |_c, r| {
            let out = f.update_offset(&r);
            async move { out }
        }),
    );
    let server = RemotingServer::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default(), d)
        .await
        .expect("bind");
    let addr = server.local_addr();
    fake.addr.set(addr.to_string()).expect("set once");
    let _ = fake.stored_tx.set(tokio::sync::watch::channel(0).0);
    let _ = fake.refused_tx.set(tokio::sync::watch::channel(0).0);
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));
    Harness {
        fake,
        addr,
        shutdown,
    }
}

/// Run the binary (blocking, on a blocking thread) and return (stdout lines, exit success).
async fn run_tool(args: Vec<String>) -> (Vec<String>, bool) {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_benchmark"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn benchmark");
        let started = Instant::now();
        // Bounded wait: kill the tool if it hangs.
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if started.elapsed() > RUN_TIMEOUT {
                let _ = child.kill();
                panic!("benchmark {args:?} did not finish within {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        let text = String::from_utf8(out.stdout).expect("utf8");
        (
            text.lines().map(str::to_string).collect(),
            out.status.success(),
        )
    })
    .await
    .expect("join")
}

fn last_json(lines: &[String]) -> Value {
    let last = lines.last().expect("some output");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}\n{lines:#?}"))
}

fn args(s: &str, addr: SocketAddr) -> Vec<String> {
    s.replace("ADDR", &addr.to_string())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn assert_latency_shape(v: &Value, prefix: &str) {
    let get = |k: &str| {
        v[format!("{prefix}{k}")]
            .as_f64()
            .unwrap_or_else(|| panic!("{prefix}{k} in {v}"))
    };
    let (p50, p99, max) = (get("p50_ms"), get("p99_ms"), get("max_ms"));
    assert!(p50 >= 0.0 && p50 <= p99 && p99 <= max, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_then_consumer_round_trip() {
    let h = start_fake().await;
    let (lines, ok) = run_tool(args(
        "producer -n ADDR --topic BenchT --threads 4 --size 100 --count 200 --json",
        h.addr,
    ))
    .await;
    assert!(ok, "{lines:#?}");
    let v = last_json(&lines);
    assert_eq!(v["sent"], 200, "{v}");
    assert_eq!(v["failures"], 0, "{v}");
    assert!(v["send_tps"].as_f64().unwrap() > 0.0);
    assert!(v["p999_ms"].is_number() && v["duration_s"].is_number());
    assert_latency_shape(&v, "");
    // Round-robin over 4 queues: 50 each, bodies intact.
    assert_eq!(h.fake.stored(), vec![50; QUEUES]);
    assert_eq!(h.fake.send_requests.load(Ordering::Relaxed), 200);
    assert!(lines
        .iter()
        .any(|l| l.contains("send summary") || l.contains("producer summary")));

    let (lines, ok) = run_tool(args(
        "consumer -n ADDR --topic BenchT --group G1 --count 200 --json",
        h.addr,
    ))
    .await;
    assert!(ok, "{lines:#?}");
    let v = last_json(&lines);
    assert_eq!(v["received"], 200, "{v}");
    assert_eq!(v["failures"], 0, "{v}");
    assert!(v["recv_tps"].as_f64().unwrap() > 0.0);
    assert_latency_shape(&v, "e2e_");
    // Progress committed at the end: every queue fully consumed.
    let offsets = h.fake.offsets.lock().unwrap().clone();
    assert_eq!(offsets.len(), QUEUES, "{offsets:?}");
    assert!(offsets.values().all(|o| *o == 50), "{offsets:?}");

    // A second run of the same group resumes from the committed offsets: nothing new.
    let (lines, ok) = run_tool(args(
        "consumer -n ADDR --topic BenchT --group G1 --duration 1 --json",
        h.addr,
    ))
    .await;
    assert!(ok, "{lines:#?}");
    let v = last_json(&lines);
    assert_eq!(v["received"], 0, "{v}");
    // A new group with --from-end skips the 200 existing messages.
    let (lines, ok) = run_tool(args(
        "consumer -n ADDR --topic BenchT --group G2 --from-end --duration 1 --json",
        h.addr,
    ))
    .await;
    assert!(ok, "{lines:#?}");
    assert_eq!(last_json(&lines)["received"], 0);
    // Resumed pulls carry the commit bit with the committed offset.
    assert!(h.fake.pulls_with_commit_bit.load(Ordering::Relaxed) > 0);
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_batches_with_retries() {
    let h = start_fake().await;
    h.fake.fail_first.store(2, Ordering::Relaxed);
    let (lines, ok) = run_tool(args(
        "producer -n ADDR --topic BenchT --threads 2 --size 64 --count 100 --batch 8 --async --inflight 4 --json",
        h.addr,
    ))
    .await;
    assert!(ok, "{lines:#?}");
    let v = last_json(&lines);
    assert_eq!(v["sent"], 100, "{v}");
    assert_eq!(v["failures"], 0, "{v}");
    let injected = h.fake.failed_sends.load(Ordering::Relaxed);
    assert_eq!(injected, 2);
    assert_eq!(v["retries"], injected, "{v}");
    // 100 messages in batches of 8 = 13 stored requests (12 × 8 + 1 × 4).
    assert_eq!(h.fake.batch_requests.load(Ordering::Relaxed), 13);
    assert_eq!(h.fake.stored().iter().sum::<usize>(), 100);
    let queues = h.fake.queues.lock().unwrap();
    for r in queues.iter().flatten() {
        // body length field at 84, body of 64 'a'.
        assert_eq!(&r[84..88], &64i32.to_be_bytes());
        assert!(r[88..152].iter().all(|b| *b == b'a'));
    }
    drop(queues);
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_sends_exactly_the_scheduled_slots() {
    let h = start_fake().await;
    let (lines, ok) = run_tool(args(
        "producer -n ADDR --topic BenchT --threads 2 --size 16 --duration 2 --rate 50 --json",
        h.addr,
    ))
    .await;
    assert!(ok, "{lines:#?}");
    let v = last_json(&lines);
    // Slots k with intended time start + k/50 s < start + 2 s: k = 0..99.
    assert_eq!(v["sent"], 100, "{v}");
    assert_eq!(v["rate"], 50, "{v}");
    assert!(
        lines.iter().any(|l| l.contains("send_tps=")),
        "live lines: {lines:#?}"
    );
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_sends_are_left_out_of_the_summary() {
    let h = start_fake().await;
    const STALL_MS: u64 = 700;
    h.fake
        .stall_first_send_ms
        .store(STALL_MS, Ordering::Relaxed);
    let (lines, ok) = run_tool(args(
        "producer -n ADDR --topic BenchT --threads 2 --size 16 --warmup 1 --duration 1 --rate 50 --json",
        h.addr,
    ))
    .await;
    assert!(ok, "{lines:#?}");
    let v = last_json(&lines);
    // 100 slots in the two seconds; the summary holds the 50 intended in the second one.
    assert_eq!(h.fake.stored().iter().sum::<usize>(), 100);
    assert_eq!(v["sent"], 50, "{v}");
    assert_eq!(v["warmup_s"], 1, "{v}");
    assert!(v["duration_s"].as_f64().unwrap() < 1.5, "{v}");
    // The stalled first send belongs to the warm-up: its latency is not in the summary.
    assert!(v["max_ms"].as_f64().unwrap() < STALL_MS as f64, "{v}");
    assert!(
        lines.iter().any(|l| l.contains("warmup_tps=")),
        "live lines: {lines:#?}"
    );
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_fails_cleanly() {
    let h = start_fake().await;
    // No route for the topic and none for TBW102: the tool exits non-zero, no hang.
    let (_, ok) = run_tool(args("producer -n ADDR --topic Nope --count 1", h.addr)).await;
    assert!(!ok);
    h.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_follows_a_new_master_after_route_change() {
    // `a` is NameServer and first master; `b` becomes master mid-run.
    let a = start_fake().await;
    let b = start_fake().await;
    let mut stored_on_a = a.fake.stored_tx.get().expect("watch").subscribe();
    let tool = tokio::spawn(run_tool(args(
        "producer -n ADDR --topic BenchT --threads 2 --size 32 --duration 4 --rate 200 --json",
        a.addr,
    )));
    // Fail over once `a` has taken some traffic.
    tokio::time::timeout(Duration::from_secs(30), stored_on_a.wait_for(|n| *n >= 50))
        .await
        .expect("a receives traffic")
        .expect("watch open");
    // Demote `a` first and wait until it has refused a send, then point the route at `b`:
    // the window in between is the failover the producer must ride through with retries.
    let mut refused = a.fake.refused_tx.get().expect("watch").subscribe();
    a.fake.demoted.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(30), refused.wait_for(|n| *n >= 1))
        .await
        .expect("a refuses a send")
        .expect("watch open");
    *a.fake.route_master.lock().unwrap() = Some(b.addr.to_string());
    let (lines, ok) = tool.await.expect("join");
    assert!(ok, "{lines:#?}");
    let v = last_json(&lines);
    let sent = v["sent"].as_u64().unwrap();
    let failures = v["failures"].as_u64().unwrap();
    // Every one of the 800 scheduled sends either landed somewhere or was counted as failed.
    assert_eq!(sent + failures, 800, "{v}");
    let on_a: usize = a.fake.stored().iter().sum();
    let on_b: usize = b.fake.stored().iter().sum();
    assert_eq!((on_a + on_b) as u64, sent, "{v}");
    assert!(on_a >= 50 && on_b > 0, "a={on_a} b={on_b}");
    // Sends refused by the demoted master were retried.
    assert!(v["retries"].as_u64().unwrap() > 0, "{v}");
    a.shutdown.trigger();
    b.shutdown.trigger();
}
