//! A namesrv and a three-replica DLedger broker group as real child processes on 127.0.0.1,
//! with a fault-injecting proxy on every directed peer link.
//!
//! Peer wiring: node `i` binds its own `dLegerPeers` entry (its real DLedger port) and dials
//! every other node `j` through `proxy[i][j]` (listen port in node i's peers string, target =
//! node j's real port). The DLedger transport identifies a peer by the handshake's sender id,
//! not by the address it dialled, and numeric Raft ids are positions in the peers list, so
//! per-node peers strings that differ only in the addresses of the *other* nodes are valid
//! (dledger/src/config.rs, transport/mod.rs). Cutting `proxy[i][j]` and `proxy[j][i]`
//! partitions i from j in both directions.
//!
//! Roles are observed the way a client sees them: the namesrv's cluster info lists the group's
//! brokers by id (0 = master = DLedger leader, followers = peer index + 1). A node's own view
//! is probed with a send (followers answer SERVICE_NOT_AVAILABLE); GET_BROKER_RUNTIME_INFO
//! also reports it (`brokerRole` SYNC_MASTER/SLAVE, `dLegerTerm`, `dLegerLeaderId`).
//!
//! Every node runs with `slaveReadEnable=true` so its queues can be pulled for comparison
//! (a Java slave without it answers pulls with PULL_RETRY_IMMEDIATELY), and with
//! `dLegerPeerBrokerAddrs` naming every node's client address.
//!
//! Users: `tests/tests/group_failover.rs`, `tests/tests/group_client.rs`,
//! `src/bin/failover.rs`. Run: `cargo build -p broker -p namesrv && cargo test -p tests
//! --test group_failover --test group_client` (`GROUP_KILLS=N` for more leader kills;
//! `KEEP_TEST_DIRS=1` keeps the stores and logs of a failed test).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use remoting::codes::{request, response};
use remoting::headers::offset::{
    QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use remoting::headers::pull::{sys_flag, PullMessageRequestHeader, PullMessageResponseHeader};
use remoting::headers::send::{SendMessageRequestHeaderV2, SendMessageResponseHeader};
use remoting::RemotingCommand;
use tempfile::TempDir;

use crate::admin::AdminClient;
use crate::error::{HarnessError, Result};
use crate::paths;
use crate::process::{read_tail, ChildProc, LOG_TAIL_BYTES};
use crate::proxy::{Fault, Proxy, ProxyRuntime};
use crate::record::{decode_records, Record};

/// Replicas per group.
pub const GROUP_NODES: usize = 3;
/// Start-up deadline for one process (debug builds on a loaded 2-core machine).
pub const NODE_READY_TIMEOUT_MS: u64 = 60_000;
/// Deadline for a group to show a master at the namesrv (first election or failover).
pub const MASTER_TIMEOUT_MS: u64 = 30_000;
/// Per-request timeout of the verification clients.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
const POLL_INTERVAL_MS: u64 = 20;
const START_ATTEMPTS: u32 = 3;
/// Pull batch size (Java's default maxMsgNums).
pub const PULL_BATCH: i32 = 32;
/// Upper bound on pulls per queue when draining (bounds a verification loop).
const MAX_PULLS_PER_QUEUE: usize = 100_000;
/// Upper bound on PULL_RETRY_IMMEDIATELY answers in one drain.
const MAX_PULL_RETRIES: u32 = 100;

/// Settings shared by the group's broker.confs.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    pub cluster_name: String,
    /// brokerName and dLegerGroup.
    pub group_name: String,
    /// Extra `key=value` lines for every node's broker.conf.
    pub extra: Vec<(String, String)>,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            cluster_name: "GroupCluster".into(),
            group_name: "group-a".into(),
            extra: Vec::new(),
        }
    }
}

struct Node {
    // The child first: it must die before anything else of the node goes.
    proc: Option<ChildProc>,
    broker_port: u16,
    dledger_port: u16,
    dir: PathBuf,
    starts: u32,
}

pub struct Group {
    // Children first (killed on drop), then proxies, their runtime, and the dir last.
    nodes: Vec<Node>,
    namesrv: ChildProc,
    /// `proxies[i][j]`: how node i reaches node j (`None` on the diagonal).
    proxies: Vec<Vec<Option<Proxy>>>,
    _proxy_rt: ProxyRuntime,
    namesrv_port: u16,
    opts: GroupOptions,
    broker_bin: PathBuf,
    dir: TempDir,
}

/// A free 127.0.0.1 port below the ephemeral range (`testkit`); a start that still loses a
/// race with another binder is retried on fresh ports.
pub fn free_port() -> Result<u16> {
    Ok(testkit::free_port())
}

/// Poll `ready` every few ms until it is true or `timeout_ms` passes.
pub fn wait_until(
    what: &str,
    timeout_ms: u64,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_string(),
                timeout_ms,
            });
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
}

