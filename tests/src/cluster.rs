//! A namesrv and a single-replica broker as real child processes on 127.0.0.1.
//!
//! Each cluster owns a temp dir (store, logs, the clients' HOME). Readiness is awaited by
//! polling the real thing with a deadline: the namesrv answers a request; the broker answers a
//! request and the namesrv lists its address. Ports are picked by binding port 0; if a child
//! dies before it is ready (e.g. a port race with another test) we retry on fresh ports.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use remoting::codes::request;
use remoting::RemotingCommand;
use tempfile::TempDir;

use crate::admin::{AdminClient, DEFAULT_TIMEOUT_MS};
use crate::error::{HarnessError, Result};
use crate::paths;
use crate::process::ChildProc;

/// Start-up deadline for one process (debug builds on a loaded 2-core machine).
pub const READY_TIMEOUT_MS: u64 = 60_000;
/// Route propagation deadline after a topic is created (Java re-registers at once; a broker
/// that only registers periodically needs up to its 30 s period).
pub const ROUTE_TIMEOUT_MS: u64 = 45_000;
/// Grace period for SIGTERM before SIGKILL.
pub const TERM_GRACE_MS: u64 = 15_000;
const POLL_INTERVAL_MS: u64 = 50;
const START_ATTEMPTS: u32 = 3;

/// Broker settings written to its broker.conf.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub broker_name: String,
    pub cluster_name: String,
    /// `SYNC_FLUSH` or `ASYNC_FLUSH`.
    pub flush_disk_type: String,
    pub auto_create_topic: bool,
    /// Extra `key=value` lines for broker.conf.
    pub extra: Vec<(String, String)>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            broker_name: "broker-a".into(),
            cluster_name: "DefaultCluster".into(),
            flush_disk_type: "SYNC_FLUSH".into(),
            auto_create_topic: true,
            extra: Vec::new(),
        }
    }
}

pub struct Cluster {
    // Children first: they must die before the temp dir is removed.
    namesrv: ChildProc,
    broker: Option<ChildProc>,
    namesrv_port: u16,
    broker_port: u16,
    opts: BrokerOptions,
    broker_bin: PathBuf,
    dir: TempDir,
}

/// A port `p` such that `p-2` (Java's VIP channel), `p` and `p+1` (HA) were all free.
pub fn free_port() -> Result<u16> {
    // testkit's range (20000-29999) keeps p-2 and p+1 inside u16 and above 1024.
    Ok(testkit::free_port_where(|p| {
        [p - 2, p + 1]
            .iter()
            .all(|q| TcpListener::bind(("127.0.0.1", *q)).is_ok())
    }))
}

