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
. "$(dirname "$0")/lib_faults.sh"

fault_gen 50 4
start_cluster 1 events:1
conf() { # conf NAME
  fault_conf "$1"
  sed -i "s/batch_max_ms = 100; };/batch_max_ms = 100; commit_retry_timeout = \"15s\"; };/" "$T/$1.conf"
  grep -q 'commit_retry_timeout = "15s"' "$T/$1.conf" || fail "config edit failed"
}

TRIG=$T/disk.full
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
same_as_ref d
echo "1 passed, 0 failed"
