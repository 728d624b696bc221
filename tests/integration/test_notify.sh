#!/usr/bin/env bash
# sd_notify with the real daemon: the test plays systemd's part, owning the
# NOTIFY_SOCKET (tests/helpers/notify_listen prints every datagram) and
# setting WATCHDOG_USEC.  Checks, in order: READY=1 first; STATUS= lines with
# the throughput and the event count; WATCHDOG=1 repeatedly; RELOADING=1
# (with MONOTONIC_USEC) then READY=1 around a SIGHUP; STOPPING=1 on SIGTERM;
# exit 0.  Then a file replay without WATCHDOG_USEC: READY=1 and STOPPING=1,
# and no WATCHDOG=1 at all.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
LISTEN=$(helper_bin notify_listen)
SOCK=$T/notify.sock
OUT=$T/notify.out

start_listener() {
  rm -f "$SOCK"
  : >"$OUT"
  "$LISTEN" "$SOCK" >>"$OUT" 2>"$T/listen.log" &
  LISTEN_PID=$!
  PIDS+=("$LISTEN_PID")
  for _ in $(seq 1 50); do [ -S "$SOCK" ] && return 0; sleep 0.1; done
  fail "notify_listen did not bind $SOCK"
}
# line_of ERE [FROM] : number of the first notification matching ERE (after line FROM)
line_of() {
  awk -v re="$1" -v from="${2:-0}" 'NR > from && $0 ~ re {print NR; exit}' "$OUT"
}

gen "$T/a.pb" 51 2024-01-01T00:00:00Z
gen "$T/b.pb" 52 2024-01-02T00:00:00Z
start_cluster 1 events:4
NA=$(produce "$T/a.pb" events "$T/produce-a.log")
write_config "$T/mtld.conf" "$T/store" events
start_listener

NOTIFY_SOCKET=$SOCK WATCHDOG_USEC=4000000 "$BUILD/mtld" -c "$T/mtld.conf" >>"$T/mtld.log" 2>&1 &
MTLD_PID=$!
PIDS+=("$MTLD_PID")
wait_consumed "$T/store" "$NA" 60
wait_log "$OUT" '^WATCHDOG=1$' 10 3
wait_log "$OUT" "^STATUS=.* rec/s, $NA events" 10

[ "$(head -1 "$OUT")" = "READY=1" ] || fail "first notification is '$(head -1 "$OUT")', not READY=1"
grep -qE '^STATUS=[0-9]+ rec/s, [0-9]+ events, [0-9]+ rejected, [0-9]+ samples$' "$OUT" ||
  fail "no STATUS= line with the throughput"
# throughput while consuming: some STATUS line reports a non-zero rate
grep -qE '^STATUS=[1-9][0-9]* rec/s' "$OUT" || note "no non-zero rate seen (the stream was consumed between two STATUS lines)"
note "$(grep -c '^WATCHDOG=1$' "$OUT") WATCHDOG=1, $(grep -c '^STATUS=' "$OUT") STATUS= so far"

# SIGHUP: RELOADING=1 (+ MONOTONIC_USEC), then READY=1
n_ready=$(grep -c '^READY=1$' "$OUT")
kill -HUP "$MTLD_PID"
wait_log "$OUT" '^READY=1$' 10 $((n_ready + 1))
r=$(line_of '^RELOADING=1 MONOTONIC_USEC=[0-9]+$')
[ -n "$r" ] || fail "no RELOADING=1 with MONOTONIC_USEC after SIGHUP"
[ -n "$(line_of '^READY=1$' "$r")" ] || fail "no READY=1 after RELOADING=1"

# the watchdog keeps coming and the daemon keeps consuming after the reload
n_wd=$(grep -c '^WATCHDOG=1$' "$OUT")
NB=$(produce "$T/b.pb" events "$T/produce-b.log")
wait_consumed "$T/store" $((NA + NB)) 60
wait_log "$OUT" '^WATCHDOG=1$' 10 $((n_wd + 2))
wait_log "$OUT" "^STATUS=.* $((NA + NB)) events" 10

kill -TERM "$MTLD_PID"
wait_exit "$MTLD_PID" $((30 * SLOW))
[ "$EXIT_RC" -eq 0 ] || fail "mtld exited $EXIT_RC after SIGTERM"
s=$(line_of '^STOPPING=1$')
[ -n "$s" ] || fail "no STOPPING=1 on SIGTERM"
[ -z "$(line_of '^(READY|RELOADING)=1' "$s")" ] || fail "READY/RELOADING after STOPPING=1"
note "READY, STATUS, WATCHDOG, RELOADING/READY, STOPPING in order; exit 0"

# watchdog disabled (no WATCHDOG_USEC): no WATCHDOG=1; a replay ends with STOPPING=1
kill -TERM "$LISTEN_PID"
wait "$LISTEN_PID" 2>/dev/null || true
start_listener
cat >"$T/file.conf" <<CONF
source = { type = "file"; file = "$T/a.pb"; };
store = { path = "$T/store-file"; };
metrics = { enabled = false; };
CONF
env -u WATCHDOG_USEC -u WATCHDOG_PID NOTIFY_SOCKET="$SOCK" "$BUILD/mtld" -c "$T/file.conf" \
  >"$T/file.log" 2>&1 || fail "file replay exited $?"
sleep 0.3 # the listener prints what is already queued
[ "$(head -1 "$OUT")" = "READY=1" ] || fail "replay: first notification is not READY=1"
grep -q '^STOPPING=1$' "$OUT" || fail "replay: no STOPPING=1 at the end of the file"
grep -q '^WATCHDOG=1$' "$OUT" && fail "WATCHDOG=1 sent without WATCHDOG_USEC"
echo "1 passed, 0 failed"
