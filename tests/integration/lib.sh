# lib.sh - shared helpers of the integration tests (sourced, not run).
# Every test gets BUILD (build dir) and SRC (source dir) as $1 $2, runs the
# real binaries against librdkafka's mock cluster on loopback, and cleans up
# every process and file it started, whatever happens.
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
T=$(mktemp -d /tmp/mtld-it.XXXXXX)
HELPERS=$BUILD/tests # test helper programs (tests/helpers/*.c)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    echo "--- test failed (rc=$rc); logs in $T:" >&2
    for f in "$T"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 40 "$f" >&2; }; done
  else
    rm -rf "$T"
  fi
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "# $(date +%T.%N | cut -c1-12) $*"; }

# Under ASan everything is slower: scale waits.
SLOW=1
[ -n "${MTLD_SANITIZED:-}" ] && SLOW=3

# start_cluster NBROKERS TOPIC:PARTS... ; sets BOOTSTRAP, CLUSTER_PID, CLUSTER_FIFO
start_cluster() {
  local n=$1; shift
  local args=()
  for t in "$@"; do args+=(--topic "$t"); done
  CLUSTER_FIFO=$T/cluster.fifo
  mkfifo "$CLUSTER_FIFO"
  "$BUILD/mtld-mockcluster" --brokers "$n" "${args[@]}" --bootstrap-file "$T/bootstrap" \
    --control-fifo "$CLUSTER_FIFO" >"$T/cluster.log" 2>&1 &
  CLUSTER_PID=$!
  PIDS+=("$CLUSTER_PID")
  for _ in $(seq 1 100); do [ -s "$T/bootstrap" ] && break; sleep 0.1; done
  [ -s "$T/bootstrap" ] || fail "mock cluster did not start"
  BOOTSTRAP=$(cat "$T/bootstrap")
  # keep a writer open on the control fifo so the cluster never sees EOF
  exec 9<>"$CLUSTER_FIFO"
}

cluster_cmd() { echo "$*" >&9; }

# write_config FILE STORE TOPIC [extra libconfig text]
write_config() {
  local file=$1 store=$2 topic=$3 extra=${4:-}
  cat >"$file" <<CONF
source = { type = "kafka"; topics = ["$topic"]; format = "auto"; };
kafka = {
  bootstrap_servers = "$BOOTSTRAP";
  group_id = "mtld-test";
  auto_offset_reset = "earliest";
  session_timeout_ms = "3000";
  heartbeat_interval_ms = "300";
  topic_metadata_refresh_interval_ms = "1000";
};
store = { path = "$store"; sync = true; batch_max_events = 500; batch_max_ms = 100; };
log = { level = "info"; };
metrics = { enabled = true; listen = "127.0.0.1"; port = 0; };
shutdown_timeout = "20s";
status_interval = "1s";
checkpoint = { dir = "$store.ckpt"; };
snapshot = { dir = "$store.snap"; };
$extra
CONF
}

# start_mtld CONFIG LOG ; sets MTLD_PID
start_mtld() {
  "$BUILD/mtld" -c "$1" >>"$2" 2>&1 &
  MTLD_PID=$!
  PIDS+=("$MTLD_PID")
}

# json_field FILE KEY : a top-level field of the JSON object in FILE ("" when
# the file, the object or the field is missing)
json_field() {
  python3 -c '
import json, sys
try:
    v = json.load(open(sys.argv[1])).get(sys.argv[2], "")
except (OSError, ValueError, AttributeError):
    v = ""
print(v)' "$1" "$2"
}

# consumed STORE : total records committed (sum of next offsets) in the store,
# from mtld-inspect --offsets --json (0 while there is no store yet)
consumed() {
  { "$BUILD/mtld-inspect" --store "$1" --offsets --json 2>/dev/null || true; } |
    python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    try:
        n += json.loads(line)["next_offset"]
    except (ValueError, KeyError, TypeError):
        pass
print(n)'
}

# wait_consumed STORE N TIMEOUT_S : until the store committed N records
wait_consumed() {
  local store=$1 n=$2 limit=$(($3 * SLOW * 2)) c=0 # generous: a loaded CI machine
  for _ in $(seq 1 $((limit * 5))); do
    c=$(consumed "$store")
    [ "$c" -ge "$n" ] && return 0
    sleep 0.2
  done
  fail "store committed $c of $n records within ${limit}s"
}

