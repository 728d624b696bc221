#!/usr/bin/env bash
# Crash recovery: kill -9 the daemon at 10 random points while it consumes a
# single-partition topic from the mock cluster (checkpoints every 2000
# samples and every second), restart it each time.  It restores the newest
# complete checkpoint (store, joiner, model, metrics) and replays from its
# offsets.  The end state must equal an uninterrupted run's: features
# byte-identical (store dump), final weights bit-identical (serving
# snapshot), progressive metrics equal.  Kill times: $RANDOM seeded per run
# (printed; MTLD_TEST_SEED repeats a run).
. "$(dirname "$0")/lib.sh"

SEED=${MTLD_TEST_SEED:-$$}
RANDOM=$SEED
note "kill points seeded with $SEED"
"$BUILD/mtld-gen" --seed 31 --users 300 --items 200 --impressions 70000 --days 1 \
  --out "$T/events.pb" 2>"$T/gen.log"
start_cluster 1 events:1
"$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/events.pb" --summary "$T/produce.json" >"$T/produce.log" 2>&1
N=$(produced_count "$T/produce.json")
note "produced $N records"

EXTRA='joiner = { conversion_window = "2h"; };
trainer = { report_interval = "0s"; };'
conf() { # conf NAME
  write_config "$T/$1.conf" "$T/$1.store" events "$EXTRA"
  sed -i "s/group_id = \"mtld-test\";/group_id = \"mtld-$1\"; group_instance_id = \"mtld-$1\";/; s/batch_max_events = 500/batch_max_events = 97/" "$T/$1.conf"
  sed -i "s#^checkpoint = .*#checkpoint = { dir = \"$T/$1.store.ckpt\"; interval = \"1s\"; every_samples = 2000; keep = 2; };#" "$T/$1.conf"
}

# the uninterrupted reference run
conf ref
start_mtld "$T/ref.conf" "$T/ref.log"
wait_consumed "$T/ref.store" "$N" 90
stop_pid "$MTLD_PID" 30

# the crashing run
conf crash
kill_mid_stream crash 30 10
kills=$KILLS
grep -q "restored checkpoint" "$T/crash.log" || fail "no checkpoint was ever restored"
note "$(grep -c 'store was replaced' "$T/crash.log") restores replaced the store and replayed"
start_mtld "$T/crash.conf" "$T/crash.log"
wait_consumed "$T/crash.store" "$N" 90
stop_pid "$MTLD_PID" 30

same_run ref crash "the uninterrupted run"
grep -o 'pv task=.*' "$T/ref.log" | tail -12 >"$T/ref.pv"
grep -o 'pv task=.*' "$T/crash.log" | tail -12 >"$T/crash.pv"
[ -s "$T/ref.pv" ] || fail "no progressive metrics logged"
diff "$T/ref.pv" "$T/crash.pv" || fail "progressive metrics differ from the uninterrupted run"
note "after $kills kills: features byte-identical, $(wc -c <"$T/ref.w") bytes of weights bit-identical, metrics equal"
echo "1 passed, 0 failed"
