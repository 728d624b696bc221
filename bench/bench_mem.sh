#!/usr/bin/env bash
# bench/bench_mem.sh OUTDIR EVENTS NAME MTLD [MTLD...] - max RSS and events/s
# of whole-file replays, default configuration (trainer on, checkpoints and
# snapshots on at their default intervals, metrics off: nothing scrapes
# them), one run per binary, one after the other, in the same invocation.
# Prints one line per binary: name, records, wall s, CPU s, max RSS MB,
# records/s (wall), records/s (CPU), samples pending at the end.
# The stream: bench/bench_mem.sh does not make it; e.g.
#   mtld-gen --seed 11 --users 100000 --impressions 1000000 --days 2 --out ev.pb --quiet
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: bench_mem.sh OUTDIR EVENTS NAME MTLD..." >&2; exit 2; }
OUT=$1 EV=$2 NAME=$3
shift 3
mkdir -p "$OUT"
for bin in "$@"; do
  tag=$(basename "$bin")
  d=$OUT/$NAME.$tag
  rm -rf "$d"
  mkdir -p "$d"
  cat >"$d/mtld.conf" <<CONF
source = { type = "file"; file = "$EV"; };
store = { path = "$d/store"; sync = false; };
metrics = { enabled = false; };
checkpoint = { dir = "$d/ckpt"; };
snapshot = { dir = "$d/snap"; };
log = { level = "info"; };
CONF
  start=$(date +%s.%N)
  /usr/bin/time -o "$d/time" -f "%U %S %M" "$bin" -c "$d/mtld.conf" >"$d/mtld.log" 2>&1 || {
    tail "$d/mtld.log" >&2
    exit 1
  }
  end=$(date +%s.%N)
  n=$(sed -n 's/.*stopped: \([0-9]*\) records.*/\1/p' "$d/mtld.log" | tail -1)
  read -r u s m <"$d/time"
  python3 - "$NAME" "$tag" "${n:-0}" "$u" "$s" "$m" "$(echo "$end - $start" | bc)" <<'PY'
import sys
name, tag, n, u, s, m, wall = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
cpu = u + s
print(f"{name:<10} {tag:<14} {n:>10} {wall:>8.1f} {cpu:>8.1f} {m/1024:>8.0f} {n/wall:>9.0f} {n/cpu:>9.0f}")
PY
  rm -rf "$d/store" "$d/ckpt" "$d/snap"
done