fn answers(addr: &str) -> bool {
    let Ok(sock) = addr.parse::<SocketAddr>() else {
        return false;
    };
    if TcpStream::connect_timeout(&sock, Duration::from_millis(500)).is_err() {
        return false;
    }
    let Ok(mut c) = AdminClient::connect(addr, 2_000) else {
        return false;
    };
    let cmd = RemotingCommand::request(request::GET_MAX_OFFSET)
        .with_ext("topic", "TBW102")
        .with_ext("queueId", "0");
    c.invoke(cmd).is_ok()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Group {
    /// Start a namesrv, six proxies and three nodes; wait until a master is registered.
    pub fn start(opts: GroupOptions) -> Result<Group> {
        let namesrv_bin = paths::binary("namesrv", "NAMESRV_BIN")?;
        let broker_bin = paths::binary("broker", "BROKER_BIN")?;
        let dir = tempfile::Builder::new().prefix("rmq-group-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("home"))?;
        let (namesrv, namesrv_port) = start_namesrv(&namesrv_bin, dir.path())?;
        let proxy_rt = ProxyRuntime::new()?;
        let mut nodes = Vec::with_capacity(GROUP_NODES);
        for i in 0..GROUP_NODES {
            let node_dir = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&node_dir)?;
            nodes.push(Node {
                proc: None,
                broker_port: free_port()?,
                dledger_port: free_port()?,
                dir: node_dir,
                starts: 0,
            });
        }
        let mut proxies = Vec::with_capacity(GROUP_NODES);
        for i in 0..GROUP_NODES {
            let mut row = Vec::with_capacity(GROUP_NODES);
            for (j, to) in nodes.iter().enumerate() {
                row.push(if i == j {
                    None
                } else {
                    Some(Proxy::start(&proxy_rt, loopback(to.dledger_port))?)
                });
            }
            proxies.push(row);
        }
        let mut g = Group {
            nodes,
            namesrv,
            proxies,
            _proxy_rt: proxy_rt,
            namesrv_port,
            opts,
            broker_bin,
            dir,
        };
        for i in 0..GROUP_NODES {
            g.start_node(i)?;
        }
        g.wait_master(MASTER_TIMEOUT_MS, None)?;
        Ok(g)
    }

    /// node i's dLegerPeers: its own entry is its real port, the others are its proxies.
    pub fn peers_string(&self, i: usize) -> String {
        (0..GROUP_NODES)
            .map(|j| {
                let port = match &self.proxies[i][j] {
                    None => self.nodes[j].dledger_port,
                    Some(p) => p.listen_addr().port(),
                };
                format!("n{j}-127.0.0.1:{port}")
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    fn write_conf(&self, i: usize) -> Result<PathBuf> {
        let n = &self.nodes[i];
        let store = n.dir.join("store");
        let mut conf = format!(
            "brokerClusterName={}\nbrokerName={}\nbrokerId={}\nlistenPort={}\nnamesrvAddr={}\n\
             brokerIP1=127.0.0.1\nstorePathRootDir={}\nstorePathCommitLog={}\n\
             flushDiskType=ASYNC_FLUSH\nautoCreateTopicEnable=true\nslaveReadEnable=true\n\
             enableDLegerCommitLog=true\ndLegerGroup={}\ndLegerPeers={}\ndLegerSelfId=n{}\n",
            self.opts.cluster_name,
            self.opts.group_name,
            i + 1,
            n.broker_port,
            self.namesrv_addr(),
            store.display(),
            store.join("commitlog").display(),
            self.opts.group_name,
            self.peers_string(i),
            i,
        );
        // Where a follower forwards writes it must not apply itself (consumer offsets).
        let broker_addrs: Vec<String> = (0..GROUP_NODES)
            .map(|j| format!("n{j}-{}", self.node_addr(j)))
            .collect();
        conf.push_str(&format!(
            "dLegerPeerBrokerAddrs={}\n",
            broker_addrs.join(";")
        ));
        for (k, v) in &self.opts.extra {
            conf.push_str(&format!("{k}={v}\n"));
        }
        let path = n.dir.join("broker.conf");
        std::fs::write(&path, conf)?;
        Ok(path)
    }

    /// (Re)start node i on its store dir; waits until it answers requests (not for a role).
    /// If it dies before that (a port taken by someone else), retries on fresh ports and
    /// re-points the proxies that lead to it.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].proc.is_some() {
            return Err(HarnessError::Unexpected(format!(
                "node {i} already running"
            )));
        }
        let mut last_err = None;
        for attempt in 0..START_ATTEMPTS {
            if attempt > 0 {
                self.nodes[i].broker_port = free_port()?;
                self.nodes[i].dledger_port = free_port()?;
                let target = loopback(self.nodes[i].dledger_port);
                for row in &self.proxies {
                    if let Some(p) = &row[i] {
                        p.set_target(target);
                    }
                }
            }
            let conf = self.write_conf(i)?;
            self.nodes[i].starts += 1;
            let args = vec![
                "-c".to_string(),
                conf.to_string_lossy().into_owned(),
                "-n".to_string(),
                self.namesrv_addr(),
            ];
            let home = self.dir.path().join("home");
            let mut p = ChildProc::spawn(
                &format!("n{i}"),
                &self.broker_bin,
                &args,
                &self.log_path(i),
                &[("HOME", &home.to_string_lossy())],
                Some(&self.nodes[i].dir),
            )?;
            let addr = self.node_addr(i);
            let deadline = Instant::now() + Duration::from_millis(NODE_READY_TIMEOUT_MS);
            let r = loop {
                if let Err(e) = p.check_alive() {
                    break Err(e);
                }
                if answers(&addr) {
                    break Ok(());
                }
                if Instant::now() >= deadline {
                    break Err(HarnessError::Timeout {
                        what: format!("node n{i} to answer on {addr}"),
                        timeout_ms: NODE_READY_TIMEOUT_MS,
                    });
                }
                std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
            };
            match r {
                Ok(()) => {
                    self.nodes[i].proc = Some(p);
                    return Ok(());
                }
                Err(e @ HarnessError::ExitedEarly { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| HarnessError::Unexpected(format!("node {i} did not start"))))
    }

    /// SIGKILL node i (a crash).
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// Send SIGTERM to node i (a graceful stop) without waiting; see [`Group::wait_stopped`].
    pub fn sigterm(&mut self, i: usize) -> Result<()> {
        match self.nodes[i].proc.as_mut() {
            Some(p) => p.signal(libc::SIGTERM),
            None => Err(HarnessError::Unexpected(format!("node {i} is not running"))),
        }
    }

    /// Wait up to `timeout_ms` for node i to exit on its own (after [`Group::sigterm`]) and
    /// reap it. On timeout it is SIGKILLed and the timeout returned: a hung stop is an error.
    pub fn wait_stopped(&mut self, i: usize, timeout_ms: u64) -> Result<std::process::ExitStatus> {
        let Some(mut p) = self.nodes[i].proc.take() else {
            return Err(HarnessError::Unexpected(format!("node {i} is not running")));
        };
        match p.wait_exit(timeout_ms) {
            Ok(status) => Ok(status),
            Err(e) => {
                let _ = p.kill();
                Err(e)
            }
        }
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].proc.is_some()
    }

    /// Delete node i's whole store (it must be stopped): it rejoins as a new, empty replica.
    pub fn wipe_store(&mut self, i: usize) -> Result<()> {
        if self.is_running(i) {
            return Err(HarnessError::Unexpected(format!("node {i} is running")));
        }
        let store = self.nodes[i].dir.join("store");
        if store.exists() {
            std::fs::remove_dir_all(&store)?;
        }
        Ok(())
    }

    /// Check every running node is still alive (ExitedEarly with the log tail otherwise).
    pub fn check_alive(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            if let Some(p) = n.proc.as_mut() {
                p.check_alive()?;
            }
        }
        self.namesrv.check_alive()
    }

    /// Cut node i off from both other nodes, in both directions.
    pub fn isolate(&self, i: usize, fault: Fault) {
        for j in 0..GROUP_NODES {
            if let Some(p) = &self.proxies[i][j] {
                p.cut(fault);
            }
            if let Some(p) = &self.proxies[j][i] {
                p.cut(fault);
            }
        }
    }

    /// Restore every link.
    pub fn heal(&self) {
        for row in &self.proxies {
            for p in row.iter().flatten() {
                p.restore();
            }
        }
    }

    /// The proxy node `from` uses to reach node `to`.
    pub fn proxy(&self, from: usize, to: usize) -> Option<&Proxy> {
        self.proxies.get(from)?.get(to)?.as_ref()
    }

    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    pub fn node_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].broker_port)
    }

    pub fn node_of_addr(&self, addr: &str) -> Option<usize> {
        (0..GROUP_NODES).find(|&i| self.node_addr(i) == addr)
    }

    pub fn group_name(&self) -> &str {
        &self.opts.group_name
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    pub fn admin(&self, i: usize) -> Result<AdminClient> {
        AdminClient::connect(&self.node_addr(i), REQUEST_TIMEOUT_MS)
    }

    /// The group's broker addresses by brokerId as the namesrv's cluster info lists them.
    pub fn registered(&self) -> Result<BTreeMap<i64, String>> {
        registered_brokers(&self.namesrv_addr(), &self.opts.group_name)
    }

    /// The node registered as master (brokerId 0) at the namesrv, if any.
    pub fn registered_master(&self) -> Result<Option<usize>> {
        Ok(self
            .registered()?
            .get(&0)
            .and_then(|a| self.node_of_addr(a)))
    }

    /// Wait until a running node other than `exclude` is registered as master and accepts a
    /// probe send; returns its index.
    pub fn wait_master(&mut self, timeout_ms: u64, exclude: Option<usize>) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            self.check_alive()?;
            if let Ok(Some(m)) = self.registered_master() {
                if Some(m) != exclude && self.is_running(m) {
                    return Ok(m);
                }
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!(
                        "a master (not {exclude:?}) at the namesrv; registered: {:?}",
                        self.registered().ok()
                    ),
                    timeout_ms,
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// Create `topic` on the registered master (retrying on whichever node is registered as
    /// master while a refusal lasts, as an operator would) and wait until the namesrv routes
    /// it to a master. `master` is tried first. Returns the node that accepted it.
    pub fn create_topic(&self, master: usize, topic: &str, queues: i32) -> Result<usize> {
        let mut target = master;
        let mut refusals = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(MASTER_TIMEOUT_MS);
        let accepted = loop {
            match self
                .admin(target)
                .and_then(|mut a| a.create_topic(topic, queues))
            {
                Ok(()) => break target,
                Err(e) => {
                    if refusals.len() < 20 {
                        refusals.push(format!("n{target}: {e}"));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("creation of {topic}; refusals {refusals:?}"),
                    timeout_ms: MASTER_TIMEOUT_MS,
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
            if let Ok(Some(m)) = self.registered_master() {
                target = m;
            }
        };
        if !refusals.is_empty() {
            eprintln!("create_topic {topic}: refused before it was accepted: {refusals:?}");
        }
        wait_until(&format!("a route for {topic}"), MASTER_TIMEOUT_MS, || {
            Ok(route_master(&self.namesrv_addr(), topic, &self.opts.group_name)?.is_some())
        })?;
        Ok(accepted)
    }

    /// The last bytes of every log (for assertion messages).
    pub fn logs(&self) -> String {
        let mut s = format!("--- namesrv.log ---\n{}\n", self.namesrv.log_tail());
        for i in 0..GROUP_NODES {
            s.push_str(&format!(
                "--- n{i}.log (starts {}) ---\n{}\n",
                self.nodes[i].starts,
                read_tail(&self.log_path(i), LOG_TAIL_BYTES)
            ));
        }
        s
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..GROUP_NODES {
                if self.nodes[i].proc.is_none() {
                    eprintln!(
                        "==== n{i}.log (not running), last {LOG_TAIL_BYTES} bytes ====\n{}",
                        read_tail(&self.log_path(i), LOG_TAIL_BYTES)
                    );
                }
            }
            eprintln!("==== namesrv.log ====\n{}", self.namesrv.log_tail());
            if std::env::var_os("KEEP_TEST_DIRS").is_some() {
                if let Ok(empty) = tempfile::Builder::new()
                    .prefix("rmq-group-empty-")
                    .tempdir()
                {
                    let kept = std::mem::replace(&mut self.dir, empty);
                    eprintln!("keeping test dir {}", kept.keep().display());
                }
            }
        }
    }
}

fn start_namesrv(bin: &Path, dir: &Path) -> Result<(ChildProc, u16)> {
    let mut last_err = None;
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let mut p = ChildProc::spawn(
            "namesrv",
            bin,
            &["--listen".to_string(), addr.clone()],
            &dir.join("namesrv.log"),
            &[("HOME", &dir.join("home").to_string_lossy())],
            Some(dir),
        )?;
        let deadline = Instant::now() + Duration::from_millis(NODE_READY_TIMEOUT_MS);
        let r = loop {
            if let Err(e) = p.check_alive() {
                break Err(e);
            }
            if AdminClient::connect(&addr, 2_000)
                .and_then(|mut c| c.cluster_info())
                .is_ok()
            {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(HarnessError::Timeout {
                    what: "namesrv to answer".into(),
                    timeout_ms: NODE_READY_TIMEOUT_MS,
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        };
        match r {
            Ok(()) => return Ok((p, port)),
            Err(e @ HarnessError::ExitedEarly { .. }) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| HarnessError::Unexpected("namesrv did not start".into())))
}

/// `group`'s brokers by id from the namesrv's GET_BROKER_CLUSTER_INFO.
pub fn registered_brokers(namesrv: &str, group: &str) -> Result<BTreeMap<i64, String>> {
    let mut ns = AdminClient::connect(namesrv, REQUEST_TIMEOUT_MS)?;
    let resp = ns.invoke(RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO))?;
    if resp.code != response::SUCCESS {
        return Err(HarnessError::Unexpected(format!(
            "cluster info: code {} {:?}",
            resp.code, resp.remark
        )));
    }
    let info = namesrv_client::ClusterInfo::decode(&resp.body)
        .map_err(|e| HarnessError::Unexpected(format!("cluster info body: {e}")))?;
    Ok(info
        .broker_addr_table
        .get(group)
        .map(|bd| bd.broker_addrs.clone())
        .unwrap_or_default())
}

/// The master address of `group` in `topic`'s route (`None` if no route or no master).
pub fn route_master(namesrv: &str, topic: &str, group: &str) -> Result<Option<String>> {
    let mut ns = AdminClient::connect(namesrv, REQUEST_TIMEOUT_MS)?;
    let resp = ns.invoke(
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic),
    )?;
    if resp.code != response::SUCCESS {
        return Ok(None);
    }
    let route = namesrv_client::TopicRouteData::decode(&resp.body)
        .map_err(|e| HarnessError::Unexpected(format!("route body: {e}")))?;
    Ok(route
        .broker_datas
        .iter()
        .find(|bd| bd.broker_name == group)
        .and_then(|bd| bd.master_addr().map(str::to_string)))
}

/// Outcome of one send attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// SUCCESS: the message is acknowledged at `queue_offset`.
    Acked { queue_id: i32, queue_offset: i64 },
    /// Any other response code (e.g. 14 from a follower).
    Rejected { code: i32, remark: String },
}

/// SEND_MESSAGE_V2 of one message whose body is `key` (and whose KEYS property is `key`).
pub fn send_message(
    c: &mut AdminClient,
    group: &str,
    topic: &str,
    queue_id: i32,
    queues: i32,
    key: &str,
) -> Result<SendOutcome> {
    let hdr = SendMessageRequestHeaderV2 {
        a: "group-test-producer".into(),
        b: topic.into(),
        c: "TBW102".into(),
        d: queues,
        e: queue_id,
        f: 0,
        g: now_ms(),
        h: 0,
        // MessageDecoder: key \u0001 value \u0002 pairs.
        i: Some(format!("KEYS\u{1}{key}\u{2}WAIT\u{1}true\u{2}")),
        j: Some(0),
        k: Some(false),
        l: Some(16),
        m: Some(false),
        n: Some(group.into()),
    };
    let cmd = RemotingCommand::request_with_header(request::SEND_MESSAGE_V2, &hdr)
        .with_body(key.as_bytes().to_vec());
    let resp = c.invoke(cmd)?;
    if resp.code != response::SUCCESS {
        return Ok(SendOutcome::Rejected {
            code: resp.code,
            remark: resp.remark.unwrap_or_default(),
        });
    }
    let h: SendMessageResponseHeader = resp.decode_header()?;
    Ok(SendOutcome::Acked {
        queue_id: h.queue_id,
        queue_offset: h.queue_offset,
    })
}

/// Pull `topic/queue_id` from offset 0 to the end on `addr`; returns the records in order.
pub fn drain_queue(addr: &str, topic: &str, queue_id: i32) -> Result<Vec<Record>> {
    let mut c = AdminClient::connect(addr, REQUEST_TIMEOUT_MS)?;
    let mut out = Vec::new();
    let mut offset = 0i64;
    let mut retries = 0u32;
    for _ in 0..MAX_PULLS_PER_QUEUE {
        let hdr = PullMessageRequestHeader {
            consumer_group: "group-test-verifier".into(),
            topic: topic.into(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: PULL_BATCH,
            sys_flag: sys_flag::SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            ..Default::default()
        };
        let resp = c.invoke(RemotingCommand::request_with_header(
            request::PULL_MESSAGE,
            &hdr,
        ))?;
        match resp.code {
            response::SUCCESS => {
                let h: PullMessageResponseHeader = resp.decode_header()?;
                let recs = decode_records(&resp.body)?;
                if recs.is_empty() || h.next_begin_offset <= offset {
                    return Err(HarnessError::Unexpected(format!(
                        "pull {topic}/{queue_id}@{offset} on {addr}: SUCCESS without progress \
                         (next {})",
                        h.next_begin_offset
                    )));
                }
                out.extend(recs);
                offset = h.next_begin_offset;
            }
            response::PULL_NOT_FOUND => return Ok(out),
            response::PULL_RETRY_IMMEDIATELY => {
                // A slave without slaveReadEnable answers this forever (Java's
                // PullMessageProcessor): bound it.
                retries += 1;
                if retries > MAX_PULL_RETRIES {
                    return Err(HarnessError::Unexpected(format!(
                        "pull {topic}/{queue_id}@{offset} on {addr}: PULL_RETRY_IMMEDIATELY {retries} times (a slave without slaveReadEnable?) {:?}",
                        resp.ext_fields
                    )));
                }
                continue;
            }
            other => {
                return Err(HarnessError::Unexpected(format!(
                    "pull {topic}/{queue_id}@{offset} on {addr}: code {other} {:?}",
                    resp.remark
                )))
            }
        }
    }
    Err(HarnessError::Unexpected(format!(
        "pull {topic}/{queue_id} on {addr}: more than {MAX_PULLS_PER_QUEUE} pulls"
    )))
}

/// UPDATE_CONSUMER_OFFSET (15).
pub fn commit_offset(
    c: &mut AdminClient,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> Result<()> {
    let hdr = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        commit_offset: offset,
    };
    let resp = c.invoke(RemotingCommand::request_with_header(
        request::UPDATE_CONSUMER_OFFSET,
        &hdr,
    ))?;
    if resp.code != response::SUCCESS {
        return Err(HarnessError::Unexpected(format!(
            "commit offset {group} {topic}/{queue_id}={offset}: code {} {:?}",
            resp.code, resp.remark
        )));
    }
    Ok(())
}

/// QUERY_CONSUMER_OFFSET (14); `None` when not found.
pub fn query_offset(
    c: &mut AdminClient,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Result<Option<i64>> {
    let hdr = QueryConsumerOffsetRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        set_zero_if_not_found: None,
    };
    let resp = c.invoke(RemotingCommand::request_with_header(
        request::QUERY_CONSUMER_OFFSET,
        &hdr,
    ))?;
    match resp.code {
        response::SUCCESS => Ok(resp.ext("offset").and_then(|v| v.parse().ok())),
        response::QUERY_NOT_FOUND => Ok(None),
        other => Err(HarnessError::Unexpected(format!(
            "query offset {group} {topic}/{queue_id}: code {other} {:?}",
            resp.remark
        ))),
    }
}

/// A blocking producer that follows the group's master through the namesrv, like a client
/// that refreshes its routes: on any failure it drops its connection and re-resolves.
pub struct FollowingProducer {
    namesrv: String,
    group: String,
    topic: String,
    queues: i32,
    conn: Option<AdminClient>,
    /// Route refresh period while connected (a real client refreshes every 30 s; ours 1 s).
    refresh_ms: u64,
    last_refresh: Instant,
}

/// Result of [`FollowingProducer::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Acked {
        addr: String,
        queue_id: i32,
        queue_offset: i64,
    },
    /// Not acknowledged (outcome unknown: the message may still be stored).
    Failed(String),
}

impl FollowingProducer {
    pub fn new(namesrv: &str, group: &str, topic: &str, queues: i32, refresh_ms: u64) -> Self {
        FollowingProducer {
            namesrv: namesrv.to_string(),
            group: group.to_string(),
            topic: topic.to_string(),
            queues,
            conn: None,
            refresh_ms,
            last_refresh: Instant::now(),
        }
    }

    fn resolve(&self) -> Result<Option<String>> {
        if let Some(m) = route_master(&self.namesrv, &self.topic, &self.group)? {
            return Ok(Some(m));
        }
        Ok(registered_brokers(&self.namesrv, &self.group)?
            .get(&0)
            .cloned())
    }

    /// One attempt (no retry): connect to the current master if needed, send once.
    pub fn send(&mut self, queue_id: i32, key: &str) -> Sent {
        if self.last_refresh.elapsed() >= Duration::from_millis(self.refresh_ms) {
            self.last_refresh = Instant::now();
            if let (Ok(Some(m)), Some(c)) = (self.resolve(), self.conn.as_ref()) {
                if m != c.addr() {
                    self.conn = None;
                }
            }
        }
        if self.conn.is_none() {
            self.last_refresh = Instant::now();
            let addr = match self.resolve() {
                Ok(Some(a)) => a,
                Ok(None) => return Sent::Failed("no master in the route".into()),
                Err(e) => return Sent::Failed(format!("route: {e}")),
            };
            match AdminClient::connect(&addr, REQUEST_TIMEOUT_MS) {
                Ok(c) => self.conn = Some(c),
                Err(e) => return Sent::Failed(format!("connect {addr}: {e}")),
            }
        }
        let Some(c) = self.conn.as_mut() else {
            return Sent::Failed("no connection".into());
        };
        let addr = c.addr().to_string();
        match send_message(c, &self.group, &self.topic, queue_id, self.queues, key) {
            Ok(SendOutcome::Acked {
                queue_id,
                queue_offset,
            }) => Sent::Acked {
                addr,
                queue_id,
                queue_offset,
            },
            Ok(SendOutcome::Rejected { code, remark }) => {
                self.conn = None;
                Sent::Failed(format!("{addr}: code {code} {remark}"))
            }
            Err(e) => {
                self.conn = None;
                Sent::Failed(format!("{addr}: {e}"))
            }
        }
    }
}

impl FollowingProducer {
    /// Send `key` until acknowledged (re-resolving the master after each failure) or
    /// `timeout_ms` passes; returns the acknowledgement and the failed attempts before it.
    pub fn send_until_acked(
        &mut self,
        queue_id: i32,
        key: &str,
        timeout_ms: u64,
    ) -> Result<(Sent, Vec<String>)> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mut failures = Vec::new();
        loop {
            match self.send(queue_id, key) {
                a @ Sent::Acked { .. } => return Ok((a, failures)),
                Sent::Failed(e) => {
                    if failures.len() < 100 {
                        failures.push(e);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("an acknowledgement of {key}; failures: {failures:?}"),
                    timeout_ms,
                });
            }
            std::thread::sleep(Duration::from_millis(PRODUCER_RETRY_PAUSE_MS));
        }
    }
}

