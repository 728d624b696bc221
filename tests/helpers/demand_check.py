#!/usr/bin/env python3
"""demand_check.py SAMPLE_LAYOUT EVENTS.json SAMPLES HORIZON_MS WINDOWS

Recomputes the item demand samples (features/demand.h) from a JSON-lines
event stream and compares them with the item samples (kind 3) of a sample
dump (trainer.dump_samples): per boundary, the number of samples (= items
active in the window before it) and the multiset of (label, last, moving
average) triples.  Item ids are hashed by the decoder, so items are matched
through their values, not their ids.  Exit 0 and one summary line when they
agree, else 1 with the first difference.  The dump is read with the
offsets the sample_layout helper prints (no numpy needed)."""
import collections
import json
import struct
import subprocess
import sys

layout_bin, events, dump = sys.argv[1], sys.argv[2], sys.argv[3]
h, M = int(sys.argv[4]), int(sys.argv[5])
off, size = {}, None
for line in subprocess.run([layout_bin], check=True, capture_output=True, text=True).stdout.splitlines():
    p = line.split()
    if p[0] == "sizeof":
        size = int(p[1])
    elif p[0] == "field":
        off[p[1]] = int(p[2])


def read_item_samples(path):
    """(time_ms, demand label, naive last, naive ma) of every item sample."""
    data = open(path, "rb").read()
    if data[:8] != b"MTLDSMP1":
        sys.exit("%s: not a sample dump" % path)
    version, rsize = struct.unpack_from("<II", data, 8)
    if rsize != size:
        sys.exit("%s: %d-byte records, sample_layout says %d" % (path, rsize, size))
    out = []
    for b in range(16, len(data) - size + 1, size):
        if struct.unpack_from("<i", data, b + off["kind"])[0] != 3:
            continue
        t = struct.unpack_from("<q", data, b + off["time_ms"])[0]
        label = struct.unpack_from("<f", data, b + off["labels"] + 4 * 5)[0]
        last, ma = struct.unpack_from("<ff", data, b + off["naive"])
        out.append((t, label, last, ma))
    return out


active = collections.defaultdict(set)  # window -> items
orders = collections.Counter()  # (window, item) -> purchased quantity
max_time = None
for line in open(events):
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        e = json.loads(line)
        t, item, typ = int(e["time_ms"]), e["item_id"], e["type"]
    except (ValueError, KeyError, TypeError):
        continue  # malformed records are rejected by the daemon too
    k = t // h
    active[k].add(item)
    if typ == "PURCHASE":
        q = int(e.get("quantity", 0) or 0)
        orders[(k, item)] += q if q > 0 else 1
    max_time = t if max_time is None else max(max_time, t)

expect = {}  # boundary k -> sorted triples
for w, items in active.items():
    k = w + 1
    if (k + 1) * h - 1 > max_time:
        continue  # its label window was never completed
    rows = []
    for it in items:
        last = orders[(w, it)]
        ma = sum(orders[(w - m, it)] for m in range(M)) / M
        rows.append((float(orders[(k, it)]), float(last), round(ma, 4)))
    expect[k] = sorted(rows)

s = read_item_samples(dump)
got = collections.defaultdict(list)
for t, label, last, ma in s:
    got[t // h].append((float(label), float(last), round(float(ma), 4)))
for k in got:
    got[k].sort()
if sorted(got) != sorted(expect):
    only_e = sorted(set(expect) - set(got))[:5]
    only_g = sorted(set(got) - set(expect))[:5]
    sys.exit("boundaries differ: expected only %s, dumped only %s" % (only_e, only_g))
for k in sorted(expect):
    if len(got[k]) != len(expect[k]):
        sys.exit("boundary %d: %d samples dumped, %d items active" % (k, len(got[k]), len(expect[k])))
    if got[k] != expect[k]:
        diff = [(a, b) for a, b in zip(got[k], expect[k]) if a != b][:3]
        sys.exit("boundary %d: (label, last, ma) differ: %s" % (k, diff))
# the release order: boundaries never go back
times = [r[0] for r in s]
if times != sorted(times):
    sys.exit("item samples are not released in boundary order")
print("demand_check: %d boundaries, %d item samples, %d orders in the labels agree with the events"
      % (len(expect), len(s), int(sum(x[0] for v in expect.values() for x in v))))
