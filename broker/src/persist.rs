//! Crash-safe JSON files for broker metadata (topics.json, subscriptionGroup.json,
//! consumerOffset.json), plus the small fastjson compatibility shims those Java formats need.
//!
//! Writes go to `<file>.tmp`, are fsynced, renamed over the target and the directory is
//! fsynced, so a crash leaves either the old or the new file, never a torn one. All of it is
//! blocking I/O: async callers go through [`persist_in_background`] / `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Largest metadata file we load; bigger means corruption or a runaway table.
pub const METADATA_FILE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Atomically replace `path` with `data` (blocking).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(tmp, path)?;
    // Make the rename itself durable.
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Read `path` if it exists (blocking), refusing files above [`METADATA_FILE_MAX_BYTES`].
pub fn read_if_exists(path: &Path) -> io::Result<Option<String>> {
    match fs::metadata(path) {
        Ok(m) if m.len() > METADATA_FILE_MAX_BYTES => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {} bytes, above the {} byte limit",
                path.display(),
                m.len(),
                METADATA_FILE_MAX_BYTES
            ),
        )),
        Ok(_) => fs::read_to_string(path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Run `job` (blocking persistence) off the executor when inside a tokio runtime, inline
/// otherwise (start-up, tests). Errors are logged: the periodic persist retries.
pub fn persist_in_background<F>(what: &'static str, job: F)
where
    F: FnOnce() -> io::Result<()> + Send + 'static,
{
    let run = move || {
        if let Err(e) = job() {
            tracing::error!(error = %e, "persisting {what} failed");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(run);
        }
        Err(_) => run(),
    }
}

/// A JSON file holding a versioned table snapshot (topics.json, subscriptionGroup.json).
/// Writes are serialised, and a background write never replaces a newer version already on
/// disk with an older snapshot (snapshots are taken on the caller's thread, written later).
#[derive(Clone)]
pub struct VersionedJsonFile {
    what: &'static str,
    path: Option<std::path::PathBuf>,
    /// Version last written; the mutex also serialises the writes.
    last_written: std::sync::Arc<std::sync::Mutex<i64>>,
}

impl VersionedJsonFile {
    /// `path` None keeps everything in memory (tests).
    pub fn new(what: &'static str, path: Option<std::path::PathBuf>) -> Self {
        VersionedJsonFile {
            what,
            path,
            last_written: std::sync::Arc::new(std::sync::Mutex::new(i64::MIN)),
        }
    }

    /// Write `snapshot` (of `version`) now, blocking.
    pub fn write_blocking<T: serde::Serialize>(
        &self,
        version: i64,
        snapshot: &T,
    ) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut last = self.last_written.lock().unwrap_or_else(|e| e.into_inner());
        let json = serde_json::to_string(snapshot).map_err(io::Error::other)?;
        write_atomic(path, json.as_bytes())?;
        *last = (*last).max(version);
        Ok(())
    }

    /// Write `snapshot` off the executor unless a newer version is already on disk.
    pub fn write_in_background<T: serde::Serialize + Send + 'static>(
        &self,
        version: i64,
        snapshot: T,
    ) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let last_written = self.last_written.clone();
        persist_in_background(self.what, move || {
            let mut last = last_written.lock().unwrap_or_else(|e| e.into_inner());
            if version <= *last {
                return Ok(()); // a newer table is already on disk
            }
            let json = serde_json::to_string(&snapshot).map_err(io::Error::other)?;
            write_atomic(&path, json.as_bytes())?;
            *last = version;
            Ok(())
        });
    }
}

/// fastjson writes maps keyed by numbers with bare keys (`{0:5}`), which standard JSON
/// parsers reject. Quote such keys so serde_json can read Java-written files; strings and
/// already-quoted keys are left untouched.
pub fn quote_bare_keys(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(json.len() + 16);
    let mut i = 0;
    let mut in_string = false;
    // Open brackets outside strings, to know whether a ',' separates object members.
    let mut stack: Vec<u8> = Vec::new();
    // Whether the last significant byte outside strings opened an object or separated members.
    let mut key_position = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            if b == b'\\' && i + 1 < bytes.len() {
                out.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match b {
            b'-' | b'0'..=b'9' if key_position => {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'-' || bytes[i].is_ascii_digit()) {
                    i += 1;
                }
                let mut j = i;
                while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                let is_key = j < bytes.len() && bytes[j] == b':';
                if is_key {
                    out.push(b'"');
                }
                out.extend_from_slice(&bytes[start..i]);
                if is_key {
                    out.push(b'"');
                }
                key_position = false;
                continue;
            }
            b'"' => {
                in_string = true;
                key_position = false;
            }
            b'{' | b'[' => {
                stack.push(b);
                key_position = b == b'{';
            }
            b'}' | b']' => {
                stack.pop();
                key_position = false;
            }
            b',' => key_position = stack.last() == Some(&b'{'),
            b if b.is_ascii_whitespace() => {}
            _ => key_position = false,
        }
        out.push(b);
        i += 1;
    }
    // Only ASCII quotes were inserted, next to ASCII bytes: still valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_keys_are_quoted() {
        let j = r#"{"offsetTable":{"T@G":{0:5,1:7},"x@y":{12 : 3}},"a":[1,2],"s":"{0:1}"}"#;
        let q = quote_bare_keys(j);
        let v: serde_json::Value = serde_json::from_str(&q).unwrap();
        assert_eq!(v["offsetTable"]["T@G"]["1"], 7);
        assert_eq!(v["offsetTable"]["x@y"]["12"], 3);
        assert_eq!(v["a"][1], 2);
        assert_eq!(v["s"], "{0:1}");
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(read_if_exists(&p).unwrap().as_deref(), Some("two"));
        assert!(read_if_exists(&dir.path().join("none")).unwrap().is_none());
    }
}
