#!/bin/bash
# bench/sampled_negatives.sh BUILD [CSV] - sampled-negative CTR AUC replayed
# from a file against 8 Kafka partitions (librdkafka's mock cluster), and the
# AUC of the "item never seen before" rule on each run's released samples
# (bench/bench_leak.c).  CSV: a Taobao UserBehavior file (default
# ../shared/data/taobao-userbehavior/UserBehavior_users_a.csv).
# Both runs: the default config with joiner.mode = "sampled_negatives" and
# conversion_window = "1h" (a finite topic keeps its last click_window +
# conversion_window pending over Kafka: with 1h both runs train on nearly
# the same samples).  Knobs: ITEM_VIEW (partition | global), LEAK (the
# bench_leak binary, default BUILD/bench/bench_leak), OUT (a directory to
# keep the sample dumps and logs in).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd)
CSV=${2:-$SRC/../shared/data/taobao-userbehavior/UserBehavior_users_a.csv}
[ -f "$CSV" ] || { echo "no data file $CSV: nothing to measure"; exit 77; }
set -- "$BUILD" "$SRC"
source "$SRC/tests/integration/lib.sh"
VIEW=${ITEM_VIEW:-partition}
EXTRA="joiner = { mode = \"sampled_negatives\"; conversion_window = \"1h\"; };
features = { item_view = \"$VIEW\"; };
trainer = { dump_samples = \"@DUMP@\"; report_interval = \"0s\"; };"

"$BUILD/mtld-produce" --csv "$CSV" --layout taobao --out "$T/events.pb" --quiet

# file replay
cat >"$T/file.conf" <<CONF
source = { type = "file"; file = "$T/events.pb"; };
store = { path = "$T/file.store"; sync = false; };
checkpoint = { dir = "$T/file.ckpt"; interval = "0s"; };
snapshot = { dir = "$T/file.snap"; interval = "0s"; };
metrics = { enabled = false; };
${EXTRA//@DUMP@/$T/file.samples}
CONF
"$BUILD/mtld" -c "$T/file.conf" >"$T/file.log" 2>&1
records=$(sed -n 's/.*stopped: \([0-9]*\) records.*/\1/p' "$T/file.log")

# 8 partitions
start_cluster 1 events:8
"$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/events.pb" >"$T/produce.log" 2>&1
write_config "$T/kafka.conf" "$T/kafka.store" events "${EXTRA//@DUMP@/$T/kafka.samples}
store = { path = \"$T/kafka.store\"; sync = false; batch_max_events = 5000; };"
sed -i 's/^store = { path = .*sync = true.*$//' "$T/kafka.conf"
start_mtld "$T/kafka.conf" "$T/kafka.log"
wait_consumed "$T/kafka.store" "$records" 600
stop_pid "$MTLD_PID" 60

echo "events: $records records from $(basename "$CSV"), item_view = $VIEW"
for run in file kafka; do
  echo "== $run"
  grep -E "pv task=ctr scenario=all" "$T/$run.log" | tail -1 | sed 's/.*pv //'
  grep -E "stopped:" "$T/$run.log" | tail -1 | sed 's/.*NOTICE //'
  "${LEAK:-$BUILD/bench/bench_leak}" "$T/$run.samples"
done
if [ -n "${OUT:-}" ]; then # keep the dumps and logs
  mkdir -p "$OUT" && cp "$T"/*.samples "$T"/*.log "$OUT"/
fi
