#!/usr/bin/env bash
# test_readers.sh BUILD SRC - the serving snapshot readers against the
# trainer's own predictions (tests/helpers/snapshot_fixture.c trains small
# models and writes a snapshot, a sample dump and the trainer's predictions):
#   - mtld-score --samples prints exactly the trainer's predictions (every
#     architecture, samples built from a feature store, and a review task
#     chained on ctcvr: ctr -> ctcvr -> review);
#   - mtld-score --store scores candidates from the store's features exactly
#     as the trainer scores the same samples (JSON lines and --user/--item);
#   - tools/mtld_reader.py (numpy, its own implementation of the format and of
#     the forward pass) agrees within 1e-5 with both;
#   - both readers refuse a damaged snapshot with a reason;
#   - top-K: mtld-score --top ranks the item set (scores = its per-candidate
#     scores, best first), mtld_reader.py ranks the same, a snapshot without
#     an item set (older files) is refused for top-K only;
#   - on the daemon's own output (a file replay: final snapshot, sample dump,
#     store) both readers agree, and candidates score from its store;
#   - declared attributes (variant 8): the header lists them, candidates
#     with a context attribute score from the store as the trainer scores
#     them, and both readers rank the same with a request's attributes.
# The C part always runs; the Python part needs python3 with numpy,
# protobuf and xxhash plus protoc (tools/install-deps.sh installs them).
# Without them the test reports what is missing and exits 77 (skip) after
# the C checks passed.
set -u
BUILD=${1:?usage: test_readers.sh BUILD SRC}
SRC=${2:?usage: test_readers.sh BUILD SRC}
FIX=$BUILD/tests/snapshot_fixture
SCORE=$BUILD/mtld-score
for b in "$FIX" "$SCORE"; do
  [ -x "$b" ] || { echo "missing $b (build first)"; exit 1; }
done

TMP=$(mktemp -d /tmp/mtld-test-readers.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); echo "ok   - $*"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL - $*"; }
T() { timeout 120 "$@"; }

# A python3 that has what the reader needs (Debian's, or the first on PATH).
PY=
for cand in /usr/bin/python3 python3; do
  if command -v "$cand" >/dev/null 2>&1 &&
    "$cand" -c 'import numpy, google.protobuf, xxhash' >/dev/null 2>&1; then
    PY=$cand
    break
  fi
done
if [ -n "$PY" ] && ! command -v protoc >/dev/null 2>&1; then PY=; fi
if [ -n "$PY" ]; then
  # the Python code of the header, generated now (never committed)
  mkdir -p "$TMP/pb2"
  if protoc --proto_path="$SRC/schemas" --python_out="$TMP/pb2" "$SRC/schemas/snapshot.proto"; then
    export MTLD_PB2_DIR=$TMP/pb2
  else
    fail "protoc could not generate snapshot_pb2"
    PY=
  fi
fi
READER=$SRC/tools/mtld_reader.py

# maxdiff A B: prints the largest absolute difference of two prediction
# tables (same ids in the same order), or "mismatch".
maxdiff() {
  awk 'NR == FNR { if ($1 != "#") a[FNR] = $0; n = FNR; next }
       FNR > n { bad = 1 }
       $1 == "#" { next }
       { split(a[FNR], x, " ");
         if (x[1] != $1 || length(x) != NF) bad = 1;
         for (i = 2; i <= NF; i++) { d = x[i] - $i; if (d < 0) d = -d; if (d > m) m = d } }
       END { if (bad || FNR != n) print "mismatch"; else printf "%.3g\n", m }' "$1" "$2"
}

within() { # within VALUE TOL
  [ "$1" != mismatch ] && awk -v v="$1" -v t="$2" 'BEGIN { exit !(v <= t) }'
}

