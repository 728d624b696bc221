#!/usr/bin/env bash
# bench_restore.sh BUILD [USERS] [IMPRESSIONS] - scale-out restore rate on the
# real Kafka 2.4 broker (../shared/kafka-local): one scale-out instance
# consumes a generated stream on ONE partition (so the changelog partition
# holds every user), then a second instance with an empty store restores that
# partition; prints the changelog size and the restore's records/s and time
# (the daemon's own "restored: N changelog records in S s" line).
set -euo pipefail
BUILD=$(cd "${1:?usage: bench_restore.sh BUILD [USERS] [IMPRESSIONS]}" && pwd)
USERS=${2:-100000}
IMPRESSIONS=${3:-300000}
SRC=$(cd "$(dirname "$0")/.." && pwd)
KL=$SRC/../shared/kafka-local/kafka-local
[ -x "$KL" ] || { echo "no kafka-local at $KL"; exit 77; }
T=$(mktemp -d /tmp/mtld-bench-restore.XXXXXX)
trap '"$KL" stop "$T/k" >/dev/null 2>&1 || true; rm -rf "$T"' EXIT
B=$("$KL" start "$T/k" | tail -1)
"$KL" topic "$T/k" events 1 >/dev/null
"$KL" topic "$T/k" cl 1 cleanup.policy=compact >/dev/null
"$KL" topic "$T/k" cl.group 1 cleanup.policy=compact >/dev/null
echo "\$ mtld-gen --users $USERS --impressions $IMPRESSIONS --days 1"
"$BUILD/mtld-gen" --seed 3 --users "$USERS" --items 5000 --impressions "$IMPRESSIONS" --days 1 \
  --out "$T/events.pb" --quiet
"$BUILD/mtld-produce" --bootstrap "$B" --topic events --in "$T/events.pb" >/dev/null
conf() {
  cat >"$T/$1.conf" <<CONF
source = { type = "kafka"; topics = ["events"]; };
kafka = { bootstrap_servers = "$B"; group_id = "g"; group_instance_id = "$1";
          session_timeout_ms = "6000"; auto_offset_reset = "earliest"; };
store = { path = "$T/$1.store"; sync = false; };
checkpoint = { dir = "$T/$1.ckpt"; };
snapshot = { dir = "$T/$1.snap"; };
scaleout = { changelog_topic = "cl"; };
trainer = { enabled = false; };
metrics = { enabled = false; };
status_interval = "5s";
CONF
}
conf a
conf b
"$BUILD/mtld" -c "$T/a.conf" >"$T/a.log" 2>&1 &
A=$!
t0=$(date +%s)
for _ in $(seq 1 600); do grep -q ' 0 rec/s, [1-9]' "$T/a.log" && break; sleep 2; done # all consumed
kill -TERM $A
wait $A || true
echo "consumed in about $(($(date +%s) - t0)) s: $(grep -o 'stopped: [0-9]* records' "$T/a.log")"
sleep 7 # a's static membership expires
"$BUILD/mtld" -c "$T/b.conf" >"$T/b.log" 2>&1 &
Bp=$!
for _ in $(seq 1 600); do grep -q 'scale-out: events\[0\] restored' "$T/b.log" && break; sleep 1; done
kill -TERM $Bp
wait $Bp || true
grep -o 'scale-out: events\[0\] restored.*' "$T/b.log"
echo "users in the restored store: $("$BUILD/mtld-inspect" --store "$T/b.store" --dump | grep -c '^user ')"
