#!/usr/bin/env bash
# The restore shortcut on a real Kafka 2.4 broker (../shared/kafka-local;
# skipped when absent), README "Scale-out", daemon/changelog.h: a partition
# whose local state is the changelog's end (its mark is the changelog's last
# committed record) is kept on assignment, any other is dropped and restored.
#   1. instance a consumes the first half of a stream on 2 partitions and
#      stops; restarted (static membership: same assignment), it keeps both
#      partitions without a restore, its store unchanged;
#   2. a stops; b (another instance, its own store) takes both partitions
#      over and consumes the second half: it writes to both;
#   3. a restarts: its local marks are not the changelog's end any more, so
#      both partitions are restored, and its store ends equal to b's.
# A shortcut taken wrongly leaves a with the first half only (step 3 fails);
# a shortcut never taken fails step 1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
. "$(dirname "$0")/lib_kafka_local.sh"
kl_require

"$BUILD/mtld-gen" --seed 5 --users 200 --items 100 --impressions 2000 --days 1 \
  --out "$T/events.pb" 2>"$T/gen.log" || fail "mtld-gen failed"
N=$(grep -o '[0-9]* records' "$T/gen.log" | head -1 | cut -d' ' -f1)
[ "${N:-0}" -gt 0 ] || fail "mtld-gen wrote no records"
H=$(((N + 1) / 2))

kl_start
kl_topics events:2 cl:2:cleanup.policy=compact cl.group:1:cleanup.policy=compact
half() {
  "$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/events.pb" \
    --skip $((($1 - 1) * H)) --limit "$H" >>"$T/produce.log" 2>&1 || fail "mtld-produce half $1"
}
conf() { # NAME
  kl_write_config "$T/$1.conf" "$T/$1.store" events "
scaleout = { changelog_topic = \"cl\"; };
trainer = { enabled = false; };"
  sed -i "s/group_id = \"mtld-test\";/group_id = \"g\"; group_instance_id = \"$1\";/" "$T/$1.conf"
}
users() { # STORE OUT
  "$BUILD/mtld-inspect" --store "$1" --dump | grep -E '^(user|offset) ' >"$2" || fail "inspect $1"
  [ -s "$2" ] || fail "no users in $1"
}
conf a
conf b

# ---- 1. a restart keeps its partitions --------------------------------------
half 1
start_mtld "$T/a.conf" "$T/a1.log"
A=$MTLD_PID
wait_consumed "$T/a.store" "$H" 60
stop_pid "$A" 30
users "$T/a.store" "$T/a1.users"
start_mtld "$T/a.conf" "$T/a2.log"
A=$MTLD_PID
wait_log "$T/a2.log" 'scale-out: events\[[01]\] kept without a restore' 40 2
stop_pid "$A" 30
grep -q 'scale-out: events\[[01]\] restored' "$T/a2.log" &&
  fail "the restarted instance restored a partition it held: $(grep 'restored' "$T/a2.log" | head -1)"
users "$T/a.store" "$T/a2.users"
cmp -s "$T/a1.users" "$T/a2.users" || fail "the restart changed the kept store"
note "restart: $(grep -o 'events\[[01]\] kept without a restore: .*checked in [0-9.]* s' "$T/a2.log" | head -2 | tr '\n' ' ')"

# ---- 2. another instance writes to both partitions --------------------------
half 2
start_mtld "$T/b.conf" "$T/b.log" # gets both once a's static membership expires
B=$MTLD_PID
wait_consumed "$T/b.store" "$N" 60
stop_pid "$B" 30
users "$T/b.store" "$T/b.users"

# ---- 3. a comes back: the changelog moved on, both restored ------------------
start_mtld "$T/a.conf" "$T/a3.log"
A=$MTLD_PID
wait_log "$T/a3.log" 'scale-out: events\[0\] restored' 60
wait_log "$T/a3.log" 'scale-out: events\[1\] restored' 60
stop_pid "$A" 30
grep -q 'held locally but restored: the changelog moved on' "$T/a3.log" ||
  fail "a did not say why it restored a partition it held"
users "$T/a.store" "$T/a3.users"
cmp -s "$T/b.users" "$T/a3.users" ||
  { diff "$T/b.users" "$T/a3.users" | head -5; fail "a's store after the takeover differs from b's"; }
note "takeover: $(grep -o 'events\[[01]\] held locally but restored: [^)]*)' "$T/a3.log" | head -1)"
note "ok: $N records, $(wc -l <"$T/a3.users") user and offset lines equal"
