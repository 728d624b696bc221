#!/usr/bin/env bash
# bench/bench_scale.sh BUILD OUTDIR [ROW...] - cost as the world grows.
#
# File replays (no broker) with the default configuration: trainer on,
# checkpoints and snapshots at their default intervals, metrics on (scraped
# every 10 s by this script, which also samples /proc/PID/status), store.sync
# = false.  One row per stream, run one after the other, under `nice`:
#   (a) users:   10k, 100k, 1M, 10M users, 1M impressions in 2 days
#   (b) length:  1M, 10M, 30M impressions at 100k users and one event rate
#                (500k impressions per day of event time: 2, 20, 60 days)
#   (c) dense:   10M impressions in the same 2 days (10x the rate of (a))
# Rows (names): u10k u100k u1m u10m  e1m e10m e30m  dense  (default: all
# but e30m; e1m is u100k's stream).  Each stream is made once with
# BUILD/mtld-gen into OUTDIR/streams and kept (delete it by hand).
# Prints one line per row: records, wall s, CPU s (user + sys), records per
# CPU s, records per wall s, max RSS MiB (/usr/bin/time), RSS MiB and
# mtld_joiner_pending at 1/4, 1/2, 3/4 and the end of the records, max
# pending and, at that moment, the joiner's in-memory indexes
# (mtld_joiner_memory_bytes), RocksDB's memtables and block cache in MiB
# (mtld_store_memory_bytes).  The per-row trace (t s, records, VmRSS KiB,
# pending, joiner, memtable, block cache and entity cache bytes, CPU s so
# far) is in OUTDIR/ROW/trace: a long row gives RSS and CPU per record at
# every point of its stream.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench_scale.sh BUILD OUTDIR [ROW...]" >&2; exit 2; }
BUILD=$(cd "$1" && pwd)
mkdir -p "$2"
OUT=$(cd "$2" && pwd)
shift 2
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=(u10k u100k u1m u10m e10m dense)
mkdir -p "$OUT/streams"

# gen_args ROW: mtld-gen's arguments for ROW's stream (and its file name)
gen_args() {
  case $1 in
  u10k) echo "--seed 11 --users 10000 --impressions 1000000 --days 2" ;;
  u100k | e1m) echo "--seed 11 --users 100000 --impressions 1000000 --days 2" ;;
  u1m) echo "--seed 11 --users 1000000 --impressions 1000000 --days 2" ;;
  u10m) echo "--seed 11 --users 10000000 --impressions 1000000 --days 2" ;;
  e10m) echo "--seed 11 --users 100000 --impressions 10000000 --days 20" ;;
  e30m) echo "--seed 11 --users 100000 --impressions 30000000 --days 60" ;;
  dense) echo "--seed 11 --users 100000 --impressions 10000000 --days 2" ;;
  *)
    echo "bench_scale.sh: unknown row $1" >&2
    exit 2
    ;;
  esac
}

# stream ROW: path of ROW's stream, made once
stream() {
  local args f
  args=$(gen_args "$1")
  f=$OUT/streams/$(echo "$args" | tr -d ' -').pb
  if [ ! -s "$f" ]; then
    echo "$ $BUILD/mtld-gen $args --out $f --quiet" >&2
    # shellcheck disable=SC2086
    nice "$BUILD/mtld-gen" $args --out "$f.tmp" --quiet
    mv "$f.tmp" "$f"
  fi
  echo "$f"
}

