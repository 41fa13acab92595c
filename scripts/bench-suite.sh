#!/usr/bin/env bash
# Benchmark suite for BENCHMARKS.md. For each deployment: a single-replica broker (conf/broker.conf)
# with ASYNC_FLUSH, the same with SYNC_FLUSH, and the three-replica DLedger group (GROUP:
# conf/dledger/broker-n{0,1,2}.conf, quorum fsync before every ack) x message size (128 B, 1 KiB) x
# senders (1, 16, 64) a timed producer run, then one consumer run per topic that drains everything
# produced. While each run is going, every broker's RSS (VmRSS, /proc/<pid>/status) is sampled and
# the brokers' CPU time (utime+stime, /proc/<pid>/stat, summed over the group's three processes) is
# read before/after, giving CPU microseconds per message. Finally a live end-to-end run: a consumer
# starting at the queue end while a fixed-rate producer sends. First of all, a disk probe
# (`benchmark disk`: 8 KiB write + fdatasync in a loop, no broker) records what the disk itself
# gives in this sitting: no durable send can be faster than its fdatasync, and its stalls show up
# in every broker's tail latency.
#
#   scripts/bench-suite.sh                        # full suite, 10 s per producer run
#   DURATION_S=5 SENDERS="1 16" SIZES=128 FLUSH_TYPES=ASYNC_FLUSH scripts/bench-suite.sh
#   FLUSH_TYPES=GROUP SENDERS=64 SIZES=1024 scripts/bench-suite.sh    # the group's 40k/s target run
#
# Env: DURATION_S (10), SENDERS ("1 16 64"), SIZES ("128 1024"), FLUSH_TYPES ("ASYNC_FLUSH SYNC_FLUSH GROUP"),
#      EXTRA_PRODUCER_ARGS (e.g. "--async" or "--batch 16"), E2E_RATE (2000; 0 = skip the live e2e run), NAMESRV_PORT (39876), BROKER_PORT (39911),
#      DISK_PROBE_S (5; 0 = skip the disk probe),
#      OUT_DIR (./run/bench-<utc time>), BUILD (1 = cargo build --release first), BIN_DIR (override).
# Output: $OUT_DIR/results.md (markdown rows for BENCHMARKS.md), $OUT_DIR/results.jsonl (raw JSON lines),
#         $OUT_DIR/*.log (full tool / server output).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION_S="${DURATION_S:-10}"
SENDERS="${SENDERS:-1 16 64}"
SIZES="${SIZES:-128 1024}"
FLUSH_TYPES="${FLUSH_TYPES:-ASYNC_FLUSH SYNC_FLUSH GROUP}"
EXTRA_PRODUCER_ARGS="${EXTRA_PRODUCER_ARGS:-}"
E2E_RATE="${E2E_RATE:-2000}"
DISK_PROBE_S="${DISK_PROBE_S:-5}"
NAMESRV_PORT="${NAMESRV_PORT:-39876}"
BROKER_PORT="${BROKER_PORT:-39911}"
OUT_DIR="${OUT_DIR:-$ROOT/run/bench-$(date -u +%Y%m%dT%H%M%SZ)}"
BUILD="${BUILD:-1}"
NAMESRV_ADDR="127.0.0.1:$NAMESRV_PORT"
CLK_TCK="$(getconf CLK_TCK)"
# Upper bound for any single tool run (a hung run is killed, the suite goes on).
RUN_TIMEOUT_S=$((DURATION_S * 6 + 120))

if [ "$BUILD" = "1" ]; then
  cargo build --release -p namesrv -p broker -p benchmark
fi
if [ -z "${BIN_DIR:-}" ]; then
  TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  BIN_DIR="$TARGET_DIR/release"
fi
mkdir -p "$OUT_DIR"
RESULTS_MD="$OUT_DIR/results.md"
RESULTS_JSONL="$OUT_DIR/results.jsonl"
: >"$RESULTS_JSONL"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap cleanup INT TERM EXIT

wait_port() { # bounded: 20 s
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}

