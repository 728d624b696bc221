#!/usr/bin/env bash
# make demo: a generated e-commerce stream -> Kafka -> mtld -> a summary of
# what it did, with mtld's ledger next to the generator's own counts.
# Kafka is a real broker (../shared/kafka-local) when it is there, otherwise
# librdkafka's mock cluster (3 brokers on loopback); the mock keeps only
# ~5 MiB per partition, so the stream is produced to it in slices while mtld
# consumes, never more than two slices ahead of what mtld committed.
# usage: tools/demo.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /tmp/mtld-demo.XXXXXX)
PIDS=()
KL=$SRC/../shared/kafka-local/kafka-local
[ -n "${DEMO_MOCK:-}" ] && KL=/nonexistent # DEMO_MOCK=1: the mock cluster even so
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -d "$D/kafka" ] && "$KL" stop "$D/kafka" >/dev/null 2>&1
  wait 2>/dev/null || true
}
trap cleanup EXIT
# A world small enough that its per-user and per-item terms can be learnt from
# the stream (10,000 impressions per user, 5,000 per item): the oracle is the
# unlimited-data limit, see tools/mtld-gen.c.
USERS=${DEMO_USERS:-100}
ITEMS=${DEMO_ITEMS:-200}
DIM=${DEMO_DIM:-2}
IMPRESSIONS=${DEMO_IMPRESSIONS:-1000000}
WINDOW=100000 # model.pv_window (default): the AUC window the table compares

echo "== 1. generating a synthetic stream (seed 42, $USERS users, $ITEMS items, latent dimension $DIM, $IMPRESSIONS impressions, reviews more likely for liked items, a few malformed records)"
"$BUILD/mtld-gen" --seed 42 --users "$USERS" --items "$ITEMS" --dim "$DIM" --impressions "$IMPRESSIONS" \
  --days 2 --bad-every 500 --review-effect 1.5 --oracle-last "$WINDOW" --out "$D/events.pb" \
  --truth "$D/truth.csv" 2>"$D/gen.log"
sed 's/^/   /' "$D/gen.log"

R=$(sed -n 's/.* = \([0-9]*\) records$/\1/p' "$D/gen.log" | head -1)
# records committed: the sum of the stored next offsets (0 before the store exists)
committed() {
  { "$BUILD/mtld-inspect" --store "$D/store" --offsets --json 2>/dev/null || true; } |
    python3 -c 'import json, sys; print(sum(json.loads(l)["next_offset"] for l in sys.stdin if l.strip()))' 2>/dev/null || echo 0
}
# delivered FILE... : records delivered, summed over mtld-produce --summary files
delivered() {
  python3 -c 'import json, sys; print(sum(json.load(open(f))["delivered"] for f in sys.argv[1:]))' "$@"
}
start_mtld() {
  sed -e "s#@BOOTSTRAP@#$BOOTSTRAP#g" -e "s#@STATE@#$D#g" "$SRC/conf/demo.conf" >"$D/mtld.conf"
  "$BUILD/mtld" -c "$D/mtld.conf" >"$D/mtld.log" 2>&1 &
  MTLD=$!
  PIDS+=($MTLD)
  start=$(date +%s.%N)
}
alive() { kill -0 "$MTLD" 2>/dev/null || { echo "mtld exited early:"; tail "$D/mtld.log"; exit 1; }; }
if [ -x "$KL" ] && command -v java >/dev/null; then
  echo "== 2. starting a real Kafka broker (../shared/kafka-local; topic events with 8 partitions)"
  BOOTSTRAP=$("$KL" start "$D/kafka" | tail -1)
  "$KL" topic "$D/kafka" events 8
  "$KL" topic "$D/kafka" events-dlq 1
  echo "   bootstrap: $BOOTSTRAP"
  echo "== 3. producing the stream, keyed by user"
  "$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$D/events.pb" \
    --summary "$D/produce.json" 2>&1 | sed 's/^/   /'
  N=$(delivered "$D/produce.json")
  echo "== 4. running mtld on it"
  start_mtld
