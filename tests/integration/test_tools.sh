#!/usr/bin/env bash
# test_tools.sh BUILD SRC - the tools end to end: mtld-gen determinism, JSON
# and protobuf outputs holding the same events, truth file consistency, bad
# records rejected for the reasons the truth file names, producing into a
# mock cluster (mtld-mockcluster) including a broker outage through its
# control FIFO, and the Taobao, Ali-CCP and AliExpress converters (their
# attributes included) on the shared samples when present.
set -u
BUILD=${1:?usage: test_tools.sh BUILD SRC}
SRC=${2:?usage: test_tools.sh BUILD SRC}
GEN=$BUILD/mtld-gen
PRODUCE=$BUILD/mtld-produce
MOCK=$BUILD/mtld-mockcluster
for b in "$GEN" "$PRODUCE" "$MOCK"; do
  [ -x "$b" ] || { echo "missing $b (build the tools first)"; exit 1; }
done

TMP=$(mktemp -d /tmp/mtld-test-tools.XXXXXX)
MOCK_PID=
cleanup() {
  if [ -n "$MOCK_PID" ] && kill -0 "$MOCK_PID" 2>/dev/null; then
    kill -TERM "$MOCK_PID" 2>/dev/null
    sleep 0.5
    kill -KILL "$MOCK_PID" 2>/dev/null
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); echo "ok   - $*"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL - $*"; }
check() { # check DESCRIPTION COMMAND...
  local d=$1
  shift
  if "$@"; then ok "$d"; else fail "$d"; fi
}
T() { timeout 120 "$@"; } # no step may hang the suite

SMALL=(--users 300 --items 200 --categories 20 --impressions 6000 --days 1)

# --- determinism ------------------------------------------------------------
T "$GEN" "${SMALL[@]}" --seed 7 --out "$TMP/a.pb" --truth "$TMP/a.truth" 2>"$TMP/gen.log"
check "mtld-gen exits 0" test $? -eq 0
T "$GEN" "${SMALL[@]}" --seed 7 --out "$TMP/b.pb" --truth "$TMP/b.truth" --quiet
check "same seed: byte-identical events" cmp -s "$TMP/a.pb" "$TMP/b.pb"
check "same seed: byte-identical truth" cmp -s "$TMP/a.truth" "$TMP/b.truth"
T "$GEN" "${SMALL[@]}" --seed 8 --out "$TMP/c.pb" --quiet
check "other seed: different events" bash -c "! cmp -s '$TMP/a.pb' '$TMP/c.pb'"
check "summary has the oracle metrics" grep -q "oracle AUC click" "$TMP/gen.log"
T "$GEN" "${SMALL[@]}" --seed 7 --quiet >"$TMP/stdout.pb"
check "stdout output equals --out output" cmp -s "$TMP/a.pb" "$TMP/stdout.pb"

# --- JSON and protobuf hold the same events ---------------------------------
T "$GEN" "${SMALL[@]}" --seed 7 --format json --out "$TMP/a.json" --quiet
check "JSON output has one object per line" \
  test "$(grep -c '^{.*}$' "$TMP/a.json")" -eq "$(wc -l <"$TMP/a.json")"
T "$PRODUCE" --in "$TMP/a.json" --out "$TMP/a2.pb" --format protobuf --quiet
check "json -> protobuf equals the protobuf output" cmp -s "$TMP/a.pb" "$TMP/a2.pb"
T "$PRODUCE" --in "$TMP/a.pb" --out "$TMP/a2.json" --format json --quiet
check "protobuf -> json equals the json output" cmp -s "$TMP/a.json" "$TMP/a2.json"

# --- truth file ---------------------------------------------------------------
n_imp=$(grep -c '"type":"IMPRESSION"' "$TMP/a.json")
n_rev=$(grep -c '"type":"REVIEW"' "$TMP/a.json")
n_truth=$(($(wc -l <"$TMP/a.truth") - 1))
check "truth header" test "$(head -1 "$TMP/a.truth")" = \
  "event_id,kind,p_click,p_purchase_given_click,expected_rating,reason"
check "truth rows ($n_truth) = impressions ($n_imp) + reviews ($n_rev)" \
  test "$n_truth" -eq $((n_imp + n_rev))
check "there are reviews" test "$n_rev" -gt 0
check "truth probabilities in (0,1), expected ratings in [1,5]" awk -F, '
  NR > 1 && $2 == "impression" && !($3 > 0 && $3 < 1 && $4 > 0 && $4 < 1) { bad = 1 }
  NR > 1 && $2 == "review" && !($5 >= 1 && $5 <= 5) { bad = 1 }
  END { exit bad }' "$TMP/a.truth"
