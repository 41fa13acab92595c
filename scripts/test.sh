#!/usr/bin/env bash
# THE test command: installs the real-client environments if missing, builds every binary,
# then runs every test of the workspace. Exits non-zero on any failure.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p tests        # with args: `cargo test <args>` instead (e.g. one crate)
#
# Installs (idempotent, skipped when present):
#   .venv/                          python venv with PyPI rocketmq==0.4.4 (C++ client 1.x)
#   tests/clients/node/node_modules npm ci from package-lock.json (ali-ons@3.12.0)
# Env: PYTHON (default python3), CARGO_TEST_THREADS (default: cargo's choice).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
NODE_DIR="$ROOT/tests/clients/node"
ROCKETMQ_PY_VERSION="0.4.4"

log() { printf '==> %s\n' "$*" >&2; }

install_python_client() {
  if [ -x "$VENV/bin/python" ] && HOME="$(mktemp -d)" "$VENV/bin/python" -c \
      "import importlib.metadata as m, rocketmq.client; assert m.version('rocketmq') == '$ROCKETMQ_PY_VERSION'" \
      2>/dev/null; then
    log "python client present ($VENV, rocketmq==$ROCKETMQ_PY_VERSION)"
    return
  fi
  log "installing python venv + rocketmq==$ROCKETMQ_PY_VERSION into $VENV"
  local t0=$SECONDS
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "rocketmq==$ROCKETMQ_PY_VERSION"
  # The wheel bundles librocketmq.so; loading it proves its system dependencies are present.
  HOME="$(mktemp -d)" "$VENV/bin/python" -c "from rocketmq.client import Producer, PushConsumer, PullConsumer"
  log "python client installed in $((SECONDS - t0)) s"
}

install_node_client() {
  if [ -d "$NODE_DIR/node_modules/ali-ons" ] && \
     [ "$(node -p "require('$NODE_DIR/node_modules/ali-ons/package.json').version" 2>/dev/null)" = "3.12.0" ]; then
    log "ali-ons present ($NODE_DIR/node_modules)"
    return
  fi
  log "installing ali-ons with npm ci in $NODE_DIR"
  local t0=$SECONDS
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  log "ali-ons installed in $((SECONDS - t0)) s"
}

install_python_client
install_node_client

log "building all binaries (cargo build --workspace --bins)"
cargo build --workspace --bins

if [ "$#" -gt 0 ]; then
  log "running cargo test $*"
  cargo test "$@"
else
  log "running every test (cargo test --workspace --no-fail-fast)"
  cargo test --workspace --no-fail-fast
fi
