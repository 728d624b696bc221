# tools/replay.sh - sourced by tools/demo.sh and tests/integration/test_quality.sh:
# replay an event file through mtld (file source, the same path as Kafka) with
# some model keys, everything else default, and nothing durable but its store.
#   mtld_replay BUILD DIR EVENTS NAME 'model keys' ['joiner keys']
# writes DIR/NAME.conf, runs BUILD/mtld on it to the end of the file, logs to
# DIR/NAME.log (the "pv" lines at the end are the progressive validation) and
# returns mtld's exit status.
mtld_replay() {
  local build=$1 dir=$2 events=$3 name=$4 keys=$5 joiner=${6:-'conversion_window = "6h";'}
  cat >"$dir/$name.conf" <<CONF
source = { type = "file"; file = "$events"; };
store = { path = "$dir/$name.store"; sync = false; };
metrics = { enabled = false; };
joiner = { $joiner };
model = { lr = 0.0003; $keys };
trainer = { report_interval = "0s"; };
checkpoint = { dir = "$dir/$name.ckpt"; interval = "0s"; };
snapshot = { dir = "$dir/$name.snap"; interval = "0s"; };
CONF
  "$build/mtld" -c "$dir/$name.conf" >"$dir/$name.log" 2>&1
}
