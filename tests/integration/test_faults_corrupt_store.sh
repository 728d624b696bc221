#!/usr/bin/env bash
# Fault injection: a damaged store.
# 1. Bytes flipped in the middle of the store's largest .sst while the daemon
#    is stopped: the start-up verification (store.verify_on_start) refuses
#    the store with exit code 2, naming the damaged file and RocksDB's
#    reason.  The checkpoints hard-link the same .sst files, so with the
#    store moved aside the newest checkpoint's copy is refused the same way
#    (never silently used); with checkpoints and store removed, the daemon
#    rebuilds from the topic.
# 2. Reads of the .sst files fail with EIO while the daemon runs (LD_PRELOAD
#    shim tests/fault/faultfs.c): the failed read is sticky, the batch is
#    not committed (the stored offset does not move past the last committed
#    batch), the daemon exits with code 2 naming the file; a restart without
#    the fault replays those records.
# Both end with features and weights equal to a run that never saw a fault.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
. "$(dirname "$0")/lib_faults.sh"

fault_gen 60 3
start_cluster 1 events:1
conf() { fault_conf "$1"; }
# expect_exit2 NAME WHAT FILE_RE : a start refused with code 2 naming FILE_RE
expect_exit2() {
  start_mtld "$T/$1.conf" "$T/$1.log"
  wait_exit "$MTLD_PID" $((60 * SLOW))
  [ "$EXIT_RC" -eq 2 ] || fail "$2: exit code $EXIT_RC (want 2)"
  grep -E "$3" "$T/$1.log" >/dev/null || { tail -5 "$T/$1.log"; fail "$2: the damaged file is not named"; }
  note "$2: exit 2: $(grep -oE "$3" "$T/$1.log" | tail -1)"
}

# --- 1. damage at rest ------------------------------------------------------
conf a
start_mtld "$T/a.conf" "$T/a.log"
chunk 1
wait_consumed "$T/a.store" "$N" 60
stop_pid "$MTLD_PID" 30
SST=$(ls -S "$T/a.store"/*.sst | head -1)
[ -n "$SST" ] || fail "no .sst in the store"
SIZE=$(stat -c %s "$SST")
python3 - "$SST" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(0, 2); n = f.tell(); f.seek(n // 2); b = f.read(16)
    f.seek(n // 2); f.write(bytes(x ^ 0xFF for x in b))
PY
B=$(basename "$SST")
note "flipped 16 bytes in the middle of $B ($SIZE bytes)"
expect_exit2 a "damaged store" "store $T/a.store is damaged, refusing to start: .*Corruption: .*$B"
mv "$T/a.store" "$T/a.store.damaged"
expect_exit2 a "checkpoint sharing the file" "checkpoint store $T/a.store.ckpt/checkpoint-[0-9]*/store is damaged.*Corruption: .*$B"
rm -rf "$T/a.store.ckpt" "$T/a.store.snap"
chunk 2
start_mtld "$T/a.conf" "$T/a.log"
wait_consumed "$T/a.store" "$N" 90
stop_pid "$MTLD_PID" 30
note "rebuilt from the topic after the damaged store and checkpoints were removed"

# --- 2. read errors while running --------------------------------------------
conf r
start_mtld "$T/r.conf" "$T/r.log"
wait_consumed "$T/r.store" "$N" 60
stop_pid "$MTLD_PID" 30
before=$(consumed "$T/r.store")
TRIG=$T/eio.on
ASAN_OPTIONS="${ASAN_EXTRA}${ASAN_OPTIONS:-}" LD_PRELOAD="$SHIM" MTLD_FAULT_PATH=".sst" \
  MTLD_FAULT_OPS=pread MTLD_FAULT_TRIGGER="$TRIG" MTLD_FAULT_ERRNO=EIO \
  "$BUILD/mtld" -c "$T/r.conf" >>"$T/r.log" 2>&1 &
MTLD_PID=$!
PIDS+=("$MTLD_PID")
wait_log "$T/r.log" 'mtld .* running' 30 2
touch "$TRIG"
chunk 3
wait_exit "$MTLD_PID" $((60 * SLOW))
[ "$EXIT_RC" -eq 2 ] || fail "exit code $EXIT_RC after a failed store read (want 2)"
grep -qE "store apply failed at events\[0\]@[0-9]+: .*IO error: .*$T/r.store/[0-9]+\.sst: Input/output error" "$T/r.log" ||
  fail "the failed read is not logged with RocksDB's text and the file"
grep -qE 'batch not written: store apply failed .*; exiting without committing' "$T/r.log" ||
  fail "no exit line"
after=$(consumed "$T/r.store")
note "exit 2 on a failed read: $(grep -oE 'IO error: [^;]*Input/output error' "$T/r.log" | tail -1)"
note "committed records: $before before, $after after (the failed batch was not written)"
[ "$after" -lt "$N" ] || fail "every record was committed although a read failed"
rm -f "$TRIG"
start_mtld "$T/r.conf" "$T/r.log"
wait_consumed "$T/r.store" "$N" 90
stop_pid "$MTLD_PID" 30

start_mtld "$T/a.conf" "$T/a.log" # the rebuilt store catches up with chunk 3
wait_consumed "$T/a.store" "$N" 90
stop_pid "$MTLD_PID" 30

# --- the run without faults ---------------------------------------------------
conf ref
start_mtld "$T/ref.conf" "$T/ref.log"
wait_consumed "$T/ref.store" "$N" 90
stop_pid "$MTLD_PID" 30
"$BUILD/mtld-inspect" --store "$T/ref.store" --dump >"$T/ref.dump"
"$HELPERS/snapshot_weights" "$T/ref.store.snap" >"$T/ref.w"
[ -s "$T/ref.dump" ] || fail "empty dump"
for x in a r; do
  "$BUILD/mtld-inspect" --store "$T/$x.store" --dump >"$T/$x.dump"
  cmp "$T/ref.dump" "$T/$x.dump" || fail "$x: features differ from the run without faults"
  "$HELPERS/snapshot_weights" "$T/$x.store.snap" >"$T/$x.w"
  cmp "$T/ref.w" "$T/$x.w" || fail "$x: weights differ from the run without faults"
done
note "features byte-identical, $(wc -c <"$T/ref.w") bytes of weights bit-identical (both runs)"
echo "1 passed, 0 failed"