for v in 0 1 2 3 4 5 6 7 8; do
  D=$TMP/v$v
  mkdir -p "$D"
  if ! T "$FIX" "$D" "$v" 2>"$D/fix.err"; then
    fail "variant $v: the fixture failed: $(cat "$D/fix.err")"
    continue
  fi
  if T "$SCORE" --snapshot "$D/snapshots" --samples "$D/samples.bin" >"$D/c.txt" 2>"$D/c.err" &&
    cmp -s "$D/c.txt" "$D/expected.txt"; then
    ok "variant $v: mtld-score prints the trainer's predictions exactly ($(($(wc -l <"$D/c.txt") - 1)) samples)"
  else
    fail "variant $v: mtld-score differs from the trainer: $(head -c 300 "$D/c.err") $(maxdiff "$D/c.txt" "$D/expected.txt")"
  fi
  if [ -n "$PY" ]; then
    if T "$PY" "$READER" "$D/snapshots" --samples "$D/samples.bin" >"$D/py.txt" 2>"$D/py.err"; then
      d1=$(maxdiff "$D/py.txt" "$D/expected.txt")
      d2=$(maxdiff "$D/py.txt" "$D/c.txt")
      if within "$d1" 1e-5 && within "$d2" 1e-5; then
        ok "variant $v: mtld_reader.py agrees (max |diff| $d1 to the trainer, $d2 to mtld-score)"
      else
        fail "variant $v: mtld_reader.py differs: $d1 to the trainer, $d2 to mtld-score"
      fi
    else
      fail "variant $v: mtld_reader.py failed: $(head -c 300 "$D/py.err")"
    fi
  fi
done

# Candidates scored from the feature store (variant 6).
D=$TMP/v6
if [ -f "$D/candidates.jsonl" ]; then
  if T "$SCORE" --snapshot "$D/snapshots" --store "$D/store" --sample-json "$D/candidates.jsonl" \
    >"$D/store.txt" 2>"$D/store.err" && cmp -s "$D/store.txt" "$D/expected_store.txt"; then
    ok "mtld-score --store --sample-json: $(($(wc -l <"$D/store.txt") - 1)) candidates scored as the trainer scores them"
  else
    fail "mtld-score --store --sample-json differs: $(grep -v cold "$D/store.err" | head -c 300) $(maxdiff "$D/store.txt" "$D/expected_store.txt")"
  fi
  # one candidate from the command line: the second JSON line
  line=$(sed -n 2p "$D/candidates.jsonl")
  num() { echo "$line" | sed -E "s/.*\"$1\": ([0-9]+).*/\1/"; }
  scen=$(echo "$line" | sed -E 's/.*"scenario": "([^"]*)".*/\1/')
  want=$(sed -n 3p "$D/expected_store.txt" | cut -d' ' -f2-)
  got=$(T "$SCORE" --snapshot "$D/snapshots" --store "$D/store" --user "$(num user)" \
    --item "$(num item)" --scenario "$scen" --position "$(num position)" \
    --time-ms "$(num time_ms)" 2>/dev/null | sed -n 2p | cut -d' ' -f2-)
  if [ -n "$want" ] && [ "$got" = "$want" ]; then
    ok "mtld-score --user/--item scores one candidate like the JSON path"
  else
    fail "mtld-score --user/--item: got '$got', want '$want'"
  fi
  # a store with other feature definitions than the snapshot's is refused
  rc=0
  T "$SCORE" --snapshot "$D/snapshots-otherdef" --store "$D/store" --user 1 --item 1 \
    >/dev/null 2>"$D/other.err" || rc=$?
  if [ "$rc" = 2 ] && grep -q "are not the snapshot's" "$D/other.err"; then
    ok "a store with other feature definitions is refused"
  else
    fail "other feature definitions: rc $rc: $(head -c 200 "$D/other.err")"
  fi
  rc=0
  T "$SCORE" --snapshot "$TMP/v0/snapshots" --store "$D/store" --user 1 --item 1 \
    >/dev/null 2>"$D/hash.err" || rc=$?
  # the variant-0 snapshot records no hash: it warns and scores
  if [ "$rc" = 0 ] && grep -q "no feature hash" "$D/hash.err"; then
    ok "a snapshot without a feature hash is scored with a warning"
  else
    fail "no-hash snapshot: rc $rc: $(head -c 200 "$D/hash.err")"
  fi
  # a bad JSON line is reported and the exit code says so; the good ones are scored
  printf '{"user": 1, "item": 2}\nnot json\n{"item": 3}\n' >"$D/bad.jsonl"
  rc=0
  T "$SCORE" --snapshot "$D/snapshots" --store "$D/store" --sample-json "$D/bad.jsonl" \
    >"$D/bad.txt" 2>"$D/bad.err" || rc=$?
  if [ "$rc" = 1 ] && [ "$(grep -vc '^#' "$D/bad.txt")" = 1 ] &&
    grep -q "bad.jsonl:2: not valid JSON" "$D/bad.err" && grep -q 'bad.jsonl:3: needs "user"' "$D/bad.err"; then
    ok "bad JSON lines are reported with their line numbers (exit 1)"
  else
    fail "bad JSON lines: rc $rc, $(head -c 300 "$D/bad.err")"
  fi
