# lib_faults.sh - helpers of the fault-injection tests (test_faults_*.sh),
# sourced after lib.sh and lib_ops.sh.  Not a test itself (CMake runs only
# test_*.sh).  Sets SHIM (the LD_PRELOAD shim tests/fault/faultfs.c; fails
# when it is not built), ASAN_EXTRA (to prefix ASAN_OPTIONS of a shimmed run
# under the sanitizers) and N (records produced so far, 0).

SHIM=$HELPERS/faultfs.so
[ -f "$SHIM" ] || fail "fault shim not built ($SHIM)"
ASAN_EXTRA=
[ -n "${MTLD_SANITIZED:-}" ] && ASAN_EXTRA="verify_asan_link_order=0:"
N=0

# fault_gen SEED0 COUNT : generates COUNT one-day chunks $T/c1.pb.. (chunk i
# with seed SEED0+i, starting on 2024-01-0i)
fault_gen() {
  local i
  for i in $(seq 1 "$2"); do
    "$BUILD/mtld-gen" --seed $(($1 + i)) --users 300 --items 200 --impressions 3000 --days 1 \
      --start-ms "2024-01-0${i}T00:00:00Z" --oracle-last 0 --out "$T/c$i.pb" 2>>"$T/gen.log"
  done
}

# chunk I : produces $T/cI.pb to the topic events, adding its count to N
chunk() { N=$((N + $(produce "$T/c$1.pb" events "$T/produce.log"))); }

# fault_conf NAME : $T/NAME.conf for the store $T/NAME.store on the topic
# events, with its own consumer group mtld-NAME
fault_conf() {
  write_config "$T/$1.conf" "$T/$1.store" events 'trainer = { report_interval = "0s"; };'
  sed -i "s/group_id = \"mtld-test\";/group_id = \"mtld-$1\";/" "$T/$1.conf"
}

# same_as_ref NAME : fails unless the features and the snapshot weights of
# $T/NAME.store equal those of $T/ref.store (both stopped)
same_as_ref() {
  same_run ref "$1" "the run without the fault"
  note "features byte-identical, $(wc -c <"$T/ref.w") bytes of weights bit-identical"
}
