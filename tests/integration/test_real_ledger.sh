#!/usr/bin/env bash
# A generated stream with bad records through a real Kafka 2.4 broker
# (../shared/kafka-local; skipped when absent): every good event is applied
# (features equal the reference), every bad one is rejected under the
# generator's reason and is in the dead-letter topic.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
. "$(dirname "$0")/lib_kafka_local.sh"
kl_require

"$BUILD/mtld-gen" --seed 7 --users 200 --items 150 --impressions 3000 --days 1 --bad-every 41 \
  --out "$T/events.pb" --truth "$T/truth.csv" 2>"$T/gen.log" || fail "mtld-gen failed"
awk -F, '$2 == "bad" {print $6}' "$T/truth.csv" | sort | uniq -c | awk '{print $2, $1}' >"$T/expected"
BAD=$(awk '{s += $2} END {print s}' "$T/expected")

kl_start
kl_topic events 4
kl_topic dlq 1
N=$(kl_produce "$T/events.pb" events "$T/produce.log")
note "produced $N records, $BAD of them bad"

kl_write_config "$T/mtld.conf" "$T/store" events 'dead_letter = { topic = "dlq"; };'
start_mtld "$T/mtld.conf" "$T/mtld.log"
PORT=$(metrics_port "$T/mtld.log")
wait_consumed "$T/store" "$N" 60
sleep 1.5
scrape "$PORT" "$T/metrics.txt"
grep 'mtld_events_rejected_total{' "$T/metrics.txt" |
  sed 's/.*reason="\([a-z_]*\)"} \([0-9]*\)/\1 \2/' | awk '$2 > 0' | sort >"$T/got"
diff -u "$T/expected" "$T/got" || fail "rejections by reason differ from the generator's"
stop_pid "$MTLD_PID" 30

"$HELPERS/dlq_dump" "$BOOTSTRAP" dlq 30 >"$T/dlq.txt" 2>"$T/dlq.log" || fail "could not read the dead-letter topic"
awk '{print $1}' "$T/dlq.txt" | sort | uniq -c | awk '{print $2, $1}' >"$T/dlq-got"
diff -u "$T/expected" "$T/dlq-got" || fail "dead-letter topic differs from the rejections"
"$HELPERS/ref_features" "$T/events.pb" "$T/store" || fail "good events were not all applied"
note "$N records: $BAD bad ones rejected by reason and dead-lettered, every good one applied"
echo "1 passed, 0 failed"