fi

# Top-K: mtld-score --top ranks the snapshot's item set; the Python reader
# ranks it the same (same items in the same order, scores within 1e-5; a
# near-tie may swap only when the two scores are within 1e-5); a snapshot
# without an item set (as written before it existed) is refused by both.
# topk_agree A B: "ok" or why not (A, B: "rank item category score" lines)
topk_agree() {
  awk 'NR == FNR { if ($1 != "#") { it[$1] = $2; sc[$1] = $4; n = $1 }; next }
       $1 == "#" { next }
       { m = $1; d = sc[$1] - $4; if (d < 0) d = -d; if (d > 1e-5) { bad = "score of rank " $1 " differs by " d }
         if (it[$1] != $2) { # a swap is allowed between (near-)equal scores only
           for (r in it) if (it[r] == $2) { e = sc[r] - $4; if (e < 0) e = -e; if (e > 1e-5) bad = "item " $2 " ranked " $1 " vs " r } } }
       END { if (n != m || n == 0) bad = "lengths " n " and " m; print bad ? bad : "ok" }' "$1" "$2"
}
for v in 0 4; do
  D=$TMP/v$v
  [ -d "$D/snapshots" ] || continue
  if T "$SCORE" --snapshot "$D/snapshots" --top 20 --user 7 --scenario sc11 >"$D/top.txt" 2>"$D/top.err" &&
    [ "$(grep -vc '^#' "$D/top.txt")" = 20 ] && head -1 "$D/top.txt" | grep -q '^# rank item category ctr$'; then
    ok "variant $v: mtld-score --top 20 ranks the item set: $(sed -n 2p "$D/top.txt")"
  else
    fail "variant $v: mtld-score --top 20: $(head -c 300 "$D/top.err")"
  fi
  # every listed score is what mtld-score gives that candidate alone, and the list is sorted
  awk '$1 != "#" { printf "{\"id\": %s, \"user\": 7, \"item\": %s, \"category\": %s, \"scenario\": \"sc11\"}\n", $2, $2, $3 }' \
    "$D/top.txt" >"$D/top.jsonl"
  T "$SCORE" --snapshot "$D/snapshots" --sample-json "$D/top.jsonl" >"$D/top_scored.txt" 2>/dev/null
  # (within 1e-6: a batch scores each row with BLIS kernels chosen by the batch's shape)
  if [ "$(paste -d' ' <(grep -v '^#' "$D/top.txt") <(grep -v '^#' "$D/top_scored.txt") |
    awk '{ d = $4 - $6; if (d < 0) d = -d; if ($2 != $5 || d > 1e-6) bad = 1 } END { print NR && !bad }')" = 1 ] &&
    grep -v '^#' "$D/top.txt" | awk 'NR > 1 && ($4 > p || ($4 == p && $2 < q)) { exit 1 } { p = $4; q = $2 }'; then
    ok "variant $v: the top-K scores are mtld-score's for those candidates (within 1e-6), best first"
  else
    fail "variant $v: top-K scores or order: $(head -3 "$D/top.txt") / $(head -3 "$D/top_scored.txt")"
  fi
  if [ -n "$PY" ]; then
    if T "$PY" "$READER" "$D/snapshots" --top 20 --user 7 --scenario sc11 >"$D/pytop.txt" 2>"$D/pytop.err" &&
      r=$(topk_agree "$D/top.txt" "$D/pytop.txt") && [ "$r" = ok ]; then
      ok "variant $v: mtld_reader.py ranks the same top 20 ($(grep -v '^#' "$D/pytop.txt" | awk '{printf "%s ", $2}' | head -c 60))"
    else
      fail "variant $v: mtld_reader.py --top: ${r:-} $(head -c 200 "$D/pytop.err")"
    fi
  fi
