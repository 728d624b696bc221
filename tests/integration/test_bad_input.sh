#!/usr/bin/env bash
# Malformed records (truncated protobuf, empty, garbage, NaN, bad rating,
# negative price, huge strings, missing ids) interleaved with good ones:
# every good one is applied (features equal the reference), every bad one is
# counted under its reason and is in the dead-letter topic with that reason.
. "$(dirname "$0")/lib.sh"

"$BUILD/mtld-gen" --seed 5 --users 200 --items 150 --impressions 3000 --days 1 --bad-every 37 \
  --out "$T/events.pb" --truth "$T/truth.csv" 2>"$T/gen.log"
start_cluster 1 events:4 dlq:2
"$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/events.pb" --summary "$T/produce.json" >"$T/produce.log" 2>&1
N=$(produced_count "$T/produce.json")
# expected rejections by reason, from the generator's truth file
awk -F, '$2 == "bad" {print $6}' "$T/truth.csv" | sort | uniq -c | awk '{print $2, $1}' >"$T/expected"
BAD=$(awk '{s += $2} END {print s}' "$T/expected")
[ "$BAD" -gt 20 ] || fail "generator wrote only $BAD bad records"
note "produced $N records, $BAD of them bad: $(tr '\n' ' ' <"$T/expected")"

write_config "$T/mtld.conf" "$T/store" events 'dead_letter = { topic = "dlq"; };'
start_mtld "$T/mtld.conf" "$T/mtld.log"
wait_consumed "$T/store" "$N" 60

# rejections by reason, from the metrics endpoint
PORT=$(sed -n 's#.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*#\1#p' "$T/mtld.log" | head -1)
[ -n "$PORT" ] || fail "metrics port not logged"
sleep 1.5
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
cat <&3 >"$T/metrics.txt"
exec 3<&-
grep 'mtld_events_rejected_total{' "$T/metrics.txt" |
  sed 's/.*reason="\([a-z_]*\)"} \([0-9]*\)/\1 \2/' | awk '$2 > 0' | sort >"$T/got"
diff -u "$T/expected" "$T/got" || fail "rejections by reason differ from the generator's"
stop_pid "$MTLD_PID" 30

dead_lettered_and_applied
note "$BAD bad records rejected by reason and dead-lettered; every good one applied"
echo "1 passed, 0 failed"
