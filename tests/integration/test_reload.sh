#!/usr/bin/env bash
# SIGHUP reload while the daemon consumes from the mock cluster:
#   1. reloadable keys (log.level, validation.max_ahead, metrics.port,
#      shutdown_timeout) are applied together: debug lines appear, events far
#      ahead are now rejected as bad_time, metrics move to the new port;
#   2. non-reloadable keys (store.path, source.topics, features.*) are
#      refused with a log line naming each, and their old values stay: the
#      daemon keeps writing the old store; the reloadable log.level in the
#      same file is applied;
#   3. a file that does not parse, and 4. one that parses but does not
#      validate, are refused with file:line; nothing changes (log.level stays);
# and the daemon consumes between every step: at the end the store equals the
# reference of every stream it accepted (nothing lost or counted twice).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
REF=$(helper_bin ref_features)
LOG=$T/mtld.log
CONF=$T/mtld.conf

gen "$T/a.pb" 41 2024-01-01T00:00:00Z
gen "$T/b.pb" 42 2024-01-02T00:00:00Z
gen "$T/c.pb" 43 2024-01-03T00:00:00Z
gen "$T/d.pb" 44 2024-01-04T00:00:00Z
gen "$T/e.pb" 45 2024-03-01T00:00:00Z # weeks ahead: bad_time once max_ahead is 6h
cat "$T/a.pb" "$T/b.pb" "$T/c.pb" "$T/d.pb" >"$T/accepted.pb"
start_cluster 1 events:4

debug_lines() { since "$1" | grep -cE 'batch [0-9]+ committed:' || true; }
alive() { kill -0 "$MTLD_PID" 2>/dev/null || fail "mtld died ($1)"; }

write_config "$CONF" "$T/store" events
cp "$CONF" "$T/base.conf"
NA=$(produce "$T/a.pb" events "$T/produce-a.log")
start_mtld "$CONF" "$LOG"
wait_consumed "$T/store" "$NA" 60
[ "$(debug_lines 1)" -eq 0 ] || fail "debug lines logged at level info"
PORT0=$(metrics_port "$LOG")

# 1. reloadable keys
NEWPORT=
if command -v python3 >/dev/null; then
  NEWPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
sed -e 's/level = "info"/level = "debug"/' -e 's/shutdown_timeout = "20s"/shutdown_timeout = "15s"/' \
  "$T/base.conf" >"$T/r1.conf"
[ -n "$NEWPORT" ] && sed -i "s/port = 0;/port = $NEWPORT;/" "$T/r1.conf"
echo 'validation = { max_ahead = "6h"; };' >>"$T/r1.conf"
reload "$T/r1.conf"
L1=$LINE0
for key in log.level validation.max_ahead shutdown_timeout ${NEWPORT:+metrics.port}; do
  since "$L1" | grep -qF "reload: $key changed: applied" || fail "no 'applied' line for $key"
done
since "$L1" | grep -q "not reloadable" && fail "a reloadable key was refused"
since "$L1" | grep -qE 'reload done$' || fail "reload did not end with 'reload done'"
NB=$(produce "$T/b.pb" events "$T/produce-b.log")
wait_consumed "$T/store" $((NA + NB)) 60
wait_log "$LOG" 'batch [0-9]+ committed:' 5
note "log.level debug: $(debug_lines "$L1") debug lines after the reload"
NE=$(produce "$T/e.pb" events "$T/produce-e.log")
wait_consumed "$T/store" $((NA + NB + NE)) 60
if [ -n "$NEWPORT" ]; then
  [ "$(metrics_port "$LOG")" = "$NEWPORT" ] || fail "metrics not restarted on port $NEWPORT"
  [ "$(http "$NEWPORT" GET /healthz "$T/h")" = 200 ] || fail "/healthz on the new port"
  [ "$(http "$PORT0" GET /healthz "$T/h")" = 000 ] || fail "old metrics port $PORT0 still answers"
  PORT=$NEWPORT
