//! One child process with its output captured to a log file.
//!
//! Children get `PR_SET_PDEATHSIG(SIGKILL)` so a test killed by a runner never leaves a
//! broker behind, and are SIGKILLed on drop.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// Poll interval while waiting for a child to exit (try_wait has no blocking-with-timeout form).
const EXIT_POLL_INTERVAL_MS: u64 = 20;
/// How much of a log we print when a test fails.
pub const LOG_TAIL_BYTES: u64 = 16 * 1024;

pub struct ChildProc {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ChildProc {
    /// Start `program args` with stdout and stderr appended to `log_path`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log_path: &Path,
        env: &[(&str, &str)],
        cwd: Option<&Path>,
    ) -> Result<ChildProc> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        writeln!(
            log,
            "==== harness: starting {} {}",
            program.display(),
            args.join(" ")
        )?;
        let err_log = log.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log));
        // Plain logs (tracing-subscriber honours NO_COLOR).
        cmd.env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
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
        let child = cmd.spawn().map_err(|e| {
            HarnessError::Missing(format!("cannot start {}: {e}", program.display()))
        })?;
        Ok(ChildProc {
            name: name.to_string(),
            child: Some(child),
            log_path: log_path.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Ok if still running; `ExitedEarly` (with the log tail in the message) otherwise.
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(HarnessError::ExitedEarly {
                name: self.name.clone(),
                status: "already reaped".into(),
            });
        };
        match child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(HarnessError::ExitedEarly {
                name: self.name.clone(),
                status: format!("{status}\n--- log tail ---\n{}", self.log_tail()),
            }),
        }
    }

    /// Send `signal` (e.g. `libc::SIGTERM`) if the child is still running.
    pub fn signal(&mut self, signal: i32) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if child.try_wait()?.is_none() {
                let pid = libc::pid_t::try_from(child.id())
                    .map_err(|_| HarnessError::Unexpected("pid out of range".into()))?;
                // SAFETY: plain syscall on a pid we own and have not reaped.
                let rc = unsafe { libc::kill(pid, signal) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error().into());
                }
            }
        }
        Ok(())
    }

    /// Wait up to `timeout_ms` for the child to exit; reaps it.
    pub fn wait_exit(&mut self, timeout_ms: u64) -> Result<ExitStatus> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let Some(child) = self.child.as_mut() else {
            return Err(HarnessError::Unexpected(format!(
                "{} already reaped",
                self.name
            )));
        };
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{} to exit", self.name),
                    timeout_ms,
                });
            }
            std::thread::sleep(Duration::from_millis(EXIT_POLL_INTERVAL_MS));
        }
    }

    /// SIGKILL and reap (crash simulation; no chance to flush anything).
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if child.try_wait()?.is_none() {
                child.kill()?;
            }
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace_ms`.
    pub fn terminate(&mut self, grace_ms: u64) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        match self.wait_exit(grace_ms) {
            Ok(status) => Ok(status),
            Err(HarnessError::Timeout { .. }) => {
                let mut child = self
                    .child
                    .take()
                    .ok_or_else(|| HarnessError::Unexpected("child vanished".into()))?;
                child.kill()?;
                Ok(child.wait()?)
            }
            Err(e) => Err(e),
        }
    }

    /// The last [`LOG_TAIL_BYTES`] of the log.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log_path, LOG_TAIL_BYTES)
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.kill();
        if std::thread::panicking() {
            eprintln!(
                "==== log of {} ({}), last {} bytes ====\n{}\n==== end of log of {} ====",
                self.name,
                self.log_path.display(),
                LOG_TAIL_BYTES,
                self.log_tail(),
                self.name
            );
        }
    }
}

/// The last `max_bytes` of a file, lossily decoded ("" if unreadable).
pub fn read_tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    let _ = f.take(max_bytes).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
