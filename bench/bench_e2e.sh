#!/usr/bin/env bash
# bench/bench_e2e.sh BUILD [SRC] - end-to-end throughput of the whole daemon,
# everything on: the demo's stream (`mtld-gen --seed 11` in the demo's world,
# see tools/demo.sh), the demo's model, the trainer, checkpoints and snapshots
# at their default intervals, metrics on and scraped every second, dead
# letters on (a topic when the source is Kafka).  Three rows:
#   file   the stream replayed from the event file (no Kafka)
#   mock   through librdkafka's mock cluster (BUILD/mtld-mockcluster)
#   kafka  through a real Kafka 2.4 broker (SRC/../shared/kafka-local), when
#          it exists; started and stopped here
# next to raw consumption of the same topic (kcat -C -e, or skipped when kcat
# is missing) measured in the same run.  Prints, per row: records, wall
# seconds, CPU seconds (user + sys of the process, from /usr/bin/time), max
# RSS, records/s over wall time and over CPU time, and mtld/raw ratios.
#
# The machine may be shared: wall-clock rates then understate; the CPU-time
# rate (records / CPU s) is the one that compares across runs.
# Knobs (environment):
#   E2E_IMPRESSIONS  impressions of the stream (default 1000000: ~1.09M records)
#   E2E_USERS        users of the world (default 100, the demo's)
#   E2E_ROWS         no (default) | yes: the demo's embedding rows (65536)
#   E2E_ROWS_ONLY    file | mock | kafka | all (default all)
#   E2E_TMPDIR       where the temp dir goes (default $TMPDIR or /tmp)
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: bash bench/bench_e2e.sh BUILD_DIR [SRC_DIR]" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd)
SRC=$(cd "${2:-$(dirname "$0")/..}" && pwd)
IMPRESSIONS=${E2E_IMPRESSIONS:-1000000}
USERS=${E2E_USERS:-100}
ONLY=${E2E_ROWS_ONLY:-all}
KAFKA_LOCAL=$SRC/../shared/kafka-local/kafka-local

for prog in mtld mtld-gen mtld-produce mtld-mockcluster mtld-inspect; do
  [ -x "$BUILD/$prog" ] || {
    echo "bench_e2e.sh: $BUILD/$prog is missing: build first" >&2
    exit 1
  }
done

T=$(mktemp -d "${E2E_TMPDIR:-${TMPDIR:-/tmp}}/mtld-e2e.XXXXXX")
PIDS=()
BROKER_DIR=
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$BROKER_DIR" ] && "$KAFKA_LOCAL" stop "$BROKER_DIR" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT

