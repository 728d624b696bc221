#!/usr/bin/env bash
# A generated stream with bad records through a real Kafka 2.4 broker
# (../shared/kafka-local; skipped when absent): every good event is applied
# (features equal the reference), every bad one is rejected under the
# generator's reason and is in the dead-letter topic, and the ledger's terms
# equal the generator's counts exactly: per partition read = applied +
# rejected, summed over partitions the records produced; events by type
# applied and handled by the joiner; the joiner's samples opened = released
# + pending + dropped; the stop line's ledger says the same.
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

# the ledger against the generator's own counts
M=$T/metrics.txt
[ "$(metric_sum "$M" '^mtld_source_records_total[{]')" = "$N" ] || fail "ledger: records read $(metric_sum "$M" '^mtld_source_records_total[{]') != $N produced"
[ "$(metric_sum "$M" '^mtld_source_applied_total[{]')" = $((N - BAD)) ] || fail "ledger: applied != $((N - BAD))"
[ "$(metric_sum "$M" '^mtld_source_rejected_total[{]')" = "$BAD" ] || fail "ledger: rejected != $BAD"
[ "$(metric_sum "$M" '^mtld_source_skipped_records_total[{]')" = 0 ] || fail "ledger: records skipped"
for p in 0 1 2 3; do
  r=$(metric_sum "$M" "^mtld_source_records_total[{]topic=\"events\",partition=\"$p\"")
  a=$(metric_sum "$M" "^mtld_source_applied_total[{]topic=\"events\",partition=\"$p\"")
  j=$(metric_sum "$M" "^mtld_source_rejected_total[{]topic=\"events\",partition=\"$p\"")
  [ "$r" = $((a + j)) ] && [ "$r" -gt 0 ] || fail "ledger events[$p]: read $r != applied $a + rejected $j"
done
for t in IMPRESSION CLICK ADD_TO_CART PURCHASE REVIEW; do
  want=$(awk -v t=$t '$1 == t {print $5}' "$T/gen.log")
  got=$(metric_sum "$M" "^mtld_events_total[{]type=\"$t\"")
  joined=$(metric_sum "$M" "^mtld_joiner_events_total[{]type=\"$t\"")
  [ "$got" = "$want" ] || fail "ledger: $t applied $got, the generator wrote $want"
  [ "$joined" = "$want" ] || fail "ledger: the joiner accounts for $joined $t events of $want"
  echo "#   $t: generated $want = applied $got = joiner $(grep "^mtld_joiner_events_total{type=\"$t\"" "$M" | awk '$2 > 0 {sub(/.*outcome="/, "", $1); sub(/"}/, "", $1); printf "%s %s  ", $1, $2}')"
done
opened=$(metric "$M" 'mtld_joiner_samples_total{outcome="opened"}')
released=$(metric "$M" 'mtld_joiner_samples_total{outcome="released"}')
dropped=$(metric "$M" 'mtld_joiner_samples_total{outcome="dropped_corrupt"}')
pending=$(metric "$M" mtld_joiner_pending)
[ "$opened" = $((released + pending + dropped)) ] || fail "ledger: samples opened $opened != released $released + pending $pending + dropped $dropped"
note "ledger: $N read = $((N - BAD)) applied + $BAD rejected; samples $opened opened = $released released + $pending pending + $dropped dropped"
stop_pid "$MTLD_PID" 30
read_sum=$(sed -n 's/.*ledger events\[[0-9]*\]: \([0-9]*\) read = .*/\1/p' "$T/mtld.log" | awk '{s += $1} END {print s}')
[ "$read_sum" = "$N" ] || fail "stop ledger lines: $read_sum records read, want $N"

dead_lettered_and_applied
note "$N records: $BAD bad ones rejected by reason and dead-lettered, every good one applied"
echo "1 passed, 0 failed"