else
  echo "== 2. starting the mock Kafka cluster (3 brokers, topic events with 8 partitions; no"
  echo "   ../shared/kafka-local here)"
  "$BUILD/mtld-mockcluster" --brokers 3 --topic events:8 --topic events-dlq:1 \
    --bootstrap-file "$D/bootstrap" >"$D/cluster.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$D/bootstrap" ] && break; sleep 0.1; done
  BOOTSTRAP=$(cat "$D/bootstrap")
  echo "   bootstrap: $BOOTSTRAP"
  SLICE=25000 # records: two slices stay far below the mock's ~5 MiB per partition
  echo "== 3+4. running mtld and producing the stream to it keyed by user, $SLICE records at a time"
  start_mtld
  for ((off = 0; off < R; off += SLICE)); do
    while [ "$(committed)" -lt $((off - SLICE)) ]; do alive; sleep 0.2; done
    "$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic events --in "$D/events.pb" \
      --skip "$off" --limit "$SLICE" --summary "$D/produce-$off.json" >>"$D/produce.log" 2>&1
  done
  N=$(delivered "$D"/produce-*.json)
  echo "   mtld-produce: $N records delivered to events in slices"
fi
while [ "$(committed)" -lt "$N" ]; do
  alive
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
python3 -c 'import sys; n, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f"   consumed {n} records in {s:.1f} s: {n / s:,.0f} records/s (wall clock, incl. start-up and the trainer)")' "$N" "$start" "$end"

echo "== 5. summary"
echo "-- the ledger: what mtld committed, next to the generator's own counts"
sum() { awk -v re="$1" '$1 ~ re {s += $2} END {printf "%.0f", s}' "$D/metrics.txt"; }
READ=$(sum '^mtld_source_records_total[{]')
APPLIED=$(sum '^mtld_source_applied_total[{]')
REJ=$(sum '^mtld_source_rejected_total[{]')
SKIP=$(sum '^mtld_source_skipped_records_total[{]')
GEN_EV=$(sed -n 's/.*, \([0-9]*\) events + .*/\1/p' "$D/gen.log" | head -1)
GEN_BAD=$(sed -n 's/.* events + \([0-9]*\) bad = .*/\1/p' "$D/gen.log" | head -1)
printf "   %-34s %12s %12s\n" "" generator mtld
printf "   %-34s %12s %12s\n" "records (delivered to Kafka: $N)" "$R" "$READ read"
printf "   %-34s %12s %12s\n" "events applied" "$GEN_EV" "$APPLIED"
printf "   %-34s %12s %12s\n" "bad records rejected" "$GEN_BAD" "$REJ"
printf "   %-34s %12s %12s\n" "records skipped (offset gaps)" 0 "$SKIP"
if [ "$READ" = "$R" ] && [ "$APPLIED" = "$GEN_EV" ] && [ "$REJ" = "$GEN_BAD" ]; then
  echo "   every record accounted for: $READ read = $APPLIED applied + $REJ rejected"
else
  echo "   MISMATCH: mtld's ledger does not add up to the generator's counts"
fi
echo "-- what the joiner did with each event type (mtld_joiner_events_total)"
grep '^mtld_joiner_events_total{' "$D/metrics.txt" | awk '$2 > 0' |
  sed 's/mtld_joiner_events_total{type="\([A-Z_]*\)",outcome="\([a-z_]*\)"} \([0-9]*\)/\1 \2 \3/' |
  awk '{printf "   %-12s %-18s %10d\n", $1, $2, $3}'
