#!/usr/bin/env bash
# test_attrs.sh BUILD SRC - named attributes end to end, from a CSV file to
# the readers: a synthetic dataset whose clicks depend on a user attribute
# (segment), an item attribute (brand) and a context one (discount, per
# impression) is converted with attr.NAME=COLUMN / attr.NAME=num:COLUMN,
# replayed by the daemon (file source) twice - without attributes declared
# and with them - and:
#   - the events carry the attributes (mtld-produce converted them all);
#   - the store built without attributes refuses the declarations (a
#     feature-definition change);
#   - the snapshot's header lists the attributes (mtld-score --info);
#   - the model with the attributes learns the discount and segment x brand
#     effects: its progressive CTR AUC beats the model without by > 0.02;
#   - mtld-score and mtld_reader.py score the dumped samples alike (1e-5),
#     and a candidate with a context attribute scores from the store.
set -u
BUILD=${1:?usage: test_attrs.sh BUILD SRC}
SRC=${2:?usage: test_attrs.sh BUILD SRC}
for b in mtld mtld-produce mtld-score; do
  [ -x "$BUILD/$b" ] || { echo "missing $BUILD/$b (build first)"; exit 1; }
done
TMP=$(mktemp -d /tmp/mtld-test-attrs.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); echo "ok   - $*"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL - $*"; }
T() { timeout 300 "$@"; }

# 24000 impressions of 400 users x 120 items over a day.  P(click) =
# 0.02 + 0.25 * discount + 0.2 * [segment(user) == brand(item) % 4]; the
# segment of a user and the brand of an item never change.
awk -v n=24000 'BEGIN {
  srand(7); print "user,item,ts,segment,brand,discount,click"
  for (i = 0; i < n; i++) {
    u = int(rand() * 400); it = int(rand() * 120)
    seg = (u * 7) % 4; brand = (it * 5) % 6; d = int(rand() * 100) / 100
    p = 0.02 + 0.25 * d + 0.2 * (seg == brand % 4)
    printf "u%d,i%d,%d,s%d,b%d,%.2f,%d\n", u, it, 1700000000 + i * 3, seg, brand, d, rand() < p
  }
}' >"$TMP/data.csv"
MAP='header=1,user=user,item=item,time=ts,click=click,attr.segment=segment,attr.brand=brand,attr.discount=num:discount'
if T "$BUILD/mtld-produce" --csv "$TMP/data.csv" --map "$MAP" --out "$TMP/events.pb" \
  --summary "$TMP/produce.json" >"$TMP/produce.log" 2>&1; then
  ok "mtld-produce converted the CSV with attr.* columns: $(tr -d '\n ' <"$TMP/produce.json" | head -c 160)"
else
  fail "mtld-produce: $(tail -c 300 "$TMP/produce.log")"
fi

ATTRS='attributes = (
    { name = "segment"; owner = "user"; kind = "categorical"; rows = 64; },
    { name = "brand"; owner = "item"; kind = "categorical"; rows = 64; default = "none"; },
    { name = "discount"; owner = "context"; kind = "numeric"; default = 0.0; }
  );'
conf() { # conf NAME FEATURES
  cat >"$TMP/$1.conf" <<CONF
source = { type = "file"; file = "$TMP/events.pb"; };
store = { path = "$TMP/$1.store"; sync = false; };
features = { $2 };
model = { dim = 8; rows = { user = 2048; item = 1024; category = 64; }; batch_size = 32; };
trainer = { report_interval = "0s"; dump_samples = "$TMP/$1.samples"; };
checkpoint = { dir = "$TMP/$1.ckpt"; };
snapshot = { dir = "$TMP/$1.snap"; keep = 1; };
metrics = { enabled = false; };
log = { level = "warning"; };
CONF
}
conf plain ""
conf attrs "$ATTRS"

auc() { # auc SNAPDIR: the progressive cumulative CTR AUC over all scenarios
  T "$BUILD/mtld-score" --snapshot "$1" --info 2>/dev/null |
    awk '$1 == "metrics" && $2 == "task=ctr" && $3 == "scenario=all" {
           for (i = 4; i <= NF; i++) if ($i ~ /^auc_cum=/) { sub(/auc_cum=/, "", $i); print $i } }'
}

if T "$BUILD/mtld" -c "$TMP/plain.conf" >"$TMP/plain.log" 2>&1 && [ -f "$TMP/plain.snap/LATEST" ]; then
  ok "the daemon replayed the events without attributes declared"
else
  fail "daemon without attributes: $(tail -c 400 "$TMP/plain.log")"