/// What a drain of every queue found, checked against the acknowledged sends.
#[derive(Debug, Default)]
pub struct Verification {
    pub acked: usize,
    pub consumed_records: usize,
    pub distinct_consumed: usize,
    pub duplicates: usize,
    pub lost: Vec<String>,
    /// Acked keys stored at a different (queue, offset) than acknowledged.
    pub moved: Vec<String>,
    /// Queue offsets that are not 0,1,2,... in pull order.
    pub offset_errors: Vec<String>,
}

/// Drain `queues` queues of `topic` on `addr`; check dense, ordered offsets, that every
/// acknowledged key (key → (queue, offset)) is present at its acknowledged position, and
/// count duplicates (keys stored more than once: retried sends whose first attempt was stored).
pub fn verify_all(
    addr: &str,
    topic: &str,
    queues: i32,
    acked: &BTreeMap<String, (i32, i64)>,
) -> Result<Verification> {
    let mut v = Verification {
        acked: acked.len(),
        ..Default::default()
    };
    let mut seen: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for q in 0..queues {
        wait_dispatched(addr, topic, q, acked)?;
        let recs = drain_queue(addr, topic, q)?;
        for (expected, r) in recs.iter().enumerate() {
            let expected = i64::try_from(expected).unwrap_or(i64::MAX);
            if r.queue_offset != expected && v.offset_errors.len() < 20 {
                v.offset_errors.push(format!(
                    "queue {q}: record #{expected} has queue offset {}",
                    r.queue_offset
                ));
            }
            if r.queue_id != q && v.offset_errors.len() < 20 {
                v.offset_errors
                    .push(format!("queue {q}: record with queueId {}", r.queue_id));
            }
            v.consumed_records += 1;
            seen.entry(r.body_str())
                .or_default()
                .push((r.queue_id, r.queue_offset));
        }
    }
    v.distinct_consumed = seen.len();
    v.duplicates = seen.values().map(|s| s.len() - 1).sum();
    for (key, pos) in acked {
        match seen.get(key) {
            None => v.lost.push(key.clone()),
            Some(at) if !at.contains(pos) => v
                .moved
                .push(format!("{key}: acked at {pos:?}, stored at {at:?}")),
            Some(_) => {}
        }
    }
    Ok(v)
}