# utime + stime in clock ticks, summed over the given pids (fields 14 and 15; strip "pid (comm) "
# first, comm may contain spaces).
cpu_ticks() {
  local pid total=0 t
  for pid in "$@"; do
    t="$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')"
    total=$((total + t))
  done
  echo "$total"
}
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# Sample every 200 ms until the file $2 appears; $1 gets "maxVmRSS maxRssAnon" (kB, the largest
# of any of the pids that follow). VmRSS includes the mapped commitlog/consume-queue pages
# (RssFile); RssAnon is the broker's own heap.
sample_rss() {
  local out=$1 stop=$2 max=0 max_anon=0 cur anon pid
  shift 2
  while [ ! -e "$stop" ]; do
    for pid in "$@"; do
      kill -0 "$pid" 2>/dev/null || continue
      cur="$(status_kb "$pid" VmRSS || echo 0)"
      anon="$(status_kb "$pid" RssAnon || echo 0)"
      if [ "${cur:-0}" -gt "$max" ]; then max=$cur; fi
      if [ "${anon:-0}" -gt "$max_anon" ]; then max_anon=$anon; fi
    done
    echo "$max $max_anon" >"$out"
    sleep 0.2
  done
}

json_field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(v.get(sys.argv[2], ""))' "$1" "$2"; }

cat >"$RESULTS_MD" <<HDR
<!-- $(date -u +%FT%TZ), $(nproc) cores, loadavg at start $(cut -d" " -f1-3 /proc/loadavg), DURATION_S=$DURATION_S, extra producer args: "${EXTRA_PRODUCER_ARGS}" -->
| flush | size | senders | send TPS | p50 ms | p99 ms | p99.9 ms | max ms | failures | broker CPU µs/msg (all brokers) | largest broker RSS / RssAnon MiB |
|---|---|---|---|---|---|---|---|---|---|---|
HDR
CONSUMER_MD="$OUT_DIR/consumer.md"
cat >"$CONSUMER_MD" <<HDR
| flush | size | received | recv TPS | e2e p50 ms | e2e p99 ms | broker CPU µs/msg (all brokers) |
|---|---|---|---|---|---|---|
HDR

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

DISK_MD="$OUT_DIR/disk.md"
cat >"$DISK_MD" <<HDR
| disk probe (8 KiB write + fdatasync, one stream) | syncs/s | p50 ms | p99 ms | p99.9 ms | max ms |
|---|---|---|---|---|---|
HDR
if [ "$DISK_PROBE_S" -gt 0 ]; then
  probe_dir="$(mktemp -d "${TMPDIR:-/tmp}/bench-disk.XXXXXX")"
  line="$(timeout "$RUN_TIMEOUT_S" "$BIN_DIR/benchmark" disk --dir "$probe_dir" --duration "$DISK_PROBE_S" --json 2>&1 | tail -n 1)" || true
  rm -rf "$probe_dir"
  if json_field "$line" ops >/dev/null 2>&1; then
    python3 - "$line" >>"$DISK_MD" <<'PY'
import json, sys
v = json.loads(sys.argv[1])
print(f"| {v['dir']} | {v['ops_per_s']:.0f} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} | {v['p999_ms']:.3f} | {v['max_ms']:.3f} |")
PY
  else
    echo "| probe failed: $line | | | | | |" >>"$DISK_MD"
  fi
fi

E2E_MD="$OUT_DIR/e2e.md"
cat >"$E2E_MD" <<HDR
| flush | offered rate /s | sent | send p50 ms | send p99 ms | send p99.9 ms | received | e2e p50 ms | e2e p99 ms | e2e max ms |
|---|---|---|---|---|---|---|---|---|---|
HDR