fi
# the declarations are part of the feature definitions: the old store refuses them
sed "s|$TMP/attrs.store|$TMP/plain.store|" "$TMP/attrs.conf" >"$TMP/refuse.conf"
rc=0
T "$BUILD/mtld" -c "$TMP/refuse.conf" >"$TMP/refuse.log" 2>&1 || rc=$?
if [ "$rc" != 0 ] && grep -q "other feature definitions" "$TMP/refuse.log"; then
  ok "a store built without the attributes refuses them (exit $rc)"
else
  fail "declaring attributes on an old store: exit $rc, $(tail -c 300 "$TMP/refuse.log")"
fi
if T "$BUILD/mtld" -c "$TMP/attrs.conf" >"$TMP/attrs.log" 2>&1 && [ -f "$TMP/attrs.snap/LATEST" ]; then
  ok "the daemon replayed the events with the attributes declared"
else
  fail "daemon with attributes: $(tail -c 400 "$TMP/attrs.log")"
fi

info=$(T "$BUILD/mtld-score" --snapshot "$TMP/attrs.snap" --info 2>&1)
if echo "$info" | grep -q '^attribute 0 segment owner user categorical rows 64' &&
  echo "$info" | grep -q '^attribute 2 discount owner context numeric' &&
  echo "$info" | grep -q '^field 7 brand rows 64'; then
  ok "the snapshot lists the attributes and their fields"
else
  fail "snapshot header: $(echo "$info" | grep -E 'attribute|field' | head -c 300)"
fi

a0=$(auc "$TMP/plain.snap")
a1=$(auc "$TMP/attrs.snap")
if [ -n "$a0" ] && [ -n "$a1" ] && awk -v a="$a0" -v b="$a1" 'BEGIN { exit !(b > a + 0.02) }'; then
  ok "progressive CTR AUC: $a0 without the attributes, $a1 with them"
else
  fail "the attributes did not help: CTR AUC ${a0:-?} without, ${a1:-?} with"
fi

# readers agree on the dump of the run with attributes
PY=
for cand in /usr/bin/python3 python3; do
  if command -v "$cand" >/dev/null 2>&1 &&
    "$cand" -c 'import numpy, google.protobuf, xxhash' >/dev/null 2>&1 && command -v protoc >/dev/null 2>&1; then
    PY=$cand
    break
  fi
done
if T "$BUILD/mtld-score" --snapshot "$TMP/attrs.snap" --samples "$TMP/attrs.samples" >"$TMP/c.txt" 2>"$TMP/c.err"; then
  ok "mtld-score scores the $(($(wc -l <"$TMP/c.txt") - 1)) dumped samples"
else
  fail "mtld-score --samples: $(head -c 300 "$TMP/c.err")"
fi
if [ -n "$PY" ]; then
  mkdir -p "$TMP/pb2"
  protoc --proto_path="$SRC/schemas" --python_out="$TMP/pb2" "$SRC/schemas/snapshot.proto"
  if MTLD_PB2_DIR=$TMP/pb2 T "$PY" "$SRC/tools/mtld_reader.py" "$TMP/attrs.snap" --samples "$TMP/attrs.samples" \
    >"$TMP/py.txt" 2>"$TMP/py.err"; then
    d=$(paste -d' ' "$TMP/c.txt" "$TMP/py.txt" | awk -v h="$(sed -n 2p "$TMP/c.txt" | wc -w)" '
      $1 != "#" { if ($1 != $(h + 1)) bad = 1
                  for (i = 2; i <= h; i++) { x = $i - $(i + h); if (x < 0) x = -x; if (x > m) m = x } }
      END { if (bad) print "mismatch"; else printf "%.3g\n", m }')
    if [ "$d" != mismatch ] && awk -v v="$d" 'BEGIN { exit !(v <= 1e-5) }'; then
      ok "mtld_reader.py agrees with mtld-score on the dump (max |diff| $d)"
    else
      fail "mtld_reader.py differs: $d"
    fi
  else
    fail "mtld_reader.py: $(head -c 300 "$TMP/py.err")"
  fi
fi
# one candidate from the store, with and without its context attribute
one() {
  T "$BUILD/mtld-score" --snapshot "$TMP/attrs.snap" --store "$TMP/attrs.store" \
    --user-key u5 --item-key i3 "$@" 2>/dev/null | tail -1 | cut -d' ' -f2
}
p_hi=$(one --attrs '{"discount": 0.9}')
p_lo=$(one --attrs '{"discount": 0.0}')
if [ -n "$p_hi" ] && [ -n "$p_lo" ] && awk -v h="$p_hi" -v l="$p_lo" 'BEGIN { exit !(h > l) }'; then
  ok "from the store, user u5 x item i3: pCTR $p_lo at discount 0, $p_hi at 0.9"
else
  fail "the discount does not raise the score: ${p_lo:-?} at 0, ${p_hi:-?} at 0.9"
fi

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ] || exit 1
exit 0
