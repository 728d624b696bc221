#!/usr/bin/env bash
# Fault injection: checkpoint and snapshot writes fail with ENOSPC (the
# LD_PRELOAD shim tests/fault/faultfs.c, switched on and off by a trigger
# file) while the daemon consumes a topic.  Each failed write is logged with
# the file and the errno text, counted in mtld_durable_failures_total, leaves
# no temp file behind, and is retried at the next interval; once the fault
# clears, snapshots are written again, SIGTERM still takes a final checkpoint
# (exit 0), and features and weights equal a run that never saw the fault.
# (Before: a failed snapshot write spun forever in sink_pad().)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
. "$(dirname "$0")/lib_faults.sh"

# the stream in 5 chunks (one day each), produced while the faulty run goes
fault_gen 40 5
start_cluster 1 events:1
conf() { # conf NAME
  fault_conf "$1"
  sed -i "s#^checkpoint = .*#checkpoint = { dir = \"$T/$1.store.ckpt\"; interval = \"1s\"; keep = 2; };#" "$T/$1.conf"
  sed -i "s#^snapshot = .*#snapshot = { dir = \"$T/$1.store.snap\"; interval = \"1s\"; keep = 2; };#" "$T/$1.conf"
}

conf f
TRIG=$T/fault.on
# the fault covers f.store.ckpt/ and f.store.snap/, not the live store f.store/
ASAN_OPTIONS="${ASAN_EXTRA}${ASAN_OPTIONS:-}" LD_PRELOAD="$SHIM" MTLD_FAULT_PATH="$T/f.store." \
  MTLD_FAULT_TRIGGER="$TRIG" MTLD_FAULT_ERRNO=ENOSPC \
  "$BUILD/mtld" -c "$T/f.conf" >>"$T/f.log" 2>&1 &
MTLD_PID=$!
PIDS+=("$MTLD_PID")
PORT=$(metrics_port "$T/f.log")
wait_log "$T/f.log" 'mtld .* running' 30
chunk 1
wait_consumed "$T/f.store" "$N" 60
touch "$TRIG"
note "fault on: checkpoint and snapshot writes fail with ENOSPC"
for i in 2 3 4; do # intervals of 1 s pass while batches commit: writes are due
  sleep 1.2
  chunk $i
  wait_consumed "$T/f.store" "$N" 60
done
wait_log "$T/f.log" 'snapshot failed \(retried at the next interval\): cannot write snapshot .*/f\.store\.snap/snapshot-[0-9]*\.mtlds: No space left on device' 30 2
wait_log "$T/f.log" 'checkpoint failed \(retried at the next interval\): .*f\.store\.ckpt/checkpoint-[0-9]*\.tmp.*: No space left on device' 30 2
kill -0 "$MTLD_PID" || fail "mtld died under the fault"
scrape "$PORT" "$T/m1.txt"
SF=$(metric "$T/m1.txt" 'mtld_durable_failures_total{kind="snapshot"}')
CF=$(metric "$T/m1.txt" 'mtld_durable_failures_total{kind="checkpoint"}')
note "failures counted: snapshot $SF, checkpoint $CF"
[ "${SF%.*}" -ge 2 ] && [ "${CF%.*}" -ge 2 ] || fail "failures not counted (snapshot '$SF', checkpoint '$CF')"
SW=$(metric "$T/m1.txt" 'mtld_durable_writes_total{kind="snapshot"}')
# no temp file of a failed write stays behind (one being written may exist)
sleep 1
left=$(find "$T/f.store.snap" -name '.snapshot.tmp.*' | wc -l)
[ "$left" -le 1 ] || fail "$left snapshot temp files left behind"
rm -f "$TRIG"
note "fault cleared"
sleep 1.2
chunk 5
wait_consumed "$T/f.store" "$N" 60
for _ in $(seq 1 $((100 * SLOW))); do
  scrape "$PORT" "$T/m2.txt"
  SW2=$(metric "$T/m2.txt" 'mtld_durable_writes_total{kind="snapshot"}')
  [ "${SW2%.*}" -gt "${SW%.*}" ] && break
  sleep 0.2
done
[ "${SW2%.*}" -gt "${SW%.*}" ] || fail "no snapshot written after the fault cleared ($SW -> $SW2)"
note "snapshots written again ($SW -> $SW2); $N records consumed"
stop_pid "$MTLD_PID" 30
grep -q 'checkpoint [0-9]* complete' <(tail -n 20 "$T/f.log") || fail "no final checkpoint"
tmps=$(find "$T/f.store.ckpt" "$T/f.store.snap" -name '*.tmp*' | wc -l)
[ "$tmps" -eq 0 ] || fail "$tmps temp files left after the stop"

# the run that never saw the fault, on the same topic
conf ref
start_mtld "$T/ref.conf" "$T/ref.log"
wait_consumed "$T/ref.store" "$N" 90
stop_pid "$MTLD_PID" 30

same_as_ref f
echo "1 passed, 0 failed"