fn wait_until<F: FnMut() -> Result<bool>>(
    what: &str,
    timeout_ms: u64,
    mut alive: impl FnMut() -> Result<()>,
    mut ready: F,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        alive()?;
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

/// True if a remoting server on `addr` answers a request (any response code).
fn answers(addr: &str, code: i32, fields: &[(&str, &str)]) -> bool {
    let Ok(sock) = addr.parse::<SocketAddr>() else {
        return false;
    };
    if TcpStream::connect_timeout(&sock, Duration::from_millis(500)).is_err() {
        return false;
    }
    let Ok(mut c) = AdminClient::connect(addr, 2_000) else {
        return false;
    };
    let mut cmd = RemotingCommand::request(code);
    for (k, v) in fields {
        cmd.ext_fields.insert((*k).to_string(), (*v).to_string());
    }
    c.invoke(cmd).is_ok()
}

impl Cluster {
    /// Start a namesrv and a broker and wait until the broker is registered.
    pub fn start(opts: BrokerOptions) -> Result<Cluster> {
        let namesrv_bin = paths::binary("namesrv", "NAMESRV_BIN")?;
        let broker_bin = paths::binary("broker", "BROKER_BIN")?;
        let dir = tempfile::Builder::new().prefix("rmq-test-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("home"))?;
        std::fs::create_dir_all(dir.path().join("store"))?;

        let (namesrv, namesrv_port) = Self::start_namesrv(&namesrv_bin, dir.path())?;
        let mut cluster = Cluster {
            namesrv,
            broker: None,
            namesrv_port,
            broker_port: 0,
            opts,
            broker_bin,
            dir,
        };
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            cluster.broker_port = free_port()?;
            match cluster.start_broker() {
                Ok(()) => return Ok(cluster),
                Err(e @ HarnessError::ExitedEarly { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| HarnessError::Unexpected("broker did not start".into())))
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
            let r = wait_until(
                "namesrv to answer",
                READY_TIMEOUT_MS,
                || p.check_alive(),
                || {
                    Ok(answers(
                        &addr,
                        request::GET_ROUTEINFO_BY_TOPIC,
                        &[("topic", "TBW102")],
                    ))
                },
            );
            match r {
                Ok(()) => return Ok((p, port)),
                Err(e @ HarnessError::ExitedEarly { .. }) => last_err = Some(e),
                Err(e) => {
                    eprintln!("namesrv log:\n{}", p.log_tail());
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| HarnessError::Unexpected("namesrv did not start".into())))
    }

    fn write_broker_conf(&self) -> Result<PathBuf> {
        let store = self.dir.path().join("store");
        let mut conf = format!(
            "brokerClusterName={}\nbrokerName={}\nbrokerId=0\nlistenPort={}\nnamesrvAddr={}\n\
             brokerIP1=127.0.0.1\nstorePathRootDir={}\nstorePathCommitLog={}\nflushDiskType={}\n\
             autoCreateTopicEnable={}\nbrokerRole=ASYNC_MASTER\n",
            self.opts.cluster_name,
            self.opts.broker_name,
            self.broker_port,
            self.namesrv_addr(),
            store.display(),
            store.join("commitlog").display(),
            self.opts.flush_disk_type,
            self.opts.auto_create_topic,
        );
        for (k, v) in &self.opts.extra {
            conf.push_str(&format!("{k}={v}\n"));
        }
        let path = self.dir.path().join("broker.conf");
        std::fs::write(&path, conf)?;
        Ok(path)
    }

    /// (Re)start the broker on the same port and store dir; waits until it serves and is
    /// registered.
    pub fn start_broker(&mut self) -> Result<()> {
        if self.broker.is_some() {
            return Err(HarnessError::Unexpected("broker already running".into()));
        }
        let conf = self.write_broker_conf()?;
        let args = vec![
            "-c".to_string(),
            conf.to_string_lossy().into_owned(),
            "-n".to_string(),
            self.namesrv_addr(),
        ];
        let home = self.home_dir();
        let mut p = ChildProc::spawn(
            "broker",
            &self.broker_bin,
            &args,
            &self.dir.path().join("broker.log"),
            &[("HOME", &home.to_string_lossy())],
            Some(self.dir.path()),
        )?;
        let broker_addr = self.broker_addr();
        let namesrv_addr = self.namesrv_addr();
        let r = wait_until(
            "broker to serve and register with the namesrv",
            READY_TIMEOUT_MS,
            || p.check_alive(),
            || {
                if !answers(
                    &broker_addr,
                    request::GET_MAX_OFFSET,
                    &[("topic", "TBW102"), ("queueId", "0")],
                ) {
                    return Ok(false);
                }
                let Ok(mut ns) = AdminClient::connect(&namesrv_addr, 2_000) else {
                    return Ok(false);
                };
                Ok(ns
                    .cluster_info()
                    .map(|info| info.contains(&broker_addr))
                    .unwrap_or(false))
            },
        );
        match r {
            Ok(()) => {
                self.broker = Some(p);
                Ok(())
            }
            Err(e) => {
                if !matches!(e, HarnessError::ExitedEarly { .. }) {
                    eprintln!("broker log:\n{}", p.log_tail());
                }
                Err(e)
            }
        }
    }

    /// SIGKILL the broker (a crash: nothing gets flushed on the way out).
    pub fn kill_broker(&mut self) -> Result<()> {
        if let Some(mut p) = self.broker.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// SIGTERM the broker and wait for it to exit (SIGKILL after a grace period).
    pub fn stop_broker(&mut self) -> Result<()> {
        if let Some(mut p) = self.broker.take() {
            p.terminate(TERM_GRACE_MS)?;
        }
        Ok(())
    }

    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    pub fn broker_addr(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Scratch HOME for clients (the C++ client logs under `$HOME/logs`).
    pub fn home_dir(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn admin_broker(&self) -> Result<AdminClient> {
        AdminClient::connect(&self.broker_addr(), DEFAULT_TIMEOUT_MS)
    }

    pub fn admin_namesrv(&self) -> Result<AdminClient> {
        AdminClient::connect(&self.namesrv_addr(), DEFAULT_TIMEOUT_MS)
    }

    /// Create `topic` with `queues` queues on the broker and wait until the namesrv routes it.
    pub fn create_topic(&self, topic: &str, queues: i32) -> Result<()> {
        self.admin_broker()?.create_topic(topic, queues)?;
        self.wait_for_route(topic)
    }

    /// Wait until the namesrv has a route for `topic`.
    pub fn wait_for_route(&self, topic: &str) -> Result<()> {
        let mut ns = self.admin_namesrv()?;
        wait_until(
            &format!("a namesrv route for {topic}"),
            ROUTE_TIMEOUT_MS,
            || Ok(()),
            || Ok(ns.route(topic)?.is_some()),
        )
    }

    /// Poll `check` until it returns true or `timeout_ms` passes (for broker-side effects
    /// such as a DLQ write, which no client event announces).
    pub fn wait_for(
        &self,
        what: &str,
        timeout_ms: u64,
        check: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        wait_until(what, timeout_ms, || Ok(()), check)
    }

    /// The last bytes of both logs (for assertion messages).
    pub fn logs(&self) -> String {
        let broker = crate::process::read_tail(
            &self.dir.path().join("broker.log"),
            crate::process::LOG_TAIL_BYTES,
        );
        format!(
            "--- namesrv.log ---\n{}\n--- broker.log ---\n{}",
            self.namesrv.log_tail(),
            broker
        )
    }

    /// On a failed test: the tail of the C++ client's own log (rocketmq-client-cpp writes it
    /// under `$HOME/logs/rocketmq-cpp/`, and scripts run with `HOME` = `home_dir()`). Its
    /// send errors say why a send failed; the client itself reports every exhausted retry
    /// loop as "No route info of this topic".
    fn print_client_logs(&self) {
        let dir = self.home_dir().join("logs").join("rocketmq-cpp");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                eprintln!(
                    "==== {}, last {} bytes ====\n{}",
                    path.display(),
                    crate::process::LOG_TAIL_BYTES,
                    crate::process::read_tail(&path, crate::process::LOG_TAIL_BYTES)
                );
            }
        }
    }

    /// The broker process, if running.
    pub fn broker_process(&mut self) -> Option<&mut ChildProc> {
        self.broker.as_mut()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A running broker prints its own log when dropped; a stopped one cannot.
            if self.broker.is_none() {
                eprintln!(
                    "==== broker.log (broker not running), last {} bytes ====\n{}",
                    crate::process::LOG_TAIL_BYTES,
                    crate::process::read_tail(
                        &self.dir.path().join("broker.log"),
                        crate::process::LOG_TAIL_BYTES
                    )
                );
            }
            self.print_client_logs();
            if std::env::var_os("KEEP_TEST_DIRS").is_some() {
                let kept = std::mem::replace(
                    &mut self.dir,
                    match tempfile::Builder::new().prefix("rmq-test-empty-").tempdir() {
                        Ok(d) => d,
                        Err(_) => return,
                    },
                );
                eprintln!("keeping test dir {}", kept.keep().display());
            }
        }
    }
}