done
D=$TMP/v6
if [ -d "$D/snapshots" ]; then
  # ranked by the ESMM task, features from the store for every candidate
  if T "$SCORE" --snapshot "$D/snapshots" --store "$D/store" --top 10 --user 3 --rank-by ctcvr \
    >"$D/top.txt" 2>"$D/top.err" && [ "$(grep -vc '^#' "$D/top.txt")" = 10 ]; then
    first=$(sed -n 2p "$D/top.txt")
    one=$(T "$SCORE" --snapshot "$D/snapshots" --store "$D/store" --user 3 --item "$(echo "$first" | cut -d' ' -f2)" |
      tail -1 | cut -d' ' -f3)
    if [ "$one" = "$(echo "$first" | cut -d' ' -f4)" ]; then
      ok "mtld-score --store --top 10 --rank-by ctcvr: the best ($first) scores so as one candidate"
    else
      fail "mtld-score --store --top: best $first, scored alone $one"
    fi
  else
    fail "mtld-score --store --top 10: $(head -c 300 "$D/top.err")"
  fi
  if [ -n "$PY" ] && T "$SCORE" --snapshot "$D/snapshots" --top 20 --user-key u-5 --rank-by ctcvr >"$D/top2.txt" 2>/dev/null &&
    T "$PY" "$READER" "$D/snapshots" --top 20 --user-key u-5 --rank-by ctcvr >"$D/pytop2.txt" 2>"$D/pytop2.err" &&
    r=$(topk_agree "$D/top2.txt" "$D/pytop2.txt") && [ "$r" = ok ]; then
    ok "variant 6: both readers rank the store's item set the same by ctcvr (--user-key)"
  elif [ -n "$PY" ]; then
    fail "variant 6: readers' top-K by ctcvr differ: ${r:-} $(head -c 200 "$D/pytop2.err")"
  fi
