#!/usr/bin/env bash
# Retention gaps on a real Kafka 2.4 broker (../shared/kafka-local; skipped
# when absent).  With the daemon stopped, kafka-delete-records moves a
# partition's log start past the offset stored with mtld's state:
#   1. auto_offset_reset "earliest", source.on_gap "continue": the gap is
#      reported with its exact size (error line, skipped-records metric,
#      /healthz degraded naming the partition, STATUS), the stored offset
#      moves past it, and the next start reports nothing;
#   2. "latest": the whole backlog after the gap is skipped, reported with its
#      size, once;
#   3. source.on_gap "stop" (the default): the daemon exits with code 3
#      before applying anything after the gap; the stored offset stays.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
. "$(dirname "$0")/lib_kafka_local.sh"
kl_require

# stored PART : the next offset stored for events[PART]
stored() { "$BUILD/mtld-inspect" --store "$T/store" --offsets | awk -v p="$1" '$1 == "events" && $2 == p {print $3}'; }
# config RESET ON_GAP
config() {
  kl_write_config "$T/mtld.conf" "$T/store" events
  sed -i "s/format = \"auto\"; };/format = \"auto\"; on_gap = \"$2\"; };/; s/auto_offset_reset = \"earliest\"/auto_offset_reset = \"$1\"/" "$T/mtld.conf"
  grep -q "on_gap = \"$2\"" "$T/mtld.conf" || fail "config: on_gap not set"
}
# run_until LOG N : starts mtld, waits until the store committed N records in all
run_until() {
  start_mtld "$T/mtld.conf" "$1"
  PORT=$(metrics_port "$1")
  wait_consumed "$T/store" "$2" 60
}
gap_lines() { grep -c 'ERROR offset gap on' "$1" || true; }

gen "$T/a.pb" 71 2024-01-01T00:00:00Z
gen "$T/b.pb" 72 2024-01-02T00:00:00Z
gen "$T/c.pb" 73 2024-01-03T00:00:00Z
gen "$T/d.pb" 74 2024-01-04T00:00:00Z

kl_start
kl_topic events 2
NA=$(kl_produce "$T/a.pb" events "$T/produce-a.log")
config earliest continue
run_until "$T/mtld-1.log" "$NA"
stop_pid "$MTLD_PID" 30
S0=$(stored 0)
[ "$(gap_lines "$T/mtld-1.log")" = 0 ] || fail "a gap reported on a first start"
note "stream A: $NA records; events[0] stored at $S0"

# 1. earliest: 500 records of partition 0 deleted past the stored offset
NB=$(kl_produce "$T/b.pb" events "$T/produce-b.log")
kl_delete_records events 0 $((S0 + 500))
run_until "$T/mtld-2.log" $((NA + NB))
wait_log "$T/mtld-2.log" 'status: offset gap on events\[0\]: 500 records skipped' 10
sleep 1.5
scrape "$PORT" "$T/m2"
got=$(metric "$T/m2" 'mtld_source_skipped_records_total{topic="events",partition="0",cause="offset_gap"}')
[ "$got" = 500 ] || fail "skipped records metric of events[0] is '$got', want 500"
[ "$(metric "$T/m2" 'mtld_source_gaps_total{topic="events",partition="0"}')" = 1 ] || fail "gaps_total of events[0] not 1"
[ "$(metric "$T/m2" 'mtld_source_skipped_records_total{topic="events",partition="1",cause="offset_gap"}')" = 0 ] ||
  fail "events[1] reports skipped records"
code=$(http "$PORT" GET /healthz "$T/h2")
[ "$code" = 503 ] || fail "/healthz answered $code after a gap, want 503"
grep -q 'degraded: offset gap on events\[0\]: 500 records skipped' "$T/h2" || fail "/healthz says '$(cat "$T/h2")'"
[ "$(gap_lines "$T/mtld-2.log")" = 1 ] || fail "the gap was logged $(gap_lines "$T/mtld-2.log") times, want once"
grep 'ERROR offset gap on' "$T/mtld-2.log" | sed 's/^/#   /'
stop_pid "$MTLD_PID" 30
grep -q 'ledger events\[0\]: .* 500 skipped (offset_gap, 1 gaps)' "$T/mtld-2.log" || fail "stop ledger lacks the gap"
note "earliest: gap of 500 on events[0] reported once (log, metric, healthz, STATUS)"

# the same gap is not reported twice
run_until "$T/mtld-3.log" $((NA + NB - 500))
sleep 2
stop_pid "$MTLD_PID" 30
[ "$(gap_lines "$T/mtld-3.log")" = 0 ] || fail "the gap was reported again after a restart"

# 2. latest: 300 records of partition 1 deleted past the stored offset, then
# stream C produced: with "latest" everything up to the end is skipped
S1=$(stored 1)
NC=$(kl_produce "$T/c.pb" events "$T/produce-c.log")
kl_delete_records events 1 $((S1 + 300))
END1=$(kl_offsets events -1 | awk -F: '$2 == 1 {print $3}')
[ -n "$END1" ] || fail "no end offset for events[1]"
WANT=$((END1 - S1))
config latest continue
start_mtld "$T/mtld.conf" "$T/mtld-4.log"
PORT=$(metrics_port "$T/mtld-4.log")
wait_log "$T/mtld-4.log" "offset gap on events\\[1\\]: $WANT records skipped" 60
for _ in $(seq 1 $((30 * SLOW))); do [ "$(stored 1)" = "$END1" ] && break; sleep 0.5; done
[ "$(stored 1)" = "$END1" ] || fail "events[1] stored offset $(stored 1) did not move past the gap to $END1"
sleep 1.5
scrape "$PORT" "$T/m4"
got=$(metric "$T/m4" 'mtld_source_skipped_records_total{topic="events",partition="1",cause="offset_gap"}')
[ "$got" = "$WANT" ] || fail "latest: skipped records metric of events[1] is '$got', want $WANT"
stop_pid "$MTLD_PID" 30
[ "$(gap_lines "$T/mtld-4.log")" = 1 ] || fail "latest: the gap was logged $(gap_lines "$T/mtld-4.log") times"
start_mtld "$T/mtld.conf" "$T/mtld-5.log"
wait_log "$T/mtld-5.log" 'assigned events\[1\]' 30
sleep 3
stop_pid "$MTLD_PID" 30
[ "$(gap_lines "$T/mtld-5.log")" = 0 ] || fail "latest: the gap was reported again after a restart"
note "latest: gap of $WANT on events[1] (300 deleted + the backlog) reported once, stored offset moved to $END1"

# 3. on_gap = "stop": exit 3, nothing past the gap applied, stored offset kept
S0=$(stored 0)
ND=$(kl_produce "$T/d.pb" events "$T/produce-d.log")
kl_delete_records events 0 $((S0 + 100))
config earliest stop
start_mtld "$T/mtld.conf" "$T/mtld-6.log"
wait_exit "$MTLD_PID" $((60 * SLOW))
[ "$EXIT_RC" = 3 ] || fail "on_gap = stop: exit code $EXIT_RC, want 3"
grep -q 'offset gap on events\[0\]: 100 records skipped' "$T/mtld-6.log" || fail "on_gap = stop: no gap line"
[ "$(stored 0)" = "$S0" ] || fail "on_gap = stop: events[0] stored offset moved from $S0 to $(stored 0)"
note "stop: exit 3 with the gap of 100 on events[0] named, stored offset kept at $S0"
echo "1 passed, 0 failed"
