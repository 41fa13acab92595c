#!/usr/bin/env bash
# Start a local deployment (release build). Ctrl-C stops everything.
#
#   scripts/run-local.sh                 # namesrv 127.0.0.1:9876 + a three-replica DLedger group
#                                        # (conf/dledger/broker-n{0,1,2}.conf: client ports
#                                        #  30911/30921/30931, Raft ports 40911-40913)
#   scripts/run-local.sh --single        # namesrv + one single-replica broker on 127.0.0.1:10911
#   scripts/run-local.sh [--single] --key=value ...   # extra broker.conf overrides for every broker
#
# Env: NAMESRV_PORT (9876), DATA_DIR (./run/local), PROFILE (release).
# Data of node nX lives under $DATA_DIR/nX (group) or $DATA_DIR/broker-a (single).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MODE=group
if [ "${1:-}" = "--single" ]; then
  MODE=single
  shift
fi

NAMESRV_PORT="${NAMESRV_PORT:-9876}"
DATA_DIR="${DATA_DIR:-$ROOT/run/local}"
PROFILE="${PROFILE:-release}"
NAMESRV_ADDR="127.0.0.1:$NAMESRV_PORT"

if [ "$PROFILE" = "release" ]; then
  cargo build --release -p namesrv -p broker -p tests
else
  cargo build -p namesrv -p broker -p tests
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/$PROFILE"
mkdir -p "$DATA_DIR"

pids=()
cleanup() {
  trap - INT TERM EXIT
  # Brokers first (a leader hands leadership over and every broker unregisters on SIGTERM),
  # then the namesrv.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
}
trap cleanup INT TERM EXIT

"$BIN/namesrv" --listen "$NAMESRV_ADDR" &
pids+=($!)
# Bounded wait until the namesrv accepts connections.
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$NAMESRV_PORT") 2>/dev/null; then break; fi
  sleep 0.1
done

if [ "$MODE" = single ]; then
  "$BIN/broker" -c "$ROOT/conf/broker.conf" -n "$NAMESRV_ADDR" "--namesrvAddr=$NAMESRV_ADDR" \
    "--storePathRootDir=$DATA_DIR/broker-a" "$@" &
  pids+=($!)
  echo "namesrv on $NAMESRV_ADDR, broker on 127.0.0.1:10911 (store: $DATA_DIR/broker-a). Ctrl-C stops both." >&2
else
  for n in 0 1 2; do
    "$BIN/broker" -c "$ROOT/conf/dledger/broker-n$n.conf" -n "$NAMESRV_ADDR" \
      "--namesrvAddr=$NAMESRV_ADDR" "--storePathRootDir=$DATA_DIR/n$n" "$@" \
      > "$DATA_DIR/broker-n$n.log" 2>&1 &
    pids+=($!)
    echo "node n$n: pid $! (client port 309${n}1, log $DATA_DIR/broker-n$n.log)" >&2
  done
  cat >&2 <<TXT
namesrv on $NAMESRV_ADDR; three-replica group broker-a (DefaultCluster). Ctrl-C stops everything.
Watch the roles (brokerId 0 = master):   $BIN/rmq-admin cluster $NAMESRV_ADDR
Fail over: kill -9 the master's pid (its client port is in the cluster output); within about a
second another node registers as brokerId 0. Restart a killed node with:
  $BIN/broker -c conf/dledger/broker-nX.conf -n $NAMESRV_ADDR --storePathRootDir=$DATA_DIR/nX
TXT
fi

# Exit (and stop the rest) as soon as any process ends; in group mode a killed node is
# expected, so wait for the namesrv only.
if [ "$MODE" = single ]; then
  wait -n
else
  wait "${pids[0]}"
fi
