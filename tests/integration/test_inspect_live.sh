#!/usr/bin/env bash
# mtld-inspect is safe while the daemon runs: 50 polls of --offsets and a
# user lookup during ingestion (checkpoints every second flush memtables and
# delete WAL files under the readers) all succeed, and the offsets they see
# never go backwards.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"

"$BUILD/mtld-gen" --seed 91 --users 300 --items 200 --impressions 40000 --days 1 \
  --out "$T/events.pb" 2>"$T/gen.log" || fail "mtld-gen failed"
start_cluster 1 events:2
N=$(produce "$T/events.pb" events "$T/produce.log")
write_config "$T/mtld.conf" "$T/store" events
sed -i "s#^checkpoint = .*#checkpoint = { dir = \"$T/store.ckpt\"; interval = \"1s\"; keep = 2; };#; s/batch_max_events = 500/batch_max_events = 100/" "$T/mtld.conf"
start_mtld "$T/mtld.conf" "$T/mtld.log"
wait_log "$T/mtld.log" 'mtld .* running' 30
ok=0 last=0 during=0
for i in $(seq 1 50); do
  if ! "$BUILD/mtld-inspect" --store "$T/store" --offsets >"$T/o" 2>"$T/inspect.err"; then
    fail "poll $i: mtld-inspect failed: $(cat "$T/inspect.err")"
  fi
  if ! "$BUILD/mtld-inspect" --store "$T/store" --user 1 >/dev/null 2>"$T/inspect.err"; then
    grep -q 'not found' "$T/inspect.err" || fail "poll $i: mtld-inspect --user failed: $(cat "$T/inspect.err")"
  fi
  c=$(awk '{s += $3} END {print s + 0}' "$T/o")
  [ "$c" -ge "$last" ] || fail "poll $i: offsets went back from $last to $c"
  [ "$c" -lt "$N" ] && during=$((during + 1))
  last=$c
  ok=$((ok + 1))
  sleep 0.05
done
note "$ok of 50 polls succeeded, $during of them while records were still coming in"
[ "$during" -ge 5 ] || note "(ingestion finished early: only $during polls during it)"
wait_consumed "$T/store" "$N" 60
stop_pid "$MTLD_PID" 30
echo "1 passed, 0 failed"
