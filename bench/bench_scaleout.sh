#!/usr/bin/env bash
# bench_scaleout.sh [BUILD] [SRC] - one model over two instances against one
# instance, on a real Kafka 2.4 broker (../shared/kafka-local), the demo's
# world (mtld-gen --seed 11 --users 100 --items 200 --dim 2 --days 2):
#   1   one instance, 8 partitions;
#   2s  two instances in one group (4 + 4 partitions), scaleout.model_topic on;
#   2n  two instances in one group, no model sync (each its own model: the
#       control).
# Each run has its own topic, produced after its instances joined the group,
# so every partition is read by one instance once.  Prints per instance the
# final progressive metrics (ctr, ctcvr: AUC over the window and since the
# start), CPU seconds, and the sync cost (rounds, bytes and ms per round).
# IMPRESSIONS (default 300000), SYNC (default "1s"), RUNS (default "1 2s 2n").
# features.item_view = "partition": each instance's item features are those
# of its partitions, correct without the state changelog.
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
SRC=$(cd "${2:-.}" && pwd)
IMPRESSIONS=${IMPRESSIONS:-300000}
SYNC=${SYNC:-1s}
KL=$SRC/../shared/kafka-local/kafka-local
[ -x "$KL" ] || { echo "no $KL: a real broker is needed"; exit 77; }
T=$(mktemp -d /tmp/mtld-bench-scale.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  "$KL" stop "$T/kafka" >/dev/null 2>&1 || true
  echo "(logs in $T)"
}
trap cleanup EXIT
BOOTSTRAP=$("$KL" start "$T/kafka" | tail -1)
for t in ev1 ev2s ev2n; do "$KL" topic "$T/kafka" "$t" 8 >/dev/null; done
"$KL" topic "$T/kafka" model 1 retention.ms=3600000 >/dev/null

"$BUILD/mtld-gen" --seed 11 --users 100 --items 200 --dim 2 --impressions "$IMPRESSIONS" \
  --days 2 --out "$T/events.pb" --quiet
echo "== bench_scaleout: $IMPRESSIONS impressions, sync every $SYNC, $(nproc) CPUs," \
  "load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$SRC" rev-parse --short HEAD)"

conf() { # conf NAME TOPIC GROUP EXTRA
  cat >"$T/$1.conf" <<CONF
source = { type = "kafka"; topics = ["$2"]; };
kafka = { bootstrap_servers = "$BOOTSTRAP"; group_id = "$3"; group_instance_id = "$1";
  session_timeout_ms = 6000; auto_offset_reset = "earliest"; };
store = { path = "$T/$1.store"; sync = false; };
features = { item_view = "partition"; };
joiner = { conversion_window = "6h"; };
model = { arch = "mmoe"; lr = 0.0003;
  rows = { user = 65536; item = 65536; category = 1024; scenario = 64; position = 32; }; };
trainer = { report_interval = "0s"; };
checkpoint = { dir = "$T/$1.ckpt"; interval = "0s"; };
snapshot = { dir = "$T/$1.snap"; interval = "0s"; };
metrics = { enabled = false; };
shutdown_timeout = "60s";
status_interval = "5s";
$4
CONF
}

consumed() {
  { "$BUILD/mtld-inspect" --store "$1" --offsets --json 2>/dev/null || true; } |
    python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    try: n += json.loads(line)["next_offset"]
    except (ValueError, KeyError, TypeError): pass
print(n)'
}

run() { # run LABEL TOPIC EXTRA INSTANCES...
  local label=$1 topic=$2 extra=$3
  shift 3
  local names=("$@") pids=()
  for n in "${names[@]}"; do
    conf "$n" "$topic" "g-$label" "$extra"
    "$BUILD/mtld" -c "$T/$n.conf" >"$T/$n.log" 2>&1 &
    pids+=($!)
    PIDS+=($!)
  done
  for n in "${names[@]}"; do
    for _ in $(seq 1 120); do grep -q 'assigned' "$T/$n.log" && break; sleep 1; done
  done
  sleep 8 # the group settles (4 + 4)
  local t0
  t0=$(date +%s.%N)
  "$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic "$topic" --in "$T/events.pb" \
    --summary "$T/$label.produce.json" >"$T/$label.produce.log" 2>&1
  local total
  total=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["delivered"])' \
    "$T/$label.produce.json")
  while :; do
    local c=0
    for n in "${names[@]}"; do c=$((c + $(consumed "$T/$n.store"))); done
    [ "$c" -ge "$total" ] && break
    sleep 2
  done
  local t1
  t1=$(date +%s.%N)
  local tck
  tck=$(getconf CLK_TCK)
  for i in "${!names[@]}"; do # CPU seconds until the end of the stream (stop excluded)
    awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/${pids[$i]}/stat" >"$T/${names[$i]}.cpu"
  done
  for i in "${!names[@]}"; do
    kill -TERM "${pids[$i]}"
    wait "${pids[$i]}" || true
  done
  echo "-- $label: ${#names[@]} instance(s), $total records consumed in" \
    "$(echo "$t1 - $t0" | bc) s (from the first produced record)"
  for n in "${names[@]}"; do
    echo "   $n: partitions $(grep -oE 'assigned [a-z0-9]+\[[0-9]+\]' "$T/$n.log" | sort -u |
      grep -oE '\[[0-9]+\]' | tr -d '[]' | tr '\n' ' ')cpu $(cat "$T/$n.cpu") s"
    grep -E ' pv task=(ctr|ctcvr) scenario=all ' "$T/$n.log" | tail -2 | sed 's/^.* pv /     /' || true
    grep -E 'scaleout: [0-9]+ rounds' "$T/$n.log" | sed 's/^.*scaleout: /     sync: /' || true
  done
}

SCALE="scaleout = { model_topic = \"model\"; sync_interval = \"$SYNC\"; base_interval = \"60s\"; };"
RUNS=${RUNS:-1 2s 2n}
for r in $RUNS; do
  case $r in
  1) run 1 ev1 "" one ;;
  2s) run 2s ev2s "$SCALE" sa sb ;;
  2n) run 2n ev2n "" na nb ;;
  esac
  ckpts=()
  case $r in 1) ckpts=("$T/one.ckpt") ;; 2s) ckpts=("$T/sa.ckpt" "$T/sb.ckpt") ;; 2n) ckpts=("$T/na.ckpt" "$T/nb.ckpt") ;; esac
  echo "   pooled over the run's instances (mtld-snapshot-merge --pooled-auc, last checkpoints):"
  "$BUILD/mtld-snapshot-merge" --pooled-auc "${ckpts[@]}" | sed 's/^/     /'
done
