#!/usr/bin/env bash
# bench/attributes.sh BUILD - what named attributes buy (issue 14): the
# daemon replays the same event file twice, once with the stream's
# attributes declared in features.attributes and once without them, and the
# progressive CTR / CTCVR AUC of both runs is printed next to the oracle.
#
#  1. mtld-gen with --attr-effect (user age_level and shopping_level, item
#     brand and a daily discount, with known effects on click and purchase):
#     the oracle (the generator's true probabilities, attribute terms
#     included) over the same last 100,000 impressions the daemon's window
#     holds.
#  2. The Ali-CCP and AliExpress samples in ../shared/data/format-samples,
#     converted by mtld-produce's layouts (which map their extra columns as
#     attributes); no oracle there.  Skipped, saying so, when the folder is
#     absent.  The samples are a few hundred rows: the AUCs show that the
#     attributes flow, not what they are worth.
# Knobs (environment): ATTR_EFFECT (default 1), ATTR_WORLDS (users x items of
# each generated world, default "2000x1000 20000x5000": 200 and 20
# impressions a user), ATTR_IMPRESSIONS (400000), ATTR_SEED (42); OUT (a
# directory to keep the logs and configs in).  Runs are file replays (source.type = "file", the
# same path as Kafka), model keys at their defaults but lr = 0.0003.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ne 1 ]; then
  echo "usage: bash bench/attributes.sh BUILD_DIR" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd)
EFFECT=${ATTR_EFFECT:-1}
WORLDS=${ATTR_WORLDS:-2000x1000 20000x5000}
IMPRESSIONS=${ATTR_IMPRESSIONS:-400000}
SEED=${ATTR_SEED:-42}
DATA=$SRC/../shared/data/format-samples
for prog in mtld mtld-gen mtld-produce; do
  [ -x "$BUILD/$prog" ] || {
    echo "attributes.sh: $BUILD/$prog is missing: build first" >&2
    exit 1
  }
done
T=$(mktemp -d "${TMPDIR:-/tmp}/mtld-attrs.XXXXXX")
trap 'rm -rf "$T"' EXIT
. "$SRC/tools/replay.sh"

