#!/usr/bin/env bash
# Broker outages while the daemon runs on a 3-broker, 8-partition mock cluster:
#   1. one broker down while a stream is being produced (the partitions it
#      leads stall, the others go on), then up again;
#   2. every broker down for some seconds: the daemon stays up and says so
#      (STATUS line "brokers unreachable", mtld_source_connected 0, /healthz
#      503), then all up again and a new stream is produced;
# afterwards it is connected and healthy again and the store's features equal
# the reference of everything produced: nothing lost or counted twice.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
REF=$(helper_bin ref_features)
LOG=$T/mtld.log
alive() { kill -0 "$MTLD_PID" 2>/dev/null || fail "mtld died ($1)"; }

gen "$T/a.pb" 61 2024-01-01T00:00:00Z
gen "$T/b.pb" 62 2024-01-02T00:00:00Z
gen "$T/c.pb" 63 2024-01-03T00:00:00Z
cat "$T/a.pb" "$T/b.pb" "$T/c.pb" >"$T/all.pb"
start_cluster 3 events:8
NA=$(produce "$T/a.pb" events "$T/produce-a.log")
write_config "$T/mtld.conf" "$T/store" events
start_mtld "$T/mtld.conf" "$LOG"
PORT=$(metrics_port "$LOG")
wait_consumed "$T/store" "$NA" 60
note "stream A: $NA records consumed"

# 1. broker 2 down while stream B is produced; up again after 4 s
cluster_cmd "down 2"
"$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/b.pb" --summary "$T/produce-b.json" >"$T/produce-b.log" 2>&1 &
PROD=$!
PIDS+=("$PROD")
sleep $((4 * SLOW))
alive "with broker 2 down"
note "broker 2 down for 4 s: $(($(consumed "$T/store") - NA)) records of stream B consumed meanwhile"
cluster_cmd "up 2"
wait "$PROD" || fail "mtld-produce of stream B failed"
NB=$(produced_count "$T/produce-b.json")
wait_consumed "$T/store" $((NA + NB)) 60
note "stream B: $NB records consumed after broker 2 came back"

# 2. every broker down
cluster_cmd "down-all"
wait_log "$LOG" 'status: brokers unreachable' 20
sleep 1.2 # the next metrics publication
alive "with every broker down"
scrape "$PORT" "$T/m-down"
[ "$(metric "$T/m-down" mtld_source_connected)" = 0 ] || fail "mtld_source_connected not 0 during the outage"
code=$(http "$PORT" GET /healthz "$T/h")
[ "$code" = 503 ] || fail "/healthz answered $code during the outage, want 503"
grep -q "unreachable" "$T/h" || fail "/healthz reason '$(cat "$T/h")' does not say brokers are unreachable"
sleep $((3 * SLOW))
alive "after some seconds with every broker down"
note "all brokers down: alive, STATUS/metrics/healthz say unreachable"
cluster_cmd "up-all"
NC=$(produce "$T/c.pb" events "$T/produce-c.log")
wait_consumed "$T/store" $((NA + NB + NC)) 60
note "stream C: $NC records consumed after the outage"

# connected and healthy again (the flag is set by the next successful fetch)
for _ in $(seq 1 $((20 * SLOW))); do
  scrape "$PORT" "$T/m-up"
  [ "$(metric "$T/m-up" mtld_source_connected)" = 1 ] && [ "$(http "$PORT" GET /healthz "$T/h")" = 200 ] && break
  sleep 0.5
done
[ "$(metric "$T/m-up" mtld_source_connected)" = 1 ] || fail "mtld_source_connected not back to 1"
[ "$(http "$PORT" GET /healthz "$T/h")" = 200 ] || fail "/healthz not back to 200"

stop_pid "$MTLD_PID" 30
"$REF" "$T/all.pb" "$T/store" || fail "features after the outages differ from the reference"
echo "1 passed, 0 failed"
