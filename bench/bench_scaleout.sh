#!/usr/bin/env bash
# bench_scaleout.sh [BUILD] [SRC] - one model over two and three instances
# against one instance, on a real Kafka 2.4 broker (../shared/kafka-local),
# the demo's world (mtld-gen --seed 11 --users 100 --items 200 --dim 2
# --days 2):
#   1   one instance, 8 partitions;
#   2s  two instances in one group (4 + 4 partitions), scaleout.model_topic on;
#   2k  as 2s, the second instance killed -9 KILL_AFTER (default 4) s into the
#       stream: the first must stop waiting for it (scaleout.peer_timeout),
#       take its partitions over and finish the stream (pooled AUC: its own);
#   3s  three instances in one group (3 + 3 + 2 partitions), model sync on;
#   2n  two instances in one group, no model sync (each its own model: the
#       control);
#   2x, 3x  as 2s, 3s with scaleout.sync_accumulators = false (the shared
#       rows' Adagrad accumulators stay each instance's own).
# Each run has its own source topic and its own model topic, produced after
# its instances joined the group, so every partition is read by one instance
# once and no run starts from another's model.
#
# The comparison (the table at the end) is the pooled progressive AUC: every
# sample of the stream is scored by the instance that owns its user's
# partition *before* that instance trains on it, and the AUC is computed over
# all samples of all instances together (mtld-snapshot-merge --pooled-auc on
# the instances' final checkpoints: the instances' score histograms summed).
# The single instance goes through the same tool, so every row is the same
# computation over the same samples, whatever the instance count.  The
# per-instance lines above it are each instance's own samples only (half or a
# third of the users: not comparable with the single instance), and the
# "window" AUCs are over the union of each instance's last-100,000-samples
# window, i.e. k times more samples with k instances: they change with the
# instance count, so the table leaves them out.
# IMPRESSIONS (default 300000), SYNC (scaleout.sync_interval, default "1s"),
# SYNC_SAMPLES (scaleout.sync_samples, default 0), STALE
# (scaleout.max_stale_rounds, default 0; -1 = unbounded), RUNS (default
# "1 2s 3s 2n").
# features.item_view = "partition": each instance's item features are those
# of its partitions, correct without the state changelog.
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
SRC=$(cd "${2:-.}" && pwd)
IMPRESSIONS=${IMPRESSIONS:-300000}
SYNC=${SYNC:-1s}
SYNC_SAMPLES=${SYNC_SAMPLES:-0}
STALE=${STALE:-0}
KILL_AFTER=${KILL_AFTER:-4}
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
RUNS=${RUNS:-1 2s 3s 2n}
for r in $RUNS; do
  "$KL" topic "$T/kafka" "ev$r" 8 >/dev/null
  "$KL" topic "$T/kafka" "model$r" 1 retention.ms=3600000 >/dev/null
done

"$BUILD/mtld-gen" --seed 11 --users 100 --items 200 --dim 2 --impressions "$IMPRESSIONS" \
  --days 2 --out "$T/events.pb" --quiet
echo "== bench_scaleout: $IMPRESSIONS impressions, sync every $SYNC or $SYNC_SAMPLES samples, max_stale_rounds $STALE," \
  "$(nproc) CPUs," \
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

owned() { # the partitions a store has read: "p(records) ..."
  { "$BUILD/mtld-inspect" --store "$1" --offsets --json 2>/dev/null || true; } |
    python3 -c '
import json, sys
out = []
for line in sys.stdin:
    try:
        o = json.loads(line)
        if o["next_offset"] > 0: out.append("%s(%d)" % (o["partition"], o["next_offset"]))
    except (ValueError, KeyError, TypeError): pass
print(" ".join(out))'
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
  sleep 8 # the group settles (4 + 4, 3 + 3 + 2)
  local t0
  t0=$(date +%s.%N)
  "$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic "$topic" --in "$T/events.pb" \
    --summary "$T/$label.produce.json" >"$T/$label.produce.log" 2>&1 &
  local producer=$!
  local watch=("${names[@]}")
  if [ "$label" = 2k ]; then # the last instance is killed -9 mid-stream; the others go on
    sleep "$KILL_AFTER"
    kill -KILL "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null || true
    echo "   killed -9 ${names[-1]} $KILL_AFTER s into the stream"
    unset 'watch[-1]'
  fi
  wait "$producer"
  local total
  total=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["delivered"])' \
    "$T/$label.produce.json")
  while :; do
    local c=0
    for n in "${watch[@]}"; do c=$((c + $(consumed "$T/$n.store"))); done
    [ "$c" -ge "$total" ] && break
    sleep 2
  done
  local t1
  t1=$(date +%s.%N)
  local tck
  tck=$(getconf CLK_TCK)
  [ "$label" = 2k ] && { names=("${watch[@]}"); unset 'pids[-1]'; }
  for i in "${!names[@]}"; do # CPU seconds until the end of the stream (stop excluded)
    awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/${pids[$i]}/stat" >"$T/${names[$i]}.cpu"
  done
  for i in "${!names[@]}"; do
    kill -TERM "${pids[$i]}"
    wait "${pids[$i]}" || true
  done
  echo "-- $label: ${#names[@]} instance(s), $total records consumed in" \
    "$(echo "$t1 - $t0" | bc) s (from the first produced record)"
  local cpu=0
  for n in "${names[@]}"; do
    echo "   $n: partitions(records read) $(owned "$T/$n.store"), cpu $(cat "$T/$n.cpu") s;" \
      "its own samples only:"
    grep -E ' pv task=(ctr|ctcvr) scenario=all ' "$T/$n.log" | tail -2 | sed 's/^.* pv /     /' || true
    grep -E 'scaleout: [0-9]+ rounds' "$T/$n.log" | sed 's/^.*scaleout: /     sync: /' || true
    cpu=$(echo "$cpu + $(cat "$T/$n.cpu")" | bc)
  done
  echo "$cpu" >"$T/$label.cpu"
}