run() { # prints the command (shell-quoted) and runs it
  printf '$'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

# pv LOG TASK KEY: the last progressive-validation figure of a run
pv() {
  grep "pv task=$2 scenario=all " "$1" | tail -1 | sed -n "s/.* $3=\([^ ]*\).*/\1/p"
}

# attrs_conf 'name:owner:kind ...' -> a features.attributes list (categorical
# ones with 1000 embedding rows)
attrs_conf() {
  local out="" a name owner kind rows
  for a in $1; do
    IFS=: read -r name owner kind <<<"$a"
    rows=""
    [ "$kind" = categorical ] && rows=" rows = 1000;"
    out+="{ name = \"$name\"; owner = \"$owner\"; kind = \"$kind\";$rows }, "
  done
  echo "features = { attributes = ( ${out%, } ); };"
}

# compare NAME EVENTS 'attrs' ['joiner keys']: two replays, prints a table row pair
compare() {
  local name=$1 events=$2 decl=$3 joiner=${4:-'conversion_window = "6h";'}
  mtld_replay "$BUILD" "$T" "$events" "$name.plain" '' "$joiner" || {
    echo "attributes.sh: the replay without attributes failed:" >&2
    tail -5 "$T/$name.plain.log" >&2
    exit 1
  }
  # mtld_replay writes the config; the declared run is the same plus the
  # attribute list (a separate store: a feature-definition change)
  sed "s|$T/$name.plain|$T/$name.attrs|g" "$T/$name.plain.conf" >"$T/$name.attrs.conf"
  attrs_conf "$decl" >>"$T/$name.attrs.conf"
  "$BUILD/mtld" -c "$T/$name.attrs.conf" >"$T/$name.attrs.log" 2>&1 || {
    echo "attributes.sh: the replay with attributes failed:" >&2
    tail -5 "$T/$name.attrs.log" >&2
    exit 1
  }
  for run in plain attrs; do
    local log=$T/$name.$run.log
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" \
      "$([ $run = plain ] && echo "not declared" || echo "declared")" \
      "$(pv "$log" ctr n)" "$(pv "$log" ctr auc_window) / $(pv "$log" ctr auc_cum)" \
      "$(pv "$log" ctcvr auc_window) / $(pv "$log" ctcvr auc_cum)" \
      "$(pv "$log" ctr logloss) / $(pv "$log" ctcvr logloss)"
  done
}

echo "== named attributes: declared vs not (bench/attributes.sh $1)"
echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:  $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit:   $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
GEN_ATTRS="age_level:user:categorical shopping_level:user:categorical brand:item:categorical
discount:item:numeric"
echo "declared: $(attrs_conf "$GEN_ATTRS")"
echo
echo "| stream | attributes | samples | CTR AUC window / cum | CTCVR AUC window / cum | log loss ctr / ctcvr |"
echo "|---|---|---:|---|---|---|"
for world in $WORLDS; do
  users=${world%x*} items=${world#*x}
  "$BUILD/mtld-gen" --seed "$SEED" --users "$users" --items "$items" \
    --impressions "$IMPRESSIONS" --days 2 --attr-effect "$EFFECT" --oracle-last 100000 \
    --out "$T/gen.pb" 2>"$T/gen.log"
  line=$(grep 'oracle AUC over the last' "$T/gen.log")
  o_ctr=$(echo "$line" | sed 's/.* click: \([0-9.]*\) .*/\1/')
  o_ctcvr=$(echo "$line" | sed 's/.*click&purchase: \([0-9.]*\).*/\1/')
  compare "gen-$world" "$T/gen.pb" "$GEN_ATTRS"
  printf '| gen-%s | oracle (last 100000) | | %s | %s | |\n' "$world" "$o_ctr" "$o_ctcvr"
done
echo
echo "gen-UxI: mtld-gen --seed $SEED --users U --items I --impressions $IMPRESSIONS --days 2"
echo "  --attr-effect $EFFECT --oracle-last 100000 (AUC window: the last 100000 samples)"
if [ ! -d "$DATA" ]; then
  echo
  echo "no $DATA: the public samples are not on this machine, their rows are skipped"
else
  # the layouts' attributes (tools/convert.h), as a user declares them
  ALICCP_ATTRS="$(for a in profile profile_group gender age consumption_1 consumption_2 \
    occupation geography; do echo "$a:user:categorical"; done)
shop:item:categorical intention:item:categorical brand:item:categorical
$(for a in category_match shop_match brand_match intention_match; do
    echo "$a:context:categorical"
  done)
category_match_weight:context:numeric"
  run "$BUILD/mtld-produce" --csv "$DATA/ali_ccp_train_sample.csv" \
    --csv "$DATA/ali_ccp_val_sample.csv" --csv "$DATA/ali_ccp_test_sample.csv" --layout aliccp \
    --out "$T/aliccp.pb" --quiet
  AE_ATTRS="$(for k in $(seq 1 9); do echo "categorical_$k:user:categorical"; done)
$(for k in $(seq 24 30); do echo "numerical_$k:context:numeric"; done)"
  run "$BUILD/mtld-produce" --csv "$DATA/aliexpress_train_sample.csv" \
    --csv "$DATA/aliexpress_test_sample.csv" --layout aliexpress --out "$T/aliexpress.pb" --quiet
  echo
  echo "| stream | attributes | samples | CTR AUC window / cum | CTCVR AUC window / cum | log loss ctr / ctcvr |"
  echo "|---|---|---:|---|---|---|"
  compare "aliccp" "$T/aliccp.pb" "$ALICCP_ATTRS" 'conversion_window = "1s"; click_window = "1s";'
  compare "aliexpress" "$T/aliexpress.pb" "$AE_ATTRS" \
    'conversion_window = "1s"; click_window = "1s";'
fi
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp "$T"/*.log "$T"/*.conf "$OUT"/
fi
echo
echo "done: $(date -u +%Y-%m-%dT%H:%M:%SZ) ($SECONDS s)"
