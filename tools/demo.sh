#!/usr/bin/env bash
# make demo: a generated e-commerce stream -> librdkafka's mock Kafka cluster
# (3 brokers on loopback) -> mtld -> a summary of what it did.
# usage: tools/demo.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /tmp/mtld-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
USERS=${DEMO_USERS:-2000}
ITEMS=${DEMO_ITEMS:-1000}
IMPRESSIONS=${DEMO_IMPRESSIONS:-60000}

echo "== 1. generating a synthetic stream (seed 42, $USERS users, $ITEMS items, $IMPRESSIONS impressions, a few malformed records)"
"$BUILD/mtld-gen" --seed 42 --users "$USERS" --items "$ITEMS" --impressions "$IMPRESSIONS" \
  --days 2 --bad-every 500 --out "$D/events.pb" --truth "$D/truth.csv" 2>"$D/gen.log"
sed 's/^/   /' "$D/gen.log"

echo "== 2. starting the mock Kafka cluster (3 brokers, topic events with 8 partitions)"
"$BUILD/mtld-mockcluster" --brokers 3 --topic events:8 --topic events-dlq:1 \
  --bootstrap-file "$D/bootstrap" >"$D/cluster.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$D/bootstrap" ] && break; sleep 0.1; done
BOOTSTRAP=$(cat "$D/bootstrap")
echo "   bootstrap: $BOOTSTRAP"

echo "== 3. producing the stream, keyed by user"
"$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$D/events.pb" 2>&1 | sed 's/^/   /' | tee "$D/produce.log"
N=$(sed -n "s/.* \([0-9][0-9]*\) delivered to .*/\1/p" "$D/produce.log" | tail -1)

echo "== 4. running mtld on it"
sed -e "s#@BOOTSTRAP@#$BOOTSTRAP#g" -e "s#@STATE@#$D#g" "$SRC/conf/demo.conf" >"$D/mtld.conf"
"$BUILD/mtld" -c "$D/mtld.conf" >"$D/mtld.log" 2>&1 &
MTLD=$!
PIDS+=($MTLD)
start=$(date +%s.%N)
while :; do
  c=$("$BUILD/mtld-inspect" --store "$D/store" --offsets 2>/dev/null | awk '{s += $3} END {print s + 0}')
  [ "$c" -ge "$N" ] && break
  kill -0 "$MTLD" 2>/dev/null || { echo "mtld exited early:"; tail "$D/mtld.log"; exit 1; }
  sleep 0.5
done
PORT=$(sed -n 's#.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*#\1#p' "$D/mtld.log" | head -1)
sleep 1.2
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
cat <&3 >"$D/metrics.txt"
exec 3<&-
end=$(date +%s.%N)
kill -TERM "$MTLD"
wait "$MTLD" || true
echo "   consumed $N records in $(echo "$end - $start" | bc 2>/dev/null || echo "?") s (wall clock, incl. start-up)"

echo "== 5. summary"
echo "-- events applied, by type and scenario"
grep '^mtld_events_total{' "$D/metrics.txt" |
  sed 's/mtld_events_total{type="\([A-Z_]*\)",scenario="\([^"]*\)"} \([0-9]*\)/\2 \1 \3/' |
  awk '{a[$1" "$2]=$3; s[$1]=1; t[$2]=1} END {
    printf "   %-14s", "scenario"; n=split("IMPRESSION CLICK ADD_TO_CART PURCHASE REVIEW", T, " ");
    for (i=1;i<=n;i++) printf " %12s", T[i]; printf "\n";
    for (x in s) { printf "   %-14s", x; for (i=1;i<=n;i++) printf " %12d", a[x" "T[i]]; printf "\n" } }'
echo "-- rejected records, by reason (all sent to topic events-dlq)"
grep '^mtld_events_rejected_total{' "$D/metrics.txt" | awk '$2 > 0' |
  sed 's/mtld_events_rejected_total{reason="\([a-z_]*\)"} /   \1: /'
U=$(awk -F, 'NR > 1 && $2 == "impression" {print $1; exit}' "$D/truth.csv")
echo "-- one user's features (the user of the first impression)"
"$BUILD/mtld-inspect" --store "$D/store" --user-of-event "$U" 2>/dev/null | sed 's/^/   /' ||
  "$BUILD/mtld-inspect" --store "$D/store" --user 1 | sed 's/^/   /'
echo "-- files in $D (removed by: rm -rf $D)"