fi
# Declared attributes (variant 8): candidates with a context attribute
# ("attrs") score from the store as the trainer scores them; the attribute
# changes the scores; the header lists the attributes for both readers;
# top-K with the request's attributes agrees between the readers.
D=$TMP/v8
if [ -f "$D/candidates.jsonl" ]; then
  if T "$SCORE" --snapshot "$D/snapshots" --store "$D/store" --sample-json "$D/candidates.jsonl" \
    >"$D/store.txt" 2>"$D/store.err" && cmp -s "$D/store.txt" "$D/expected_store.txt"; then
    ok "variant 8: $(($(wc -l <"$D/store.txt") - 1)) candidates with attributes scored from the store as the trainer scores them"
  else
    fail "variant 8: mtld-score --store with attributes differs: $(grep -v cold "$D/store.err" | head -c 300) $(maxdiff "$D/store.txt" "$D/expected_store.txt")"
  fi
  sed 's/, "attrs": {[^}]*}//' "$D/candidates.jsonl" >"$D/noattrs.jsonl"
  T "$SCORE" --snapshot "$D/snapshots" --store "$D/store" --sample-json "$D/noattrs.jsonl" >"$D/noattrs.txt" 2>/dev/null
  nd=$(paste -d' ' "$D/store.txt" "$D/noattrs.txt" | awk '$1 != "#" && $2 != $7 { n++ } END { print n + 0 }')
  if [ "$nd" -gt 50 ]; then
    ok "variant 8: without the context attribute $nd candidates score differently"
  else
    fail "variant 8: the attribute changes only $nd scores"
  fi
  if T "$SCORE" --snapshot "$D/snapshots" --info 2>/dev/null | grep -q '^attribute 2 brand owner item categorical rows 32 default "none"$'; then
    ok "variant 8: mtld-score --info lists the declared attributes"
  else
    fail "variant 8: mtld-score --info does not list the attributes"
  fi
  if [ -n "$PY" ]; then
    if T "$PY" "$READER" "$D/snapshots" --info 2>/dev/null | grep -q '^attribute 3 income owner user numeric default 1.5$'; then
      ok "variant 8: mtld_reader.py --info lists the declared attributes"
    else
      fail "variant 8: mtld_reader.py --info does not list the attributes"
    fi
    if T "$SCORE" --snapshot "$D/snapshots" --top 20 --user 7 --rank-by ctcvr --attrs '{"discount": 0.4, "age": "a2", "brand": "b1"}' >"$D/top.txt" 2>"$D/top.err" &&
      T "$PY" "$READER" "$D/snapshots" --top 20 --user 7 --rank-by ctcvr --attrs '{"discount": 0.4, "age": "a2", "brand": "b1"}' >"$D/pytop.txt" 2>"$D/pytop.err" &&
      r=$(topk_agree "$D/top.txt" "$D/pytop.txt") && [ "$r" = ok ]; then
      ok "variant 8: both readers rank the item set the same with the request's attributes"
    else
      fail "variant 8: top-K with attributes: ${r:-} $(head -c 200 "$D/top.err" "$D/pytop.err")"
    fi
  fi
fi

D=$TMP/v5
if [ -d "$D/snapshots" ]; then
  rc=0
  T "$SCORE" --snapshot "$D/snapshots" --top 5 --user 7 >/dev/null 2>"$D/top.err" || rc=$?
  if [ "$rc" = 2 ] && grep -q "no item set" "$D/top.err"; then
    ok "a snapshot without an item set (older format) still scores, and --top says it has no item set"
  else
    fail "--top without an item set: rc $rc $(head -c 200 "$D/top.err")"
  fi
  if [ -n "$PY" ]; then
    rc=0
    T "$PY" "$READER" "$D/snapshots" --top 5 --user 7 >/dev/null 2>"$D/pytop.err" || rc=$?
    if [ "$rc" = 2 ] && grep -q "no item set" "$D/pytop.err"; then
      ok "mtld_reader.py --top refuses a snapshot without an item set"
    else
      fail "mtld_reader.py --top without an item set: rc $rc $(head -c 200 "$D/pytop.err")"
    fi
  fi
fi

# --info shows the header; the Python reader reads the same header.
D=$TMP/v0
if T "$SCORE" --snapshot "$D/snapshots" --info >"$D/info.txt" 2>&1 &&
  grep -q '^format_version 1$' "$D/info.txt" && grep -q '^offset events 0 ' "$D/info.txt" &&
  grep -q '^metrics task=ctr scenario=all ' "$D/info.txt"; then
  ok "mtld-score --info prints version, offsets and metrics"
else
  fail "mtld-score --info: $(head -c 300 "$D/info.txt")"
fi
if [ -n "$PY" ]; then
  if T "$PY" "$READER" "$D/snapshots" --info >"$D/pyinfo.txt" 2>&1 &&
    [ "$(grep '^watermark_ms' "$D/pyinfo.txt")" = "$(grep '^watermark_ms' "$D/info.txt")" ] &&
    grep -q '^tensor emb.user.last_used ' "$D/pyinfo.txt"; then
    ok "mtld_reader.py --info reads the same header"
  else
    fail "mtld_reader.py --info: $(head -c 300 "$D/pyinfo.txt")"
  fi
