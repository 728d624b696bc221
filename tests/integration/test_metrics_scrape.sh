#!/usr/bin/env bash
# Scrapes /metrics while the daemon consumes a stream with bad records from a
# 4-partition topic: the expected families are there with values that match
# the stream (events by type and scenario, rejections by reason, consumer lag
# per partition, store size and write time, RSS, watermark); the text passes
# `promtool check metrics` (when installed) and a format check of our own
# (which must also reject a broken copy); /healthz answers 200, other paths
# 404, other methods 405.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"

# validate FILE : Prometheus text format 0.0.4 as mtld writes it: sample
# syntax (name, labels with escapes, value), TYPE before samples and at most
# once, every sample in a declared family (summary/histogram suffixes
# allowed), families contiguous, no duplicate series, counters >= 0.
validate() {
  awk '
    function bad(msg) { printf "line %d: %s: %s\n", NR, msg, $0; errors++ }
    function switch_to(f) {
      if (f == cur) return
      if (f in done) bad("family " f " is not contiguous")
      if (cur != "") done[cur] = 1
      cur = f
    }
    /^$/ { next }
    /^# HELP / {
      if (!match($3, /^[a-zA-Z_:][a-zA-Z0-9_:]*$/)) bad("bad HELP name")
      if ($3 in help) bad("second HELP for " $3)
      help[$3] = 1; switch_to($3); next
    }
    /^# TYPE / {
      if (NF != 4 || $4 !~ /^(counter|gauge|summary|histogram|untyped)$/) bad("bad TYPE line")
      if ($3 in type) bad("second TYPE for " $3)
      if ($3 in sampled) bad("TYPE after samples of " $3)
      type[$3] = $4; switch_to($3); next
    }
    /^#/ { next }
    {
      line = $0
      if (!match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*/)) { bad("bad metric name"); next }
      name = substr(line, 1, RLENGTH); rest = substr(line, RLENGTH + 1); labels = ""
      if (substr(rest, 1, 1) == "{") {
        if (!match(rest, /^\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*,?)?\}/)) {
          bad("bad label set"); next
        }
        labels = substr(rest, 1, RLENGTH); rest = substr(rest, RLENGTH + 1)
      }
      if (rest !~ /^ [^ ]+( -?[0-9]+)?$/) { bad("bad value/timestamp part"); next }
      split(substr(rest, 2), parts, " "); v = parts[1]
      if (v !~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ && v !~ /^(NaN|\+Inf|-Inf)$/)
        bad("bad value " v)
      fam = name
      if (!(fam in type)) {
        base = name; sub(/_(sum|count|bucket)$/, "", base)
        if (base in type && (type[base] == "summary" || type[base] == "histogram")) fam = base
        else { bad("sample without a TYPE"); next }
      }
      switch_to(fam); sampled[fam] = 1
      if ((name labels) in series) bad("duplicate series")
      series[name labels] = 1
      if (type[fam] == "counter" && v ~ /^-/) bad("negative counter")
      n++
    }
    END {
      if (n == 0) { print "no samples"; exit 1 }
      if (errors) exit 1
      printf "%d samples in %d families: format ok\n", n, length(type)
    }' "$1"
}

"$BUILD/mtld-gen" --seed 13 --users 300 --items 200 --impressions 2500 --days 1 --bad-every 40 \
  --out "$T/events.pb" --truth "$T/truth.csv" 2>"$T/gen.log"
BAD=$(awk -F, '$2 == "bad"' "$T/truth.csv" | wc -l)
start_cluster 1 events:4
N=$(produce "$T/events.pb" events "$T/produce.log")
GOOD=$((N - BAD))
note "produced $N records, $BAD bad"

write_config "$T/mtld.conf" "$T/store" events
start_mtld "$T/mtld.conf" "$T/mtld.log"
PORT=$(metrics_port "$T/mtld.log")
wait_consumed "$T/store" "$N" 60

# scrape until the published text has caught up with the store (once a second)
M=$T/metrics.txt
for _ in $(seq 1 $((10 * SLOW))); do
  scrape "$PORT" "$M"
  [ "$(metric "$M" mtld_records_total)" = "$N" ] &&
    [ "$(awk '/^mtld_consumer_lag\{/ {s += $2} END {print s + 0}' "$M")" = 0 ] && break
  sleep 0.5
