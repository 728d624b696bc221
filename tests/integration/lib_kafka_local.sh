# lib_kafka_local.sh - helpers of the tests that run against a real Kafka
# 2.4 broker (../shared/kafka-local beside the source tree), sourced after
# lib.sh and lib_ops.sh.  Not a test itself (CMake runs only test_*.sh).
#
# kl_require                    exits 77 (ctest: skipped) printing why when
#                               kafka-local or java is absent
# kl_start                      starts ZooKeeper + broker in $T/kafka; sets
#                               BOOTSTRAP (stopped by the EXIT trap)
# kl_write_config FILE STORE TOPIC [extra]   write_config for a real broker
# kl_topic NAME PARTS [K=V...]  creates a topic
# kl_topics NAME:PARTS[:K=V,...]...  creates several topics in one request
#                               (tests/helpers/kafka_admin: no JVM per topic)
# kl_end_offsets TOPIC          "topic:partition:end" lines (kafka_admin), as
#                               kl_offsets TOPIC -1 prints them
# kl_tool NAME ARGS...          runs a Kafka command-line tool (bin/NAME.sh)
# kl_kill_broker / kl_start_broker   kill -9 the broker / start it again
# kl_produce FILE TOPIC LOG     produces an event file with tools/mtld-produce,
#                               echoes the delivered count
# kl_delete_records TOPIC PART OFFSET   moves the log start of a partition
# kl_offsets TOPIC TIME         partitions' log start (-2) or end (-1)
# kl_log_start TOPIC PART       the partition's earliest offset
# kl_count TOPIC                records in a topic (sum over partitions of
#                               end - start)
KL=$SRC/../shared/kafka-local/kafka-local
KL_DIR=$T/kafka
KL_HOME=$SRC/../shared/kafka-local/kafka

kl_require() {
  if [ ! -x "$KL" ]; then
    echo "SKIP: no real Kafka broker: $KL not found (the shared kafka-local is absent)"
    exit 77
  fi
  if ! command -v java >/dev/null 2>&1; then
    echo "SKIP: kafka-local needs java (apt-get install openjdk-17-jre-headless)"
    exit 77
  fi
}

# The EXIT trap of lib.sh runs cleanup; the broker is stopped first.
kl_cleanup() {
  local rc=$?
  [ -d "$KL_DIR" ] && "$KL" stop "$KL_DIR" >/dev/null 2>&1 || true
  if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -f "$KL_DIR/logs/broker.out" ]; then
    cp "$KL_DIR/logs/broker.out" "$T/broker.log" 2>/dev/null || true
  fi
  kl_rc() { return "$1"; }
  kl_rc $rc || cleanup # cleanup reads the test's status from $?
  cleanup
}

kl_start() {
  kl_require
  trap kl_cleanup EXIT
  # kafka-local picks free ports before the JVMs bind them; on a machine
  # running other brokers one can be taken in between ("Address already in
  # use"): that start is stopped and made once more, with fresh ports.
  local try
  for try in 1 2; do
    BOOTSTRAP=$("$KL" start "$KL_DIR" | tail -1) && break
    if [ "$try" = 1 ] && grep -qs 'Address already in use' "$KL_DIR"/logs/*; then
      note "kafka-local: a port was taken before the broker bound it; starting again"
      "$KL" stop "$KL_DIR" >/dev/null 2>&1 || true
      rm -rf "$KL_DIR"
      continue
    fi
    fail "kafka-local did not start"
  done
  [ -n "$BOOTSTRAP" ] || fail "kafka-local printed no bootstrap address"
  note "real Kafka broker at $BOOTSTRAP"
}

# kl_write_config FILE STORE TOPIC [extra] : write_config for a real broker
# (a real group coordinator refuses session timeouts below its
# group.min.session.timeout.ms, 6 s)
kl_write_config() {
  write_config "$@"
  sed -i 's/session_timeout_ms = "3000"/session_timeout_ms = "6000"/; s/heartbeat_interval_ms = "300"/heartbeat_interval_ms = "500"/' "$1"
}

# A broker that died right after its start (seen on a loaded machine shared
# with other tests) is started once more before the test gives up.
kl_topic() {
  "$KL" topic "$KL_DIR" "$@" >"$T/topic.out" 2>&1 && return 0
  if "$KL" status "$KL_DIR" | grep -q 'broker down'; then
    note "the broker died after its start (tail of its log below); starting it again"
    tail -5 "$KL_DIR/logs/broker.out" | sed 's/^/#   /'
    kl_start_broker
    "$KL" topic "$KL_DIR" "$@" >"$T/topic.out" 2>&1 && return 0
  fi
  fail "cannot create topic $1: $(grep -v WARN "$T/topic.out" | head -3)"
}
kl_topics() {
  "$HELPERS/kafka_admin" "$BOOTSTRAP" create "$@" >"$T/topics.out" 2>&1 && return 0
  fail "cannot create topics $*: $(head -3 "$T/topics.out")"
}
kl_end_offsets() { "$HELPERS/kafka_admin" "$BOOTSTRAP" end "$1"; }
kl_tool() { "$KL" tool "$KL_DIR" "$@"; }
kl_kill_broker() { "$KL" kill-broker "$KL_DIR"; }
kl_start_broker() { "$KL" start-broker "$KL_DIR" >/dev/null || fail "broker did not restart"; }

kl_produce() {
  "$BUILD/mtld-produce" --bootstrap "$BOOTSTRAP" --topic "$2" --in "$1" --summary "$3.json" \
    >"$3" 2>&1 || fail "mtld-produce $1 to the real broker failed (see $3)"
  local n
  n=$(produced_count "$3.json")
  [ "${n:-0}" -gt 0 ] || fail "mtld-produce reported no delivered records for $1"
  echo "$n"
}

kl_delete_records() {
  local f=$T/delete-$1-$2.json
  printf '{"partitions":[{"topic":"%s","partition":%d,"offset":%d}],"version":1}\n' \
    "$1" "$2" "$3" >"$f"
  kl_tool kafka-delete-records --offset-json-file "$f" >"$T/delete-records.out" 2>&1 ||
    fail "kafka-delete-records failed: $(cat "$T/delete-records.out")"
  grep -q 'low_watermark' "$T/delete-records.out" ||
    fail "kafka-delete-records: $(cat "$T/delete-records.out")"
}

# kl_offsets TOPIC TIME : "topic:partition:offset" lines from GetOffsetShell
# (TIME -2: each partition's log start, -1: its end)
kl_offsets() {
  KAFKA_LOG4J_OPTS="-Dlog4j.configuration=file:$KL_HOME/config/tools-log4j.properties" \
    "$KL_HOME/bin/kafka-run-class.sh" kafka.tools.GetOffsetShell --broker-list "$BOOTSTRAP" \
    --topic "$1" --time "$2" 2>/dev/null
}

# kl_log_start TOPIC PART : the partition's earliest offset
kl_log_start() { kl_offsets "$1" -2 | awk -F: -v p="$2" '$2 == p {print $3}'; }

# kl_count TOPIC : records in a topic (sum over partitions of end - start)
kl_count() {
  { kl_offsets "$1" -2; kl_offsets "$1" -1 | sed 's/^/E:/'; } |
    awk -F: '$1 == "E" {s += $4; next} {s -= $3} END {print s + 0}'
}