run() {
  printf '$'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

# config FILE DIR SOURCE_TEXT: the demo's model and joiner settings, default
# checkpoint and snapshot intervals, metrics on a free port.
config() {
  cat >"$1" <<CONF
$3
store = { path = "$2/store"; sync = false; };
joiner = { conversion_window = "6h"; };
model = {
  arch = "mmoe";
  lr = 0.0003;
  rows = { user = 65536; item = 65536; category = 1024; scenario = 64; position = 32; };
};
checkpoint = { dir = "$2/checkpoints"; };
snapshot = { dir = "$2/snapshots"; };
log = { level = "info"; };
metrics = { enabled = true; listen = "127.0.0.1"; port = 0; };
CONF
}

# scrape LOG: GETs /metrics once a second while the daemon that writes LOG runs
scrape() {
  local port=
  for _ in $(seq 1 600); do
    port=$(sed -n 's#.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*#\1#p' "$1" | head -1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || return 0
  while curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; do sleep 1; done
  return 0
}

# committed DIR: records committed by the daemon (sum of the store's offsets)
committed() {
  { "$BUILD/mtld-inspect" --store "$1/store" --offsets --json 2>/dev/null || true; } |
    python3 -c 'import json, sys; print(sum(json.loads(l)["next_offset"] for l in sys.stdin if l.strip()))' \
      2>/dev/null || echo 0
}

# row NAME RECORDS TIMEFILE WALL: one result line from /usr/bin/time's "%U %S %M"
row() {
  read -r u s m <"$3"
  python3 - "$1" "$2" "$u" "$s" "$m" "$4" <<'PY'
import sys
name, n, u, s, m, wall = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
cpu = u + s
print(f"{name:<12} {n:>9} {wall:>8.1f} {cpu:>8.1f} {m/1024:>8.0f} {n/wall:>10.0f} {n/cpu if cpu > 0 else 0:>10.0f}")
PY
}
header() {
  printf '%-12s %9s %8s %8s %8s %10s %10s\n' row records wall_s cpu_s rss_mb rec/s_wall rec/s_cpu
}

# mtld_kafka NAME BOOTSTRAP N: runs mtld on topic events until N records are
# committed, then stops it (SIGTERM: final checkpoint and snapshot)
mtld_kafka() {
  local name=$1 bootstrap=$2 n=$3 d=$T/$1
  mkdir -p "$d"
  config "$d/mtld.conf" "$d" "source = { type = \"kafka\"; topics = [\"events\"]; };
kafka = { bootstrap_servers = \"$bootstrap\"; group_id = \"mtld-bench-$name\"; auto_offset_reset = \"earliest\"; };
dead_letter = { topic = \"events-dlq\"; };"
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -o "$d/time" -f "%U %S %M" "$BUILD/mtld" -c "$d/mtld.conf" >"$d/mtld.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  scrape "$d/mtld.log" &
  PIDS+=($!)
  while [ "$(committed "$d")" -lt "$n" ]; do
    kill -0 "$pid" 2>/dev/null || {
      echo "mtld exited early:" >&2
      tail "$d/mtld.log" >&2
      exit 1
    }
    sleep 0.5
  done
  end=$(date +%s.%N)
  # SIGTERM to mtld itself (the child of /usr/bin/time), by its pid
  kill -TERM "$(pgrep -P "$pid")"
  wait "$pid" || true
  # records the daemon processed (the mock cluster keeps only ~5 MiB per
  # partition and drops older batches: then fewer than the offsets say)
  local done
  done=$(sed -n 's/.*stopped: \([0-9]*\) records.*/\1/p' "$d/mtld.log" | tail -1)
  row "mtld-$name" "${done:-0}" "$d/time" "$(echo "$end - $start" | bc)" >"$d/row"
  if [ "${done:-0}" -lt "$n" ]; then
    echo "  # $name: offsets reached $n but mtld processed $done records (the rest were dropped by the cluster)" >>"$d/row"
  fi
  cat "$d/row"
}

# raw NAME BOOTSTRAP N: kcat reads the whole topic once
raw() {
  local d=$T/raw-$1 start end
  mkdir -p "$d"
  start=$(date +%s.%N)
  # one byte per message out, counted: what was really there to read
  /usr/bin/time -o "$d/time" -f "%U %S %M" kcat -C -b "$2" -t events -e -o beginning -q \
    -f '\n' >"$d/out"
  end=$(date +%s.%N)
  row "kcat-$1" "$(wc -l <"$d/out")" "$d/time" "$(echo "$end - $start" | bc)" | tee "$d/row"
}

ratio() { # ratio MTLD_ROW RAW_ROW: mtld/raw for rec/s over wall and over CPU
  python3 - "$1" "$2" <<'PY'
import sys
a, b = open(sys.argv[1]).readline().split(), open(sys.argv[2]).readline().split()
print(f"ratio {a[0]}/{b[0]}: {float(a[5])/float(b[5]):.3f} (wall), {float(a[6])/float(b[6]):.3f} (CPU)")
PY
}

echo "== mtld end-to-end benchmark (bench/bench_e2e.sh)"
echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:  $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "loadavg:  $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
echo "commit:   $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
echo "== event stream"
run "$BUILD/mtld-gen" --seed 11 --users "$USERS" --items 200 --dim 2 --impressions "$IMPRESSIONS" \
  --days 2 --bad-every 500 --out "$T/events.pb" --quiet
N_FILE=$(python3 - "$T/events.pb" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
i = n = 0
while i < len(b):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7f) << s; s += 7
        if c < 0x80: break
    i += v; n += 1
print(n)
PY
)
echo "records: $N_FILE"
echo
header

if [ "$ONLY" = all ] || [ "$ONLY" = file ]; then
  d=$T/file
  mkdir -p "$d"
  config "$d/mtld.conf" "$d" "source = { type = \"file\"; file = \"$T/events.pb\"; };"
  start=$(date +%s.%N)
  /usr/bin/time -o "$d/time" -f "%U %S %M" "$BUILD/mtld" -c "$d/mtld.conf" >"$d/mtld.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  scrape "$d/mtld.log" &
  PIDS+=($!)
  wait "$pid" || {
    tail "$d/mtld.log" >&2
    exit 1
  }
  end=$(date +%s.%N)
  row mtld-file "$N_FILE" "$d/time" "$(echo "$end - $start" | bc)"
  grep -o 'stopped: .*' "$d/mtld.log" | sed 's/^/  # /'
fi

produce() { # produce BOOTSTRAP SUMMARY
  "$BUILD/mtld-produce" --bootstrap "$1" --topic events --in "$T/events.pb" --summary "$2" \
    >/dev/null 2>&1
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["delivered"])' "$2"
}

if [ "$ONLY" = all ] || [ "$ONLY" = mock ]; then
  # 32 partitions: the mock cluster keeps only ~5 MiB per partition (it drops
  # older batches silently), and the 1M-impression stream is ~78 MB
  "$BUILD/mtld-mockcluster" --brokers 3 --topic events:32 --topic events-dlq:1 \
    --bootstrap-file "$T/mock.bootstrap" >"$T/mock.log" 2>&1 &
  MOCK=$!
  PIDS+=("$MOCK")
  for _ in $(seq 1 100); do [ -s "$T/mock.bootstrap" ] && break; sleep 0.1; done
  B=$(cat "$T/mock.bootstrap")
  N=$(produce "$B" "$T/mock.produce.json")
  command -v kcat >/dev/null && raw mock "$B" "$N" >/dev/null
  mtld_kafka mock "$B" "$N" >/dev/null
  [ -f "$T/raw-mock/row" ] && cat "$T/raw-mock/row"
  cat "$T/mock/row"
  [ -f "$T/raw-mock/row" ] && ratio "$T/mock/row" "$T/raw-mock/row"
  kill "$MOCK" 2>/dev/null || true
fi

if [ "$ONLY" = all ] || [ "$ONLY" = kafka ]; then
  if [ ! -x "$KAFKA_LOCAL" ]; then
    echo "kafka: skipped ($KAFKA_LOCAL not found)"
  else
    BROKER_DIR=$T/broker
    B=$("$KAFKA_LOCAL" start "$BROKER_DIR" | tail -1)
    "$KAFKA_LOCAL" topic "$BROKER_DIR" events 8 >/dev/null
    "$KAFKA_LOCAL" topic "$BROKER_DIR" events-dlq 1 >/dev/null
    N=$(produce "$B" "$T/kafka.produce.json")
    command -v kcat >/dev/null && raw kafka "$B" "$N" >/dev/null
    mtld_kafka kafka "$B" "$N" >/dev/null
    [ -f "$T/raw-kafka/row" ] && cat "$T/raw-kafka/row"
    cat "$T/kafka/row"
    [ -f "$T/raw-kafka/row" ] && ratio "$T/kafka/row" "$T/raw-kafka/row"
    "$KAFKA_LOCAL" stop "$BROKER_DIR" >/dev/null 2>&1 || true
    BROKER_DIR=
  fi
fi
echo
echo "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg) ($SECONDS s in all)"
