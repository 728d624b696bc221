#!/bin/bash
# run.sh BUILD_DIR SECONDS - runs every libFuzzer target built in BUILD_DIR
# (BUILD_DIR/tests/fuzz_*, configured with -DMTLD_FUZZ=ON and clang) for
# SECONDS each, from a small seed corpus in a temp dir.  One line per fuzzer;
# exits non-zero when a fuzzer finds a crash (its input is kept and named).
set -u
build=${1:?usage: run.sh BUILD_DIR SECONDS}
secs=${2:-30}
shopt -s nullglob
fuzzers=("$build"/tests/fuzz_*)
if [ ${#fuzzers[@]} -eq 0 ]; then
  echo "no fuzz_* targets in $build/tests (configure with CC=clang -DMTLD_FUZZ=ON)" >&2
  exit 2
fi
src=$(cd "$(dirname "$0")/../.." && pwd)
# libconfig 1.5 leaks a few bytes on some failed parses (fixed upstream in
# 1.7): lsan.supp suppresses leaks allocated inside libconfig only.
export LSAN_OPTIONS="suppressions=$src/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
work=$(mktemp -d "${TMPDIR:-/tmp}/mtld-fuzz.XXXXXX")
keep=0
trap '[ $keep -eq 1 ] || rm -rf "$work"' EXIT

# Seeds: a few records of each format.
seed_json() {
  local d=$1
  printf '%s' '{"event_id":1,"type":"IMPRESSION","user_id":42,"item_id":7,"category_id":3,"scenario":"home","time_ms":1700000000000,"request_id":555,"position":2,"price":19.99}' >"$d/j1"
  printf '%s' '{"event_id":"e-2","type":"review","user_id":"u-42","item_id":"sku-7","time_ms":1700000000001,"rating":4.5}' >"$d/j2"
  printf '%s' '{"event_id":18446744073709551615,"type":4,"user_id":1,"item_id":2,"time_ms":1700000000002,"price":1e3,"quantity":2,"extra":[1,{"a":null}]}' >"$d/j3"
  printf '%s' '{"event_id":3,"type":2,"user_id":1,"item_id":2,"time_ms":1,"price":NaN,"scenario":"a\"\\\u00e9"}' >"$d/j4"
  printf '%s' '{"event_id":4,"type":1,"user_id":1,"item_id":2,"time_ms":1700000000003,"attrs":{"age_level":"3","brand":"b-981","discount":0.2,"x":null}}' >"$d/j5"
  printf '%s' '{"event_id":5,"type":1,"user_id":1,"item_id":2,"time_ms":1700000000004,"attrs":[{"name":"a","str":"v"},{"name_id":77,"id":9},{"name":"d","num":-1e300}]}' >"$d/j6"
}
seed_pb() {
  local d=$1
  # event_id 1, type CLICK, user_id 42, item_id 7, scenario "DE", time_ms 1700000000000
  printf '\x08\x01\x18\x02\x20\x2a\x30\x07\x52\x02DE\x58\x80\xd0\x95\xff\xbc\x31' >"$d/p1"
  # event_key "e", user_key "u1", item_key "i", type REVIEW, rating 4.0f
  printf '\x12\x01e\x18\x05\x2a\x02u1\x3a\x01i\x58\x80\xd0\x95\xff\xbc\x31\x8d\x01\x00\x00\x80\x40' >"$d/p2"
  # price 2.5 (double), quantity 3, position 1, request_id 9
  printf '\x08\x02\x18\x04\x20\x01\x30\x02\x60\x09\x70\x01\x79\x00\x00\x00\x00\x00\x00\x04\x40\x80\x01\x03' >"$d/p3"
  # event_id 1, user 42, item 7, attrs {name "ab", str "v"} and {name_id 5, num 2.0}
  printf '\x08\x01\x18\x01\x20\x2a\x30\x07\x92\x01\x07\x0a\x02ab\x12\x01v\x92\x01\x0b\x20\x05\x19\x00\x00\x00\x00\x00\x00\x00\x40' >"$d/p4"
}
seed_config() {
  local d=$1
  cp "$src/conf/demo.conf" "$d/c0" 2>/dev/null
  printf '%s\n' 'source = { topics = ["e"]; };' 'kafka = { bootstrap_servers = "k:1"; };' \
    '@include "inc.conf"' >"$d/c1"
  printf '%s\n' 'source = { topics = ["e"]; };' '@include "d"' >"$d/c2"
  printf '%s\n' '# @include "d"' '/* @include "d"' '*/ s = "a\"b\n@include \"d\"";' \
    '@include "self.conf"' >"$d/c3"
  printf 'x = 1;\n@include "d\0x"\n' >"$d/c4"
}
cat >"$work/config.dict" <<'DICT'
"@include \""
"\"d\""
"\"inc.conf\""
"\"self.conf\""
"/*"
"*/"
"//"
"#"
"\\\""
"source = { topics = [\"e\"]; };"
"kafka = { bootstrap_servers = \"k:1\"; };"
"model = { tasks = ( { name = \"ctr\"; label = \"click\"; } ); };"
"type = \"file\";"
"\"90s\""
"= { };"
DICT
cat >"$work/json.dict" <<'DICT'
"event_id"
"user_id"
"item_id"
"category_id"
"request_id"
"scenario"
"time_ms"
"position"
"price"
"quantity"
"rating"
"type"
"REVIEW"
"CLICK"
"NaN"
"Infinity"
"18446744073709551616"
"-9223372036854775809"
"\\u0000"
DICT

failed=0
for fz in "${fuzzers[@]}"; do
  [ -x "$fz" ] || continue
  name=$(basename "$fz")
  corpus="$work/$name.corpus"
  mkdir -p "$corpus"
  dict=()
  case $name in
  *json*) seed_json "$corpus"; dict=(-dict="$work/json.dict") ;;
  *pb*) seed_pb "$corpus" ;;
  *config*) seed_config "$corpus"; dict=(-dict="$work/config.dict") ;;
  esac
  log="$work/$name.log"
  "$fz" -max_total_time="$secs" -max_len=4096 -timeout=10 -artifact_prefix="$work/$name-" \
    "${dict[@]}" "$corpus" >"$log" 2>&1
  rc=$?
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    echo "$name: ok (${runs:-no run count}, ${cov:-no coverage}, ${secs}s)"
  else
    failed=1
    keep=1
    echo "$name: FAILED (exit $rc); log $log, crash inputs: $(ls "$work"/"$name"-* 2>/dev/null | tr '\n' ' ')"
    grep -E 'ERROR|SUMMARY|runtime error|deadly' "$log" | head -5 | sed 's/^/  /'
  fi
done
exit $failed