/// How long the verifier waits for the master's consume queues to cover what was
/// acknowledged before it drains them.
const DISPATCH_CATCH_UP_MS: u64 = 15_000;

/// Waits until queue `q` on `addr` reaches past every acknowledged offset of that queue.
/// A leader acknowledges once a quorum of followers holds an entry durably, possibly before
/// its own fsync, and serves (dispatches) only what is durable locally, so a pull right
/// after the last acknowledgement may not see it yet. A message that never appears is not
/// waited for beyond the bound: the drain then reports it lost.
fn wait_dispatched(
    addr: &str,
    topic: &str,
    q: i32,
    acked: &BTreeMap<String, (i32, i64)>,
) -> Result<()> {
    let Some(want) = acked
        .values()
        .filter(|(qid, _)| *qid == q)
        .map(|(_, off)| off + 1)
        .max()
    else {
        return Ok(());
    };
    let mut c = AdminClient::connect(addr, REQUEST_TIMEOUT_MS)?;
    let what = format!("{topic}/{q} on {addr} to reach offset {want}");
    match wait_until(&what, DISPATCH_CATCH_UP_MS, || {
        Ok(c.max_offset(topic, q)? >= want)
    }) {
        Ok(()) | Err(HarnessError::Timeout { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Cap on messages one background producer sends (bounds its memory).
pub const PRODUCER_MAX_MESSAGES: u64 = 1_000_000;
/// Pause after a failed attempt before retrying (rate limit while there is no master; the
/// producer never uses it to wait for an event).
const PRODUCER_RETRY_PAUSE_MS: u64 = 20;

/// What a background producer has done so far.
#[derive(Debug, Default)]
pub struct ProducerState {
    /// Acknowledged key → (queue id, queue offset).
    pub acked: BTreeMap<String, (i32, i64)>,
    /// (when, broker address) of every acknowledgement, in order.
    pub acks: Vec<(Instant, String)>,
    pub failed_attempts: u64,
    pub last_error: String,
}

/// A thread sending `<prefix>-<seq>` messages round-robin over the queues through a
/// [`FollowingProducer`], retrying each key until acknowledged (retries of a stored but
/// unacknowledged attempt become duplicates, which the verification counts).
pub struct BackgroundProducer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    state: std::sync::Arc<std::sync::Mutex<ProducerState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundProducer {
    pub fn spawn(
        namesrv: &str,
        group: &str,
        topic: &str,
        queues: i32,
        refresh_ms: u64,
        prefix: &str,
    ) -> BackgroundProducer {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(ProducerState::default()));
        let mut p = FollowingProducer::new(namesrv, group, topic, queues, refresh_ms);
        let (stop2, state2, prefix) = (stop.clone(), state.clone(), prefix.to_string());
        let thread = std::thread::spawn(move || {
            let mut seq: u64 = 0;
            while seq < PRODUCER_MAX_MESSAGES && !stop2.load(Ordering::Relaxed) {
                let key = format!("{prefix}-{seq:08}");
                let queue_id =
                    i32::try_from(seq % u64::try_from(queues.max(1)).unwrap_or(1)).unwrap_or(0);
                match p.send(queue_id, &key) {
                    Sent::Acked {
                        addr,
                        queue_id,
                        queue_offset,
                    } => {
                        let mut s = state2.lock().unwrap_or_else(|e| e.into_inner());
                        s.acked.insert(key, (queue_id, queue_offset));
                        s.acks.push((Instant::now(), addr));
                        seq += 1;
                    }
                    Sent::Failed(e) => {
                        {
                            let mut s = state2.lock().unwrap_or_else(|e| e.into_inner());
                            s.failed_attempts += 1;
                            s.last_error = e;
                        }
                        std::thread::sleep(Duration::from_millis(PRODUCER_RETRY_PAUSE_MS));
                    }
                }
            }
        });
        BackgroundProducer {
            stop,
            state,
            thread: Some(thread),
        }
    }

    /// Run `f` on the current state.
    pub fn with_state<T>(&self, f: impl FnOnce(&ProducerState) -> T) -> T {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&s)
    }

    pub fn acked_count(&self) -> usize {
        self.with_state(|s| s.acked.len())
    }

    /// Wait until at least `n` more acknowledgements than `from` were seen.
    pub fn wait_acked(&self, from: usize, n: usize, timeout_ms: u64) -> Result<()> {
        wait_until(
            &format!("{n} acknowledged sends (had {from})"),
            timeout_ms,
            || Ok(self.acked_count() >= from + n),
        )
        .map_err(|e| {
            HarnessError::Unexpected(format!(
                "{e}; producer: {} acked, {} failed attempts, last error {:?}",
                self.acked_count(),
                self.with_state(|s| s.failed_attempts),
                self.with_state(|s| s.last_error.clone())
            ))
        })
    }

    /// Stop and return the final state.
    pub fn finish(mut self) -> ProducerState {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *s)
    }
}

impl Drop for BackgroundProducer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One kill of the master, timed from the SIGKILL.
#[derive(Debug, Clone)]
pub struct KillTimeline {
    pub killed: usize,
    pub new_master: usize,
    /// A surviving node reports itself DLedger leader of a newer term (runtime info).
    pub elected_ms: u64,
    /// A surviving node acknowledged a probe write: its term's NOOP is committed and its
    /// dispatch caught up (it is the writable leader).
    pub writable_ms: u64,
    /// The namesrv lists the new master as brokerId 0.
    pub registered_ms: u64,
    /// The background producer got its first acknowledgement from the new master.
    pub first_send_ms: u64,
}

impl Group {
    /// True if node i acknowledges a probe write now (it is the writable leader). The probe is
    /// a real message on `topic` whose key goes into `acked` when acknowledged.
    pub fn probe_leader(
        &self,
        i: usize,
        topic: &str,
        queues: i32,
        key: &str,
        acked: &mut BTreeMap<String, (i32, i64)>,
    ) -> bool {
        let Ok(mut c) = AdminClient::connect(&self.node_addr(i), 1_000) else {
            return false;
        };
        match send_message(&mut c, &self.opts.group_name, topic, 0, queues, key) {
            Ok(SendOutcome::Acked {
                queue_id,
                queue_offset,
            }) => {
                acked.insert(key.to_string(), (queue_id, queue_offset));
                true
            }
            _ => false,
        }
    }

    /// SIGKILL the registered master while `producer` sends, and time: election (a survivor
    /// reports itself leader of a newer term), writability (it acknowledges a probe write:
    /// NOOP committed, dispatch caught up), registration as master at the namesrv, and the
    /// producer's first acknowledgement from the new master. Probe writes go into `probe_acked`.
    /// The killed node stays down (the caller restarts it).
    pub fn kill_master_and_measure(
        &mut self,
        producer: &BackgroundProducer,
        topic: &str,
        queues: i32,
        probe_prefix: &str,
        probe_acked: &mut BTreeMap<String, (i32, i64)>,
        timeout_ms: u64,
    ) -> Result<KillTimeline> {
        let m = self
            .registered_master()?
            .filter(|&m| self.is_running(m))
            .ok_or_else(|| HarnessError::Unexpected("no running registered master".into()))?;
        let killed_addr = self.node_addr(m);
        let old_term = self.admin(m)?.dledger_view()?.0;
        let t0 = Instant::now();
        self.kill(m)?;
        let ms = |t: Instant| u64::try_from(t.duration_since(t0).as_millis()).unwrap_or(u64::MAX);
        let (mut elected, mut writable, mut registered, mut first_send) = (None, None, None, None);
        let mut new_master = None;
        let deadline = t0 + Duration::from_millis(timeout_ms);
        let mut probes: u64 = 0;
        while writable.is_none() || registered.is_none() || first_send.is_none() {
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!(
                        "failover after killing n{m}: elected {elected:?} writable {writable:?} \
                         registered {registered:?} first send {first_send:?}; namesrv lists {:?}",
                        self.registered().ok()
                    ),
                    timeout_ms,
                });
            }
            self.check_alive()?;
            if elected.is_none() {
                for j in (0..GROUP_NODES).filter(|&j| j != m && self.is_running(j)) {
                    let view = self.admin(j).and_then(|mut a| a.dledger_view());
                    if let Ok((term, leader)) = view {
                        if term > old_term && leader == format!("n{j}") {
                            elected = Some(ms(Instant::now()));
                            break;
                        }
                    }
                }
            }
            if writable.is_none() {
                for j in (0..GROUP_NODES).filter(|&j| j != m && self.is_running(j)) {
                    probes += 1;
                    let key = format!("{probe_prefix}-{probes:06}");
                    if self.probe_leader(j, topic, queues, &key, probe_acked) {
                        let now = ms(Instant::now());
                        writable = Some(now);
                        // Seen writable before the election poll caught the new term.
                        elected.get_or_insert(now);
                        new_master.get_or_insert(j);
                        break;
                    }
                }
            }
            if registered.is_none() {
                if let Ok(Some(r)) = self.registered_master() {
                    if r != m {
                        registered = Some(ms(Instant::now()));
                        new_master.get_or_insert(r);
                    }
                }
            }
            if first_send.is_none() {
                first_send = producer.with_state(|s| {
                    s.acks
                        .iter()
                        .rev()
                        .take_while(|(at, _)| *at > t0)
                        .filter(|(_, addr)| *addr != killed_addr)
                        .last()
                        .map(|(at, _)| ms(*at))
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS / 2));
        }
        let new_master = new_master.unwrap_or(m);
        Ok(KillTimeline {
            killed: m,
            new_master,
            elected_ms: elected.unwrap_or(0),
            writable_ms: writable.unwrap_or(0),
            registered_ms: registered.unwrap_or(0),
            first_send_ms: first_send.unwrap_or(0),
        })
    }

    /// Wait until all three nodes are registered at the namesrv (one master, two slaves).
    pub fn wait_all_registered(&mut self, timeout_ms: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            self.check_alive()?;
            let reg = self.registered().unwrap_or_default();
            let all = (0..GROUP_NODES).all(|i| reg.values().any(|a| *a == self.node_addr(i)));
            if all && reg.contains_key(&0) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("all nodes registered; namesrv lists {reg:?}"),
                    timeout_ms,
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// GET_MAX_OFFSET of every queue on node i.
    pub fn max_offsets(&self, i: usize, topic: &str, queues: i32) -> Result<Vec<i64>> {
        let mut a = self.admin(i)?;
        (0..queues).map(|q| a.max_offset(topic, q)).collect()
    }

    /// Wait until node i's queues hold as many entries as the master's. Both sides are
    /// re-read on every poll: a send is acknowledged once committed, and the master's own
    /// dispatcher may still be a record behind when the caller's last send returns (as in
    /// Java, dispatch is asynchronous), so a one-time snapshot of the master can be stale.
    pub fn wait_caught_up(
        &self,
        i: usize,
        master: usize,
        topic: &str,
        queues: i32,
        timeout_ms: u64,
    ) -> Result<Vec<i64>> {
        let mut want = Vec::new();
        let mut last = Vec::new();
        wait_until(
            &format!("n{i} to catch up with master n{master}"),
            timeout_ms,
            || {
                // A failed read (a node still starting) is just "not yet".
                let (Ok(w), Ok(l)) = (
                    self.max_offsets(master, topic, queues),
                    self.max_offsets(i, topic, queues),
                ) else {
                    return Ok(false);
                };
                (want, last) = (w, l);
                Ok(last == want)
            },
        )
        .map_err(|e| {
            HarnessError::Unexpected(format!("{e}; master has {want:?}, n{i} has {last:?}"))
        })?;
        Ok(want)
    }
}