fi

# A damaged snapshot: both readers refuse it and say why.
SNAP=$(ls "$D"/snapshots/snapshot-*.mtlds | head -1)
cp "$SNAP" "$TMP/damaged.mtlds"
size=$(stat -c %s "$SNAP")
printf '\x55' | dd of="$TMP/damaged.mtlds" bs=1 seek=$((size - 200)) conv=notrunc status=none
rc=0
T "$SCORE" --snapshot "$TMP/damaged.mtlds" --info >/dev/null 2>"$TMP/damaged.err" || rc=$?
if [ "$rc" = 2 ] && grep -q "checksum mismatch" "$TMP/damaged.err"; then
  ok "mtld-score refuses a damaged snapshot: $(head -c 150 "$TMP/damaged.err")"
else
  fail "mtld-score on a damaged snapshot: rc $rc, $(head -c 200 "$TMP/damaged.err")"
fi
head -c $((size - 1000)) "$SNAP" >"$TMP/truncated.mtlds"
rc=0
T "$SCORE" --snapshot "$TMP/truncated.mtlds" --info >/dev/null 2>"$TMP/trunc.err" || rc=$?
if [ "$rc" = 2 ] && grep -q "truncated" "$TMP/trunc.err"; then
  ok "mtld-score refuses a truncated snapshot"
else
  fail "mtld-score on a truncated snapshot: rc $rc, $(head -c 200 "$TMP/trunc.err")"
fi
if [ -n "$PY" ]; then
  for f in damaged truncated; do
    rc=0
    T "$PY" "$READER" "$TMP/$f.mtlds" --info >/dev/null 2>"$TMP/py-$f.err" || rc=$?
    if [ "$rc" = 2 ] && grep -Eq "checksum mismatch|truncated" "$TMP/py-$f.err"; then
      ok "mtld_reader.py refuses a $f snapshot: $(head -c 120 "$TMP/py-$f.err")"
    else
      fail "mtld_reader.py on a $f snapshot: rc $rc, $(head -c 200 "$TMP/py-$f.err")"
    fi
  done
fi

# The daemon's own output: a replay of a generated file writes a final
# serving snapshot and dumps the samples it trained on; both readers score
# the dump with that snapshot and agree, and candidates are scored from the
# daemon's store (its feature definitions are the snapshot's).
if [ -x "$BUILD/mtld" ] && [ -x "$BUILD/mtld-gen" ]; then
  D=$TMP/daemon
  mkdir -p "$D"
  T "$BUILD/mtld-gen" --seed 5 --users 300 --items 150 --impressions 4000 --days 1 \
    --out "$D/events.pb" 2>"$D/gen.log"
  cat >"$D/mtld.conf" <<CONF
