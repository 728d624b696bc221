#!/usr/bin/env bash
# Exactly-once state: kill -9 the daemon at 6 random points while it consumes
# from the mock cluster, restart it each time; then a second consumer (a
# second mtld with its own store) joins the group and leaves.  The final
# features equal the independent reference: nothing lost, nothing counted
# twice.  The random points come from $RANDOM seeded per run and are printed.
. "$(dirname "$0")/lib.sh"

SEED=${MTLD_TEST_SEED:-$$}
RANDOM=$SEED
note "kill points seeded with $SEED"
"$BUILD/mtld-gen" --seed 11 --users 400 --items 300 --impressions 12000 --days 1 \
  --out "$T/events.pb" 2>"$T/gen.log"
start_cluster 3 events:8
"$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/events.pb" >"$T/produce.log" 2>&1
N=$(grep -E '^produced' "$T/produce.log" | awk '{print $2}')
note "produced $N records"

# small batches so kills land between and inside many commits
EXTRA='kafka_group_instance = "a";'
write_config "$T/a.conf" "$T/store-a" events
sed -i 's/group_id = "mtld-test";/group_id = "mtld-test"; group_instance_id = "mtld-a";/; s/batch_max_events = 500/batch_max_events = 97/' "$T/a.conf"

kills=0
for i in 1 2 3 4 5 6; do
  start_mtld "$T/a.conf" "$T/a.log"
  # let it consume a random share, then kill -9 mid-stream
  target=$(( N * i / 8 + RANDOM % (N / 16) ))
  for _ in $(seq 1 $((300 * SLOW))); do
    [ "$(consumed "$T/store-a")" -ge "$target" ] && break
    sleep 0.1
  done
  sleep "0.$((RANDOM % 10))"
  kill -KILL "$MTLD_PID"; wait "$MTLD_PID" 2>/dev/null || true
  kills=$((kills + 1))
  note "kill -9 #$kills after $(consumed "$T/store-a") committed records"
done
[ "$kills" -ge 5 ] || fail "only $kills kills"

# rebalance: B joins (takes some partitions), then leaves; A finishes alone
write_config "$T/b.conf" "$T/store-b" events
sed -i 's/group_id = "mtld-test";/group_id = "mtld-test"; group_instance_id = "mtld-b";/' "$T/b.conf"
start_mtld "$T/a.conf" "$T/a.log"; A=$MTLD_PID
start_mtld "$T/b.conf" "$T/b.log"; B=$MTLD_PID
sleep $((4 * SLOW))
stop_pid "$B" 30
note "second consumer stopped after $(consumed "$T/store-b") records"
wait_consumed "$T/store-a" "$N" 90
stop_pid "$A" 30
grep -q "assigned" "$T/a.log" || fail "no assignment logged"

"$BUILD/ref_features" "$T/events.pb" "$T/store-a" || fail "features after $kills kills and a rebalance differ from the reference"
echo "1 passed, 0 failed"
