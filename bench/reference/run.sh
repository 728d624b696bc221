#!/usr/bin/env bash
# bench/reference/run.sh BUILD [TAOBAO_CSV...] - mtld against a PyTorch reference of its
# trainer (`make bench-reference`).  Prints each command before its output.
#
# 1. Generator stream: mtld-gen -> mtld (file source, trainer.dump_samples)
#    -> the daemon's final "pv" lines; the PyTorch replica (mtld_torch.py)
#    replays the dumped samples: progressive AUC per task must agree within
#    0.005 (the script exits 1 otherwise).
# 2. Speed on those same samples, one thread each, at batch 256 and at the
#    daemon's configured batch size: bench_trainer_dump (mtld's trainer and
#    training step, BLIS sgemm in the same run) vs the replica; then
#    bench_trainer (synthetic stream) for its standard figures.
# 3. Taobao UserBehavior: the CSV files given after BUILD (or in REF_TAOBAO_CSV,
#    space-separated; default ../shared/data/taobao-userbehavior's sample,
#    skipped with a reason when absent), converted together: mtld online with sampled negatives and tasks ctr, cart,
#    purchase (ESMM); its progressive AUC over the stream and over the last
#    20% by time, vs an offline PyTorch baseline trained (several epochs) on
#    the first 80% and evaluated on the same last 20%.
#
# Needs the packages in MTLD_BENCH_PKGS (Debian's PyTorch and numpy, for
# /usr/bin/python3); installs them with apt-get when missing and run as root.
# Knobs (environment):
#   REF_IMPRESSIONS  generator impressions (default 100000)
#   REF_REPEAT       timing passes at batch 256, median reported (default 3)
#   REF_EPOCHS       offline epochs on Taobao (default 3)
#   MTLD_DATA        the shared data folder (default SOURCE/../shared/data)
#   REF_TAOBAO_CSV   Taobao UserBehavior CSV file(s) for part 3 (the arguments win)
#   REF_KEEP         keep the work dir (default: removed)
set -euo pipefail

MTLD_BENCH_PKGS="python3-torch python3-numpy"
PY=/usr/bin/python3

if [ $# -lt 1 ]; then
  echo "usage: bash bench/reference/run.sh BUILD_DIR [TAOBAO_CSV...]" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd)