for flush in $FLUSH_TYPES; do
  if [ "$flush" = GROUP ]; then
    # conf/dledger/broker-n{0,1,2}.conf: client ports 30911/30921/30931, Raft ports 40911-40913.
    ports="$NAMESRV_PORT 30911 30921 30931 40911 40912 40913"
  else
    ports="$NAMESRV_PORT $BROKER_PORT $((BROKER_PORT - 2)) $((BROKER_PORT + 1))"
  fi
  # Never benchmark somebody else's server: every port must be free before we start ours.
  for port in $ports; do
    if ! port_free "$port"; then
      echo "port $port is already in use; set NAMESRV_PORT / BROKER_PORT" >&2
      exit 1
    fi
  done
  data="$(mktemp -d "${TMPDIR:-/tmp}/bench-store.XXXXXX")"
  "$BIN_DIR/namesrv" --listen "$NAMESRV_ADDR" >"$OUT_DIR/namesrv-$flush.log" 2>&1 &
  pids+=($!)
  wait_port "$NAMESRV_PORT"
  broker_pids=()
  if [ "$flush" = GROUP ]; then
    for n in 0 1 2; do
      "$BIN_DIR/broker" -c "$ROOT/conf/dledger/broker-n$n.conf" -n "$NAMESRV_ADDR" \
        "--namesrvAddr=$NAMESRV_ADDR" "--storePathRootDir=$data/n$n" \
        >"$OUT_DIR/broker-$flush-n$n.log" 2>&1 &
      broker_pids+=($!)
      pids+=($!)
    done
    # Bounded wait until a leader is elected and registered as master: a first send succeeds.
    master_up=0
    for _ in $(seq 1 60); do
      line="$(timeout 20 "$BIN_DIR/benchmark" producer -n "$NAMESRV_ADDR" --topic Bench_GROUP_ready \
        --count 1 --json 2>/dev/null | tail -n 1)" || true
      if [ "$(json_field "$line" sent 2>/dev/null)" = 1 ] && [ "$(json_field "$line" failures)" = 0 ]; then
        master_up=1
        break
      fi
      sleep 0.5
    done
    if [ "$master_up" != 1 ]; then
      echo "the group elected no master within the time limit; logs in $OUT_DIR" >&2
      exit 1
    fi
  else
    "$BIN_DIR/broker" -c "$ROOT/conf/broker.conf" -n "$NAMESRV_ADDR" "--namesrvAddr=$NAMESRV_ADDR" \
      "--listenPort=$BROKER_PORT" "--storePathRootDir=$data" "--flushDiskType=$flush" \
      "--mappedFileSizeCommitLog=268435456" >"$OUT_DIR/broker-$flush.log" 2>&1 &
    broker_pids+=($!)
    pids+=($!)
    wait_port "$BROKER_PORT"
    # Give the broker its first registration with the NameServer (bounded).
    sleep 2
  fi

  for size in $SIZES; do
    topic="Bench_${flush}_${size}"
    for senders in $SENDERS; do
      tag="$flush-$size-$senders"
      stop_flag="$OUT_DIR/.stop-$tag"
      rss_file="$OUT_DIR/.rss-$tag"
      echo "0 0" >"$rss_file"
      sample_rss "$rss_file" "$stop_flag" "${broker_pids[@]}" &
      sampler=$!
      t0="$(cpu_ticks "${broker_pids[@]}")"
      # shellcheck disable=SC2086 # EXTRA_PRODUCER_ARGS is a word list on purpose
      timeout "$RUN_TIMEOUT_S" "$BIN_DIR/benchmark" producer -n "$NAMESRV_ADDR" --topic "$topic" \
        --threads "$senders" --size "$size" --duration "$DURATION_S" $EXTRA_PRODUCER_ARGS --json \
        >"$OUT_DIR/producer-$tag.log" 2>&1 || echo "producer $tag exited with $?" >&2
      t1="$(cpu_ticks "${broker_pids[@]}")"
      touch "$stop_flag"
      wait "$sampler" || true
      line="$(tail -n 1 "$OUT_DIR/producer-$tag.log")"
      if ! json_field "$line" sent >/dev/null 2>&1; then
        echo "| $flush | $size B | $senders | run failed (see producer-$tag.log) | | | | | | | |" >>"$RESULTS_MD"
        continue
      fi
      echo "{\"flush\":\"$flush\",\"size\":$size,\"senders\":$senders,\"broker_cpu_ticks\":$((t1 - t0)),\"clk_tck\":$CLK_TCK,\"broker_max_rss_kb\":$(cut -d' ' -f1 "$rss_file"),\"broker_max_rss_anon_kb\":$(cut -d' ' -f2 "$rss_file"),\"producer\":$line}" >>"$RESULTS_JSONL"
      sent="$(json_field "$line" sent)"
      # shellcheck disable=SC2046 # the file holds two numbers, passed as two arguments
      python3 - "$line" "$flush" "$size" "$senders" "$((t1 - t0))" "$CLK_TCK" $(cat "$rss_file") >>"$RESULTS_MD" <<'PY'
import json, sys
v = json.loads(sys.argv[1]); flush, size, senders = sys.argv[2:5]
ticks, tck, rss_kb, anon_kb = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
cpu = f"{ticks / tck * 1e6 / v['sent']:.1f}" if v["sent"] else "n/a"
print(f"| {flush} | {size} B | {senders} | {v['send_tps']:.0f} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} | "
      f"{v['p999_ms']:.3f} | {v['max_ms']:.3f} | {v['failures']} | {cpu} | {rss_kb / 1024:.0f} / {anon_kb / 1024:.0f} |")
PY
      echo "done: $tag sent=$sent"
    done
    # Consumer: drain everything produced to this topic from offset 0.
    total="$(python3 -c 'import json,sys