done

# the families and their values
[ "$(metric "$M" mtld_records_total)" = "$N" ] || fail "mtld_records_total $(metric "$M" mtld_records_total), want $N"
ev=$(awk '/^mtld_events_total\{/ {s += $2} END {print s + 0}' "$M")
[ "$ev" = "$GOOD" ] || fail "mtld_events_total sums to $ev, want $GOOD"
types=$(sed -n 's/^mtld_events_total{type="\([A-Z_]*\)",scenario="[^"]*"}.*/\1/p' "$M" | sort -u | tr '\n' ' ')
[ "$types" = "ADD_TO_CART CLICK IMPRESSION PURCHASE REVIEW " ] || fail "event types in metrics: $types"
scen=$(sed -n 's/^mtld_events_total{type="[A-Z_]*",scenario="\([^"]*\)"}.*/\1/p' "$M" | sort -u | wc -l)
[ "$scen" -ge 2 ] || fail "only $scen scenario label(s) in mtld_events_total"
rej=$(awk '/^mtld_events_rejected_total\{reason="[a-z_]+"\}/ {s += $2} END {print s + 0}' "$M")
[ "$rej" = "$BAD" ] || fail "mtld_events_rejected_total sums to $rej, want $BAD"
for r in undecodable missing_id not_finite bad_rating negative_value too_large bad_time too_late; do
  [ -n "$(metric "$M" "mtld_events_rejected_total{reason=\"$r\"}")" ] || fail "no rejection series for reason $r"
done
for p in 0 1 2 3; do
  v=$(metric "$M" "mtld_consumer_lag{topic=\"events\",partition=\"$p\"}")
  [ "$v" = 0 ] || fail "consumer lag of events[$p] is '${v}', want 0 after consuming everything"
done
[ "$(metric "$M" mtld_source_connected)" = 1 ] || fail "mtld_source_connected is not 1"
awk '$1 == "mtld_store_size_bytes" && $2 > 0 {ok = 1} END {exit !ok}' "$M" || fail "mtld_store_size_bytes not > 0"
batches=$(metric "$M" mtld_store_batches_total)
[ "${batches:-0}" -ge 1 ] || fail "no batches committed"
[ "$(metric "$M" mtld_store_write_seconds_count)" = "$batches" ] || fail "write_seconds_count != batches"
awk '$1 == "mtld_store_write_seconds_sum" && $2 > 0 {ok = 1} END {exit !ok}' "$M" || fail "write_seconds_sum not > 0"
awk '$1 == "mtld_resident_memory_bytes" && $2 > 1e6 {ok = 1} END {exit !ok}' "$M" || fail "RSS not > 1 MB"
# the generated day is 2024-01-01 (1704067200) .. +1 day, plus conversion delays
awk '$1 == "mtld_watermark_seconds" && $2 > 1704067200 && $2 < 1704067200 + 3 * 86400 {ok = 1} END {exit !ok}' "$M" ||
  fail "mtld_watermark_seconds '$(metric "$M" mtld_watermark_seconds)' outside the stream's time range"
note "values match the stream: $GOOD events, $BAD rejected, 4 partitions at lag 0"

# format: ours always, promtool when installed
validate "$M" || fail "metrics text is not valid exposition format"
printf 'mtld_x_total 1\n# TYPE mtld_y gauge\nmtld_y{a="1} 2\n' >"$T/broken.txt"
if validate "$T/broken.txt" >/dev/null; then fail "the format check accepted a broken text"; fi
if command -v promtool >/dev/null 2>&1; then
  promtool check metrics <"$M" >"$T/promtool.log" 2>&1 || { cat "$T/promtool.log"; fail "promtool check metrics"; }
  note "promtool check metrics: ok"
else
  note "skipped promtool: not installed"
fi

# the other endpoints
[ "$(http "$PORT" GET /healthz "$T/h")" = 200 ] || fail "/healthz not 200"
[ "$(cat "$T/h")" = ok ] || fail "/healthz body '$(cat "$T/h")'"
[ "$(http "$PORT" GET /nope "$T/h")" = 404 ] || fail "/nope not 404"
[ "$(http "$PORT" POST /metrics "$T/h")" = 405 ] || fail "POST /metrics not 405"

stop_pid "$MTLD_PID" 30
echo "1 passed, 0 failed"
