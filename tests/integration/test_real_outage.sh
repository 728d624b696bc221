#!/usr/bin/env bash
# Broker kill -9 and restart mid-stream on a real Kafka 2.4 broker
# (../shared/kafka-local; skipped when absent), one partition, bad records
# and a dead-letter topic.  The broker dies while the daemon is consuming
# stream A and stays down longer than the session timeout (the daemon loses
# its partition and drops its uncommitted batch, whose dead letters could not
# be acknowledged).  While the broker is down the daemon says so promptly and
# names that cause (/healthz 503 "brokers unreachable", mtld_source_connected
# 0) and its main loop keeps running (STATUS lines go on: no flush blocks
# it).  After the restart it ends with the features and weights of a clean
# run, its counters equal the store's truth (a dropped batch took its counts
# with it) and every bad record is in the dead-letter topic.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
. "$(dirname "$0")/lib_kafka_local.sh"
kl_require

"$BUILD/mtld-gen" --seed 81 --users 300 --items 200 --impressions 15000 --days 1 --bad-every 53 \
  --out "$T/a.pb" --truth "$T/a.truth" 2>"$T/gen-a.log" || fail "mtld-gen failed"
"$BUILD/mtld-gen" --seed 82 --users 300 --items 200 --impressions 6000 --days 1 --bad-every 53 \
  --start-ms 2024-01-02T00:00:00Z --out "$T/b.pb" --truth "$T/b.truth" 2>"$T/gen-b.log" || fail "mtld-gen failed"
cat "$T/a.pb" "$T/b.pb" >"$T/all.pb"
BAD=$(cat "$T/a.truth" "$T/b.truth" | awk -F, '$2 == "bad"' | wc -l)

kl_start
kl_topic events 1
kl_topic dlq 1
NA=$(kl_produce "$T/a.pb" events "$T/produce-a.log")
conf() { # conf NAME
  kl_write_config "$T/$1.conf" "$T/$1.store" events 'dead_letter = { topic = "dlq"; };
trainer = { report_interval = "0s"; };'
  sed -i "s/group_id = \"mtld-test\";/group_id = \"mtld-$1\";/" "$T/$1.conf"
}
conf run
start_mtld "$T/run.conf" "$T/run.log"
PORT=$(metrics_port "$T/run.log")
wait_consumed "$T/run.store" 1 60

kl_kill_broker
t0=$(date +%s%N)
down=
for _ in $(seq 1 $((200 * SLOW))); do
  code=$(http "$PORT" GET /healthz "$T/h")
  if [ "$code" = 503 ] && grep -q 'brokers unreachable' "$T/h"; then down=1; break; fi
  sleep 0.05
done
ms=$((($(date +%s%N) - t0) / 1000000))
[ -n "$down" ] || fail "/healthz did not say 'brokers unreachable' within $((10 * SLOW)) s of the broker's death (last: $code $(cat "$T/h"))"
scrape "$PORT" "$T/m-down"
[ "$(metric "$T/m-down" mtld_source_connected)" = 0 ] || fail "mtld_source_connected not 0 with the broker dead"
note "broker killed at $(consumed "$T/run.store") of $NA records committed: /healthz 503 'brokers unreachable' after $ms ms"
s0=$(grep -c 'status:' "$T/run.log")
sleep $((9 * SLOW)) # longer than the session timeout (6 s)
s1=$(grep -c 'status:' "$T/run.log")
[ $((s1 - s0)) -ge 4 ] || fail "the main loop stalled with the broker down ($((s1 - s0)) STATUS lines in 9 s)"
kill -0 "$MTLD_PID" 2>/dev/null || fail "mtld died with the broker down"
kl_start_broker
NB=$(kl_produce "$T/b.pb" events "$T/produce-b.log")
wait_consumed "$T/run.store" $((NA + NB)) 90
for _ in $(seq 1 $((40 * SLOW))); do
  [ "$(http "$PORT" GET /healthz "$T/h")" = 200 ] && break
  sleep 0.5
done
[ "$(http "$PORT" GET /healthz "$T/h")" = 200 ] || fail "/healthz not back to 200 after the broker came back: $(cat "$T/h")"
sleep 1.5
scrape "$PORT" "$T/m"
N=$((NA + NB))
[ "$(metric "$T/m" mtld_records_total)" = "$N" ] || fail "mtld_records_total $(metric "$T/m" mtld_records_total) != $N records in the store"
[ "$(metric_sum "$T/m" '^mtld_source_records_total[{]')" = "$N" ] || fail "ledger: records read != $N"
[ "$(metric_sum "$T/m" '^mtld_source_rejected_total[{]')" = "$BAD" ] || fail "ledger: rejected $(metric_sum "$T/m" '^mtld_source_rejected_total[{]') != $BAD bad records"
[ "$(metric_sum "$T/m" '^mtld_events_total[{]')" = $((N - BAD)) ] || fail "events applied != $((N - BAD))"
stop_pid "$MTLD_PID" 30
note "$(grep -o 'partitions lost: dropping the uncommitted batch ([0-9]* records)' "$T/run.log" | head -1 || echo 'no batch dropped')"
if grep -qE '^%[0-9]+\|' "$T/run.log"; then
  fail "raw librdkafka log lines on stderr: $(grep -E '^%[0-9]+\|' "$T/run.log" | head -2)"
fi
note "after the outage: $N records = $((N - BAD)) applied + $BAD rejected, as in the store"

# a clean run over the same topic
conf clean
start_mtld "$T/clean.conf" "$T/clean.log"
wait_consumed "$T/clean.store" "$N" 60
stop_pid "$MTLD_PID" 30
same_run clean run "a clean run"
"$HELPERS/dlq_dump" "$BOOTSTRAP" dlq 30 >"$T/dlq.txt" 2>"$T/dlq.log" || fail "could not read the dead-letter topic"
# at-least-once: every bad record is there (twice from the two runs)
[ "$(wc -l <"$T/dlq.txt")" -ge $((2 * BAD)) ] || fail "dead-letter topic holds $(wc -l <"$T/dlq.txt") records, want >= $((2 * BAD))"
note "features and $(wc -c <"$T/run.w") bytes of weights equal a clean run; dead letters: $(wc -l <"$T/dlq.txt") for 2 x $BAD bad records"
echo "1 passed, 0 failed"