echo "   samples: $(sum '^mtld_joiner_samples_total[{]outcome="opened"') opened = $(sum '^mtld_joiner_samples_total[{]outcome="released"') released + $(sum '^mtld_joiner_pending$') pending + $(sum '^mtld_joiner_samples_total[{]outcome="dropped') dropped"
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
echo "-- one user's features (user 1; inspect any with: mtld-inspect --store $D/store --user ID)"
"$BUILD/mtld-inspect" --store "$D/store" --user 1 | sed 's/^/   /'
echo "-- top 10 items for user 1 in scenario search, by pCTCVR, from the serving snapshot"
echo "   (mtld-score --snapshot $D/snapshots --store $D/store --top 10 --user 1 --scenario search --rank-by ctcvr)"
"$BUILD/mtld-score" --snapshot "$D/snapshots" --store "$D/store" --top 10 --user 1 --scenario search \
  --rank-by ctcvr 2>&1 | sed 's/^/   /' || true
echo "-- progressive validation while consuming from Kafka (sliding-window AUC; samples still"
echo "   waiting for their conversion window at the end are trained after a restart)"
grep '^mtld_pv_auc{' "$D/metrics.txt" | sed 's/mtld_pv_auc{task="\([^"]*\)",scenario="\([^"]*\)"} /   \1 \2 /' |
  awk '$3 != "NaN" {printf "   %-8s %-14s AUC %.4f\n", $1, $2, $3}'

echo "-- item demand: orders per item in the next hour (task demand: item samples at each hour"
echo "   boundary, features as of the boundary), next to \"same as the last hour\" and the 6-hour"
echo "   moving average, on the same samples, progressively"
pv() { grep "^mtld_pv_$1{task=\"$2\",scenario=\"_all\"}" "$D/metrics.txt" | awk '{print $2}'; }
for task in demand demand_last demand_ma; do
  printf "   %-12s samples %7s  RMSE %-8.6s  MAE %-8.6s\n" "$task" "$(pv samples $task)" "$(pv rmse $task)" \
    "$(pv mae $task)"
done
echo "   item samples released: $(sum '^mtld_demand_samples_total') at $(sum '^mtld_demand_boundaries_total') hour boundaries"

echo "== 6. multi-task vs independent single-task models on the same stream (replays of the event file)"
ORACLE_CTR=$(sed -n 's/.*last [0-9]* impressions: click: \([0-9.]*\).*/\1/p' "$D/gen.log")
ORACLE_CTCVR=$(sed -n 's/.*last [0-9]* impressions: .*click&purchase: \([0-9.]*\).*/\1/p' "$D/gen.log")
LL_CTR=$(sed -n 's/^oracle log loss over the stream: click: \([0-9.]*\).*/\1/p' "$D/gen.log")
LL_CTCVR=$(sed -n 's/^oracle log loss over the stream: .*click&purchase: \([0-9.]*\).*/\1/p' "$D/gen.log")
. "$SRC/tools/replay.sh"
replay() { mtld_replay "$BUILD" "$D" "$D/events.pb" "$@"; }
# the multi-task model: MMoE over ctr, ctcvr (ESMM) and rating, as configured by default;
# the baseline: one model per task, nothing shared (ctcvr learnt directly on
# click & purchase over impressions); the two baselines run side by side
replay mtl 'arch = "mmoe";' &
MTL_PID=$!
replay stl_ctr 'arch = "single_task"; tasks = ({ name = "ctr"; type = "binary"; label = "click"; });'
replay stl_ctcvr 'arch = "single_task"; tasks = ({ name = "ctcvr"; type = "binary"; label = "purchase"; });'
wait "$MTL_PID"
printf "   %-6s %-13s %7s %7s %7s %7s %7s %7s %7s %6s\n" task scenario "MTL" "STL" "oracle" "gap" \
  "MTL cum" "logloss" "oracle" "calib"
