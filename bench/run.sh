#!/usr/bin/env bash
# bench/run.sh BUILD - runs mtld's benchmarks against an already built tree
# (`make bench` builds first; this script builds nothing) and prints their
# output, each run preceded by its exact command line and the machine's
# state, ready to be pasted into bench/RESULTS.md.
#
# Generates the event stream with BUILD/mtld-gen into a temp dir, runs
# BUILD/bench/bench_ingest on it, BUILD/bench/bench_trainer and
# BUILD/bench/bench_topk (libmtld-serving's top-K on 100k items), then removes
# the temp dir.  Knobs (environment):
#   BENCH_IMPRESSIONS  impressions of the generated stream (default 200000,
#                      about 220k events)
#   BENCH_REPS         repetitions per measurement, median reported (default 3)
#   BENCH_TRAINER_S    seconds per bench_trainer phase (default 2)
#   BENCH_TOPK_REQUESTS  top-K requests timed by bench_topk (default 20)
#   BENCH_SNAPSHOT=1   also run BUILD/bench/bench_snapshot (a 320 MiB model:
#                      about 1 GiB of memory and tens of seconds; off by default)
#   BENCH_E2E=0        skip the end-to-end rows (bench/bench_e2e.sh: the demo's
#                      1M-impression stream through the whole daemon from a
#                      file, the mock cluster and, when ../shared/kafka-local
#                      exists, a real broker, next to kcat; a few minutes)
#   BENCH_ATTRS=0      skip the named-attributes rows (bench/attributes.sh: the
#                      generator's attribute effects declared vs not, next to
#                      the oracle, and the Ali-CCP / AliExpress samples; four
#                      400k-impression replays, a few minutes)
#   BENCH_TMPDIR       where the temp dir goes (default $TMPDIR or /tmp); put it
#                      on the disk a real store would use: sync=on fsyncs there
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash bench/run.sh BUILD_DIR" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd)
IMPRESSIONS=${BENCH_IMPRESSIONS:-200000}
REPS=${BENCH_REPS:-3}
TRAINER_S=${BENCH_TRAINER_S:-2}
TOPK_REQS=${BENCH_TOPK_REQUESTS:-20}

progs=(mtld-gen bench/bench_ingest bench/bench_trainer bench/bench_topk)
if [ "${BENCH_SNAPSHOT:-0}" = 1 ]; then progs+=(bench/bench_snapshot); fi
for prog in "${progs[@]}"; do
  if [ ! -x "$BUILD/$prog" ]; then
    echo "run.sh: $BUILD/$prog is missing: build first (make bench)" >&2
    exit 1
  fi
done

T=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/mtld-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT

# Prints the command (shell-quoted, as run) and runs it.
run() {
  printf '$'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

machine() {
  echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine:  $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "kernel:   $(uname -sr)"
  echo "loadavg:  $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
  echo "temp dir: $T ($(df -PT "$T" | awk 'NR == 2 {print $2}'))"
}

echo "== mtld benchmarks (bench/run.sh $1)"
machine
echo
echo "== event stream"
run "$BUILD/mtld-gen" --seed 1 --impressions "$IMPRESSIONS" --out "$T/events.pb" --quiet
echo "events.pb: $(stat -c %s "$T/events.pb") bytes"
echo
echo "== ingestion (bench_ingest)"
run "$BUILD/bench/bench_ingest" --events "$T/events.pb" --reps "$REPS" --dir "$T"
echo
echo "== trainer (bench_trainer)"
run "$BUILD/bench/bench_trainer" "$TRAINER_S"
if [ "${BENCH_SNAPSHOT:-0}" = 1 ]; then
  echo
  echo "== snapshot write and ingestion stall (bench_snapshot)"
  mkdir "$T/snapshots"
  run "$BUILD/bench/bench_snapshot" "$T/snapshots"
fi
if [ "${BENCH_E2E:-1}" = 1 ]; then
  echo
  echo "== end to end, everything on (bench/bench_e2e.sh)"
  E2E_TMPDIR=${BENCH_TMPDIR:-${TMPDIR:-/tmp}} run bash "$(dirname "$0")/bench_e2e.sh" "$BUILD"
fi
if [ "${BENCH_ATTRS:-1}" = 1 ]; then
  echo
  echo "== named attributes, declared vs not (bench/attributes.sh)"
  TMPDIR=${BENCH_TMPDIR:-${TMPDIR:-/tmp}} run bash "$(dirname "$0")/attributes.sh" "$BUILD"
fi
echo
echo "== top-K latency, 100k-item catalog (bench_topk)"
run "$BUILD/bench/bench_topk" 100000 "$TOPK_REQS" 20
echo
echo "== after"
echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ) ($SECONDS s in all)"
echo "loadavg:  $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
