#!/usr/bin/env python3
"""mtld_reader - read an mtld serving snapshot in Python and score with it.

An independent second implementation of the snapshot format
(schemas/snapshot.proto) and of the model's forward pass (trainer/model.h,
trainer/embed.h, trainer/layers.h) in numpy: no C code is shared, so the
tests that hold its predictions equal to the C library's check both.

    import mtld_reader
    snap = mtld_reader.load("/var/lib/mtld/snapshots")    # a file, or a dir -> LATEST
    samples = mtld_reader.read_samples("samples.bin")     # a trainer.dump_samples file
    preds, pcvr = snap.score(samples)                     # [n, tasks] each
    top = snap.top_k(mtld_reader.key("u-17"), 20, scenario="search")
                                            # [(item, category, score)], best first

Installed by `make install` (and the Debian package python3-mtld) as the
module mtld_reader.

Command line (same output as `mtld-score --samples` / `mtld-score --top`):
    mtld_reader.py SNAPSHOT [--samples FILE] [--info]
    mtld_reader.py SNAPSHOT --top K (--user ID | --user-key S) [--scenario NAME]
                   [--rank-by TASK] [--time-ms T]

Needs numpy, protobuf (Debian: python3-numpy, python3-protobuf) and xxhash
(python3-xxhash), and the Python code of schemas/snapshot.proto: generated
at run time with protoc (protobuf-compiler) into a temp directory unless
snapshot_pb2 is importable already (MTLD_PB2_DIR or PYTHONPATH).
"""

import argparse
import importlib
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import xxhash

MAGIC = b"MTLDSNAP"
FORMAT_VERSION = 1
ALIGN = 64
SAMPLE_MAGIC = b"MTLDSMP1"
SAMPLE_VERSION = 3  # trainer/sampledump.h MTLD_SAMPLEDUMP_VERSION (3: six labels, naive)
INT64_MIN = np.int64(-(2**63))

# trainer/sample.h: mtld_sample_t (C layout; align=True follows the C rules)
MAX_FIELDS, MAX_DENSE, MAX_SEQ, N_LABELS, N_NAIVE = 22, 64, 50, 6, 2
SAMPLE_DTYPE = np.dtype(
    [
        ("sample_id", "<u8"),
        ("time_ms", "<i8"),
        ("partition", "<i4"),
        ("offset", "<i8"),
        ("kind", "<i4"),
        ("weight", "<f4"),
        ("n_fields", "<i4"),
        ("fields", "<u8", (MAX_FIELDS,)),
        ("scenario_id", "<u8"),
        ("scenario", "S32"),
        ("n_dense", "<i4"),
        ("dense", "<f4", (MAX_DENSE,)),
        ("seq_len", "<i4"),
        ("seq_items", "<u8", (MAX_SEQ,)),
        ("seq_cats", "<u8", (MAX_SEQ,)),
        ("labels", "<f4", (N_LABELS,)),
        ("label_mask", "u1"),
        ("naive", "<f4", (N_NAIVE,)),
    ],
    align=True,
)

TASK_BINARY, TASK_ESMM_CTCVR, TASK_REGRESSION = 0, 1, 2
INTER_NONE, INTER_DOT = 0, 1
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<i8"), 2: np.dtype("<u2")}


class SnapshotError(Exception):
    """The file is not a valid snapshot (bad magic, version, checksum...)."""