/// `p`-th percentile (nearest rank) of `v` (sorted internally); 0 for empty input.
pub fn percentile(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// What a client scenario script printed (one JSON object per stdout line).
#[derive(Debug)]
pub struct ClientRun {
    pub success: bool,
    pub events: Vec<serde_json::Value>,
    pub stderr_tail: String,
}

impl ClientRun {
    /// Values of `field` of every event of kind `event`.
    pub fn field_of(&self, event: &str, field: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.get("event").and_then(|v| v.as_str()) == Some(event))
            .filter_map(|e| e.get(field).and_then(|v| v.as_str()).map(str::to_string))
            .collect()
    }
}

/// Longest script stdout line kept.
const MAX_SCRIPT_LINE_BYTES: usize = 1024 * 1024;

impl Group {
    /// Run tests/clients/cpp/cpp_client.py (rocketmq-client-cpp via PyPI `rocketmq==0.4.4`)
    /// against this group's namesrv with `args`; killed after `timeout_ms`.
    pub fn run_cpp_client(&self, args: &[&str], timeout_ms: u64) -> Result<ClientRun> {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let python = paths::python()?;
        let script = paths::clients_dir().join("cpp").join("cpp_client.py");
        let home = self.dir.path().join("home");
        let stderr_path = self
            .dir
            .path()
            .join(format!("cpp-client-{}.stderr.log", now_ms()));
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg("--namesrv")
            .arg(self.namesrv_addr())
            .args(args)
            .current_dir(&home)
            .env("HOME", &home)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr_path)?));
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            HarnessError::Missing(format!("cannot start {}: {e}", python.display()))
        })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HarnessError::Unexpected("no stdout pipe".into()))?;
        let reader = std::thread::spawn(move || {
            let mut events = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(mut line) = line else { break };
                line.truncate(MAX_SCRIPT_LINE_BYTES);
                events.push(
                    serde_json::from_str::<serde_json::Value>(&line)
                        .unwrap_or_else(|_| serde_json::json!({"event": "stdout", "line": line})),
                );
            }
            events
        });
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break Some(s);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        };
        let events = reader.join().unwrap_or_default();
        Ok(ClientRun {
            success: status.is_some_and(|s| s.success()),
            events,
            stderr_tail: read_tail(&stderr_path, LOG_TAIL_BYTES),
        })
    }
}
