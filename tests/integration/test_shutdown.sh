#!/usr/bin/env bash
# Shutdown: SIGTERM and SIGINT drain, commit, leave the group and exit 0 well
# within shutdown_timeout; when leaving cannot finish (the cluster is frozen
# with SIGSTOP, so the broker never answers) the daemon still exits when
# shutdown_timeout has passed (exit 4, "shutdown_timeout exceeded"); a second
# signal during a slow shutdown exits at once (128 + signal).  After all of
# it, a last run consumes a new stream and the features equal the reference:
# the forced exits lost nothing and counted nothing twice.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
REF=$(helper_bin ref_features)
LOG=$T/mtld.log

gen "$T/a.pb" 71 2024-01-01T00:00:00Z
gen "$T/b.pb" 72 2024-01-02T00:00:00Z
gen "$T/c.pb" 73 2024-01-03T00:00:00Z
cat "$T/a.pb" "$T/b.pb" "$T/c.pb" >"$T/all.pb"
start_cluster 1 events:4
write_config "$T/mtld.conf" "$T/store" events
# Dynamic membership (a static member does not leave the group on close, so
# closing would not wait for the frozen broker).  A run that exits without
# leaving would hold its group in a long rejoin on the mock cluster, so the
# runs after a forced exit use groups of their own: mtld resumes from the
# offsets in its store whatever the group.
sed 's/shutdown_timeout = "20s"/shutdown_timeout = "3s"/' "$T/mtld.conf" >"$T/bound3.conf"
sed 's/shutdown_timeout = "20s"/shutdown_timeout = "30s"/; s/group_id = "mtld-test"/group_id = "mtld-test-4"/' \
  "$T/mtld.conf" >"$T/bound30.conf"
sed -i 's/group_id = "mtld-test"/group_id = "mtld-test-5"/' "$T/mtld.conf"

# stop_with SIG LIMIT_S : sends SIG, waits for the exit (sets EXIT_RC, EXIT_MS)
stop_with() {
  kill -"$1" "$MTLD_PID"
  wait_exit "$MTLD_PID" "$2"
}
# running : until the run started last has its 4 partitions
running() { wait_log "$LOG" 'assigned events\[' 30 $((ASSIGNED0 + 4)); }
start() {
  ASSIGNED0=$(grep -c 'assigned events\[' "$LOG" 2>/dev/null || true)
  start_mtld "$1" "$LOG"
}

# 1. SIGTERM: clean, everything committed, quick
NA=$(produce "$T/a.pb" events "$T/produce-a.log")
start "$T/bound3.conf"
wait_consumed "$T/store" "$NA" 60
stop_with TERM $((3 * SLOW + 2))
[ "$EXIT_RC" -eq 0 ] || fail "SIGTERM: exit $EXIT_RC, want 0"
grep -q "stopped: $NA records" "$LOG" || fail "SIGTERM: no 'stopped: $NA records' line"
note "SIGTERM: exit 0 after ${EXIT_MS} ms (bound 3 s)"

# 2. SIGINT: the same
NB=$(produce "$T/b.pb" events "$T/produce-b.log")
start "$T/bound3.conf"
wait_consumed "$T/store" $((NA + NB)) 60
stop_with INT $((3 * SLOW + 2))
[ "$EXIT_RC" -eq 0 ] || fail "SIGINT: exit $EXIT_RC, want 0"
[ "$(grep -c 'stopped:' "$LOG")" -eq 2 ] || fail "SIGINT: no clean stop line"
grep -q "resuming at stored offset" "$LOG" || fail "the restart did not resume at the stored offsets"
note "SIGINT: exit 0 after ${EXIT_MS} ms"

# 3. the bound: the broker stops answering, leaving the group cannot finish
start "$T/bound3.conf"
running
sleep 0.5
kill -STOP "$CLUSTER_PID"
stop_with TERM $((3 + 3 * SLOW))
kill -CONT "$CLUSTER_PID"
[ "$EXIT_RC" -eq 4 ] || fail "frozen broker, bound 3 s: exit $EXIT_RC after ${EXIT_MS} ms, want 4"
[ "$EXIT_MS" -ge 2500 ] || fail "exited after ${EXIT_MS} ms, before the 3 s bound (cluster not frozen?)"
grep -q "shutdown_timeout exceeded" "$LOG" || fail "no 'shutdown_timeout exceeded' line"
note "frozen broker: exit 4 after ${EXIT_MS} ms (bound 3 s)"

# 4. a second signal exits at once, even with a long bound
start "$T/bound30.conf"
running
sleep 0.5
kill -STOP "$CLUSTER_PID"
kill -TERM "$MTLD_PID"
sleep 1
kill -0 "$MTLD_PID" 2>/dev/null || { kill -CONT "$CLUSTER_PID"; fail "shutdown was not slow: nothing to interrupt"; }
stop_with INT $((1 + SLOW))
kill -CONT "$CLUSTER_PID"
[ "$EXIT_RC" -eq 130 ] || fail "second signal (SIGINT): exit $EXIT_RC, want 130"
[ "$EXIT_MS" -le $((500 * SLOW)) ] || fail "second signal: took ${EXIT_MS} ms"
note "second signal: exit 130 after ${EXIT_MS} ms"

# 5. nothing lost: a last run consumes stream C; features equal the reference
NC=$(produce "$T/c.pb" events "$T/produce-c.log")
start_mtld "$T/mtld.conf" "$LOG"
wait_consumed "$T/store" $((NA + NB + NC)) 60
stop_pid "$MTLD_PID" 30
"$REF" "$T/all.pb" "$T/store" || fail "features after forced exits differ from the reference"
echo "1 passed, 0 failed"