# sample DIR TIMEPID: every 10 s, t, records, VmRSS KiB, pending, joiner
# bytes, memtable bytes, block cache bytes, entity cache bytes, CPU s so
# far (user + sys, all threads) -> DIR/trace
sample() {
  local d=$1 tp=$2 pid= port= t0 m rss rec pend jm mt bc ec cpu
  t0=$(date +%s)
  while kill -0 "$tp" 2>/dev/null; do
    sleep 10
    [ -n "$pid" ] || pid=$(pgrep -P "$tp" mtld || true)
    [ -n "$port" ] || port=$(sed -n 's#.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*#\1#p' "$d/mtld.log" | head -1)
    [ -n "$pid" ] && [ -n "$port" ] || continue
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    m=$(curl -s "http://127.0.0.1:$port/metrics" || true)
    rec=$(echo "$m" | awk '/^mtld_source_records_total/ {s += $2} END {printf "%d", s}')
    pend=$(echo "$m" | awk '/^mtld_joiner_pending / {s += $2} END {printf "%d", s}')
    jm=$(echo "$m" | awk '/^mtld_joiner_memory_bytes / {s += $2} END {printf "%d", s}')
    mt=$(echo "$m" | awk '/^mtld_store_memory_bytes.kind="memtables"/ {s += $2} END {printf "%d", s}')
    bc=$(echo "$m" | awk '/^mtld_store_memory_bytes.kind="block_cache"/ {s += $2} END {printf "%d", s}')
    ec=$(echo "$m" | awk '/^mtld_store_memory_bytes.kind="entity_cache"/ {s += $2} END {printf "%d", s}')
    cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    echo "$(($(date +%s) - t0)) ${rec:-0} ${rss:-0} ${pend:-0} ${jm:-0} ${mt:-0} ${bc:-0} ${ec:-0} ${cpu:-0}" >>"$d/trace"
  done
}

printf '%-6s %10s %8s %8s %9s %9s %7s  %s\n' row records wall_s cpu_s rec/cpu_s rec/wall_s rss_mib \
  "rss_mib@1/4,1/2,3/4,end  pending@1/4,1/2,3/4,end  max_pending  at_max_pending:joiner,memtables,block_cache_mib"
for row in "${ROWS[@]}"; do
  ev=$(stream "$row")
  d=$OUT/$row
  rm -rf "$d"
  mkdir -p "$d"
  cat >"$d/mtld.conf" <<CONF
source = { type = "file"; file = "$ev"; };
store = { path = "$d/store"; sync = false; };
metrics = { enabled = true; listen = "127.0.0.1"; port = 0; };
checkpoint = { dir = "$d/ckpt"; };
snapshot = { dir = "$d/snap"; };
log = { level = "info"; };
CONF
  start=$(date +%s.%N)
  nice /usr/bin/time -o "$d/time" -f "%U %S %M" "$BUILD/mtld" -c "$d/mtld.conf" >"$d/mtld.log" 2>&1 &
  tp=$!
  sample "$d" "$tp" &
  sp=$!
  rc=0
  wait "$tp" || rc=$?
  end=$(date +%s.%N)
  wait "$sp" || true
  if [ $rc -ne 0 ]; then
    tail "$d/mtld.log" >&2
    exit 1
  fi
  n=$(sed -n 's/.*stopped: \([0-9]*\) records.*/\1/p' "$d/mtld.log" | tail -1)
  read -r u s mx <"$d/time"
  touch "$d/trace"
  python3 - "$row" "${n:-0}" "$u" "$s" "$mx" "$(echo "$end - $start" | bc)" "$d/trace" <<'PY'
import sys
row, n, u, s, mx, wall, trace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
cpu = u + s
pts = [tuple(int(float(x)) for x in l.split()) for l in open(trace) if len(l.split()) == 9]
pts = [p for p in pts if p[1] > 0]
def at(frac):
    want = frac * n
    c = [p for p in pts if p[1] <= want]
    return c[-1] if c else None
rs, ps = [], []
for f in (0.25, 0.5, 0.75, 1.0):
    p = at(f)
    rs.append(f"{p[2] / 1024:.0f}" if p else "-")
    ps.append(f"{p[3]}" if p else "-")
top = max(pts, key=lambda p: p[3], default=None)
mp = top[3] if top else 0
mib = ",".join(f"{top[k] / 2**20:.0f}" for k in (4, 5, 6)) if top else "-"
print(f"{row:<6} {n:>10} {wall:>8.1f} {cpu:>8.1f} {n / cpu:>9.0f} {n / wall:>9.0f} {mx / 1024:>7.0f}  "
      f"{','.join(rs)}  {','.join(ps)}  {mp}  {mib}")
PY
  rm -rf "$d/store" "$d/ckpt" "$d/snap"
done
