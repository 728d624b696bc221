#!/usr/bin/env bash
# bench_restore.sh BUILD [USERS] [IMPRESSIONS] - scale-out restore rate on the
# real Kafka 2.4 broker (../shared/kafka-local): one scale-out instance
# consumes a generated stream on ONE partition (so the changelog partition
# holds every user), then a second instance with an empty store restores that
# partition; prints the changelog size and the restore's records/s and time
# (the daemon's own "restored: N changelog records in S s" line).
# With kcat on the PATH it also prints the changelog's records and bytes per
# kind (users, (partition, item) views, pending samples, seen ids, meta), as
# written and as compaction keeps them (the latest record per key).
# COMPACT=1: the changelog gets small segments and an eager cleaner
# (segment.bytes=4 MiB, min.cleanable.dirty.ratio=0.01), and the restore
# starts only once the broker compacted it (the restore of a compacted
# partition: what a takeover costs in steady state).
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
if [ "${COMPACT:-0}" = 1 ]; then
  "$KL" topic "$T/k" cl 1 cleanup.policy=compact segment.bytes=4194304 \
    min.cleanable.dirty.ratio=0.01 delete.retention.ms=1000 >/dev/null
else
  "$KL" topic "$T/k" cl 1 cleanup.policy=compact >/dev/null
fi
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
logbytes() { cat "$T/k/kafka-logs/cl-0/"*.log | wc -c; }
before=$(logbytes)
echo "changelog on disk: $before bytes (segment files)"
if command -v kcat >/dev/null; then
  # records and key+value bytes per kind, written and kept by compaction
  kcat -C -b "$B" -t cl -p 0 -o beginning -e -q -X isolation.level=read_committed \
    -f '%K %S %k\n' 2>/dev/null | python3 -c '
import sys
data = sys.stdin.buffer.read()
i, n = 0, len(data)
kinds = ["user", "item", "pending", "meta", "itempart", "seen"]
written, latest = {}, {}
while i < n:
    sp1 = data.index(b" ", i); klen = int(data[i:sp1])
    sp2 = data.index(b" ", sp1 + 1); vlen = int(data[sp1 + 1:sp2])
    key = data[sp2 + 1:sp2 + 1 + max(klen, 0)]
    i = sp2 + 1 + max(klen, 0) + 1
    cf = kinds[key[0]] if key and key[0] < len(kinds) else "?"
    if cf == "meta":
        cf = "meta:" + key[1:].split(b"/")[0].decode("ascii", "replace")
    w = written.setdefault(cf, [0, 0]); w[0] += 1; w[1] += klen + max(vlen, 0)
    latest[key] = (cf, klen, vlen)
kept = {}
for cf, klen, vlen in latest.values():
    if vlen < 0:  # a tombstone (kcat: -1): gone once compacted
        continue
    k = kept.setdefault(cf, [0, 0]); k[0] += 1; k[1] += klen + vlen
tw = sum(v[0] for v in written.values()); tk = sum(v[0] for v in kept.values())
print("changelog records written %d (%d bytes), kept by compaction %d (%d bytes)" % (
    tw, sum(v[1] for v in written.values()), tk, sum(v[1] for v in kept.values())))
for cf in sorted(written):
    w = written[cf]; k = kept.get(cf, [0, 0])
    print("  %-14s written %9d rec %11d B | kept %9d rec %11d B, %6.1f B/rec" % (
        cf, w[0], w[1], k[0], k[1], k[1] / k[0] if k[0] else 0))
'
fi
if [ "${COMPACT:-0}" = 1 ]; then
  # the cleaner compacts the closed segments (log.cleaner.backoff.ms 15 s)
  for _ in $(seq 1 60); do
    [ "$(logbytes)" -lt "$before" ] && break
    sleep 3
  done
  sleep 5
  echo "changelog on disk after compaction: $(logbytes) bytes (segment files)"
fi
sleep 7 # a's static membership expires
"$BUILD/mtld" -c "$T/b.conf" >"$T/b.log" 2>&1 &
Bp=$!
for _ in $(seq 1 600); do grep -q 'scale-out: events\[0\] restored' "$T/b.log" && break; sleep 1; done
kill -TERM $Bp
wait $Bp || true
grep -o 'scale-out: events\[0\] restored.*' "$T/b.log"
echo "users in the restored store: $("$BUILD/mtld-inspect" --store "$T/b.store" --dump | grep -c '^user ')"
