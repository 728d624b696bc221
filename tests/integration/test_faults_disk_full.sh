#!/usr/bin/env bash
# Fault injection: the store's disk is full (every write, sync and
# fallocate under the live store directory fails with ENOSPC: the WAL, the
# memtable flushes, RocksDB's own LOG), switched on and off by a trigger
# file (LD_PRELOAD shim tests/fault/faultfs.c).  While batch commits fail
# the daemon stops consuming (the partition is paused: the records counter
# stays put), /healthz answers 503 naming the cause, and the commit is
# retried with a backoff; when the space comes back it resumes by itself.
# A second fault that outlasts store.commit_retry_timeout ends the daemon
# with exit code 4 and a clear log line (never an abort in RocksDB); a
# restart without the fault replays what was not committed.  At the end,
# features and weights equal those of a run that never saw a fault.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"

SHIM=$HELPERS/faultfs.so
[ -f "$SHIM" ] || fail "fault shim not built ($SHIM)"
for i in 1 2 3 4; do
  "$BUILD/mtld-gen" --seed $((50 + i)) --users 300 --items 200 --impressions 3000 --days 1 \
    --start-ms "2024-01-0${i}T00:00:00Z" --oracle-last 0 --out "$T/c$i.pb" 2>>"$T/gen.log"
done
start_cluster 1 events:1
N=0
chunk() { N=$((N + $(produce "$T/c$1.pb" events "$T/produce.log"))); }

conf() { # conf NAME
  write_config "$T/$1.conf" "$T/$1.store" events 'trainer = { report_interval = "0s"; };'
  sed -i "s/group_id = \"mtld-test\";/group_id = \"mtld-$1\";/" "$T/$1.conf"
  sed -i "s/batch_max_ms = 100; };/batch_max_ms = 100; commit_retry_timeout = \"15s\"; };/" "$T/$1.conf"
  grep -q 'commit_retry_timeout = "15s"' "$T/$1.conf" || fail "config edit failed"
}

TRIG=$T/disk.full
ASAN_EXTRA=
[ -n "${MTLD_SANITIZED:-}" ] && ASAN_EXTRA="verify_asan_link_order=0:"
start_faulty() { # the live store directory d.store/ only
  ASAN_OPTIONS="${ASAN_EXTRA}${ASAN_OPTIONS:-}" LD_PRELOAD="$SHIM" MTLD_FAULT_PATH="$T/d.store/" \
    MTLD_FAULT_TRIGGER="$TRIG" MTLD_FAULT_ERRNO=ENOSPC \
    "$BUILD/mtld" -c "$T/d.conf" >>"$T/d.log" 2>&1 &
  MTLD_PID=$!
  PIDS+=("$MTLD_PID")
}
records() { # records counter of the running daemon
  scrape "$PORT" "$T/m.txt"
  local v
  v=$(metric "$T/m.txt" mtld_records_total)
  echo "${v%.*}"
}

conf d
start_faulty
PORT=$(metrics_port "$T/d.log")
chunk 1
wait_consumed "$T/d.store" "$N" 60
touch "$TRIG"
note "disk full"
chunk 2
wait_log "$T/d.log" 'batch commit failed: .*No space left on device.*; consumption paused, retrying for up to 15 s' 30
sleep 1
r1=$(records)
code=$(http "$PORT" GET /healthz "$T/h.txt")
[ "$code" = 503 ] || fail "/healthz answered $code while commits fail"
grep -q 'store writes failing for .*consumption paused: .*No space left on device' "$T/h.txt" ||
  fail "/healthz does not say why: $(cat "$T/h.txt")"
sleep 1.5
r2=$(records)
note "paused: records $r1 -> $r2 while the disk is full; healthz: $(cat "$T/h.txt")"
[ "$r1" = "$r2" ] || fail "records kept being consumed while commits fail ($r1 -> $r2)"
rm -f "$TRIG"
note "space is back"
wait_log "$T/d.log" 'batch commit succeeded after .* of failures: resuming' 30
wait_consumed "$T/d.store" "$N" 60
code=$(http "$PORT" GET /healthz "$T/h.txt")
for _ in $(seq 1 30); do
  [ "$code" = 200 ] && break
  sleep 0.2
  code=$(http "$PORT" GET /healthz "$T/h.txt")
done
[ "$code" = 200 ] || fail "/healthz answered $code after the fault cleared"

# a fault that outlasts store.commit_retry_timeout (15 s): exit 4
touch "$TRIG"
chunk 3
wait_exit "$MTLD_PID" $((60 * SLOW))
[ "$EXIT_RC" -eq 4 ] || fail "exit code $EXIT_RC under a lasting disk-full fault (want 4)"
grep -qE 'batch commits failed for [0-9]+ s \(store.commit_retry_timeout\): exiting' "$T/d.log" ||
  fail "no log line for the retry bound"
note "exit 4 after the retry bound: $(grep -o 'batch commits failed for [0-9]* s' "$T/d.log" | tail -1)"
rm -f "$TRIG"
chunk 4
start_mtld "$T/d.conf" "$T/d.log"
wait_consumed "$T/d.store" "$N" 90
stop_pid "$MTLD_PID" 30

conf ref
start_mtld "$T/ref.conf" "$T/ref.log"
wait_consumed "$T/ref.store" "$N" 90
stop_pid "$MTLD_PID" 30
"$BUILD/mtld-inspect" --store "$T/ref.store" --dump >"$T/ref.dump"
"$BUILD/mtld-inspect" --store "$T/d.store" --dump >"$T/d.dump"
[ -s "$T/ref.dump" ] || fail "empty dump"
cmp "$T/ref.dump" "$T/d.dump" || fail "features differ from the run without the fault"
"$HELPERS/snapshot_weights" "$T/ref.store.snap" >"$T/ref.w"
"$HELPERS/snapshot_weights" "$T/d.store.snap" >"$T/d.w"
cmp "$T/ref.w" "$T/d.w" || fail "weights differ from the run without the fault"
note "features byte-identical, $(wc -c <"$T/ref.w") bytes of weights bit-identical"
echo "1 passed, 0 failed"
