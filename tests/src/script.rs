//! Runs a client scenario script (Python + C++ client, or Node + ali-ons) as a child process.
//!
//! Protocol: the script prints one JSON object per line on stdout, each with an `"event"`
//! member (`started`, `sent`, `received`, `done`, `error`, ...); everything else it prints goes
//! to stderr, which is captured to a log file and shown when a test fails. Waits are bounded:
//! a script that overruns its deadline is killed and the test fails with what it saw.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::Cluster;
use crate::error::{HarnessError, Result};
use crate::paths;
use crate::process::{read_tail, LOG_TAIL_BYTES};

/// Longest stdout line we keep (a received 64 KiB body fits).
const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// rocketmq-client-cpp 1.x via PyPI `rocketmq==0.4.4`; scripts in tests/clients/cpp.
    Cpp,
    /// npm `ali-ons@3.12.0`; scripts in tests/clients/node.
    Node,
}

/// One JSON line printed by a script.
#[derive(Debug, Clone, PartialEq)]
pub struct Event(pub Value);

impl Event {
    pub fn kind(&self) -> &str {
        self.0.get("event").and_then(Value::as_str).unwrap_or("")
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    pub fn i64(&self, key: &str) -> Option<i64> {
        self.0.get(key).and_then(Value::as_i64)
    }
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.0
            .get("props")
            .and_then(|p| p.get(key))
            .and_then(Value::as_str)
    }
}

/// What a finished script printed.
#[derive(Debug)]
pub struct ScriptOutput {
    pub name: String,
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub events: Vec<Event>,
    pub stderr_tail: String,
}

impl ScriptOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.map(|s| s.success()).unwrap_or(false)
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.kind() == kind).collect()
    }

    /// A summary for assertion messages: status, last events, stderr tail.
    pub fn describe(&self) -> String {
        let shown: Vec<String> = self
            .events
            .iter()
            .rev()
            .take(40)
            .rev()
            .map(|e| {
                let s = e.0.to_string();
                if s.len() > 300 {
                    format!("{}...", &s[..300])
                } else {
                    s
                }
            })
            .collect();
        format!(
            "script {}: status {:?}, timed out {}, {} events (last {}):\n{}\n--- stderr tail ---\n{}",
            self.name,
            self.status,
            self.timed_out,
            self.events.len(),
            shown.len(),
            shown.join("\n"),
            self.stderr_tail
        )
    }

    /// Panic with the description unless the script exited 0 in time.
    pub fn assert_success(&self) {
        assert!(self.success(), "{}", self.describe());
    }
}

pub struct ScriptRun {
    name: String,
    child: Option<Child>,
    lines: Receiver<String>,
    events: Vec<Event>,
    stderr_path: PathBuf,
}