else
  note "no python3: metrics.port reload not checked"
  PORT=$PORT0
fi
sleep 1.2 # metrics are published once a second
scrape "$PORT" "$T/m1"
got=$(metric "$T/m1" 'mtld_events_rejected_total{reason="bad_time"}')
[ "${got:-0}" = "$NE" ] || fail "validation.max_ahead reload: ${got:-0} of $NE far-ahead events rejected as bad_time"
note "validation.max_ahead 6h: all $NE far-ahead events rejected"

# 2. non-reloadable keys refused (with a reloadable one applied)
sed -e "s#path = \"$T/store\"#path = \"$T/store-other\"#" -e 's/topics = \["events"\]/topics = ["other"]/' \
  -e 's/shutdown_timeout = "20s"/shutdown_timeout = "15s"/' \
  "$T/base.conf" >"$T/r2.conf"
[ -n "$NEWPORT" ] && sed -i "s/port = 0;/port = $NEWPORT;/" "$T/r2.conf"
echo 'validation = { max_ahead = "6h"; };' >>"$T/r2.conf"
echo 'features = { sequence_length = 20; };' >>"$T/r2.conf"
reload "$T/r2.conf"
L2=$LINE0
for key in store.path source.topics features.sequence_length; do
  since "$L2" | grep -qE "reload: $key changed.*not reloadable" ||
    fail "no 'not reloadable' line naming $key"
done
since "$L2" | grep -qF "reload: log.level changed: applied" || fail "log.level not applied next to refused keys"
since "$L2" | grep -qF "some keys refused" || fail "reload end line does not mention refused keys"
alive "after refused keys"
NC=$(produce "$T/c.pb" events "$T/produce-c.log")
wait_consumed "$T/store" $((NA + NB + NE + NC)) 60
[ -e "$T/store-other" ] && fail "refused store.path was used"
[ "$(debug_lines "$L2")" -eq 0 ] || fail "debug lines after log.level went back to info"
note "store.path, source.topics, features.sequence_length refused; old store kept consuming"

# 3. a file that does not parse
sed 's/level = "info"/level = "debug"/' "$T/r2.conf" >"$T/r3.conf"
echo 'store = { batch_max_ms = ; };' >>"$T/r3.conf"
BADLINE=$(wc -l <"$T/r3.conf")
reload "$T/r3.conf"
L3=$LINE0
since "$L3" | grep -qE "reload refused.*mtld\.conf:$BADLINE:" ||
  fail "parse error not reported with mtld.conf:$BADLINE: $(since "$L3" | grep refused)"
since "$L3" | grep -qE "reload: [a-z_.]+ changed" && fail "a key was reported changed by a file that does not parse"

# 4. a file that parses but does not validate
sed 's/level = "info"/level = "debug"/; s/batch_max_events = 500/batch_max_events = 0/' "$T/r2.conf" >"$T/r4.conf"
BADLINE=$(grep -n 'batch_max_events = 0' "$T/r4.conf" | cut -d: -f1)
reload "$T/r4.conf"
L4=$LINE0
since "$L4" | grep -qE "reload refused.*mtld\.conf:$BADLINE: store\.batch_max_events" ||
  fail "invalid value not reported with mtld.conf:$BADLINE: $(since "$L4" | grep refused)"
alive "after refused files"
ND=$(produce "$T/d.pb" events "$T/produce-d.log")
wait_consumed "$T/store" $((NA + NB + NE + NC + ND)) 60
[ "$(debug_lines "$L3")" -eq 0 ] || fail "log.level changed by a refused file"
note "broken and invalid files refused with file:line; nothing changed"

stop_pid "$MTLD_PID" 30
grep -q "stopped:" "$LOG" || fail "no clean stop line"
"$REF" "$T/accepted.pb" "$T/store" || fail "features differ from the reference of the accepted streams"
echo "1 passed, 0 failed"