T "$PRODUCE" --in "$TMP/a.pb" --out /dev/null --validate --quiet 2>"$TMP/val.log"
check "every generated event is valid" \
  test "$(cat "$TMP/val.log")" = "validate none $(($(wc -l <"$TMP/a.json")))"

# --- bad records ---------------------------------------------------------------
for fmt in protobuf json; do
  T "$GEN" "${SMALL[@]}" --seed 9 --bad-every 37 --format "$fmt" --out "$TMP/bad.$fmt" \
    --truth "$TMP/bad.$fmt.truth" 2>"$TMP/badgen.log"
  check "$fmt: generator self-check has no mismatch" bash -c "! grep -q warning '$TMP/badgen.log'"
  awk -F, 'NR > 1 && $2 == "bad" { n[$6]++ } END { for (r in n) print "validate", r, n[r] }' \
    "$TMP/bad.$fmt.truth" | sort >"$TMP/expect.$fmt"
  T "$PRODUCE" --in "$TMP/bad.$fmt" --out /dev/null --validate --quiet 2>&1 |
    grep -v '^validate none ' | sort >"$TMP/got.$fmt"
  check "$fmt: $(wc -l <"$TMP/expect.$fmt") bad kinds rejected with the truth's reasons" \
    diff "$TMP/expect.$fmt" "$TMP/got.$fmt"
  check "$fmt: every bad kind present" test "$(wc -l <"$TMP/expect.$fmt")" -ge 6
done

# --- mock cluster -------------------------------------------------------------
BS_FILE=$TMP/bootstrap
FIFO=$TMP/control
"$MOCK" --brokers 3 --topic events:4 --topic other:2 --bootstrap-file "$BS_FILE" \
  --control-fifo "$FIFO" 2>"$TMP/mock.log" &
MOCK_PID=$!
for _ in $(seq 150); do
  [ -s "$BS_FILE" ] && break
  sleep 0.1
done
if [ ! -s "$BS_FILE" ]; then
  fail "mock cluster wrote its bootstrap file"
  cat "$TMP/mock.log"
else
  ok "mock cluster wrote its bootstrap file"
  BS=$(cat "$BS_FILE")
  check "bootstrap lists 3 brokers" test "$(echo "$BS" | tr ',' '\n' | grep -c '^127.0.0.1:')" -eq 3
  T "$PRODUCE" --in "$TMP/bad.protobuf" --bootstrap "$BS" --topic events \
    --summary "$TMP/prod.json" 2>"$TMP/prod.log"
  rc=$?
  check "mtld-produce into the mock cluster exits 0" test $rc -eq 0
  n_rec=$(grep -c . "$TMP/bad.json") # same records as the protobuf file, one per line
  check "every record delivered (bad ones included)" \
    grep -q "$n_rec records, $n_rec delivered to events, 0 failed" "$TMP/prod.log"
  check "undecodable records produced without a key" grep -q "without a user key" "$TMP/prod.log"
  check "--summary: the same counts as JSON" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
sys.exit(not (s["records"] == n and s["delivered"] == n and s["failed"] == 0 and
              s["topic"] == "events" and s["without_user_key"] > 0 and s["exit_code"] == 0))' \
    "$TMP/prod.json" "$n_rec"
  T "$PRODUCE" --csv /dev/stdin --layout generic --map 'user=1,item=2,type=const:CLICK,time=3' \
    --bootstrap "$BS" --topic other --quiet <<<"1,2,1700000000
3,4,1700000001"
  check "converted CSV produced" test $? -eq 0
  T "$GEN" "${SMALL[@]}" --seed 3 --kafka "$BS" --topic events --quiet
  check "mtld-gen --kafka exits 0" test $? -eq 0

  # broker outage: with every broker down nothing can be delivered
  echo down-all >"$FIFO"
  sleep 1
  T "$PRODUCE" --in "$TMP/a.pb" --bootstrap "$BS" --topic events --quiet \
    --kafka-prop message.timeout.ms=3000 --kafka-prop log_level=0 2>"$TMP/down.log"
  rc=$?
  check "brokers down: mtld-produce fails (rc $rc)" test $rc -eq 1
  check "brokers down: failure reported" grep -q "failed" "$TMP/down.log"
  echo up-all >"$FIFO"
  sleep 1
  T "$PRODUCE" --in "$TMP/a.pb" --bootstrap "$BS" --topic events --quiet
  check "brokers up again: mtld-produce succeeds" test $? -eq 0
  check "control commands logged" grep -q "broker 2 down" "$TMP/mock.log"

  kill -TERM "$MOCK_PID"
  for _ in $(seq 100); do
    kill -0 "$MOCK_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$MOCK_PID" 2>/dev/null; then
    fail "mock cluster stops on SIGTERM"
  else
    wait "$MOCK_PID"
    check "mock cluster exits 0 on SIGTERM" test $? -eq 0
    check "mock cluster removed its FIFO" test ! -e "$FIFO"
  fi
  MOCK_PID=
