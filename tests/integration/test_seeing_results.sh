#!/usr/bin/env bash
# Seeing results: the Grafana dashboard (conf/grafana/mtld.json) is valid
# JSON whose every query names only metrics the daemon exports (checked
# against a scrape of a short run with impressions, reviews and clicks, so
# the rating baselines and the ranking evaluation are there too), and
# tools/mtld-plot draws learning curves from the daemon's log and from its
# /metrics polled over time (PNG files; skipped with a note without gnuplot).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"

"$BUILD/mtld-gen" --seed 5 --users 200 --items 100 --impressions 4000 --days 1 \
  --out "$T/events.pb" --truth "$T/truth.csv" 2>"$T/gen.log"
start_cluster 1 events:2
N=$(produce "$T/events.pb" events "$T/produce.log")
write_config "$T/mtld.conf" "$T/store" events \
  'trainer = { report_interval = "1s"; rank_every = 1; }; joiner = { conversion_window = "10m"; };'
start_mtld "$T/mtld.conf" "$T/mtld.log"
PORT=$(metrics_port "$T/mtld.log")
wait_consumed "$T/store" "$N" 60
M=$T/metrics.txt
for _ in $(seq 1 $((20 * SLOW))); do # until samples were released and scored
  scrape "$PORT" "$M"
  awk '$1 ~ /^mtld_pv_samples\{task="rating",scenario="_all"\}$/ && $2 > 0 {ok = 1} END {exit !ok}' "$M" &&
    awk '$1 == "mtld_rank_evaluated_total" && $2 > 0 {ok = 1} END {exit !ok}' "$M" && break
  sleep 0.5
done

python3 - "$SRC/conf/grafana/mtld.json" "$M" <<'PY' || fail "the dashboard names metrics the daemon does not export"
import json, re, sys
dash = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M)) | set(re.findall(r"^([a-z_:][a-z0-9_:]*)[{ ]", text, re.M))
exprs = []
def walk(panels):
    for p in panels:
        exprs.extend(t["expr"] for t in p.get("targets", []))
        walk(p.get("panels", []))
walk(dash["panels"])
for v in dash.get("templating", {}).get("list", []):
    exprs.append(v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
assert len(exprs) >= 10, "only %d queries" % len(exprs)
names = set()
for e in exprs:
    names |= set(re.findall(r"\b(mtld_[a-z0-9_]+)", e))
missing = sorted(n for n in names if n not in exported)
print("dashboard: %d queries naming %d metrics; missing from the scrape: %s" % (len(exprs), len(names), missing or "none"))
# every panel has a datasource input Grafana's import asks for, and a unique id
ids = [p["id"] for p in dash["panels"]]
assert len(ids) == len(set(ids)), "duplicate panel ids"
assert dash["__inputs"][0]["name"] == "DS_PROMETHEUS"
sys.exit(1 if missing else 0)
PY
# and the check can fail: a metric the daemon does not export is caught
python3 - "$SRC/conf/grafana/mtld.json" "$T/bad.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["panels"][1]["targets"][0]["expr"] = "mtld_no_such_metric"
json.dump(d, open(sys.argv[2], "w"))
PY
if python3 -c '
import json, re, sys
text = open(sys.argv[2]).read()
names = set(re.findall(r"\b(mtld_[a-z0-9_]+)", json.dumps(json.load(open(sys.argv[1]))["panels"])))
sys.exit(0 if all(re.search(r"^" + n + r"[{ ]", text, re.M) for n in names) else 1)' "$T/bad.json" "$M"; then
  fail "a dashboard with an unknown metric passed"
fi

if command -v gnuplot >/dev/null 2>&1; then
  "$SRC/tools/mtld-plot" --metrics "http://127.0.0.1:$PORT/metrics" --every 0.3 --count 3 \
    --keep "$T/scrapes.log" --out "$T/metrics.png" || fail "mtld-plot --metrics failed"
  grep -q "pv task=rating scenario=all .*rmse_item_mean=" "$T/scrapes.log" ||
    fail "the scrapes lack the rating baselines"
  stop_pid "$MTLD_PID" 30
  grep -q "pv rank k=20" "$T/mtld.log" || fail "no ranking line in the report"
  "$SRC/tools/mtld-plot" --log "$T/mtld.log" --out "$T/log.png" || fail "mtld-plot --log failed"
  for f in metrics.png log.png; do
    [ "$(head -c 8 "$T/$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
  done
  if "$SRC/tools/mtld-plot" --log "$T/gen.log" --out "$T/none.png" 2>/dev/null; then
    fail "mtld-plot drew a log without pv lines"
  fi
  note "learning curves drawn: $(stat -c %s "$T/log.png") and $(stat -c %s "$T/metrics.png") bytes"
else
  stop_pid "$MTLD_PID" 30
  note "skipped mtld-plot: gnuplot not installed (Debian: gnuplot-nox)"
fi
echo "1 passed, 0 failed"
