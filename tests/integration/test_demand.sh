#!/usr/bin/env bash
# Item demand (label "demand", features/demand.h): a generated stream
# replayed from a file with a demand task next to ctr/ctcvr/rating; the item
# samples in the trainer's dump are recomputed from the events
# (tests/helpers/demand_check.py): per hourly boundary, one sample per item
# active in the hour before, label = orders in the hour after, the naive
# forecasts "same as the last hour" and the moving average; the progressive
# metrics report the task and both baselines on every item sample with
# finite RMSE/MAE.  Then the same stream from 8 Kafka partitions, consumed
# once cleanly and once with kill -9 at random points (tiny batches): the
# features and final weights must be identical (the demand windows live in
# the store with the offsets).  Kill times: $RANDOM seeded per run
# (MTLD_TEST_SEED repeats a run).
. "$(dirname "$0")/lib.sh"

SEED=${MTLD_TEST_SEED:-$$}
RANDOM=$SEED
note "kill points seeded with $SEED"
GEN=(--seed 7 --users 300 --items 120 --impressions 30000 --days 1)
"$BUILD/mtld-gen" "${GEN[@]}" --out "$T/events.pb" 2>"$T/gen.log"
"$BUILD/mtld-gen" "${GEN[@]}" --format json --out "$T/events.json" 2>/dev/null
TASKS='model = { tasks = (
  { name = "ctr"; type = "binary"; label = "click"; },
  { name = "ctcvr"; type = "esmm"; label = "purchase"; parent = "ctr"; },
  { name = "rating"; type = "regression"; label = "rating"; },
  { name = "demand"; type = "regression"; label = "demand"; } ); };'
JOINER='joiner = { conversion_window = "2h"; demand_horizon = "1h"; demand_windows = 4; };'

# 1. file replay: the samples are the events' windows
cat >"$T/file.conf" <<CONF
source = { type = "file"; file = "$T/events.pb"; };
store = { path = "$T/file.store"; };
metrics = { enabled = false; };
trainer = { report_interval = "0s"; dump_samples = "$T/file.samples"; };
$JOINER
$TASKS
CONF
"$BUILD/mtld" -c "$T/file.conf" >"$T/file.log" 2>&1 || fail "file replay failed: $(tail -3 "$T/file.log")"
python3 "$SRC/tests/helpers/demand_check.py" "$HELPERS/sample_layout" "$T/events.json" \
  "$T/file.samples" 3600000 4 >"$T/check.txt" || fail "item samples differ from the events"
note "$(cat "$T/check.txt")"
n=$(sed -n 's/.* \([0-9]*\) item samples.*/\1/p' "$T/check.txt")
[ "${n:-0}" -gt 1000 ] || fail "only ${n:-0} item samples"
for task in demand demand_last demand_ma; do
  line=$(grep -o "pv task=$task scenario=all .*" "$T/file.log" | tail -1)
  [ -n "$line" ] || fail "no progressive metrics line for $task"
  note "$line"
  python3 - "$line" "$n" <<'PY' || fail "$task: metrics not finite or not over every item sample: $line"
import math, sys
f = dict(kv.split("=", 1) for kv in sys.argv[1].split()[1:])
ok = int(f["n"]) == int(sys.argv[2]) and all(math.isfinite(float(f[k])) for k in ("rmse", "mae"))
sys.exit(0 if ok else 1)
PY
done
# the model is at least reported next to "same as the last hour", on the same samples
grep -q "pv task=demand scenario=_items " "$T/file.log" || fail "no per-scenario line for the item samples"

# 2. Kafka: the same stream from 8 partitions read in big and in tiny
# slices releases the same samples (item samples included) and trains the
# same weights; from 1 partition, a run killed mid-stream ends equal to a
# clean one (features, weights, demand metrics): the windows live in the
# store with the offsets.
start_cluster 1 events8:8 events:1
for topic in events8 events; do
  "$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic $topic --in "$T/events.pb" \
    --summary "$T/produce-$topic.json" >"$T/produce-$topic.log" 2>&1
done
N=$(produced_count "$T/produce-events.json")
conf() { # conf NAME TOPIC BATCH FETCH
  write_config "$T/$1.conf" "$T/$1.store" "$2" "$JOINER
$TASKS
trainer = { report_interval = \"0s\"; dump_samples = \"$T/$1.samples\"; };"
  sed -i "s/group_id = \"mtld-test\";/group_id = \"mtld-$1\"; group_instance_id = \"mtld-$1\"; max_partition_fetch_bytes = \"$4\";/; s/batch_max_events = 500/batch_max_events = $3/" "$T/$1.conf"
  sed -i "s#^checkpoint = .*#checkpoint = { dir = \"$T/$1.store.ckpt\"; interval = \"1s\"; every_samples = 2000; keep = 2; };#" "$T/$1.conf"
}
run() { # run NAME
  start_mtld "$T/$1.conf" "$T/$1.log"
  wait_consumed "$T/$1.store" "$N" 90
  sleep 2 # every partition reports its end: the final watermark is the stream's
  stop_pid "$MTLD_PID" 30
}
conf big events8 5000 1048576
conf tiny events8 7 1024
run big
run tiny
cmp "$T/big.samples" "$T/tiny.samples" || fail "8 partitions: the two interleavings released different samples"
"$HELPERS/snapshot_weights" "$T/big.store.snap" >"$T/big.w"
"$HELPERS/snapshot_weights" "$T/tiny.store.snap" >"$T/tiny.w"
cmp "$T/big.w" "$T/tiny.w" || fail "8 partitions: weights differ between the interleavings"
note "8 partitions, big and tiny slices: same $(stat -c %s "$T/big.samples") bytes of samples, same weights"

conf ref events 5000 1048576
run ref
conf crash events 97 1048576
kill_mid_stream crash 20 4
run crash
same_run ref crash "the uninterrupted run"
grep -o 'pv task=demand.*' "$T/ref.log" | tail -6 >"$T/ref.pv"
grep -o 'pv task=demand.*' "$T/crash.log" | tail -6 >"$T/crash.pv"
[ -s "$T/ref.pv" ] || fail "no demand metrics logged from Kafka"
diff "$T/ref.pv" "$T/crash.pv" || fail "demand metrics differ from the uninterrupted run"
note "after $KILLS kills: features, weights and demand metrics equal the clean run's"
echo "1 passed, 0 failed"
