#!/usr/bin/env bash
# Scale-out on a real Kafka 2.4 broker (../shared/kafka-local; skipped when
# absent), README "Scale-out": a generated stream on 8 partitions.
#   reference: ONE scale-out instance consumes it all (own group, own
#              changelog), then releases every pending sample (idle release);
#   the group: instance a starts, b joins mid-stream, a is killed -9 and
#              restarted (static membership), c joins, b leaves; then a
#              fresh "collector" instance with an empty store joins alone,
#              restores all 8 partitions from the changelog and releases
#              what is pending.
# The collector's per-user features are byte-identical to the reference's
# (and to a plain single-instance run: scale-out changes no feature), and
# every partition's ledger (samples released, positives per label), which
# moves with the partition, equals the reference's: no label lost or
# doubled whatever the instances did.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"
. "$(dirname "$0")/lib_kafka_local.sh"
kl_require

"$BUILD/mtld-gen" --seed 11 --users 300 --items 200 --impressions 6000 --days 1 \
  --out "$T/events.pb" 2>"$T/gen.log" || fail "mtld-gen failed"

kl_start
kl_topic events 8
for c in ref grp; do
  kl_topic "cl-$c" 8 cleanup.policy=compact
  kl_topic "cl-$c.group" 1 cleanup.policy=compact
done
N=$(grep -o '[0-9]* records' "$T/gen.log" | head -1 | cut -d' ' -f1)
[ "${N:-0}" -gt 0 ] || fail "mtld-gen wrote no records"
Q=$(((N + 3) / 4))
# chunk K : produces the K-th quarter of the stream (the instances move
# partitions while the stream grows)
chunk() {
  "$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$T/events.pb" \
    --skip $((($1 - 1) * Q)) --limit "$Q" >>"$T/produce.log" 2>&1 || fail "mtld-produce chunk $1"
}