t=0
for l in open(sys.argv[1]):
    v=json.loads(l)
    if v["flush"]==sys.argv[2] and v["size"]==int(sys.argv[3]): t+=v["producer"]["sent"]
print(t)' "$RESULTS_JSONL" "$flush" "$size")"
    if [ "$total" -gt 0 ]; then
      t0="$(cpu_ticks "${broker_pids[@]}")"
      timeout "$RUN_TIMEOUT_S" "$BIN_DIR/benchmark" consumer -n "$NAMESRV_ADDR" --topic "$topic" \
        --group "bench_${flush}_${size}" --from-start --count "$total" --json \
        >"$OUT_DIR/consumer-$flush-$size.log" 2>&1 || echo "consumer $flush-$size exited with $?" >&2
      t1="$(cpu_ticks "${broker_pids[@]}")"
      line="$(tail -n 1 "$OUT_DIR/consumer-$flush-$size.log")"
      if json_field "$line" received >/dev/null 2>&1; then
        python3 - "$line" "$flush" "$size" "$((t1 - t0))" "$CLK_TCK" >>"$CONSUMER_MD" <<'PY'
import json, sys
v = json.loads(sys.argv[1]); flush, size = sys.argv[2:4]; ticks, tck = int(sys.argv[4]), int(sys.argv[5])
cpu = f"{ticks / tck * 1e6 / v['received']:.1f}" if v["received"] else "n/a"
print(f"| {flush} | {size} B | {v['received']} | {v['recv_tps']:.0f} | {v['e2e_p50_ms']:.3f} | {v['e2e_p99_ms']:.3f} | {cpu} |")
PY
      else
        echo "| $flush | $size B | run failed (see consumer-$flush-$size.log) | | | | |" >>"$CONSUMER_MD"
      fi
    fi
  done
  # Live end-to-end latency: a consumer starting at the queue end runs while a fixed-rate producer
  # (E2E_RATE sends/s, 16 senders, 128 B) sends for DURATION_S.
  if [ "$E2E_RATE" -gt 0 ]; then
    topic="Bench_${flush}_e2e"
    "$BIN_DIR/benchmark" producer -n "$NAMESRV_ADDR" --topic "$topic" --count 1 >/dev/null 2>&1 || true
    timeout "$RUN_TIMEOUT_S" "$BIN_DIR/benchmark" consumer -n "$NAMESRV_ADDR" --topic "$topic" \
      --group "bench_${flush}_e2e" --from-end --duration $((DURATION_S + 6)) --json \
      >"$OUT_DIR/e2e-consumer-$flush.log" 2>&1 &
    consumer_pid=$!
    sleep 3 # let every puller look up its start offset first
    timeout "$RUN_TIMEOUT_S" "$BIN_DIR/benchmark" producer -n "$NAMESRV_ADDR" --topic "$topic" \
      --threads 16 --size 128 --duration "$DURATION_S" --rate "$E2E_RATE" --json \
      >"$OUT_DIR/e2e-producer-$flush.log" 2>&1 || true
    wait "$consumer_pid" || true
    p="$(tail -n 1 "$OUT_DIR/e2e-producer-$flush.log")"
    c="$(tail -n 1 "$OUT_DIR/e2e-consumer-$flush.log")"
    if json_field "$p" sent >/dev/null 2>&1 && json_field "$c" received >/dev/null 2>&1; then
      python3 - "$p" "$c" "$flush" "$E2E_RATE" >>"$E2E_MD" <<'PY'
import json, sys
p, c = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"| {sys.argv[3]} | {sys.argv[4]} | {p['sent']} | {p['p50_ms']:.3f} | {p['p99_ms']:.3f} | {p['p999_ms']:.3f} | "
      f"{c['received']} | {c['e2e_p50_ms']:.3f} | {c['e2e_p99_ms']:.3f} | {c['e2e_max_ms']:.3f} |")
PY
    else
      echo "| $flush | $E2E_RATE | run failed (see e2e-*-$flush.log) | | | | | | | |" >>"$E2E_MD"
    fi
  fi
  for pid in "${broker_pids[@]}"; do
    echo "broker $flush (pid $pid): VmHWM $(status_kb "$pid" VmHWM) kB" | tee -a "$OUT_DIR/summary.txt"
  done
  cleanup
  rm -rf "$data"
done

echo
cat "$DISK_MD"
echo
cat "$RESULTS_MD"
echo
cat "$CONSUMER_MD"
echo
cat "$E2E_MD"
echo "raw results: $RESULTS_JSONL"