fi

# --- converters: every map key documented in --help and the README ----------
"$PRODUCE" --help >"$TMP/help.txt"
undoc=
for k in user item category type time time_unit time_offset time_offset_unit tz scenario \
  scenario_prefix rating price quantity position request id click purchase header sep ids null; do
  grep -qw -- "$k" "$TMP/help.txt" || undoc="$undoc help:$k"
  grep -q -- "\`$k\`" "$SRC/README.md" || undoc="$undoc README:$k"
done
check "every --map key in --help and the README (missing:${undoc:- none})" test -z "$undoc"

# --- converters: several files, --validate alone, lateness -------------------
printf 'u,i,t\n1,10,1700000000\n2,11,1700000100\n' >"$TMP/part1.csv"
printf 'u,i,t\n3,12,1700000050\n1,10,1700000000\n' >"$TMP/part2.csv"
MAP='header=1,user=u,item=i,type=const:CLICK,time=t'
T "$PRODUCE" --csv "$TMP/part1.csv" --csv "$TMP/part2.csv" --layout generic --map "$MAP" \
  --out "$TMP/parts.json" --format json 2>"$TMP/parts.log"
check "two --csv files: exit 0" test $? -eq 0
check "two --csv files: all 4 rows converted, in time order" test \
  "$(grep -o '"item_id":[0-9]*' "$TMP/parts.json" | cut -d: -f2 | tr '\n' ' ')" = "10 10 12 11 "
check "two --csv files: 2 inputs reported" grep -q "2 inputs, 6 lines, 4 rows, 4 converted" \
  "$TMP/parts.log"
T "$PRODUCE" --csv "$TMP/part1.csv" --csv "$TMP/part2.csv" --layout generic --map "$MAP" \
  --validate --quiet 2>"$TMP/vonly.log"
check "--validate needs no output" test $? -eq 0
check "--validate alone counts the records" grep -qx "validate none 4" "$TMP/vonly.log"
# 2 days apart, read out of time order: the daemon rejects the old one as too_late
printf '1,10,1700200000\n1,11,1700000000\n1,12,1700200001\n' >"$TMP/late.csv"
T "$PRODUCE" --csv "$TMP/late.csv" --layout generic --map 'user=1,item=2,type=const:CLICK,time=3' \
  --no-sort --validate 2>"$TMP/late.log"
check "--validate applies the watermark: 1 too_late" grep -qx "validate too_late 1" "$TMP/late.log"
check "--validate warns about too_late" grep -q "warning: 1 of 3 records .* too_late" "$TMP/late.log"
T "$PRODUCE" --csv "$TMP/late.csv" --layout generic --map 'user=1,item=2,type=const:CLICK,time=3' \
  --no-sort --validate --max-lateness 3d 2>"$TMP/late2.log"
check "--max-lateness 3d: none too_late" grep -qx "validate none 3" "$TMP/late2.log"
printf 'source = { type = "file"; file = "/dev/null"; };\nvalidation = { max_lateness = "3d"; };\n' >"$TMP/late.conf"
T "$PRODUCE" --csv "$TMP/late.csv" --layout generic --map 'user=1,item=2,type=const:CLICK,time=3' \
  --no-sort --validate --config "$TMP/late.conf" 2>"$TMP/late3.log"
check "--config's validation.max_lateness applies" grep -qx "validate none 3" "$TMP/late3.log"
T "$PRODUCE" --csv "$TMP/late.csv" --layout generic --map 'user=1,item=2,type=const:CLICK,time=3' \
  --validate 2>"$TMP/late4.log"
check "sorted (the default): none too_late" grep -qx "validate none 3" "$TMP/late4.log"

