#!/usr/bin/env bash
# Start a namesrv and a single-replica broker locally (release build). Ctrl-C stops both.
#
#   scripts/run-local.sh                          # namesrv 127.0.0.1:9876, broker 127.0.0.1:10911
#   scripts/run-local.sh --flushDiskType=SYNC_FLUSH   # extra --key=value go to the broker
#
# Env: NAMESRV_PORT (9876), BROKER_PORT (10911), DATA_DIR (./run/local), PROFILE (release).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

NAMESRV_PORT="${NAMESRV_PORT:-9876}"
BROKER_PORT="${BROKER_PORT:-10911}"
DATA_DIR="${DATA_DIR:-$ROOT/run/local}"
PROFILE="${PROFILE:-release}"
NAMESRV_ADDR="127.0.0.1:$NAMESRV_PORT"

if [ "$PROFILE" = "release" ]; then
  cargo build --release -p namesrv -p broker
else
  cargo build -p namesrv -p broker
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/$PROFILE"

mkdir -p "$DATA_DIR"
# conf/broker.conf is the single-replica config (broker-a, DefaultCluster, 127.0.0.1);
# command-line --key=value overrides win over it.
BROKER_ARGS=(-c "$ROOT/conf/broker.conf" -n "$NAMESRV_ADDR"
  "--listenPort=$BROKER_PORT" "--namesrvAddr=$NAMESRV_ADDR" "--storePathRootDir=$DATA_DIR/broker-a")

pids=()
cleanup() {
  trap - INT TERM EXIT
  # Broker first (it unregisters from the namesrv on the way out), then the namesrv.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
}
trap cleanup INT TERM EXIT

"$BIN/namesrv" --listen "$NAMESRV_ADDR" &
pids+=($!)
# Wait (bounded) until the namesrv accepts connections before starting the broker.
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$NAMESRV_PORT") 2>/dev/null; then break; fi
  sleep 0.1
done
"$BIN/broker" "${BROKER_ARGS[@]}" "$@" &
pids+=($!)

echo "namesrv on $NAMESRV_ADDR, broker on 127.0.0.1:$BROKER_PORT (store: $DATA_DIR/broker-a). Ctrl-C stops both." >&2
# Exit (and stop the other) as soon as either process ends.
wait -n
