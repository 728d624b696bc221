#!/usr/bin/env bash
# What the daemon says when its config cannot learn from the stream, and how
# a finite topic finishes (README, "Your own data"):
# 1. A click-only stream with the default joiner.mode = "impressions": a
#    warning naming joiner.mode = "sampled_negatives" in the log at once, and
#    "NO SAMPLES" in the STATUS line after joiner.warn_no_samples_after
#    events; with "sampled_negatives" neither, and samples are trained.
# 2. joiner.idle_release over the mock cluster: a finite topic with a 1-day
#    conversion window keeps its impressions pending for ever without the
#    key (the watermark never passes their deadlines); with
#    joiner.idle_release = "2s" they are all released once no record has
#    arrived for 2 s, and the released samples are those a file replay of the
#    same stream trains on (the stream really ended: byte-identical dumps;
#    wall clock decided when, not what).
. "$(dirname "$0")/lib.sh"
. "$SRC/tests/integration/lib_ops.sh"

# events: one partition, so that a file replay numbers partitions and offsets
# as the topic does (samples are then comparable byte for byte)
start_cluster 1 clicks:2 events:1

# --- 1. click-only stream -----------------------------------------------------
# 1500 clicks of 300 users on 50 items, one a minute
awk 'BEGIN { for (i = 0; i < 1500; i++) printf "%d,%d,%d\n", i % 300 + 1, (i * 7) % 50 + 1, 1700000000 + 60 * i }' \
  >"$T/clicks.csv"
"$BUILD/mtld-produce" --csv "$T/clicks.csv" --layout generic \
  --map 'user=1,item=2,type=const:CLICK,time=3' --bootstrap "$BOOTSTRAP" --topic clicks \
  --summary "$T/produce-clicks.json" >"$T/produce-clicks.log" 2>&1 || fail "mtld-produce clicks"
N=$(produced_count "$T/produce-clicks.json")
[ "$N" -eq 1500 ] || fail "produced $N of 1500 clicks"

write_config "$T/imp.conf" "$T/imp.store" clicks 'joiner = { warn_no_samples_after = 500; };'
start_mtld "$T/imp.conf" "$T/imp.log"
wait_consumed "$T/imp.store" "$N" 60
wait_log "$T/imp.log" 'status: NO SAMPLES after [0-9]+ events .*joiner.mode = "impressions"' 15
stop_pid "$MTLD_PID" 30
grep -q 'WARNING this config cannot learn from this stream: the stream has no IMPRESSION events.*joiner.mode = "sampled_negatives"' \
  "$T/imp.log" || fail "no start warning naming joiner.mode = \"sampled_negatives\""
grep -q 'WARNING no samples released after [0-9]* events and none pending' "$T/imp.log" ||
  fail "no warning about 0 samples"
grep -q 'stopped: .* 0 samples, .*(no samples: see the warning above)' "$T/imp.log" ||
  fail "the stopped line does not point at the warning"
note "click-only, impressions mode: warned"

write_config "$T/neg.conf" "$T/neg.store" clicks \
  'joiner = { mode = "sampled_negatives"; };'
sed -i 's/group_id = "mtld-test"/group_id = "mtld-neg"/' "$T/neg.conf"
start_mtld "$T/neg.conf" "$T/neg.log"
wait_consumed "$T/neg.store" "$N" 60
sleep 2
stop_pid "$MTLD_PID" 30
if grep -qE 'cannot learn|NO SAMPLES|no samples released' "$T/neg.log"; then
  fail "sampled_negatives on a click-only stream was warned about"
fi
grep -qE 'stopped: .* [1-9][0-9]* samples' "$T/neg.log" || fail "sampled_negatives trained nothing"
note "click-only, sampled_negatives: no warning, samples trained"

# --- 2. idle release ----------------------------------------------------------
"$BUILD/mtld-gen" --seed 5 --users 200 --items 100 --impressions 1500 --days 1 \
  --out "$T/events.pb" 2>"$T/gen.log" || fail "mtld-gen"
"$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/events.pb" \
  --summary "$T/produce-events.json" >"$T/produce-events.log" 2>&1 || fail "mtld-produce events"
NE=$(produced_count "$T/produce-events.json")
JOIN='conversion_window = "1d"; click_window = "30m";'
TRAIN='trainer = { report_interval = "0s"; dump_samples = "@DUMP@"; };'

# without the key: everything stays pending
write_config "$T/keep.conf" "$T/keep.store" events "joiner = { $JOIN };"
sed -i 's/group_id = "mtld-test"/group_id = "mtld-keep"/' "$T/keep.conf"
start_mtld "$T/keep.conf" "$T/keep.log"
PORT=$(metrics_port "$T/keep.log")
wait_consumed "$T/keep.store" "$NE" 60
sleep 4 # twice the idle time of the run below
scrape "$PORT" "$T/keep.prom"
KEEP=$(metric "$T/keep.prom" mtld_joiner_pending)
stop_pid "$MTLD_PID" 30
[ "${KEEP%.*}" -gt 0 ] || fail "without joiner.idle_release: $KEEP pending (expected > 0)"
grep -q 'idle release' "$T/keep.log" && fail "idle release without the key"
note "without idle_release: $KEEP samples pending after the topic ended"

# with joiner.idle_release = "2s": released, the same samples as a file replay
write_config "$T/idle.conf" "$T/idle.store" events \
  "joiner = { $JOIN idle_release = \"2s\"; }; ${TRAIN//@DUMP@/$T/idle.samples}"
sed -i 's/group_id = "mtld-test"/group_id = "mtld-idle"/' "$T/idle.conf"
start_mtld "$T/idle.conf" "$T/idle.log"
PORT=$(metrics_port "$T/idle.log")
wait_consumed "$T/idle.store" "$NE" 60
wait_log "$T/idle.log" 'idle release: no record for 2000 ms' 30
sleep 1
scrape "$PORT" "$T/idle.prom"
PENDING=$(metric "$T/idle.prom" mtld_joiner_pending)
stop_pid "$MTLD_PID" 30
[ "${PENDING%.*}" -eq 0 ] || fail "with joiner.idle_release: $PENDING still pending"

cat >"$T/file.conf" <<CONF
source = { type = "file"; file = "$T/events.pb"; };
store = { path = "$T/file.store"; sync = false; };
metrics = { enabled = false; };
joiner = { $JOIN };
${TRAIN//@DUMP@/$T/file.samples}
CONF
"$BUILD/mtld" -c "$T/file.conf" >"$T/file.log" 2>&1 || fail "file replay"
SAMPLES=$(sed -n 's/.* stopped: .* \([0-9][0-9]*\) samples, .*/\1/p' "$T/idle.log")
[ "${SAMPLES:-0}" -ge "${KEEP%.*}" ] || fail "idle release trained ${SAMPLES:-0} samples, $KEEP were pending"
cmp -s "$T/idle.samples" "$T/file.samples" ||
  fail "idle-released samples differ from a file replay's ($(stat -c %s "$T/idle.samples") vs $(stat -c %s "$T/file.samples") bytes)"
note "idle_release 2s: $SAMPLES samples ($KEEP were pending); byte-identical to a file replay"
echo "ok"
