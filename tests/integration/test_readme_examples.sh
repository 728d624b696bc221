#!/usr/bin/env bash
# The README's examples run as written: the kcat JSON line (a current event
# time) and the generic CSV mapping of mtld-produce, both into a topic that
# mtld consumes: 1 + 3 events applied, nothing rejected.  kcat comes from
# tools/install-deps.sh; without it the test is skipped.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
command -v kcat >/dev/null || { echo "SKIP: kcat not installed (tools/install-deps.sh installs it)"; exit 77; }

# readme_block START_ERE : the shell lines of the README example beginning at
# the first line matching START_ERE, through the last continued line
readme_block() {
  awk -v re="$1" 'go == 0 && $0 ~ re {go = 1} go == 1 {sub(/^ +/, ""); print; if ($0 !~ /[|\\]$/) exit}' "$SRC/README.md"
}
readme_block "^printf 'u42\\|" >"$T/kcat.sh"
readme_block '^ *mtld-produce --csv clicks.csv' >"$T/csv.sh"
[ "$(wc -l <"$T/kcat.sh")" = 2 ] || fail "README kcat example not found: $(cat "$T/kcat.sh")"
[ "$(wc -l <"$T/csv.sh")" = 2 ] || fail "README CSV example not found: $(cat "$T/csv.sh")"

start_cluster 1 events:1
sed -i "s/127.0.0.1:9092/$BOOTSTRAP/" "$T/kcat.sh"
sed -i "s/HOST:PORT/$BOOTSTRAP/" "$T/csv.sh"
now=$(date +%s)
cat >"$T/clicks.csv" <<CSV
uid,sku,cat,action,ts
u42,sku-9,c1,view,$now
u42,sku-9,c1,basket,$((now + 1))
u7,sku-3,c2,order,$((now + 2))
CSV
(cd "$T" && PATH=$BUILD:$PATH bash -e csv.sh) >"$T/csv.log" 2>&1 || fail "the README's CSV example failed: $(cat "$T/csv.log")"
grep -q ' 3 delivered to events' "$T/csv.log" || fail "the CSV example did not deliver 3 records: $(cat "$T/csv.log")"
# after the CSV's current events: an event time from the past would be too_late
(cd "$T" && PATH=$BUILD:$PATH bash -e kcat.sh) >"$T/kcat.log" 2>&1 || fail "the README's kcat example failed: $(cat "$T/kcat.log")"

write_config "$T/mtld.conf" "$T/store" events
start_mtld "$T/mtld.conf" "$T/mtld.log"
PORT=$(metrics_port "$T/mtld.log")
wait_consumed "$T/store" 4 30
sleep 1.5
scrape "$PORT" "$T/m"
[ "$(metric_sum "$T/m" '^mtld_events_total[{]')" = 4 ] || fail "events applied: $(metric_sum "$T/m" '^mtld_events_total[{]'), want 4"
[ "$(metric_sum "$T/m" '^mtld_events_rejected_total[{]')" = 0 ] || fail "README examples rejected: $(grep 'rejected' "$T/mtld.log" | head -3)"
stop_pid "$MTLD_PID" 30
note "README kcat line and generic CSV mapping: 4 events applied, 0 rejected"
echo "1 passed, 0 failed"