impl ScriptRun {
    /// Start `script` (a file in tests/clients/cpp or tests/clients/node) with `args`, plus
    /// `--namesrv <addr>` of `cluster`.
    pub fn start(
        kind: ClientKind,
        script: &str,
        args: &[&str],
        cluster: &Cluster,
    ) -> Result<ScriptRun> {
        let (program, script_path, cwd, node_path) = match kind {
            ClientKind::Cpp => (
                paths::python()?,
                paths::clients_dir().join("cpp").join(script),
                cluster.home_dir(),
                None,
            ),
            ClientKind::Node => {
                let dir = paths::node_dir()?;
                (
                    paths::node(),
                    paths::clients_dir().join("node").join(script),
                    dir.clone(),
                    Some(dir.join("node_modules")),
                )
            }
        };
        if !script_path.is_file() {
            return Err(HarnessError::Missing(format!(
                "scenario script {} missing",
                script_path.display()
            )));
        }
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let stderr_path = cluster
            .dir()
            .join(format!("{}-{seq}.stderr.log", script.replace('/', "_")));
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut cmd = Command::new(&program);
        cmd.arg(&script_path)
            .arg("--namesrv")
            .arg(cluster.namesrv_addr())
            .args(args)
            .current_dir(&cwd)
            .env("HOME", cluster.home_dir())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if let Some(np) = node_path {
            cmd.env("NODE_PATH", np);
        }
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
            HarnessError::Missing(format!(
                "cannot start {} {}: {e}; {}",
                program.display(),
                script_path.display(),
                paths::INSTALL_HINT
            ))
        })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HarnessError::Unexpected("no stdout pipe".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(stdout);
            for line in reader.lines() {
                let Ok(mut line) = line else { break };
                line.truncate(MAX_LINE_BYTES);
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ScriptRun {
            name: script.to_string(),
            child: Some(child),
            lines: rx,
            events: Vec::new(),
            stderr_path,
        })
    }

    fn absorb(&mut self, line: String) -> Option<Event> {
        match serde_json::from_str::<Value>(&line) {
            Ok(v) if v.get("event").is_some() => {
                let e = Event(v);
                self.events.push(e.clone());
                Some(e)
            }
            _ => {
                // Stray stdout output (e.g. a library printing): keep it visible.
                self.events
                    .push(Event(serde_json::json!({"event": "stdout", "line": line})));
                None
            }
        }
    }

    /// Wait until the script prints an event of `kind` (e.g. `started`).
    pub fn wait_event(&mut self, kind: &str, timeout_ms: u64) -> Result<Event> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(e) = self.absorb(line) {
                        if e.kind() == kind {
                            return Ok(e);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(HarnessError::Timeout {
                        what: format!("event `{kind}` from {}: {}", self.name, self.tail()),
                        timeout_ms,
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(HarnessError::Unexpected(format!(
                        "{} exited before printing `{kind}`: {}",
                        self.name,
                        self.tail()
                    )))
                }
            }
        }
    }

    /// Absorb whatever the script printed, waiting up to `wait_ms` for the first line; returns
    /// the new events.
    pub fn poll(&mut self, wait_ms: u64) -> Vec<Event> {
        let mut new = Vec::new();
        let mut next = self.lines.recv_timeout(Duration::from_millis(wait_ms)).ok();
        while let Some(line) = next {
            if let Some(e) = self.absorb(line) {
                new.push(e);
            }
            next = self.lines.try_recv().ok();
        }
        new
    }

    fn tail(&self) -> String {
        format!(
            "events so far {:?}\n--- stderr tail ---\n{}",
            self.events
                .iter()
                .rev()
                .take(10)
                .map(|e| e.0.to_string())
                .collect::<Vec<_>>(),
            read_tail(&self.stderr_path, LOG_TAIL_BYTES)
        )
    }

    /// Wait up to `timeout_ms` for the script to exit (killing it after that) and return all it
    /// printed.
    pub fn finish(mut self, timeout_ms: u64) -> Result<ScriptOutput> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mut timed_out = false;
        // stdout closes when the script exits (or is killed).
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.absorb(line);
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    if let Some(c) = self.child.as_mut() {
                        let _ = c.kill();
                    }
                    // Drain what was printed before the kill; the pipe closes on exit.
                    while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                        self.absorb(line);
                    }
                    break;
                }
            }
        }
        let status = match self.child.take() {
            Some(mut c) => {
                if timed_out {
                    let _ = c.kill();
                }
                Some(c.wait()?)
            }
            None => None,
        };
        Ok(ScriptOutput {
            name: self.name.clone(),
            status,
            timed_out,
            events: std::mem::take(&mut self.events),
            stderr_tail: read_tail(&self.stderr_path, LOG_TAIL_BYTES),
        })
    }
}

impl Drop for ScriptRun {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run a script to completion with a deadline.
pub fn run(
    kind: ClientKind,
    script: &str,
    args: &[&str],
    cluster: &Cluster,
    timeout_ms: u64,
) -> Result<ScriptOutput> {
    ScriptRun::start(kind, script, args, cluster)?.finish(timeout_ms)
}