# stop_pid PID TIMEOUT_S : SIGTERM and wait; fails on timeout or non-zero exit
stop_pid() {
  local pid=$1 limit=$(($2 * SLOW))
  kill -TERM "$pid"
  for _ in $(seq 1 $((limit * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "pid $pid still running ${limit}s after SIGTERM"
  local rc=0
  wait "$pid" || rc=$?
  [ $rc -eq 0 ] || fail "pid $pid exited with $rc after SIGTERM"
}

# produced_count SUMMARY : records delivered, from mtld-produce --summary SUMMARY
produced_count() {
  json_field "$1" delivered
}

# kill_mid_stream NAME TRIES WANT : up to TRIES times starts mtld on
# $T/NAME.conf (log $T/NAME.log), waits until $T/NAME.store committed more
# than before, then SIGKILLs it after a random 0-90 ms; stops after WANT
# kills or once all N records are committed.  Sets KILLS to the kills that
# landed mid-stream; fails when fewer than WANT did.
kill_mid_stream() {
  local last=0 c _i _w
  KILLS=0
  for _i in $(seq 1 "$2"); do
    start_mtld "$T/$1.conf" "$T/$1.log"
    for _w in $(seq 1 $((600 * SLOW))); do
      [ "$(consumed "$T/$1.store")" -gt "$last" ] && break
      sleep 0.05
    done
    sleep "0.0$((RANDOM % 10))"
    kill -KILL "$MTLD_PID"
    wait "$MTLD_PID" 2>/dev/null || true
    c=$(consumed "$T/$1.store")
    [ "$c" -lt "$N" ] || break
    KILLS=$((KILLS + 1))
    last=$c
    note "kill -9 #$KILLS at $c of $N committed records"
    [ $KILLS -ge "$3" ] && break
  done
  [ "$KILLS" -ge "$3" ] || fail "only $KILLS kills landed mid-stream"
}

# same_run REF NAME WHAT : fails unless the features and the snapshot weights
# of $T/NAME.store equal those of $T/REF.store (both stopped); WHAT names
# the REF run in the failure
same_run() {
  "$BUILD/mtld-inspect" --store "$T/$1.store" --dump >"$T/$1.dump"
  "$BUILD/mtld-inspect" --store "$T/$2.store" --dump >"$T/$2.dump"
  [ -s "$T/$1.dump" ] || fail "empty dump"
  cmp "$T/$1.dump" "$T/$2.dump" || fail "features differ from $3"
  "$HELPERS/snapshot_weights" "$T/$1.store.snap" >"$T/$1.w"
  "$HELPERS/snapshot_weights" "$T/$2.store.snap" >"$T/$2.w"
  cmp "$T/$1.w" "$T/$2.w" || fail "weights differ from $3"
}

# dead_lettered_and_applied : fails unless the dead-letter topic dlq (on
# BOOTSTRAP) holds, by reason, the counts of $T/expected ("reason count"
# lines, sorted) and every good event of $T/events.pb is in $T/store
dead_lettered_and_applied() {
  "$HELPERS/dlq_dump" "$BOOTSTRAP" dlq 30 >"$T/dlq.txt" 2>"$T/dlq.log" || fail "could not read the dead-letter topic"
  awk '{print $1}' "$T/dlq.txt" | sort | uniq -c | awk '{print $2, $1}' >"$T/dlq-got"
  diff -u "$T/expected" "$T/dlq-got" || fail "dead-letter topic differs from the rejections"
  "$HELPERS/ref_features" "$T/events.pb" "$T/store" || fail "good events were not all applied"
}

# reader_python : sets READER_PY to a python3 that runs tools/mtld_reader.py
# (numpy, protobuf, xxhash: Debian's /usr/bin/python3 first, as a pyenv or
# venv python3 first on PATH may lack them) and exports MTLD_PB2_DIR with
# the snapshot header's Python code generated by protoc; READER_PY is empty
# and READER_PY_WHY says what is missing when there is none.
reader_python() {
  READER_PY=
  READER_PY_WHY="no python3 with numpy, protobuf and xxhash (tools/install-deps.sh)"
  local cand
  for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
      "$cand" -c 'import numpy, google.protobuf, xxhash' >/dev/null 2>&1; then
      READER_PY=$(command -v "$cand")
      break
    fi
  done
  [ -n "$READER_PY" ] || return 0
  if ! command -v protoc >/dev/null 2>&1; then
    READER_PY=
    READER_PY_WHY="no protoc (protobuf-compiler)"
    return 0
  fi
  mkdir -p "$T/pb2"
  protoc --proto_path="$SRC/schemas" --python_out="$T/pb2" "$SRC/schemas/snapshot.proto" ||
    fail "protoc could not generate snapshot_pb2"
  export MTLD_PB2_DIR=$T/pb2
}