source = { type = "file"; file = "$D/events.pb"; };
store = { path = "$D/store"; sync = false; };
model = { dim = 8; rows = { user = 4096; item = 2048; category = 256; }; batch_size = 64; };
trainer = { report_interval = "0s"; dump_samples = "$D/samples.bin"; };
checkpoint = { dir = "$D/ckpt"; };
snapshot = { dir = "$D/snap"; keep = 2; };
metrics = { enabled = false; };
log = { level = "warning"; };
CONF
  if T "$BUILD/mtld" -c "$D/mtld.conf" >"$D/mtld.log" 2>&1 && [ -f "$D/snap/LATEST" ] &&
    [ -s "$D/samples.bin" ]; then
    ok "the daemon replayed the file: snapshot $(cat "$D/snap/LATEST"), $(stat -c %s "$D/samples.bin") bytes of samples"
    if T "$SCORE" --snapshot "$D/snap" --samples "$D/samples.bin" >"$D/c.txt" 2>"$D/c.err"; then
      ok "mtld-score scores the daemon's $(($(wc -l <"$D/c.txt") - 1)) dumped samples with its snapshot"
    else
      fail "mtld-score on the daemon's output: $(head -c 300 "$D/c.err")"
    fi
    if [ -n "$PY" ]; then
      if T "$PY" "$READER" "$D/snap" --samples "$D/samples.bin" >"$D/py.txt" 2>"$D/py.err" &&
        d=$(maxdiff "$D/py.txt" "$D/c.txt") && within "$d" 1e-5; then
        ok "mtld_reader.py agrees on the daemon's output (max |diff| $d)"
      else
        fail "mtld_reader.py on the daemon's output: $(head -c 200 "$D/py.err") ${d:-}"
      fi
    fi
    user=$("$BUILD/mtld-inspect" --store "$D/store" --dump 2>/dev/null |
      awk '$1 == "user" { print $2; exit }')
    item=$("$BUILD/mtld-inspect" --store "$D/store" --dump 2>/dev/null | awk '$1 == "item" { print $2; exit }')
    if [ -n "$user" ] && [ -n "$item" ] &&
      T "$SCORE" --snapshot "$D/snap" --store "$D/store" --user "$user" --item "$item" \
        >"$D/one.txt" 2>"$D/one.err" && [ "$(grep -vc '^#' "$D/one.txt")" = 1 ] &&
      ! grep -q "cold\|warning" "$D/one.err"; then
      ok "mtld-score scores user $user x item $item from the daemon's store: $(tail -1 "$D/one.txt")"
    else
      fail "mtld-score --store on the daemon's store: $(head -c 300 "$D/one.err")"
    fi
    # top-K from the daemon's snapshot: its item set is the store's items
    n_store=$("$BUILD/mtld-inspect" --store "$D/store" --dump 2>/dev/null | awk '$1 == "item"' | wc -l)
    n_snap=$(T "$SCORE" --snapshot "$D/snap" --info 2>/dev/null | awk '$1 == "items" { print $2 }')
    if [ -n "$user" ] && [ "$n_store" -gt 20 ] && [ "$n_snap" = "$n_store" ] &&
      T "$SCORE" --snapshot "$D/snap" --store "$D/store" --top 20 --user "$user" --rank-by ctcvr \
        >"$D/top.txt" 2>"$D/top.err" && [ "$(grep -vc '^#' "$D/top.txt")" = 20 ]; then
      ok "mtld-score --top 20 answers from the daemon's snapshot ($n_snap items): $(sed -n 2p "$D/top.txt")"
    else
      fail "top-K on the daemon's snapshot: store $n_store items, snapshot ${n_snap:-?}: $(head -c 300 "$D/top.err")"
    fi
    if [ -n "$PY" ] && [ -n "$user" ] &&
      T "$SCORE" --snapshot "$D/snap" --top 20 --user "$user" >"$D/top_ids.txt" 2>/dev/null &&
      T "$PY" "$READER" "$D/snap" --top 20 --user "$user" >"$D/pytop.txt" 2>"$D/pytop.err" &&
      r=$(topk_agree "$D/top_ids.txt" "$D/pytop.txt") && [ "$r" = ok ]; then
      ok "both readers rank the daemon's item set the same"
    elif [ -n "$PY" ]; then
      fail "readers' top-K on the daemon's snapshot: ${r:-} $(head -c 200 "$D/pytop.err")"
    fi
  else
    fail "the daemon replay did not leave a snapshot and a dump: $(tail -c 400 "$D/mtld.log")"
  fi
fi

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ] || exit 1
if [ -z "$PY" ]; then
  echo "SKIP the Python reader: needs python3 with numpy, protobuf, xxhash and protoc" \
    "(tools/install-deps.sh: python3-numpy python3-protobuf python3-xxhash protobuf-compiler)"
  exit 77
fi
exit 0
