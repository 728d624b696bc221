#!/usr/bin/env bash
# Exactly-once state: kill -9 the daemon at 5 random points while it consumes
# from the mock cluster (3 brokers, 8 partitions), restarting it each time;
# then a second consumer (a second mtld with its own store) joins the group,
# takes partitions while more events arrive, and leaves.  The first daemon's
# final features equal the independent reference: nothing lost, nothing
# counted twice (it resumes from the offsets stored with its state, not from
# the group's committed ones).  Kill times come from $RANDOM seeded per run
# (printed; set MTLD_TEST_SEED to repeat a run).
. "$(dirname "$0")/lib.sh"

SEED=${MTLD_TEST_SEED:-$$}
RANDOM=$SEED
note "kill points seeded with $SEED"
"$BUILD/mtld-gen" --seed 11 --users 800 --items 400 --impressions 120000 --days 1 \
  --out "$T/part1.pb" 2>"$T/gen.log"
"$BUILD/mtld-gen" --seed 12 --users 800 --items 400 --impressions 6000 --days 1 \
  --start-ms 2024-01-03T00:00:00Z --out "$T/part2.pb" 2>>"$T/gen.log"
cat "$T/part1.pb" "$T/part2.pb" >"$T/all.pb"
start_cluster 3 events:8
"$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/part1.pb" --summary "$T/produce.json" >"$T/produce.log" 2>&1
N1=$(produced_count "$T/produce.json")
note "produced $N1 records"

# small batches, fsync on: kills land between and inside many commits
write_config "$T/a.conf" "$T/store-a" events
sed -i 's/group_id = "mtld-test";/group_id = "mtld-test"; group_instance_id = "mtld-a";/; s/batch_max_events = 500/batch_max_events = 31/' "$T/a.conf"
# A restart restores the newest checkpoint (the model lives there) and
# replays from it: checkpoint every second so each restart keeps progress.
sed -i "s#^checkpoint = .*#checkpoint = { dir = \"$T/store-a.ckpt\"; interval = \"1s\"; };#" "$T/a.conf"

kills=0
last=0
for i in $(seq 1 12); do
  start_mtld "$T/a.conf" "$T/a.log"
  # wait for progress past the last kill, then kill -9 at a random moment
  for _ in $(seq 1 $((600 * SLOW))); do
    [ "$(consumed "$T/store-a")" -gt "$last" ] && break
    sleep 0.05
  done
  sleep "0.$((RANDOM % 2))$((RANDOM % 10))"
  kill -KILL "$MTLD_PID"; wait "$MTLD_PID" 2>/dev/null || true
  c=$(consumed "$T/store-a")
  [ "$c" -lt "$N1" ] || break # it had finished: not a kill mid-stream
  kills=$((kills + 1))
  note "kill -9 #$kills at $c of $N1 committed records"
  last=$c
  [ $kills -ge 5 ] && break
done
[ "$kills" -ge 5 ] || fail "only $kills kills landed mid-stream"

# rebalance: B joins while A runs, more events arrive, B leaves
write_config "$T/b.conf" "$T/store-b" events
sed -i 's/group_id = "mtld-test";/group_id = "mtld-test"; group_instance_id = "mtld-b";/' "$T/b.conf"
start_mtld "$T/a.conf" "$T/a.log"; A=$MTLD_PID
wait_consumed "$T/store-a" "$N1" 180
start_mtld "$T/b.conf" "$T/b.log"; B=$MTLD_PID
for _ in $(seq 1 $((200 * SLOW))); do grep -q "assigned" "$T/b.log" && break; sleep 0.1; done
grep -q "assigned" "$T/b.log" || fail "second consumer got no partitions"
sleep 1
"$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/part2.pb" --summary "$T/produce.json" >>"$T/produce.log" 2>&1
N2=$(produced_count "$T/produce.json")
sleep $((2 * SLOW))
stop_pid "$B" 30
nb=$(consumed "$T/store-b")
note "second consumer held partitions and committed $nb records, then left"
[ "$nb" -gt 0 ] || fail "second consumer consumed nothing: no rebalance was exercised"
wait_consumed "$T/store-a" $((N1 + N2)) 180
stop_pid "$A" 30

"$HELPERS/ref_features" "$T/all.pb" "$T/store-a" ||
  fail "features after $kills kills and a rebalance differ from the reference"
echo "1 passed, 0 failed"
