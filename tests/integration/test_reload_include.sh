#!/usr/bin/env bash
# A reload cannot kill the daemon through an @include (issue 15, item 4).
# libconfig 1.5's scanner calls exit(2) ("input in flex scanner failed") on
# an @include it can open but not read: a directory, or a name cut short by a
# NUL byte.  While mtld consumes from the mock cluster:
#   1. SIGHUP with `@include "conf.d"` (a directory) next to a reloadable
#      change: refused with FILE:LINE, the include and the path named; the
#      daemon keeps running, the old config (log.level) stays, /healthz and
#      /metrics answer, and it keeps consuming;
#   2. the same with an include name holding a NUL byte;
#   3. a good include still reloads (its log.level is applied);
#   4. `mtld --check-config` on the directory-include file exits 1 with the
#      same error (and 0 on the good one);
# at the end the store equals the reference of every stream produced.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
REF=$(helper_bin ref_features)
LOG=$T/mtld.log
CONF=$T/mtld.conf

gen "$T/a.pb" 51 2024-01-01T00:00:00Z
gen "$T/b.pb" 52 2024-01-02T00:00:00Z
cat "$T/a.pb" "$T/b.pb" >"$T/accepted.pb"
start_cluster 1 events:2

alive() { kill -0 "$MTLD_PID" 2>/dev/null || fail "mtld died ($1): $(tail -3 "$LOG")"; }
answers() { # the metrics endpoint still serves both paths
  [ "$(http "$PORT" GET /healthz "$T/h")" = 200 ] || fail "/healthz does not answer ($1)"
  scrape "$PORT" "$T/m"
  grep -q '^mtld_uptime_seconds ' "$T/m" || fail "/metrics without mtld_uptime_seconds ($1)"
}

write_config "$CONF" "$T/store" events
cp "$CONF" "$T/base.conf"
mkdir "$T/conf.d"
NA=$(produce "$T/a.pb" events "$T/produce-a.log")
start_mtld "$CONF" "$LOG"
wait_consumed "$T/store" "$NA" 60
PORT=$(metrics_port "$LOG")

# 1. a directory include
sed 's/level = "info"/level = "debug"/' "$T/base.conf" >"$T/dir.conf"
echo '@include "conf.d"' >>"$T/dir.conf"
LINE=$(wc -l <"$T/dir.conf")
reload "$T/dir.conf"
alive "after a directory include"
want="reload refused.*mtld\.conf:$LINE: @include \"conf\.d\": $T/conf\.d: is a directory"
since "$LINE0" | grep -qE "$want" ||
  fail "directory include not reported as file:line, include and path: $(since "$LINE0" | grep -i reload)"
since "$LINE0" | grep -q 'flex scanner' && fail "libconfig's scanner failed"
since "$LINE0" | grep -qE 'reload: [a-z_.]+ changed' && fail "a key was applied from a refused file"
answers "after a directory include"
note "directory include refused: $(since "$LINE0" | grep -o 'mtld\.conf:[0-9]*: @include.*')"

# 2. an include name with a NUL byte (the name libconfig would open is "conf.d")
cp "$T/base.conf" "$T/nul.conf"
printf '@include "conf.d\0.conf"\n' >>"$T/nul.conf"
reload "$T/nul.conf"
alive "after an include name with a NUL byte"
since "$LINE0" | grep -qa 'reload refused.*@include .*NUL byte' ||
  fail "NUL in an include name not reported: $(since "$LINE0" | grep -ai reload)"
answers "after a NUL include"
NB=$(produce "$T/b.pb" events "$T/produce-b.log")
wait_consumed "$T/store" $((NA + NB)) 60
since "$LINE0" | grep -qE 'batch [0-9]+ committed:' &&
  fail "debug lines after refused reloads (log.level changed)"
note "still consuming after both refused reloads"

# 3. a good include reloads
echo 'log = { level = "debug"; };' >"$T/conf.d/log.conf"
grep -v 'level = "info"' "$T/base.conf" >"$T/good.conf"
echo '@include "conf.d/log.conf"' >>"$T/good.conf"
reload "$T/good.conf"
since "$LINE0" | grep -qF 'reload: log.level changed: applied' || fail "good include not applied"
since "$LINE0" | grep -qE 'reload done$' || fail "good include: no 'reload done'"

# 4. --check-config
rc=0
"$BUILD/mtld" -c "$T/dir.conf" --check-config >"$T/check.out" 2>"$T/check.err" || rc=$?
[ $rc -eq 1 ] || fail "--check-config on a directory include exited $rc, not 1: $(cat "$T/check.err")"
grep -qE "dir\.conf:$LINE: @include \"conf\.d\": $T/conf\.d: is a directory" "$T/check.err" ||
  fail "--check-config error: $(cat "$T/check.err")"
"$BUILD/mtld" -c "$T/good.conf" --check-config >"$T/check.out" 2>"$T/check.err" ||
  fail "--check-config on the good include: $(cat "$T/check.err")"
grep -q 'level = "debug"' "$T/check.out" || fail "--check-config did not read the include"
note "--check-config: exit 1 with $(cat "$T/check.err")"

stop_pid "$MTLD_PID" 30
grep -q "stopped:" "$LOG" || fail "no clean stop line"
"$REF" "$T/accepted.pb" "$T/store" || fail "features differ from the reference of the streams"
echo "1 passed, 0 failed"