shift
TAOBAO_CSV=("$@")
SRC=$(cd "$(dirname "$0")/../.." && pwd)
REF="$SRC/bench/reference"
IMPRESSIONS=${REF_IMPRESSIONS:-100000}
REPEAT=${REF_REPEAT:-3}
EPOCHS=${REF_EPOCHS:-3}
DATA=${MTLD_DATA:-$SRC/../shared/data}
if [ ${#TAOBAO_CSV[@]} -eq 0 ]; then
  # shellcheck disable=SC2206 # a space-separated list of files
  TAOBAO_CSV=(${REF_TAOBAO_CSV:-$DATA/taobao-userbehavior/UserBehavior_users_a.csv})
fi
ABS_CSV=() # the work dir is elsewhere: absolute paths
for f in "${TAOBAO_CSV[@]}"; do
  case $f in /*) ;; *) f="$PWD/$f" ;; esac
  ABS_CSV+=("$f")
done
TAOBAO_CSV=("${ABS_CSV[@]}")

if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "run.sh: installing $MTLD_BENCH_PKGS (only needed for this benchmark)"
    # shellcheck disable=SC2086 # a list of package names
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $MTLD_BENCH_PKGS
  else
    echo "run.sh: needs $MTLD_BENCH_PKGS: sudo apt-get install $MTLD_BENCH_PKGS" >&2
    exit 1
  fi
fi

for prog in mtld mtld-gen mtld-produce bench/bench_trainer bench/bench_trainer_dump \
  tests/sample_layout; do
  if [ ! -x "$BUILD/$prog" ]; then
    echo "run.sh: $BUILD/$prog is missing: build first (make bench-reference)" >&2
    exit 1
  fi
done

W=$(mktemp -d "${TMPDIR:-/tmp}/mtld-ref.XXXXXX")
if [ -z "${REF_KEEP:-}" ]; then trap 'rm -rf "$W"' EXIT; else echo "work dir: $W"; fi
cd "$W"
# one thread everywhere: PyTorch, its BLAS (Debian's torch uses libblas.so.3 = BLIS)
export OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 MKL_NUM_THREADS=1

# The daemon must have released samples (a dump holds its 16-byte header).
need_samples() {
  if [ "$(stat -c %s "$1")" -le 16 ]; then
    echo "run.sh: mtld released no samples into $1; its log:" >&2
    tail -5 "$2" >&2
    exit 1
  fi
}

run() {
  printf '$'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

echo "== machine: $(nproc --all) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)," \
  "torch $("$PY" -c 'import torch; print(torch.__version__)'), its BLAS" \
  "$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo '?')"

# ---- 1. generator stream: agreement -------------------------------------------------
echo
echo "== 1. generator stream: mtld vs PyTorch replica, progressive AUC"
run "$BUILD/mtld-gen" --seed 42 --impressions "$IMPRESSIONS" --days 2 --out ev.pb \
  --truth truth.csv --quiet
# every path inside the work dir (the defaults are /var/lib/mtld/...)
cat >gen.conf <<'EOF'
source = { type = "file"; file = "ev.pb"; };
store = { path = "store-gen"; sync = false; };
metrics = { enabled = false; };
checkpoint = { dir = "ckpt-gen"; interval = 0; };
snapshot = { dir = "snap-gen"; interval = 0; };
trainer = { dump_samples = "samples.bin"; };
EOF
echo "gen.conf: $(tr '\n' ' ' <gen.conf)"
run "$BUILD/mtld" -c gen.conf 2>mtld-gen.log
need_samples samples.bin mtld-gen.log
grep ' pv task=.* scenario=all ' mtld-gen.log | sed 's/^.* pv /mtld pv: /'
run "$BUILD/bench/bench_trainer_dump" -c gen.conf -d samples.bin --model-json model.json \
  --preds mtld-preds.bin --repeat 1 | tee bench-dump.txt
run "$PY" "$REF/mtld_torch.py" --layout "$BUILD/tests/sample_layout" --model model.json \
  --dump samples.bin --preds-out torch-preds.npy --json-out torch-online.json
agree=0
run "$PY" "$REF/compare.py" agree --log mtld-gen.log --torch-json torch-online.json \
  --mtld-preds mtld-preds.bin --torch-preds torch-preds.npy || agree=1
# Scale of the tolerance: the same stream through mtld with other seeds (the
# replica agrees this closely only because it starts from mtld's weights).
echo "seed spread of mtld itself on this stream (model.seed; the run above is seed 42):"
for seed in 1 2 3; do
  sed "s/^trainer = /model = { seed = $seed; };\ntrainer = /" gen.conf >gen-seed.conf
  printf 'seed %s: ' "$seed"
  "$BUILD/bench/bench_trainer_dump" -c gen-seed.conf -d samples.bin --no-speed |
    grep ' scenario=all .*auc_cum' | sed 's/ scenario=all / /; s/ auc_window=[^ ]*//; s/ calib=.*//' |
    tr '\n' ' '
  echo
done

# ---- 2. speed ---------------------------------------------------------------------------
echo
echo "== 2. training speed on the same samples, one thread"
# at batch 256 (the comparison's reference size; the samples do not depend on it)
sed "s/^trainer = /model = { batch_size = 256; };\ntrainer = /" gen.conf >gen-b256.conf
run "$BUILD/bench/bench_trainer_dump" -c gen-b256.conf -d samples.bin \
  --model-json model-b256.json --repeat "$REPEAT" | tee bench-dump-b256.txt
run "$PY" "$REF/mtld_torch.py" --layout "$BUILD/tests/sample_layout" --model model-b256.json \
  --dump samples.bin --repeat "$REPEAT" --json-out torch-online-b256.json
run "$PY" "$REF/compare.py" speed --bench-out bench-dump-b256.txt \
  --torch-json torch-online-b256.json
echo "at the daemon's configured batch size (one pass each, from section 1):"
run "$PY" "$REF/compare.py" speed --bench-out bench-dump.txt --torch-json torch-online.json
run "$BUILD/bench/bench_trainer" 2

# ---- 3. Taobao: online mtld vs offline PyTorch --------------------------------------
echo
echo "== 3. Taobao UserBehavior: mtld online vs offline PyTorch baseline"
CSV_ARGS=()
MISSING=
for f in "${TAOBAO_CSV[@]}"; do
  [ -r "$f" ] || MISSING="$f"
  CSV_ARGS+=(--csv "$f")
done
if [ -n "$MISSING" ]; then
  echo "skipped: $MISSING is not there (the shared data folder is absent on this machine;" \
    "give the Taobao CSV file(s) after BUILD or in REF_TAOBAO_CSV)"
else
  run "$BUILD/mtld-produce" "${CSV_ARGS[@]}" --layout taobao --time-from 2017-11-25T00:00:00+08:00 \
    --time-to 2017-12-04T00:00:00+08:00 --out taobao.pb --quiet
  cat >taobao.conf <<'EOF'
source = { type = "file"; file = "taobao.pb"; };
store = { path = "store-taobao"; sync = false; };
metrics = { enabled = false; };
joiner = { mode = "sampled_negatives"; negatives_per_positive = 4; };
model = {
  tasks = (
    { name = "ctr"; type = "binary"; label = "click"; },
    { name = "cart"; type = "binary"; label = "cart"; },
    { name = "purchase"; type = "esmm"; label = "purchase"; parent = "ctr"; }
  );
};
checkpoint = { dir = "ckpt-taobao"; interval = 0; };
snapshot = { dir = "snap-taobao"; interval = 0; };
trainer = { dump_samples = "taobao-samples.bin"; };
EOF
  echo "taobao.conf: $(tr '\n' ' ' <taobao.conf | tr -s ' ')"
  run "$BUILD/mtld" -c taobao.conf 2>mtld-taobao.log
  need_samples taobao-samples.bin mtld-taobao.log
  grep ' pv task=.* scenario=all ' mtld-taobao.log | sed 's/^.* pv /mtld pv: /'
  run "$BUILD/bench/bench_trainer_dump" -c taobao.conf -d taobao-samples.bin \
    --model-json taobao-model.json --preds taobao-mtld-preds.bin --no-speed
  run "$PY" "$REF/mtld_torch.py" --layout "$BUILD/tests/sample_layout" \
    --model taobao-model.json --dump taobao-samples.bin --json-out taobao-torch-online.json
  run "$PY" "$REF/compare.py" agree --log mtld-taobao.log --torch-json taobao-torch-online.json \
    || agree=1
  run "$PY" "$REF/mtld_torch.py" --layout "$BUILD/tests/sample_layout" \
    --model taobao-model.json --dump taobao-samples.bin --mode offline --train-frac 0.8 \
    --epochs "$EPOCHS" --json-out taobao-offline.json
  run "$PY" "$REF/compare.py" taobao --log mtld-taobao.log --layout "$BUILD/tests/sample_layout" \
    --model taobao-model.json --dump taobao-samples.bin --mtld-preds taobao-mtld-preds.bin \
    --offline-json taobao-offline.json --train-frac 0.8
fi
exit $agree
