"""snapshot_merge_check.py SRC MERGED USERS OUT IN... [--lib LIB]

Checks a snapshot written by tools/mtld-snapshot-merge against its inputs
with tools/mtld_reader.py (numpy; the format read by other code than the C
readers'), then writes candidates for the three readers to score:
  - every user-table row of MERGED (weights and last use) is the row of the
    input that used it last (ties: the first such input); a row no input
    used is empty;
  - every admission sketch (count-min, emb.*.cms) is the inputs' summed
    (saturated at 65535);
  - every other tensor but the item set (the shared part: dense parameters,
    the other tables, their last use) is the newest input's (creation
    time);
  - the users' rows count: some item scores differently for two users;
  - OUT.jsonl: (user, item) candidates for `mtld-score --sample-json`: users
    of USERS (lines "user ID ...", mtld-inspect --dump) whose merged row came
    from each input (up to 3 per input), times 4 items of the item set, all
    at the merged snapshot's watermark;
  - OUT.py: mtld_reader.py's scores of them; OUT.lib, with --lib: those of
    libmtld-serving (LIB, through ctypes, one candidate per call); both in
    mtld-score's output format ("# id <task>... <esmm>.pcvr...", %.9g).
Prints "rows from each input: N N ..." and exits 1 (saying why) when a
check fails, 2 when it cannot run.
"""
import ctypes
import json
import sys

import numpy as np

args = sys.argv[1:]
lib_path = None
if "--lib" in args:
    i = args.index("--lib")
    lib_path = args[i + 1]
    del args[i : i + 2]
if len(args) < 5:
    print(__doc__, file=sys.stderr)
    sys.exit(2)
src, merged_path, users_path, out = args[:4]
inputs = args[4:]
sys.path.insert(0, src + "/tools")
import mtld_reader  # noqa: E402

INT64_MIN = np.iinfo(np.int64).min


def die(msg):
    print("snapshot_merge_check: " + msg, file=sys.stderr)
    sys.exit(1)


merged = mtld_reader.load(merged_path)
ins = [mtld_reader.load(p) for p in inputs]
UW, UL = "emb.user", "emb.user.last_used"

# the user table: each row from the input that used it last
lus = np.stack([s.tensors[UL].reshape(-1) for s in ins])  # [inputs, rows]
best = np.argmax(lus, axis=0)  # the first of the largest
best_lu = lus.max(axis=0)
used = best_lu != INT64_MIN
if not np.array_equal(merged.tensors[UL].reshape(-1), np.where(used, best_lu, INT64_MIN)):
    die("the merged user rows' last use is not the latest of the inputs'")
want = np.zeros_like(merged.tensors[UW])
for i, s in enumerate(ins):
    sel = used & (best == i)
    want[sel] = s.tensors[UW][sel]
bad = np.nonzero(np.any(merged.tensors[UW] != want, axis=1))[0]
if len(bad):
    r = int(bad[0])
    die(
        "%d merged user rows are not the row of the input that used them last (row %d: %s, want %s from %s)"
        % (len(bad), r, merged.tensors[UW][r][:3], want[r][:3], inputs[int(best[r])])
    )
per_input = [int(np.sum(used & (best == i))) for i in range(len(ins))]

# the admission sketches: the inputs' summed (saturated); without them no
# id is admitted (admit_after > 1) and every lookup misses
for name, t in merged.tensors.items():
    if name.endswith(".cms"):
        want = np.minimum(sum(s.tensors[name].astype(np.int64) for s in ins), 65535)
        if not np.array_equal(t.astype(np.int64), want):
            die("merged %s is not the inputs' sketches summed" % name)

# the shared part: the newest input's
newest = max(range(len(ins)), key=lambda i: (ins[i].header.created_ms, -i))
for name, t in merged.tensors.items():
    if name in (UW, UL) or name.startswith("items.") or name.endswith(".cms"):
        continue
    o = ins[newest].tensors.get(name)
    if o is None or o.shape != t.shape or not np.array_equal(o.view(np.uint8), t.view(np.uint8)):
        die("merged tensor %s is not the newest input's (%s)" % (name, inputs[newest]))

