#!/usr/bin/env bash
# kill -9 of the daemon at 5 points while it consumes a one-partition topic
# of a real Kafka 2.4 broker (../shared/kafka-local; skipped when absent),
# restarted each time: features byte-identical and weights bit-identical to
# an uninterrupted run's, and the restarted daemon's ledger adds up to the
# store's offsets.  Kill times: $RANDOM seeded per run (printed;
# MTLD_TEST_SEED repeats a run).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
. "$(dirname "$0")/lib_kafka_local.sh"
kl_require

SEED=${MTLD_TEST_SEED:-$$}
RANDOM=$SEED
note "kill points seeded with $SEED"
"$BUILD/mtld-gen" --seed 33 --users 300 --items 200 --impressions 40000 --days 1 \
  --out "$T/events.pb" 2>"$T/gen.log" || fail "mtld-gen failed"
kl_start
kl_topic events 1
N=$(kl_produce "$T/events.pb" events "$T/produce.log")
note "produced $N records"

EXTRA='joiner = { conversion_window = "2h"; };
trainer = { report_interval = "0s"; };'
conf() { # conf NAME
  kl_write_config "$T/$1.conf" "$T/$1.store" events "$EXTRA"
  sed -i "s/group_id = \"mtld-test\";/group_id = \"mtld-$1\"; group_instance_id = \"mtld-$1\";/; s/batch_max_events = 500/batch_max_events = 97/" "$T/$1.conf"
  sed -i "s#^checkpoint = .*#checkpoint = { dir = \"$T/$1.store.ckpt\"; interval = \"1s\"; every_samples = 2000; keep = 2; };#" "$T/$1.conf"
}

conf ref
start_mtld "$T/ref.conf" "$T/ref.log"
wait_consumed "$T/ref.store" "$N" 60
stop_pid "$MTLD_PID" 30

conf crash
kill_mid_stream crash 20 5
kills=$KILLS
start_mtld "$T/crash.conf" "$T/crash-last.log"
PORT=$(metrics_port "$T/crash-last.log")
wait_consumed "$T/crash.store" "$N" 60
sleep 1.5
scrape "$PORT" "$T/m"
stop_pid "$MTLD_PID" 30
# the last run's ledger: what it read is what the store moved past since the
# offset it resumed at
from=$(sed -n 's/.*assigned events\[0\]: resuming at stored offset \([0-9]*\).*/\1/p' "$T/crash-last.log" | head -1)
read=$(metric_sum "$T/m" '^mtld_source_records_total[{]')
[ "$read" = $((N - ${from:-0})) ] || fail "ledger of the last run: $read records read, the store moved from ${from:-0} to $N"

same_run ref crash "the uninterrupted run"
note "after $kills kills on a real broker: features byte-identical, $(wc -c <"$T/ref.w") bytes of weights bit-identical; last run read $read = $N - $from"
echo "1 passed, 0 failed"