def _pb2():
    """The snapshot header's Python code: snapshot_pb2 when importable
    (MTLD_PB2_DIR or PYTHONPATH), else mtld_snapshot_pb2 (installed beside
    this module by `make install`), else generated now with protoc from
    MTLD_SNAPSHOT_PROTO, the source tree's schemas/snapshot.proto or the
    installed PREFIX/share/mtld/snapshot.proto."""
    extra = os.environ.get("MTLD_PB2_DIR")
    if extra and extra not in sys.path:
        sys.path.insert(0, extra)
    for name in ("snapshot_pb2", "mtld_snapshot_pb2"):
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.environ.get("MTLD_SNAPSHOT_PROTO"),
        os.path.join(here, "..", "schemas", "snapshot.proto"),  # tools/ in the source tree
        # PREFIX/lib/python3[.X]/dist-packages -> PREFIX/share/mtld
        os.path.join(here, "..", "..", "..", "share", "mtld", "snapshot.proto"),
    ]
    proto = next((c for c in candidates if c and os.path.exists(c)), None)
    if proto is None:
        raise ImportError(
            "snapshot_pb2 not importable and no snapshot.proto in %s"
            % ", ".join(c for c in candidates if c)
        )
    with tempfile.TemporaryDirectory(prefix="mtld-pb2-") as out:
        subprocess.run(
            [
                "protoc",
                "--proto_path=" + os.path.dirname(os.path.abspath(proto)),
                "--python_out=" + out,
                os.path.abspath(proto),
            ],
            check=True,
        )
        sys.path.insert(0, out)
        try:
            return importlib.import_module("snapshot_pb2")  # stays loaded once imported
        finally:
            sys.path.remove(out)


def key(s):
    """The id of a string key, as the daemon hashes string ids (never 0)."""
    h = xxhash.xxh64_intdigest(s.encode("utf-8") if isinstance(s, str) else s)
    return h or 1


