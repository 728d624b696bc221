# lib_ops.sh - helpers of the operations tests (reload, notify, metrics,
# outage, shutdown), sourced after lib.sh.  Not a test itself (CMake runs
# only test_*.sh).

# helper_bin NAME : path of a test helper program (tests/helpers/NAME.c)
helper_bin() {
  [ -x "$HELPERS/$1" ] || fail "test helper $1 not built (no $HELPERS/$1)"
  echo "$HELPERS/$1"
}

# produce FILE TOPIC LOG : produces an event file, echoes the record count
# (its --summary goes to LOG.json)
produce() {
  "$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic "$2" --in "$1" --summary "$3.json" \
    >"$3" 2>&1 || fail "mtld-produce $1 failed"
  local n
  n=$(produced_count "$3.json")
  [ "${n:-0}" -gt 0 ] || fail "mtld-produce reported no delivered records for $1"
  echo "$n"
}

# wait_log FILE ERE TIMEOUT_S [COUNT] : until FILE has COUNT (default 1)
# lines matching ERE
wait_log() {
  local file=$1 re=$2 limit=$(($3 * SLOW)) want=${4:-1} n=0
  for _ in $(seq 1 $((limit * 10))); do
    n=$(grep -cE -- "$re" "$file" 2>/dev/null || true)
    [ "${n:-0}" -ge "$want" ] && return 0
    sleep 0.1
  done
  fail "$file: $n of $want lines matching '$re' within ${limit}s"
}

# metrics_port LOG : the port of the latest "metrics on http://...:PORT/metrics" line
metrics_port() {
  wait_log "$1" 'metrics on http://' 10
  sed -n 's#.*metrics on http://[^ ]*:\([0-9][0-9]*\)/metrics.*#\1#p' "$1" | tail -1
}

# http PORT METHOD PATH OUT : one HTTP/1.0 request to 127.0.0.1 with bash's
# /dev/tcp; the body goes to OUT, the status code is echoed ("000" when the
# connection fails).
http() {
  local port=$1 method=$2 path=$3 out=$4
  if ! (exec 7<>"/dev/tcp/127.0.0.1/$port" &&
    printf '%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$method" "$path" >&7 &&
    cat <&7) >"$out.raw" 2>/dev/null; then
    : >"$out"
    echo 000
    return 0
  fi
  sed '1,/^\r$/d' "$out.raw" >"$out"
  head -1 "$out.raw" | awk '{print $2}'
}

# scrape PORT OUT : GET /metrics into OUT; fails unless 200
scrape() {
  local code
  code=$(http "$1" GET /metrics "$2")
  [ "$code" = 200 ] || fail "GET /metrics answered $code"
}

# metric FILE NAME{LABELS} : the value of one sample (exact name and labels), or ""
metric() {
  awk -v k="$2" '$1 == k {print $2; exit}' "$1"
}

# metric_sum FILE ERE : the sum of every sample whose name{labels} matches ERE
metric_sum() {
  awk -v re="$2" '$1 ~ re {s += $2} END {printf "%.0f\n", s}' "$1"
}

# wait_exit PID TIMEOUT_S : waits for PID to end; sets EXIT_RC and EXIT_MS
# (how long it took); fails if it is still running after the timeout.
wait_exit() {
  local pid=$1 limit_ms=$(($2 * 1000)) t0 now
  t0=$(date +%s%N)
  while kill -0 "$pid" 2>/dev/null; do
    now=$(date +%s%N)
    [ $(((now - t0) / 1000000)) -gt "$limit_ms" ] && fail "pid $pid still running after ${2}s"
    sleep 0.05
  done
  EXIT_MS=$((($(date +%s%N) - t0) / 1000000))
  EXIT_RC=0
  wait "$pid" || EXIT_RC=$?
}

# gen OUT SEED START [extra mtld-gen options] : a small generated stream
gen() {
  local out=$1 seed=$2 start=$3
  shift 3
  "$BUILD/mtld-gen" --seed "$seed" --users 300 --items 200 --impressions 1500 --days 1 \
    --start-ms "$start" --out "$out" "$@" 2>>"$T/gen.log" || fail "mtld-gen failed"
}

# reload FILE : installs FILE as the config $CONF (rename), sends SIGHUP to
# MTLD_PID and waits for the reload's last line in $LOG; LINE0 is where that
# reload's lines begin.
reload() {
  local before
  before=$(grep -cE 'reload (done|refused)' "$LOG" || true)
  LINE0=$(($(wc -l <"$LOG") + 1))
  cp "$1" "$CONF.new" && mv "$CONF.new" "$CONF"
  kill -HUP "$MTLD_PID"
  wait_log "$LOG" 'reload (done|refused)' 10 $((before + 1))
}

# since LINE : the lines of $LOG from LINE on
since() { tail -n +"$1" "$LOG"; }
