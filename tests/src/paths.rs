//! Where the binaries under test and the client environments live.
//!
//! Binaries: `NAMESRV_BIN` / `BROKER_BIN`, else the cargo target dir that holds the running
//! test executable (found by walking up from `std::env::current_exe()`), so a custom
//! `CARGO_TARGET_DIR` works without configuration.
//! Clients: `ROCKETMQ_TEST_PYTHON` (a python with `rocketmq==0.4.4`), else `<workspace>/.venv`;
//! `ALI_ONS_DIR` (a dir holding `node_modules/ali-ons`), else `tests/clients/node`.

use std::path::{Path, PathBuf};

use crate::error::{HarnessError, Result};

/// How to install the client environments; quoted in every "missing" error.
pub const INSTALL_HINT: &str =
    "run `scripts/test.sh` from the workspace root (it creates .venv with \
     `python3 -m venv .venv && .venv/bin/pip install rocketmq==0.4.4`, runs `npm ci` in \
     tests/clients/node and builds the binaries with `cargo build --workspace --bins`)";

/// The workspace root (parent of this crate's manifest dir).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The clients' scenario scripts.
pub fn clients_dir() -> PathBuf {
    workspace_root().join("tests").join("clients")
}

/// Locate a workspace binary (`namesrv`, `broker`).
pub fn binary(name: &str, env_var: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(HarnessError::Missing(format!(
            "{env_var}={} is not a file",
            p.display()
        )));
    }
    let exe = std::env::current_exe()?;
    // A test executable lives in <target>/<profile>/deps/; the binaries in <target>/<profile>/.
    for dir in exe.ancestors().skip(1).take(4) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(HarnessError::Missing(format!(
        "binary `{name}` not found near {} — build it with `cargo build --workspace --bins` \
         (scripts/test.sh does) or set {env_var}",
        exe.display()
    )))
}

/// The python interpreter of the venv holding `rocketmq==0.4.4`.
pub fn python() -> Result<PathBuf> {
    let p = match std::env::var_os("ROCKETMQ_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join(".venv").join("bin").join("python"),
    };
    if !p.is_file() {
        return Err(HarnessError::Missing(format!(
            "python venv with rocketmq==0.4.4 not found at {}: {INSTALL_HINT}",
            p.display()
        )));
    }
    Ok(p)
}

/// The directory holding `node_modules/ali-ons` (the scripts' cwd).
pub fn node_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("ALI_ONS_DIR") {
        Some(p) => PathBuf::from(p),
        None => clients_dir().join("node"),
    };
    if !dir.join("node_modules").join("ali-ons").is_dir() {
        return Err(HarnessError::Missing(format!(
            "ali-ons not installed in {}/node_modules: {INSTALL_HINT}",
            dir.display()
        )));
    }
    Ok(dir)
}

/// The `node` executable (`NODE_BIN`, else `node` on PATH).
pub fn node() -> PathBuf {
    std::env::var_os("NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}