def request_samples(n, user, scenario="", time_ms=0, position=0):
    """n candidate samples (SAMPLE_DTYPE) for one request, ids only (dense
    zeros, no sequence), as `mtld-score --sample-json` builds lines without
    a store and libmtld-serving builds its requests; item and category 0."""
    s = np.zeros(n, dtype=SAMPLE_DTYPE)
    sid = key(scenario) if scenario else 0
    s["time_ms"] = time_ms
    s["kind"] = 1
    s["weight"] = 1.0
    s["n_fields"] = 6
    s["fields"][:, 0] = np.uint64(user)
    s["fields"][:, 3] = np.uint64(sid)
    s["fields"][:, 4] = np.uint64(position if position > 0 else 0)
    s["fields"][:, 5] = np.uint64(1 + (time_ms % 86400000) // 3600000)  # mtld_sample_hour_id
    s["scenario_id"] = np.uint64(sid)
    s["scenario"] = scenario.encode("utf-8")
    return s


def resolve(path):
    """A snapshot file itself, or the file a directory's LATEST names."""
    if not os.path.isdir(path):
        return path
    with open(os.path.join(path, "LATEST"), "r", encoding="ascii") as f:
        name = f.read().strip()
    if "/" in name or not (name.startswith("snapshot-") and name.endswith(".mtlds")):
        raise SnapshotError("%s/LATEST does not name a snapshot file" % path)
    return os.path.join(path, name)


def _mix64(x):
    """splitmix64 finaliser on a uint64 array (trainer/embed.h mtld_mix64)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class Snapshot:
    """A loaded snapshot: .header (the protobuf message), .tensors (name ->
    numpy array, shaped [rows, cols]), and score()."""

    def __init__(self, header, tensors, path=""):
        self.header = header
        self.tensors = tensors
        self.path = path
        self.model = header.model

    def items(self):
        """The snapshot's item set: (ids, categories), uint64 arrays, ids
        ascending; empty when the snapshot has none (older writers)."""
        if self.header.n_items == 0:
            e = np.zeros(0, dtype=np.uint64)
            return e, e
        ids = self.tensors["items.id"].reshape(-1).view(np.uint64)
        cats = self.tensors["items.category"].reshape(-1).view(np.uint64)
        return ids, cats

    def attributes(self):
        """The declared attributes (header features.attributes), in order."""
        return list(self.header.features.attributes)

    def apply_attrs(self, samples, attrs=None, item_attrs=True):
        """Puts the declared attributes' inputs into request samples, as
        libmtld-serving does (durable/snapshot.h mtld_snapshot_request_attrs):
        categorical attribute j into fields[6 + j] (the key() of the value),
        numeric attribute j into dense[n_dense + j]; values from the dict
        attrs (name -> str for categorical, number for numeric; "" or None
        = absent), a missing one (or one of the other kind) takes the
        declared default; item_attrs False ignores attrs' item attributes
        (top-K: every candidate is another item)."""
        fe = self.header.features
        if not fe.attributes:
            return samples
        nd = fe.n_dense
        samples["n_fields"] = np.maximum(samples["n_fields"], 6)
        for i in range(nd):
            samples["dense"][:, i] = np.where(samples["n_dense"] > i, samples["dense"][:, i], 0.0)
        samples["n_dense"] = np.maximum(samples["n_dense"], nd)
        n_cat = n_num = 0
        for a in fe.attributes:
            v = None
            if attrs and (item_attrs or a.owner != 1):
                v = attrs.get(a.name)
            if a.kind == 1:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
                d = nd + n_num
                n_num += 1
                samples["dense"][:, d] = float(v) if ok else a.default_num
                samples["n_dense"] = np.maximum(samples["n_dense"], d + 1)
            else:
                ok = isinstance(v, str) and v != ""
                f = 6 + n_cat
                n_cat += 1
                dflt = key(a.default_str) if a.default_str else 0
                samples["fields"][:, f] = np.uint64(key(v) if ok else dflt)
                samples["n_fields"] = np.maximum(samples["n_fields"], f + 1)
        return samples

    def top_k(self, user, k, scenario="", task=0, time_ms=None, position=0, chunk=4096, attrs=None):
        """The k items of the item set the model ranks highest by task
        `task` (index or name) for a user (id; key() for strings) in a
        scenario at time_ms (default: the watermark): [(item, category,
        score)], best first, ties by smaller item id.  Candidates carry ids
        only, as libmtld-serving's and `mtld-score --top` without --store,
        and the request's attributes (attrs, see apply_attrs; item ones take
        their defaults)."""
        if isinstance(task, str):
            names = [t.name for t in self.model.tasks]
            if task not in names:
                raise SnapshotError("no task %s" % task)
            task = names.index(task)
        ids, cats = self.items()
        if len(ids) == 0:
            raise SnapshotError("the snapshot has no item set")
        t = self.header.watermark_ms if time_ms is None else time_ms
        scores = np.empty(len(ids))
        for i0 in range(0, len(ids), chunk):
            s = request_samples(min(chunk, len(ids) - i0), user, scenario, t, position)
            self.apply_attrs(s, attrs, item_attrs=False)
            s["fields"][:, 1] = ids[i0 : i0 + chunk]
            s["fields"][:, 2] = cats[i0 : i0 + chunk]
            scores[i0 : i0 + chunk] = self.score(s)[0][:, task]
        order = np.lexsort((ids, -scores))[:k]
        return [(int(ids[i]), int(cats[i]), float(scores[i])) for i in order]

    # ---- embedding lookups (trainer/embed.h mtld_embed_find) -------------
    def _field_name(self, f):
        return self.model.fields[f].name or "field"

    def _find(self, f, ids, now):
        """Rows of ids (uint64 array) at event times now (int64 array); -1
        where the id is absent, not admitted, on a dead row or expired."""
        fld = self.model.fields[f]
        name = self._field_name(f)
        seed = np.uint64(fld.hash_seed)
        rows = (_mix64(ids ^ seed) % np.uint64(fld.rows)).astype(np.int64)
        last = self.tensors["emb.%s.last_used" % name].reshape(-1)[rows]
        ok = (ids != 0) & (last != INT64_MIN)
        emb = self.model.embedding
        if fld.cms_width:
            cms = self.tensors["emb.%s.cms" % name].reshape(-1).astype(np.int64)
            w = np.uint64(fld.cms_width)
            h = _mix64(ids ^ seed ^ np.uint64(0x5BD1E9955BD1E995))
            i0 = ((h & np.uint64(0xFFFFFFFF)) % w).astype(np.int64)
            i1 = (w + (h >> np.uint64(32)) % w).astype(np.int64)
            ok &= np.minimum(cms[i0], cms[i1]) >= emb.admit_after
        if emb.expire_ms > 0:
            safe_last = np.where(last == INT64_MIN, now, last)
            ok &= ~(now - safe_last > emb.expire_ms)
        return np.where(ok, rows, -1)

    def _embed(self, f, ids, now):
        w = self.tensors["emb.%s" % self._field_name(f)].astype(np.float64)
        rows = self._find(f, ids, now)
        out = w[np.maximum(rows, 0)]
        out[rows < 0] = 0.0
        return out

    # ---- forward (trainer/model.c mtld_model_forward) ----------------------
    def score(self, samples):
        """Scores a structured array of SAMPLE_DTYPE: returns (preds, cond),
        each float64 [n, n_tasks]: probability (pCTCVR for ESMM tasks, the
        value for regression) and pCVR for ESMM tasks (= preds otherwise)."""
        m, T = self.model, self.tensors
        n = len(samples)
        D, F = m.dim, len(m.fields)
        L = m.seq_max if m.item_field >= 0 else 0
        now = samples["time_ms"].astype(np.int64)

        def field_ids(f):
            ids = np.where(samples["n_fields"] > f, samples["fields"][:, f], np.uint64(0))
            if f == m.scenario_field:
                ids = np.where(ids == 0, samples["scenario_id"], ids)
            return ids.astype(np.uint64)

        embs = [self._embed(f, field_ids(f), now) for f in range(F)]
        parts = list(embs)
        if L > 0:
            q = embs[m.item_field].copy()
            if m.category_field >= 0:
                q += embs[m.category_field]
            seq_len = np.clip(samples["seq_len"], 0, L)
            keys = np.zeros((n, L, D))
            for j in range(L):
                k = self._embed(m.item_field, samples["seq_items"][:, j].astype(np.uint64), now)
                if m.category_field >= 0:
                    k += self._embed(
                        m.category_field, samples["seq_cats"][:, j].astype(np.uint64), now
                    )
                keys[:, j, :] = k
            valid = np.arange(L)[None, :] < seq_len[:, None]
            s = np.einsum("nd,nld->nl", q, keys) / np.sqrt(D)
            s = np.where(valid, s, -np.inf)
            mx = np.max(np.where(valid, s, -1e300), axis=1, keepdims=True)
            e = np.where(valid, np.exp(s - mx), 0.0)
            tot = e.sum(axis=1, keepdims=True)
            a = np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)
            parts.append(np.einsum("nl,nld->nd", a, keys))
        if m.interactions == INTER_DOT:
            vecs = list(parts)  # the field embeddings, then the pooled sequence
            dots = [
                np.einsum("nd,nd->n", vecs[i], vecs[j])[:, None]
                for i in range(len(vecs))
                for j in range(i + 1, len(vecs))
            ]
            if dots:
                parts.append(np.concatenate(dots, axis=1))
        if m.n_dense:
            norm = self.header.normalizer
            v = np.zeros((n, m.n_dense))
            for i in range(m.n_dense):
                col = samples["dense"][:, i].astype(np.float64)
                v[:, i] = np.where((samples["n_dense"] > i) & np.isfinite(col), col, 0.0)
            mean = np.array(norm.mean) if norm.count else np.zeros(m.n_dense)
            var = np.array(norm.m2) / (norm.count - 1) if norm.count > 1 else np.ones(m.n_dense)
            z = (v - mean) / np.sqrt(var + norm.eps)
            parts.append(np.clip(z, -norm.clip, norm.clip))
        x = np.concatenate(parts, axis=1)
        gin = np.concatenate([x, embs[m.scenario_field]], axis=1) if m.scenario_field >= 0 else x

        def mlp(prefix, h, n_layers, relu_last):
            for l in range(n_layers):
                w = T["%s.l%d.w" % (prefix, l)].astype(np.float64)
                b = T["%s.l%d.b" % (prefix, l)].astype(np.float64).reshape(-1)
                h = h @ w + b
                if l < n_layers - 1 or relu_last:
                    h = np.maximum(h, 0.0)
            return h

        n_experts = 1 + max(e for t in m.tasks for e in t.experts)
        experts = [
            mlp("expert%d" % e, x, len(m.expert_layers), True) for e in range(n_experts)
        ]
        logits = np.zeros((n, len(m.tasks)))
        for t, task in enumerate(m.tasks):
            ex = list(task.experts)
            if len(ex) > 1:
                g = gin @ T["gate.%s.w" % task.name].astype(np.float64)
                g += T["gate.%s.b" % task.name].astype(np.float64).reshape(-1)
                g = np.exp(g - g.max(axis=1, keepdims=True))
                g /= g.sum(axis=1, keepdims=True)
                mix = sum(g[:, k : k + 1] * experts[e] for k, e in enumerate(ex))
            else:
                mix = experts[ex[0]]
            logits[:, t] = mlp("tower.%s" % task.name, mix, len(m.tower_layers) + 1, False)[:, 0]
        sig = 1.0 / (1.0 + np.exp(-logits))
        preds, cond = np.zeros_like(logits), np.zeros_like(logits)
        for t, task in enumerate(m.tasks):
            if task.type == TASK_REGRESSION:
                preds[:, t] = cond[:, t] = logits[:, t]
            elif task.type == TASK_ESMM_CTCVR:
                cond[:, t] = sig[:, t]
                preds[:, t] = preds[:, task.parent] * sig[:, t]  # parent < t: chains
            else:
                preds[:, t] = cond[:, t] = sig[:, t]
        return preds, cond


def loads(data, path=""):
    """Parses and verifies a snapshot image (bytes)."""
    pb2 = _pb2()
    if len(data) < 24:
        raise SnapshotError("file too short (%d bytes)" % len(data))
    if data[:8] != MAGIC:
        raise SnapshotError("bad magic (not an mtld snapshot)")
    version, hlen = struct.unpack_from("<II", data, 8)
    if version != FORMAT_VERSION:
        raise SnapshotError(
            "format version %d, this reader reads version %d" % (version, FORMAT_VERSION)
        )
    if hlen > len(data) - 24:
        raise SnapshotError("header length %d runs past the end of the file" % hlen)
    header = pb2.SnapshotHeader()
    try:
        header.ParseFromString(data[16 : 16 + hlen])
    except Exception as e:  # protobuf's DecodeError and friends
        raise SnapshotError("header does not decode: %s" % e)
    start = (16 + hlen + ALIGN - 1) // ALIGN * ALIGN
    end = start + header.payload_length
    if end + 8 != len(data):
        raise SnapshotError(
            "file is %d bytes, the header describes %d (truncated?)" % (len(data), end + 8)
        )
    view = memoryview(data)
    tensors = {}
    for t in header.tensors:
        dt = DTYPES.get(t.dtype)
        if dt is None:
            raise SnapshotError("tensor %s: unknown dtype %d" % (t.name, t.dtype))
        if t.length != t.rows * t.cols * dt.itemsize or t.offset + t.length > header.payload_length:
            raise SnapshotError("tensor %s: bad shape, offset or length" % t.name)
        raw = view[start + t.offset : start + t.offset + t.length]
        if xxhash.xxh64_intdigest(raw) != t.xxh64:
            raise SnapshotError("tensor %s: checksum mismatch" % t.name)
        tensors[t.name] = np.frombuffer(raw, dtype=dt).reshape(t.rows, t.cols)
    (trailer,) = struct.unpack_from("<Q", data, len(data) - 8)
    if xxhash.xxh64_intdigest(view[: len(data) - 8]) != trailer:
        raise SnapshotError("file checksum mismatch")
    return Snapshot(header, tensors, path)


def load(path):
    """Loads a snapshot file, or the one a directory's LATEST names."""
    file = resolve(path)
    with open(file, "rb") as f:
        return loads(f.read(), file)