# candidates: users whose merged row came from each input, a few items
uf = [f for f, fld in enumerate(merged.model.fields) if (fld.name or "field") == "user"][0]
ids = []
with open(users_path) as f:
    for line in f:
        w = line.split()
        if len(w) > 1 and w[0] == "user":
            ids.append(int(w[1]))
uids = np.array(ids, dtype=np.uint64)
wm = merged.header.watermark_ms
rows = merged._find(uf, uids, np.full(len(uids), wm, dtype=np.int64))
pick = []
for i in range(len(ins)):
    got = [int(u) for u, r in zip(uids, rows) if r >= 0 and best[r] == i][:3]
    pick += got
if len(pick) < 2:
    die("fewer than 2 users of %s have a row in the merged snapshot" % users_path)
items, cats = merged.items()
if len(items) < 4:
    die("the merged item set holds %d items" % len(items))
sel = [0, len(items) // 3, 2 * len(items) // 3, len(items) - 1]
cands = [(u, int(items[j]), int(cats[j])) for u in pick for j in sel]
with open(out + ".jsonl", "w") as f:
    for k, (u, it, c) in enumerate(cands):
        f.write(
            json.dumps({"id": k + 1, "user": u, "item": it, "category": c, "time_ms": wm}) + "\n"
        )

tasks = list(merged.model.tasks)
esmm = [t for t, k in enumerate(tasks) if k.type == mtld_reader.TASK_ESMM_CTCVR]
header = mtld_reader._header_line(merged.model)


def write(path, preds, cond):
    with open(path, "w") as f:
        f.write(header + "\n")
        for k in range(len(cands)):
            vals = ["%.9g" % v for v in preds[k]] + ["%.9g" % cond[k][t] for t in esmm]
            f.write("%d %s\n" % (k + 1, " ".join(vals)))


s = mtld_reader.request_samples(len(cands), 0, "", wm)
s["fields"][:, 0] = [u for u, _, _ in cands]
s["fields"][:, 1] = [it for _, it, _ in cands]
s["fields"][:, 2] = [c for _, _, c in cands]
s["sample_id"] = np.arange(1, len(cands) + 1)
merged.apply_attrs(s)
preds, cond = merged.score(s)
write(out + ".py", preds, cond)
# the users' rows count: some item scores differently for two users (an
# unadmitted or empty user table scores every user alike)
byitem = {}
for k, (u, it, _) in enumerate(cands):
    byitem.setdefault(it, set()).add(float(preds[k][0]))
if all(len(v) == 1 for v in byitem.values()):
    die("every user scores alike with the merged snapshot (user rows not used)")

if lib_path:

    class Request(ctypes.Structure):
        _fields_ = [
            ("user", ctypes.c_uint64),
            ("item", ctypes.c_uint64),
            ("category", ctypes.c_uint64),
            ("scenario", ctypes.c_char_p),
            ("position", ctypes.c_int32),
            ("time_ms", ctypes.c_int64),
            ("n_dense", ctypes.c_int),
            ("dense", ctypes.POINTER(ctypes.c_float)),
            ("seq_len", ctypes.c_int),
            ("seq_items", ctypes.POINTER(ctypes.c_uint64)),
            ("seq_cats", ctypes.POINTER(ctypes.c_uint64)),
        ]

    lib = ctypes.CDLL(lib_path)
    h = ctypes.c_void_p()
    err = ctypes.create_string_buffer(512)
    if lib.mtld_serving_open(ctypes.byref(h), merged_path.encode(), err, 512) != 0:
        die("libmtld-serving cannot load %s: %s" % (merged_path, err.value.decode()))
    nt = lib.mtld_serving_n_tasks(h)
    P = ctypes.c_float * nt
    lp, lc = [], []
    for u, it, c in cands:
        r = Request(user=u, item=it, category=c, time_ms=wm)
        p, q = P(), P()
        if lib.mtld_serving_score(h, ctypes.byref(r), 1, p, q) != 0:
            die("mtld_serving_score failed for user %d item %d" % (u, it))
        lp.append(list(p))
        lc.append(list(q))
    lib.mtld_serving_close(h)
    write(out + ".lib", lp, lc)

print(
    "rows from each input: %s; %d candidates (%d users x %d items)"
    % (" ".join(map(str, per_input)), len(cands), len(pick), len(sel))
)