# --- real data: format samples (Diginetica, YooChoose) ------------------------
FS=$SRC/../shared/data/format-samples
if [ -r "$FS/train-item-views-sample.csv" ] && [ -r "$FS/yoochoose-clicks-sample.dat" ]; then
  DIGI='header=1,sep=;,item=itemId,type=const:CLICK,time=eventdate,time_unit=date,time_offset=timeframe'
  rows=$(($(wc -l <"$FS/train-item-views-sample.csv") - 1))
  na=$(grep -c '^[0-9]*;NA;' "$FS/train-item-views-sample.csv")
  T "$PRODUCE" --csv "$FS/train-item-views-sample.csv" --layout generic --map "$DIGI,user=userId" \
    --validate 2>"$TMP/digi.log"
  check "diginetica: userId NA rows ($na) rejected as null_id" \
    grep -q "bad rows null_id: $na\$" "$TMP/digi.log"
  T "$PRODUCE" --csv "$FS/train-item-views-sample.csv" --layout generic \
    --map "$DIGI,user=sessionId" --out "$TMP/digi.json" --format json 2>"$TMP/digi2.log"
  check "diginetica by session: all $rows rows converted" test "$(wc -l <"$TMP/digi.json")" -eq "$rows"
  check "diginetica: time = date + timeframe ms" \
    grep -q '"time_ms":1462752526309' "$TMP/digi.json"
  T "$PRODUCE" --csv "$FS/yoochoose-clicks-sample.dat" --layout generic \
    --map 'header=0,user=1,item=3,category=4,type=const:CLICK,time=2,time_unit=iso' \
    --validate 2>"$TMP/yoo.log"
  check "yoochoose: every row valid" \
    grep -qx "validate none $(wc -l <"$FS/yoochoose-clicks-sample.dat")" "$TMP/yoo.log"
else
  echo "skip - format samples: $FS not present (shared data is not shipped)"
fi

# --- real data: the layouts' attributes (Ali-CCP, AliExpress) -----------------
# n_attrs FILE: the distinct numbers of attributes per JSON record
n_attrs() { awk '{ n = gsub(/"name_id":/, "&"); print n }' "$1" | sort -u | tr '\n' ' '; }
if [ -r "$FS/ali_ccp_train_sample.csv" ] && [ -r "$FS/aliexpress_train_sample.csv" ]; then
  T "$PRODUCE" --csv "$FS/ali_ccp_train_sample.csv" --layout aliccp --format json \
    --out "$TMP/aliccp.json" 2>"$TMP/aliccp.log"
  check "aliccp: every event carries the layout's 16 attributes" \
    test "$(n_attrs "$TMP/aliccp.json")" = "16 "
  check "aliccp: numeric category_match_weight (D508) on the events" \
    grep -q '"num":0.07556' "$TMP/aliccp.json"
  T "$PRODUCE" --csv "$FS/aliexpress_train_sample.csv" --layout aliexpress --format json \
    --out "$TMP/ae.json" 2>"$TMP/ae.log"
  check "aliexpress: every event carries the layout's 16 attributes" \
    test "$(n_attrs "$TMP/ae.json")" = "16 "
  T "$PRODUCE" --csv "$FS/aliexpress_train_sample.csv" --layout aliexpress --format json \
    --map 'attr.numerical_30=' --out "$TMP/ae15.json" 2>"$TMP/ae15.log"
  check "aliexpress: attr.numerical_30= removes one" test "$(n_attrs "$TMP/ae15.json")" = "15 "
  T "$PRODUCE" --csv "$FS/aliexpress_train_sample.csv" --layout aliexpress --format json \
    --map 'attr.extra=numerical_31' --out "$TMP/ae17.json" 2>"$TMP/ae17.log"
  check "aliexpress: a 17th attribute is refused" grep -q "more than 16 attributes" "$TMP/ae17.log"
else
  echo "skip - layout attributes: no Ali-CCP / AliExpress samples in $FS (shared data is not shipped)"
fi

# --- real data: Taobao --------------------------------------------------------
TAOBAO=$SRC/../shared/data/taobao-userbehavior/UserBehavior_users_a.csv
if [ -r "$TAOBAO" ]; then
  rows=$(grep -c . "$TAOBAO")
  favs=$(grep -c ',fav,' "$TAOBAO")
  T "$PRODUCE" --csv "$TAOBAO" --layout taobao --out "$TMP/taobao.json" --format json \
    2>"$TMP/taobao.log"
  check "taobao conversion exits 0" test $? -eq 0
  n=$(wc -l <"$TMP/taobao.json")
  check "taobao events ($n) = rows ($rows) - fav rows ($favs)" test "$n" -eq $((rows - favs))
  check "taobao fav rows reported" grep -q "skipped type 'fav': $favs rows" "$TMP/taobao.log"
  check "taobao output sorted by time" bash -c "grep -o '\"time_ms\":[0-9]*' '$TMP/taobao.json' |
    cut -d: -f2 | sort -c -n"
else
  echo "skip - taobao conversion: $TAOBAO not present (shared data is not shipped)"
fi

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