def read_samples(path):
    """A sample dump (trainer/sampledump.h) as a SAMPLE_DTYPE array."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 16 or data[:8] != SAMPLE_MAGIC:
        raise SnapshotError("%s: not a sample dump" % path)
    version, size = struct.unpack_from("<II", data, 8)
    if version != SAMPLE_VERSION or size != SAMPLE_DTYPE.itemsize:
        raise SnapshotError(
            "%s: version %d with %d-byte records; this reader reads %d, %d"
            % (path, version, size, SAMPLE_VERSION, SAMPLE_DTYPE.itemsize)
        )
    n = (len(data) - 16) // size  # a trailing partial record is ignored
    return np.frombuffer(data, dtype=SAMPLE_DTYPE, count=n, offset=16)


def _header_line(model):
    cols = ["# id"] + [t.name for t in model.tasks]
    cols += [t.name + ".pcvr" for t in model.tasks if t.type == TASK_ESMM_CTCVR]
    return " ".join(cols)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Read an mtld serving snapshot and score with it.")
    ap.add_argument("snapshot", help="snapshot file, or a snapshot directory (follows LATEST)")
    ap.add_argument("--samples", help="score a sample dump, one line per sample")
    ap.add_argument("--info", action="store_true", help="print the header")
    ap.add_argument("--top", type=int, help="the K items ranked highest for --user")
    ap.add_argument("--user", type=int, help="user id (for --top)")
    ap.add_argument("--user-key", help="user key, hashed as the daemon does (for --top)")
    ap.add_argument("--scenario", default="", help="scenario name (for --top)")
    ap.add_argument("--rank-by", help="task to rank by (default: the first)")
    ap.add_argument("--time-ms", type=int, help="event time to score at (default: watermark)")
    ap.add_argument(
        "--attrs", help='the request\'s attributes for --top, a JSON object ({"discount": 0.2})'
    )
    args = ap.parse_args(argv)
    if args.top is not None and (args.top < 1 or (args.user is None) == (args.user_key is None)):
        ap.error("--top K needs K >= 1 and one of --user, --user-key")
    try:
        snap = load(args.snapshot)
    except (OSError, SnapshotError, ImportError, subprocess.CalledProcessError) as e:
        print("mtld_reader: %s" % e, file=sys.stderr)
        return 2
    if args.info:
        h = snap.header
        print("file %s\nformat_version %d\nproducer %s" % (snap.path, h.format_version, h.producer))
        print("created_ms %d\nwatermark_ms %d" % (h.created_ms, h.watermark_ms))
        print("items %d" % h.n_items)
        owners = ("user", "item", "context")
        for i, a in enumerate(h.features.attributes):
            if a.kind == 1:
                print(
                    "attribute %d %s owner %s numeric default %g"
                    % (i, a.name, owners[a.owner], a.default_num)
                )
            else:
                print(
                    'attribute %d %s owner %s categorical rows %d default "%s"'
                    % (i, a.name, owners[a.owner], a.rows, a.default_str)
                )
        for o in h.offsets:
            print("offset %s %d %d %d" % (o.topic, o.partition, o.next_offset, o.max_time_ms))
        for mt in h.metrics:
            print(
                "metrics task=%s scenario=%s n=%d auc_window=%.6g logloss=%.6g"
                % (mt.task, mt.scenario, mt.n, mt.auc_window, mt.logloss)
            )
        for t in h.tensors:
            print("tensor %s %dx%d" % (t.name, t.rows, t.cols))
    if args.top:
        user = args.user if args.user is not None else key(args.user_key)
        task = args.rank_by if args.rank_by else 0
        try:
            attrs = json.loads(args.attrs) if args.attrs else None
            top = snap.top_k(user, args.top, args.scenario, task, args.time_ms, attrs=attrs)
        except SnapshotError as e:
            print("mtld_reader: %s" % e, file=sys.stderr)
            return 2
        name = snap.model.tasks[task].name if isinstance(task, int) else task
        out = ["# rank item category %s" % name]
        out += ["%d %d %d %.9g" % (r + 1, i, c, v) for r, (i, c, v) in enumerate(top)]
        sys.stdout.write("\n".join(out) + "\n")
    if args.samples:
        try:
            samples = read_samples(args.samples)
        except (OSError, SnapshotError) as e:
            print("mtld_reader: %s" % e, file=sys.stderr)
            return 1
        preds, cond = snap.score(samples)
        esmm = [t for t, k in enumerate(snap.model.tasks) if k.type == TASK_ESMM_CTCVR]
        out = [_header_line(snap.model)]
        for i in range(len(samples)):
            vals = ["%.9g" % v for v in preds[i]] + ["%.9g" % cond[i, t] for t in esmm]
            out.append("%d %s" % (samples["sample_id"][i], " ".join(vals)))
        sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