scale() { # scale RUN ACCUMULATORS
  echo "scaleout = { model_topic = \"model$1\"; sync_interval = \"$SYNC\";" \
    "base_interval = \"60s\"; sync_samples = $SYNC_SAMPLES; sync_accumulators = $2;" \
    "max_stale_rounds = $STALE; };"
}
for r in $RUNS; do
  case $r in
  1) names=(one) extra="" ;;
  2s) names=(sa sb) extra=$(scale 2s true) ;;
  2k) names=(ka kb) extra=$(scale 2k true) ;;
  3s) names=(ta tb tc) extra=$(scale 3s true) ;;
  2x) names=(xa xb) extra=$(scale 2x false) ;;
  3x) names=(ya yb yc) extra=$(scale 3x false) ;;
  2n) names=(na nb) extra="" ;;
  3n) names=(ma mb mc) extra="" ;;
  *) echo "unknown run $r" >&2; exit 2 ;;
  esac
  run "$r" "ev$r" "$extra" "${names[@]}"
  [ "$r" = 2k ] && names=(ka) # the killed instance left no checkpoint
  ckpts=()
  for n in "${names[@]}"; do ckpts+=("$T/$n.ckpt"); done
  echo "   pooled over the run's instances (mtld-snapshot-merge --pooled-auc, last checkpoints):"
  "$BUILD/mtld-snapshot-merge" --pooled-auc "${ckpts[@]}" | tee "$T/$r.pooled" | sed 's/^/     /'
  : >"$T/$r.sync"
  for n in "${names[@]}"; do
    grep -E 'scaleout: [0-9]+ rounds' "$T/$n.log" >>"$T/$r.sync" || true
  done
done

echo
echo "== pooled progressive AUC over all samples of all instances (each sample scored"
echo "   by its instance before training on it; cumulative, from the summed histograms);"
echo "   delta against run 1; sync cost: mean bytes and ms per published delta"
python3 - "$T" $RUNS <<'PY'
import re, sys
T, runs = sys.argv[1], sys.argv[2:]
def pooled(r):
    out = {}
    for line in open(f"{T}/{r}.pooled"):
        d = dict(kv.split("=", 1) for kv in line.split())
        out[d["task"]] = (int(d["n"]), float(d["auc_cum"]))
    return out
def sync(r):
    rounds = b = ms = 0
    for line in open(f"{T}/{r}.sync"):
        m = re.search(r"scaleout: (\d+) rounds.*?; ([\d.]+) bytes and ([\d.]+) ms per round", line)
        if m:
            n = int(m.group(1)); rounds += n
            b += n * float(m.group(2)); ms += n * float(m.group(3))
    return "-" if not rounds else f"{b / rounds / 1000:.0f} KB, {ms / rounds:.1f} ms ({rounds} rounds)"
ref = pooled("1") if "1" in runs else None
print(f"{'run':4} {'samples(ctr)':>12} {'ctr AUC':>16} {'ctcvr AUC':>16} {'CPU s':>7}  sync/round")
for r in runs:
    p = pooled(r)
    cells = []
    for t in ("ctr", "ctcvr"):
        n, a = p.get(t, (0, float("nan")))
        d = f" ({a - ref[t][1]:+.4f})" if ref and r != "1" and t in ref else ""
        cells.append(f"{a:.4f}{d}")
    cpu = open(f"{T}/{r}.cpu").read().strip()
    print(f"{r:4} {p.get('ctr', (0, 0))[0]:>12} {cells[0]:>16} {cells[1]:>16} {float(cpu):>7.2f}  {sync(r)}")
PY