# conf NAME GROUP CHANGELOG IDLE_RELEASE [extra]
conf() {
  kl_write_config "$T/$1.conf" "$T/$1.store" events "
scaleout = { changelog_topic = \"$3\"; };
joiner = { idle_release = \"$4\"; };
trainer = { enabled = false; };
${5:-}"
  sed -i "s/group_id = \"mtld-test\";/group_id = \"$2\"; group_instance_id = \"$1\";/" "$T/$1.conf"
}
# users STORE OUT : the per-user lines of the store's canonical dump
users() {
  "$BUILD/mtld-inspect" --store "$1" --dump | grep '^user ' >"$2" || fail "inspect $1"
  [ -s "$2" ] || fail "no users in $1"
}
# ledger LOG OUT : the last partition ledger handed over per partition
ledger() {
  sed -n 's/.*scale-out: handing over \(events\[[0-9]*\]\) at offset [0-9-]*: partition ledger: \(.*\)/\1 \2/p' "$1" |
    awk '{k = $1; $1 = ""; last[k] = $0} END {for (k in last) print k last[k]}' | sort >"$2"
}
# total STORES... : records committed over the stores
total() {
  local s=0 c
  for st in "$@"; do
    c=$(consumed "$st")
    s=$((s + c))
  done
  echo $s
}
wait_total() { # N LIMIT STORES...
  local n=$1 limit=$(($2 * SLOW)) c=0
  shift 2
  for _ in $(seq 1 $((limit * 4))); do
    c=$(total "$@")
    [ "$c" -ge "$n" ] && return 0
    sleep 0.25
  done
  fail "the instances committed $c of $n records within ${limit}s"
}

# ---- the group ----------------------------------------------------------------
for i in a b c; do conf $i mtld-grp cl-grp 0s; done
chunk 1
start_mtld "$T/a.conf" "$T/a.log"
A=$MTLD_PID
wait_consumed "$T/a.store" "$Q" 60
start_mtld "$T/b.conf" "$T/b.log" # joins mid-stream
B=$MTLD_PID
wait_log "$T/b.log" 'scale-out: events\[[0-9]*\] restored' 40
wait_log "$T/a.log" 'scale-out: handing over' 40
note "b joined: a handed over $(grep -c 'handing over' "$T/a.log") partitions"
chunk 2
wait_total $((2 * Q)) 60 "$T/a.store" "$T/b.store"
chunk 3
kill -9 "$A"
wait "$A" 2>/dev/null || true
note "a killed -9 at $(total "$T/a.store" "$T/b.store") records committed; restarted"
start_mtld "$T/a.conf" "$T/a.log"
A=$MTLD_PID
start_mtld "$T/c.conf" "$T/c.log"
C=$MTLD_PID
wait_log "$T/c.log" 'scale-out: events\[[0-9]*\] restored' 60
chunk 4
stop_pid "$B" 30 # leaves (a static member: the group notices after session.timeout.ms)
note "b left"
wait_total "$N" 90 "$T/a.store" "$T/c.store"
sleep 1
stop_pid "$A" 30
stop_pid "$C" 30
grep -q 'resuming at offset [0-9]' "$T/c.log" || fail "c resumed no partition at a restored offset"

# ---- reference: one instance ------------------------------------------------
conf ref mtld-ref cl-ref 2s
start_mtld "$T/ref.conf" "$T/ref.log"
REF=$MTLD_PID
wait_consumed "$T/ref.store" "$N" 60
wait_log "$T/ref.log" 'idle release' 30
sleep 1
stop_pid "$REF" 30
users "$T/ref.store" "$T/ref.users"
ledger "$T/ref.log" "$T/ref.ledger"
[ "$(wc -l <"$T/ref.ledger")" = 8 ] || fail "reference: $(wc -l <"$T/ref.ledger") partition ledgers, want 8"
note "reference: $(wc -l <"$T/ref.users") users; $(awk '{s += $2} END {print s}' "$T/ref.ledger") samples released"

# ---- the collector: every partition restored from the changelog ---------------
conf d mtld-grp cl-grp 2s
start_mtld "$T/d.conf" "$T/d.log"
D=$MTLD_PID
for _ in $(seq 1 $((60 * SLOW * 4))); do
  [ "$(grep -c 'scale-out: events\[[0-9]*\] restored' "$T/d.log")" -ge 8 ] && break
  sleep 0.25
done
[ "$(grep -c 'scale-out: events\[[0-9]*\] restored' "$T/d.log")" -ge 8 ] ||
  fail "the collector restored $(grep -c 'restored' "$T/d.log") partitions, want 8"
wait_log "$T/d.log" 'idle release' 30
sleep 1
stop_pid "$D" 30
grep 'scale-out: events\[[0-9]*\] restored' "$T/d.log" | sed 's/.*scale-out: /#   /' | head -8
users "$T/d.store" "$T/d.users"
ledger "$T/d.log" "$T/d.ledger"
cmp -s "$T/ref.users" "$T/d.users" ||
  { diff "$T/ref.users" "$T/d.users" | head -5; fail "per-user features differ from the reference"; }
diff -u "$T/ref.ledger" "$T/d.ledger" || fail "partition ledgers (samples, positives) differ"
# ---- refused: what disagrees with the group, before anything is written -------
kl_topic cl-bad 4 cleanup.policy=compact
kl_topic cl-bad.group 1 cleanup.policy=compact
before=$(kl_offsets cl-grp.group -1) # the changelog is written only after the check passed
refused() { # NAME CHANGELOG EXTRA WANT
  conf "$1" mtld-grp "$2" 0s "$3"
  local rc=0
  "$BUILD/mtld" -c "$T/$1.conf" >"$T/$1.log" 2>&1 || rc=$?
  [ $rc = 1 ] || fail "$1: exit $rc, want 1 (configuration refused)"
  grep -q "$4" "$T/$1.log" || fail "$1: the log does not say '$4': $(tail -2 "$T/$1.log")"
  note "refused ($1): $(grep -o 'disagrees.*' "$T/$1.log" | cut -c1-100)"
}
refused r1 cl-grp 'features = { sequence_length = 7; };' 'disagrees with the group on its feature definitions'
refused r2 cl-grp 'model = { lr = 0.0123; };' 'disagrees with the group on its model configuration'
refused r3 cl-bad '' 'partition count disagrees'
after=$(kl_offsets cl-grp.group -1)
[ -n "$before" ] && [ "$before" = "$after" ] ||
  fail "a refused instance wrote to the group topic: end offset $before -> $after"

# a plain single instance (no scale-out) computes the same features
kl_write_config "$T/p.conf" "$T/p.store" events 'trainer = { enabled = false; };'
sed -i 's/group_id = "mtld-test";/group_id = "mtld-plain";/' "$T/p.conf"
start_mtld "$T/p.conf" "$T/p.log"
wait_consumed "$T/p.store" "$N" 60
stop_pid "$MTLD_PID" 30
users "$T/p.store" "$T/p.users"
cmp -s "$T/ref.users" "$T/p.users" || fail "scale-out's features differ from a plain instance's"
rates=$(sed -n 's/.*changelog records in [0-9.]* s (\([0-9]*\) rec\/s.*/\1/p' "$T/d.log" | sort -n | tail -1)
note "collector: $(wc -l <"$T/d.users") users identical, 8 partition ledgers equal; best restore rate $rates rec/s"
cat "$T/d.ledger" | sed 's/^/#   /'
echo "1 passed, 0 failed"