for task in ctr ctcvr; do
  oracle=$ORACLE_CTR ll_oracle=$LL_CTR
  [ $task = ctcvr ] && oracle=$ORACLE_CTCVR ll_oracle=$LL_CTCVR
  grep "pv task=$task " "$D/mtl.log" | tail -4 | while read -r line; do
    scen=$(echo "$line" | sed 's/.*scenario=\([^ ]*\).*/\1/')
    auc=$(echo "$line" | sed 's/.*auc_window=\([^ ]*\).*/\1/')
    cum=$(echo "$line" | sed 's/.*auc_cum=\([^ ]*\).*/\1/')
    cal=$(echo "$line" | sed 's/.*calib=\([^ ]*\).*/\1/')
    ll=$(echo "$line" | sed 's/.*logloss=\([^ ]*\).*/\1/')
    st=$(grep "pv task=$task scenario=$scen " "$D/stl_$task.log" | tail -1 | sed 's/.*auc_window=\([^ ]*\).*/\1/')
    o="-" gap="-" llo="-"
    if [ "$scen" = all ]; then
      o=$oracle llo=$ll_oracle
      gap=$(awk -v o="$o" -v a="$auc" 'BEGIN {printf "%.4f", o - a}')
    fi
    printf "   %-6s %-13s %7s %7s %7s %7s %7s %7s %7s %6s\n" "$task" "$scen" "$auc" "$st" "$o" "$gap" \
      "$cum" "$ll" "$llo" "$cal"
  done
done
grep "pv task=rating scenario=all" "$D/mtl.log" | tail -1 | sed 's/.*rmse=\([^ ]*\).*/   rating RMSE (MTL): \1/'
echo "   oracle rating RMSE: $(sed -n 's/.*rating RMSE: \([0-9.]*\).*/\1/p' "$D/gen.log")"
echo "   (MTL, STL = progressive-validation AUC over the last $WINDOW samples, each scored before it"
echo "    was learnt; STL = a separate model for the one task, nothing shared; oracle = AUC of the"
echo "    generator's true probabilities over the same $WINDOW impressions; gap = oracle - MTL;"
echo "    MTL cum, logloss, calib = since the first sample, with the oracle's log loss over the"
echo "    whole stream beside it; calib = mean prediction / mean label)"
echo "== 7. review behaviour: P(review | purchase) chained on ctcvr (ctr -> ctcvr -> review), a replay"
echo "   with a review task (a review within joiner.review_window = 3d of the purchase labels it)"
replay review 'arch = "mmoe"; tasks = (
    { name = "ctr"; type = "binary"; label = "click"; },
    { name = "ctcvr"; type = "esmm"; label = "purchase"; parent = "ctr"; },
    { name = "review"; type = "esmm"; label = "review"; parent = "ctcvr"; },
    { name = "rating"; type = "regression"; label = "rating"; weight = 0.5; bias_init = 4.0; });' \
  'conversion_window = "6h"; review_window = "3d";'
printf "   %-12s %-13s %9s %9s %9s %9s %8s\n" task scenario "AUC" "AUC cum" "logloss" "positives" "calib"
for task in review review_base; do
  grep "pv task=$task " "$D/review.log" | tail -4 | while read -r line; do
    v() { echo "$line" | sed "s/.* $1=\([^ ]*\).*/\1/"; }
    printf "   %-12s %-13s %9s %9s %9s %9s %8s\n" "$task" "$(v scenario)" "$(v auc_window)" \
      "$(v auc_cum)" "$(v logloss)" "$(v pos)" "$(v calib)"
  done
done
echo "   (review = the model's pCTCVR * P(review | purchase), on all impressions against click &"
echo "    purchase & review; review_base = the same pCTCVR * the running review rate among purchases"
echo "    so far: what the review head adds over a constant rate; the generator's P(review |"
echo "    purchase) grows with the user-item affinity and the item's quality: --review-effect 1.5)"
echo "-- learning curves (progressive validation over the samples scored, while consuming from Kafka)"
if "$SRC/tools/mtld-plot" --log "$D/mtld.log" --out "$D/learning-curves.png" \
  --title "make demo: progressive validation" 2>"$D/plot.log"; then
  echo "   PNG: $D/learning-curves.png   (tools/mtld-plot --log $D/mtld.log --out FILE.png)"
else
  echo "   no PNG: $(tail -1 "$D/plot.log")"
fi
echo "-- files in $D (removed by: rm -rf $D)"
