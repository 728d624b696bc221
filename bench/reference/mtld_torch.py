#!/usr/bin/python3
"""mtld_torch.py - a PyTorch reference of mtld's trainer (trainer/model.c,
trainer/embed.c, trainer/train.c), for checking mtld's numbers and measuring
its speed against a mainstream framework on the same samples.

It reads the samples the daemon trained on (trainer.dump_samples: "MTLDSMP1",
u32 version, u32 sizeof(mtld_sample_t), raw records) and the model config the
daemon used (bench_trainer_dump --model-json), and replays what mtld does:

  * hashed embeddings: row = mtld_mix64(id ^ table_seed) % rows, table_seed =
    mtld_mix64(seed ^ (0x1000 + field)); count-min admission (admit_after),
    event-time expiry and sweeps; rows initialised from their index exactly as
    embed.c does; row-wise Adagrad written out by hand (acc += mean(g^2),
    w -= lr / (sqrt(acc) + eps) * g) over the rows a batch touched;
  * target attention of (item + category) over the recent items (+ their
    categories), scaled by 1/sqrt(D), pooled into x;
  * pairwise dot products of the field embeddings and the pooled sequence
    (model.interactions = "dot", DLRM style), appended to x;
  * the dense normaliser (running mean/variance, updated after each batch,
    clipped to +-5);
  * MMoE / PLE / shared-bottom / single-task experts, softmax gates reading
    [x, emb(scenario)], towers, ESMM pCTCVR = pCTR * pCVR, Huber/MSE rating;
    a task's loss is the weighted mean over the batch samples carrying its
    label; Adam (torch.optim.Adam, same formula) on the dense parameters;
  * dense parameters initialised with the same splitmix stream as model.c
    (so both start from the same weights);
  * progressive validation: each minibatch is scored BEFORE its update, and
    the cumulative AUC is computed with mtld's 10000-bin logit histogram
    (pvmetrics.c), next to the exact rank AUC.

Modes:
  online   one pass in stream order, progressive metrics and samples/s
  offline  several epochs on the first part of the stream (by time), frozen
           model evaluated on the rest (an offline baseline)

The sample layout is printed by the C helper sample_layout (tests/helpers),
so the numpy dtype always matches the compiler's layout of mtld_sample_t.
Run with Debian's /usr/bin/python3 (python3-torch, python3-numpy)."""

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

U64 = np.uint64
MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
DEAD = np.iinfo(np.int64).min
TASK_BINARY, TASK_ESMM, TASK_REGRESSION = 0, 1, 2
ARCH_SINGLE, ARCH_SHARED_BOTTOM, ARCH_MMOE, ARCH_PLE = 0, 1, 2, 3
LABEL_NAMES = ["click", "cart", "purchase", "rating"]


# ---- sample dump --------------------------------------------------------------

def sample_dtype(layout_bin):
    """numpy dtype of mtld_sample_t from the sample_layout helper's output."""
    out = subprocess.run([layout_bin], check=True, capture_output=True, text=True).stdout
    names, formats, offsets, size = [], [], [], None
    codes = {"u8": "<u8", "i8": "<i8", "i4": "<i4", "f4": "<f4", "u1": "u1"}
    for line in out.splitlines():
        p = line.split()
        if p[0] == "sizeof":
            size = int(p[1])
        elif p[0] == "field":
            name, off, typ, count = p[1], int(p[2]), p[3], int(p[4])
            names.append(name)
            offsets.append(off)
            if typ == "c":
                formats.append("S%d" % count)
            else:
                formats.append((codes[typ], (count,)) if count > 1 else codes[typ])
    if size is None or not names:
        sys.exit("mtld_torch: bad output from %s" % layout_bin)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})


def read_dump(path, dtype):
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 16 or head[:8] != b"MTLDSMP1":
        sys.exit("mtld_torch: %s is not a sample dump (bad magic)" % path)
    version, size = np.frombuffer(head[8:16], dtype="<u4")
    if version != 3:  # trainer/sampledump.h MTLD_SAMPLEDUMP_VERSION (3: six labels, naive)
        sys.exit("mtld_torch: %s: dump version %d, expected 3" % (path, version))
    if size != dtype.itemsize:
        sys.exit("mtld_torch: %s: records of %d bytes, this build's mtld_sample_t has %d"
                 % (path, size, dtype.itemsize))
    return np.fromfile(path, dtype=dtype, offset=16)


# ---- hashing (trainer/embed.h) --------------------------------------------------

def mix64(x):
    """mtld_mix64 (splitmix64 finaliser) on a uint64 array, wrapping mod 2^64."""
    x = np.asarray(x, dtype=U64)
    with np.errstate(over="ignore"):
        x = x + U64(GOLDEN)
        x = (x ^ (x >> U64(30))) * U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> U64(27))) * U64(0x94D049BB133111EB)
        return x ^ (x >> U64(31))


def mix64_int(x):
    return int(mix64(np.array([x & MASK64], dtype=U64))[0])


# ---- embedding tables (trainer/embed.c) -----------------------------------------

class Table:
    """One hashed table: weights (torch, no autograd), row-wise Adagrad
    accumulators, last use, count-min sketch, as embed.c keeps them."""

    def __init__(self, rows, dim, seed, ecfg):
        self.rows, self.dim, self.seed = rows, dim, seed
        self.lr = ecfg["lr"]
        self.eps = ecfg["eps"]
        self.adagrad_init = np.float32(ecfg["adagrad_init"])
        self.init_scale = np.float32(ecfg["init_scale"])
        self.admit_after = ecfg["admit_after"]
        self.expire_ms = ecfg["expire_ms"]
        self.w = torch.zeros(rows, dim)
        self.acc = torch.zeros(rows)
        self.last = np.full(rows, DEAD, dtype=np.int64)
        if self.admit_after > 1:
            self.cms_width = max(rows, 1024)
            self.cms = np.zeros(2 * self.cms_width, dtype=np.int32)
        else:
            self.cms = None

    def rows_of(self, ids):
        return (mix64(ids ^ U64(self.seed)) % U64(self.rows)).astype(np.int64)

    def cms_of(self, ids):
        if self.cms is None:
            return None
        h = mix64(ids ^ U64(self.seed) ^ U64(0x5BD1E9955BD1E995))
        w = U64(self.cms_width)
        i0 = ((h & U64(0xFFFFFFFF)) % w).astype(np.int64)
        i1 = (w + (h >> U64(32)) % w).astype(np.int64)
        return np.stack([i0, i1], axis=-1)

    def admitted(self, cms_idx):
        if self.cms is None:
            return True
        return np.minimum(self.cms[cms_idx[..., 0]], self.cms[cms_idx[..., 1]]) >= self.admit_after

    def find(self, ids, rows, cms_idx, now):
        """mtld_embed_find: usable (id != 0, live, admitted, not expired)."""
        last = self.last[rows]
        ok = (ids != 0) & (last != DEAD) & self.admitted(cms_idx)
        if self.expire_ms > 0:
            ok &= ~((last != DEAD) & (now - np.where(last == DEAD, 0, last) > self.expire_ms))
        return ok

    def init_rows(self, r):
        """Row values of embed.c init_row (bit-exact)."""
        j = np.arange(self.dim, dtype=U64)
        with np.errstate(over="ignore"):
            key = r.astype(U64)[:, None] * U64(self.dim) + j[None, :] + U64(1)
        h = mix64(U64(self.seed) ^ key)
        u = (h >> U64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)
        vals = self.init_scale * (np.float32(2.0) * u - np.float32(1.0))
        self.w[torch.from_numpy(r)] = torch.from_numpy(vals.astype(np.float32))
        self.acc[torch.from_numpy(r)] = float(self.adagrad_init)

    def kill(self, r):
        self.last[r] = DEAD
        self.w[torch.from_numpy(r)] = 0.0

    def touch(self, ids, rows, cms_idx, now, count):
        """mtld_embed_touch for a batch of occurrences (flattened arrays).
        Counting happens for the whole batch first, then admission: the order
        inside one batch only matters for rare collisions."""
        nz = ids != 0
        if not nz.any():
            return
        ids, rows, now = ids[nz], rows[nz], now[nz]
        if self.cms is not None:
            ci = cms_idx[nz]
            if count:
                np.add.at(self.cms, ci[:, 0], 1)
                np.add.at(self.cms, ci[:, 1], 1)
                np.minimum(self.cms, 65535, out=self.cms)
            adm = self.admitted(ci)
        else:
            adm = np.ones(len(ids), dtype=bool)
        last = self.last[rows]
        if self.expire_ms > 0:
            exp = (last != DEAD) & (now - np.where(last == DEAD, 0, last) > self.expire_ms)
            if exp.any():
                self.kill(np.unique(rows[exp]))
                last = self.last[rows]
        born = (last == DEAD) & adm
        if born.any():
            self.init_rows(np.unique(rows[born]))
            np.maximum.at(self.last, rows[born], now[born])
        live = self.last[rows] != DEAD
        np.maximum.at(self.last, rows[live], now[live])

    def sweep(self, now):
        if self.expire_ms > 0:
            exp = (self.last != DEAD) & (now - np.where(self.last == DEAD, 0, self.last)
                                         > self.expire_ms)
            if exp.any():
                self.kill(np.nonzero(exp)[0])
        if self.cms is not None:
            self.cms >>= 1

    def adagrad(self, rows, grad):
        """Row-wise Adagrad over the rows touched (rows: int64 torch, may repeat;
        grad: [len(rows), D])."""
        if rows.numel() == 0:
            return
        uniq, inv = torch.unique(rows, return_inverse=True)
        g = torch.zeros(len(uniq), self.dim).index_add_(0, inv, grad)
        acc = self.acc[uniq] + (g * g).sum(1) / self.dim
        self.acc[uniq] = acc
        step = self.lr / (torch.sqrt(acc) + self.eps)
        self.w[uniq] -= step[:, None] * g


# ---- the model --------------------------------------------------------------------

def he_init(cfg_seed, shapes):
    """The dense initialisation of model.c: one splitmix stream over the
    weight tensors in layout order, He-uniform (x0.1 for gates)."""
    total = sum(r * c for (_, r, c, _) in shapes)
    k = np.arange(1, total + 1, dtype=U64)
    with np.errstate(over="ignore"):
        st = U64(cfg_seed) + k * U64(GOLDEN)
    h = mix64(st)
    u = (h >> U64(40)).astype(np.float32) * np.float32(2.0 / 16777216.0) - np.float32(1.0)
    out, at = [], 0
    for (_, r, c, gate) in shapes:
        lim = np.sqrt(np.float32(6.0) / np.float32(r)).astype(np.float32)
        if gate:
            lim = np.float32(lim * np.float32(0.1))
        out.append((lim * u[at:at + r * c]).astype(np.float32).reshape(r, c))
        at += r * c
    return out


class Model:
    def __init__(self, cfg):
        self.cfg = cfg
        c = cfg
        if c["uncertainty_weighting"]:
            sys.exit("mtld_torch: uncertainty weighting is not replicated")
        if c["emb"]["optim"] != 0:
            sys.exit("mtld_torch: only row-wise Adagrad embeddings are replicated")
        self.D, self.F, self.T = c["dim"], len(c["fields"]), len(c["tasks"])
        self.L = c["seq_max"] if c["item_field"] >= 0 else 0
        self.ND = c["n_dense"]
        # pairwise dot products (DLRM style) of the fields and the pooled sequence
        self.V = self.F + (1 if self.L > 0 else 0) if c.get("interactions", 0) == 1 else 0
        self.n_inter = self.V * (self.V - 1) // 2
        self.in_dim = self.F * self.D + (self.D if self.L > 0 else 0) + self.n_inter + self.ND
        self.gate_in = self.in_dim + (self.D if c["scenario_field"] >= 0 else 0)
        self.he = c["expert_layers"][-1]
        arch, T = c["arch"], self.T
        if arch == ARCH_SINGLE:
            self.n_experts, lists = T, [[t] for t in range(T)]
        elif arch == ARCH_SHARED_BOTTOM:
            self.n_experts, lists = 1, [[0] for _ in range(T)]
        elif arch == ARCH_MMOE:
            self.n_experts = c["n_experts"]
            lists = [list(range(c["n_experts"])) for _ in range(T)]
        else:
            ns, nt = c["n_shared_experts"], c["n_task_experts"]
            self.n_experts = ns + T * nt
            lists = [list(range(ns)) + [ns + t * nt + e for e in range(nt)] for t in range(T)]
        self.task_experts = lists
        # layout in model.c order: experts, then per task gate + tower, then logvar
        shapes = []  # (name, rows, cols, is_gate) of weight matrices (biases are zero)
        layout = []  # every dense tensor (name, rows, cols), as model.c names them
        self.expert_w = []
        for e in range(self.n_experts):
            ws, din = [], self.in_dim
            for li, width in enumerate(c["expert_layers"]):
                shapes.append(("expert%d" % e, din, width, False))
                layout += [("expert%d.l%d.w" % (e, li), din, width),
                           ("expert%d.l%d.b" % (e, li), 1, width)]
                ws.append((din, width))
                din = width
            self.expert_w.append(ws)
        self.gated = [len(l) > 1 for l in lists]
        tower_dims = c["tower_layers"] + [1]
        for t in range(T):
            name = c["tasks"][t]["name"]
            if self.gated[t]:
                shapes.append(("gate", self.gate_in, len(lists[t]), True))
                layout += [("gate.%s.w" % name, self.gate_in, len(lists[t])),
                           ("gate.%s.b" % name, 1, len(lists[t]))]
            din = self.he
            for li, width in enumerate(tower_dims):
                shapes.append(("tower", din, width, False))
                layout += [("tower.%s.l%d.w" % (name, li), din, width),
                           ("tower.%s.l%d.b" % (name, li), 1, width)]
                din = width
        layout.append(("task_log_var", 1, T))
        if "tensors" in c:
            theirs = [(t["name"], t["rows"], t["cols"]) for t in c["tensors"]]
            if theirs != layout:
                bad = next((i for i, (a, b) in enumerate(zip(theirs, layout)) if a != b),
                           min(len(theirs), len(layout)))
                sys.exit("mtld_torch: mtld's model has another dense layout than this replica "
                         "(trainer/model.c changed?): tensor %d is %s in mtld, %s here"
                         % (bad, theirs[bad] if bad < len(theirs) else None,
                            layout[bad] if bad < len(layout) else None))
        # model.c skips tensors of one row (biases, fan-in 1): they start at zero
        init = iter(he_init(c["seed"], [s for s in shapes if s[1] != 1]))

        def W(r, cc):  # the next weight matrix, in layout order
            w = next(init) if r != 1 else np.zeros((r, cc), np.float32)
            return torch.tensor(w, requires_grad=True)

        def B(cc):
            return torch.zeros(cc, requires_grad=True)

        self.experts = []
        for e in range(self.n_experts):
            self.experts.append([(W(r, cc), B(cc)) for (r, cc) in self.expert_w[e]])
        self.gates, self.towers = [], []
        for t in range(T):
            self.gates.append((W(self.gate_in, len(lists[t])), B(len(lists[t])))
                              if self.gated[t] else None)
            layers, din = [], self.he
            for width in tower_dims:
                layers.append((W(din, width), B(width)))
                din = width
            with torch.no_grad():
                layers[-1][1][0] = c["tasks"][t]["bias_init"]
            self.towers.append(layers)
        self.params = [p for ex in self.experts for wb in ex for p in wb]
        for t in range(T):
            if self.gates[t] is not None:
                self.params += list(self.gates[t])
            self.params += [p for wb in self.towers[t] for p in wb]
        if c["optim"] == 0:
            self.opt = torch.optim.Adam(self.params, lr=c["lr"], betas=(c["beta1"], c["beta2"]),
                                        eps=c["eps"], foreach=True)
        else:
            self.opt = torch.optim.Adagrad(self.params, lr=c["lr"], eps=c["eps"],
                                           initial_accumulator_value=0.0)
        self.tables = []
        for f, fd in enumerate(c["fields"]):
            seed = mix64_int(c["seed"] ^ (0x1000 + f))
            self.tables.append(Table(fd["rows"], self.D, seed, c["emb"]))
        self.norm_n = 0
        self.norm_mean = np.zeros(self.ND)
        self.norm_m2 = np.zeros(self.ND)
        self.norm_frozen = False
        self.last_sweep = None
        self.max_time = None
        self.scale = float(np.float32(1.0) / np.sqrt(np.float32(self.D)))
        self.tri = torch.triu_indices(self.V, self.V, offset=1) if self.V > 1 else None

    def n_dense_params(self):
        return sum(p.numel() for p in self.params)


class Stream:
    """Precomputed per-sample arrays (hashing is done once, outside the
    training loop)."""

    def __init__(self, model, s):
        c = model.cfg
        F, L = model.F, model.L
        self.n = len(s)
        self.time = s["time_ms"].astype(np.int64)
        ids = np.zeros((self.n, F), dtype=U64)
        for f in range(F):
            v = np.where(s["n_fields"] > f, s["fields"][:, f], U64(0)).astype(U64)
            if f == c["scenario_field"]:
                v = np.where(v == 0, s["scenario_id"], v).astype(U64)
            ids[:, f] = v
        self.ids = ids
        self.rows = np.stack([model.tables[f].rows_of(ids[:, f]) for f in range(F)], axis=1)
        self.cms = [model.tables[f].cms_of(ids[:, f]) for f in range(F)]
        if L > 0:
            it, ct = c["item_field"], c["category_field"]
            self.seq_len = np.clip(s["seq_len"], 0, L).astype(np.int64)
            pos = np.arange(L)[None, :]
            inseq = pos < self.seq_len[:, None]
            self.seq_mask = inseq
            self.seq_items = np.where(inseq, s["seq_items"][:, :L], U64(0)).astype(U64)
            self.seq_item_rows = model.tables[it].rows_of(self.seq_items)
            self.seq_item_cms = model.tables[it].cms_of(self.seq_items)
            if ct >= 0:
                self.seq_cats = np.where(inseq, s["seq_cats"][:, :L], U64(0)).astype(U64)
                self.seq_cat_rows = model.tables[ct].rows_of(self.seq_cats)
                self.seq_cat_cms = model.tables[ct].cms_of(self.seq_cats)
        nd = model.ND
        dense = np.zeros((self.n, nd), dtype=np.float64)
        for i in range(nd):
            v = np.where(s["n_dense"] > i, s["dense"][:, i], np.float32(0)).astype(np.float64)
            dense[:, i] = np.where(np.isfinite(v), v, 0.0)
        self.dense = dense
        self.labels = s["labels"].astype(np.float32)
        self.mask = np.stack([(s["label_mask"] >> l) & 1 for l in range(5)], axis=1).astype(bool)
        self.weight = s["weight"].astype(np.float32)
        self.valid = np.isfinite(s["weight"]) & (s["weight"] >= 0)
        for l in range(5):
            self.valid &= ~(self.mask[:, l] & ~np.isfinite(s["labels"][:, l]))


def gather(table, idx_list, ids_list, cms_list, now_list):
    """One leaf tensor per table holding the rows a batch reads (zeros where
    mtld_embed_find misses), and the row index / validity per entry."""
    rows = np.concatenate(idx_list)
    ids = np.concatenate(ids_list)
    now = np.concatenate(now_list)
    cms = np.concatenate(cms_list) if table.cms is not None else None
    ok = table.find(ids, rows, cms, now)
    r = torch.from_numpy(rows)
    okt = torch.from_numpy(ok)
    leaf = (table.w[r] * okt[:, None]).requires_grad_(True)
    return leaf, r, okt


def forward(m, st, b):
    """Forward of the samples at indices b.  Returns (logits [n, T], leaves)."""
    c = m.cfg
    n, D, L, F = len(b), m.D, m.L, m.F
    it, ct, sf = c["item_field"], c["category_field"], c["scenario_field"]
    now = st.time[b]
    leaves, field_vec, seq_vec = [], [], {}
    for f in range(F):
        idx = [st.rows[b, f]]
        ids = [st.ids[b, f]]
        cms = [st.cms[f][b]] if st.cms[f] is not None else []
        nows = [now]
        if L > 0 and f == it:
            idx.append(st.seq_item_rows[b].ravel())
            ids.append(st.seq_items[b].ravel())
            if st.seq_item_cms is not None:
                cms.append(st.seq_item_cms[b].reshape(-1, 2))
            nows.append(np.repeat(now, L))
        if L > 0 and f == ct:
            idx.append(st.seq_cat_rows[b].ravel())
            ids.append(st.seq_cats[b].ravel())
            if st.seq_cat_cms is not None:
                cms.append(st.seq_cat_cms[b].reshape(-1, 2))
            nows.append(np.repeat(now, L))
        leaf, r, ok = gather(m.tables[f], idx, ids, cms, nows)
        leaves.append((f, leaf, r, ok))
        field_vec.append(leaf[:n])
        if len(idx) > 1:
            seq_vec[f] = leaf[n:].view(n, L, D)
    parts = list(field_vec)
    if L > 0:
        q = field_vec[it] + (field_vec[ct] if ct >= 0 else 0)
        k = seq_vec[it] + (seq_vec[ct] if ct >= 0 else 0)
        sc = torch.bmm(k, q.unsqueeze(2)).squeeze(2) * m.scale
        mask = torch.from_numpy(st.seq_mask[b])
        sc = sc.masked_fill(~mask, -1e30)
        a = torch.softmax(sc, dim=1) * mask
        pooled = torch.bmm(a.unsqueeze(1), k).squeeze(1)
        parts.append(pooled)
    if m.V > 1:
        vs = torch.stack(parts[:m.V], dim=1)  # [n, V, D]: fields, then the pooled sequence
        dots = torch.bmm(vs, vs.transpose(1, 2))
        parts.append(dots[:, m.tri[0], m.tri[1]])  # pairs i < j in row-major order
    if m.ND > 0:
        parts.append(torch.from_numpy(normalise(m, st.dense[b])))
    x = torch.cat(parts, dim=1)
    gin = torch.cat([x, field_vec[sf]], dim=1) if sf >= 0 else x
    outs = []
    for ex in m.experts:
        h = x
        for (w, bb) in ex:
            h = torch.relu(torch.addmm(bb, h, w))
        outs.append(h)
    logits = []
    for t in range(m.T):
        lst = m.task_experts[t]
        if m.gated[t]:
            gw, gb = m.gates[t]
            p = torch.softmax(torch.addmm(gb, gin, gw), dim=1)
            mix = torch.bmm(p.unsqueeze(1), torch.stack([outs[e] for e in lst], 1)).squeeze(1)
        else:
            mix = outs[lst[0]]
        h = mix
        tw = m.towers[t]
        for li, (w, bb) in enumerate(tw):
            h = torch.addmm(bb, h, w)
            if li < len(tw) - 1:
                h = torch.relu(h)
        logits.append(h.squeeze(1))
    return torch.stack(logits, 1), leaves


def normalise(m, v):
    mean = m.norm_mean if m.norm_n else np.zeros(m.ND)
    var = m.norm_m2 / (m.norm_n - 1) if m.norm_n > 1 else np.ones(m.ND)
    z = ((v - mean) / np.sqrt(var + 1e-6)).astype(np.float32)
    return np.clip(z, -5.0, 5.0)


def predictions(m, logits):
    c = m.cfg
    preds = []
    for t, k in enumerate(c["tasks"]):
        z = logits[:, t]
        if k["type"] == TASK_REGRESSION:
            preds.append(z)
        elif k["type"] == TASK_ESMM:
            preds.append(torch.sigmoid(logits[:, k["parent"]]) * torch.sigmoid(z))
        else:
            preds.append(torch.sigmoid(z))
    return torch.stack(preds, 1)


def loss_of(m, st, b, logits):
    c = m.cfg
    total = None
    w_all = torch.from_numpy(st.weight[b])
    for t, k in enumerate(c["tasks"]):
        sel = st.mask[b, k["label"]]
        cnt = int(sel.sum())
        if cnt == 0:
            continue
        selt = torch.from_numpy(np.nonzero(sel)[0])
        y = torch.from_numpy(st.labels[b, k["label"]])[selt]
        z = logits[selt, t]
        w = w_all[selt]
        if k["type"] == TASK_BINARY:
            l = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
        elif k["type"] == TASK_ESMM:
            zp = logits[selt, k["parent"]]
            lp = torch.nn.functional.logsigmoid(zp) + torch.nn.functional.logsigmoid(z)
            p = torch.exp(lp).clamp(max=1.0 - 1e-7)
            l = -(y * lp + (1.0 - y) * torch.log1p(-p))
        else:
            if k["reg_loss"] == 1:
                l = torch.nn.functional.huber_loss(z, y, reduction="none", delta=k["huber_delta"])
            else:
                l = 0.5 * (z - y) ** 2
        term = k["loss_weight"] * (w * l).sum() / cnt
        total = term if total is None else total + term
    return total


def step_dense(m, loss):
    """Backward, then Adam (or Adagrad) on the dense parameters."""
    m.opt.zero_grad(set_to_none=False)  # zero (not None): Adam moves every parameter
    if loss is not None:
        loss.backward()
    m.opt.step()


def step_embeddings(m, leaves):
    """Row-wise Adagrad on the rows the batch read (after step_dense's backward)."""
    for (f, leaf, r, ok) in leaves:
        if leaf.grad is not None:
            m.tables[f].adagrad(r[ok], leaf.grad[ok])


def bookkeeping(m, st, b):
    """Per-batch bookkeeping after the update, as mtld_model_update: admission
    counts, row birth and expiry, the normaliser, the periodic sweep."""
    c = m.cfg
    now = st.time[b]
    L, it, ct = m.L, c["item_field"], c["category_field"]
    for f in range(m.F):
        tb = m.tables[f]
        tb.touch(st.ids[b, f], st.rows[b, f], st.cms[f][b] if st.cms[f] is not None else None,
                 now, 1)
    if L > 0:
        nows = np.repeat(now, L)
        tb = m.tables[it]
        tb.touch(st.seq_items[b].ravel(), st.seq_item_rows[b].ravel(),
                 st.seq_item_cms[b].reshape(-1, 2) if st.seq_item_cms is not None else None,
                 nows, 0)
        if ct >= 0:
            tb = m.tables[ct]
            tb.touch(st.seq_cats[b].ravel(), st.seq_cat_rows[b].ravel(),
                     st.seq_cat_cms[b].reshape(-1, 2) if st.seq_cat_cms is not None else None,
                     nows, 0)
    if m.ND > 0 and not m.norm_frozen:
        v = st.dense[b]
        nb = len(b)
        mb = v.mean(0)
        m2b = ((v - mb) ** 2).sum(0)
        na = m.norm_n
        d = mb - m.norm_mean
        tot = na + nb
        m.norm_mean = m.norm_mean + d * nb / tot
        m.norm_m2 = m.norm_m2 + m2b + d * d * na * nb / tot
        m.norm_n = tot
    tmax = int(now.max())
    m.max_time = tmax if m.max_time is None else max(m.max_time, tmax)
    exp = c["emb"]["expire_ms"]
    if exp > 0:
        if m.last_sweep is None:
            m.last_sweep = m.max_time
        if m.max_time - m.last_sweep >= exp // 2:
            for tb in m.tables:
                tb.sweep(m.max_time)
            m.last_sweep = m.max_time


def update(m, st, b, leaves, loss):
    step_dense(m, loss)
    step_embeddings(m, leaves)
    bookkeeping(m, st, b)


# ---- metrics (trainer/pvmetrics.c) --------------------------------------------------

def auc_hist(pred, y):
    """mtld's cumulative AUC: 10000 bins over the logit in [-16, 16]."""
    p32 = pred.astype(np.float32)
    lo, hi = np.float32(1e-12), np.float32(1.0) - np.float32(1e-7)
    q = np.where(p32 < lo, 1e-12, np.where(p32 > hi, 1.0 - 1e-7, p32.astype(np.float64)))
    z = np.log(q / (1.0 - q))
    b = np.trunc((z + 16.0) / 32.0 * 10000).astype(np.int64)
    b = np.clip(b, 0, 9999)
    pos = y > 0.5
    hp = np.bincount(b[pos], minlength=10000).astype(np.float64)
    hn = np.bincount(b[~pos], minlength=10000).astype(np.float64)
    below = np.concatenate([[0.0], np.cumsum(hn)[:-1]])
    num = (hp * (below + 0.5 * hn)).sum()
    if hp.sum() == 0 or hn.sum() == 0:
        return float("nan")
    return num / (hp.sum() * hn.sum())


def auc_exact(pred, y):
    """Rank AUC with mid ranks for ties (as mtld_auc_exact)."""
    pos = y > 0.5
    npos, nneg = int(pos.sum()), int((~pos).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    p = pred.astype(np.float32)
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    ranks = np.empty(len(p))
    # mid ranks over tie groups
    starts = np.concatenate([[0], np.nonzero(np.diff(ps))[0] + 1])
    ends = np.concatenate([starts[1:], [len(ps)]])
    mid = (starts + 1 + ends) / 2.0
    ranks[order] = np.repeat(mid, ends - starts)
    return (ranks[pos].sum() - npos * (npos + 1) / 2.0) / (npos * nneg)


def logloss(pred, y):
    p = np.clip(pred.astype(np.float64), 1e-7, 1 - 1e-7)
    pos = y > 0.5
    return float(-(np.log(p[pos]).sum() + np.log(1 - p[~pos]).sum()) / len(p))


def task_metrics(m, st, preds, sel_idx):
    """Per-task metrics over the samples sel_idx (those carrying the label)."""
    res = {}
    for t, k in enumerate(m.cfg["tasks"]):
        lab = k["label"]
        i = sel_idx[st.mask[sel_idx, lab]]
        p, y = preds[i, t], st.labels[i, lab]
        r = {"n": int(len(i))}
        if k["type"] == TASK_REGRESSION:
            r["rmse"] = float(np.sqrt(((p.astype(np.float64) - y) ** 2).mean())) if len(i) else None
        else:
            r["pos"] = int((y > 0.5).sum())
            r["auc_cum"] = auc_hist(p, y)
            r["auc_exact"] = auc_exact(p, y)
            r["logloss"] = logloss(p, y) if len(i) else None
        res[k["name"]] = r
    return res


# ---- drivers -----------------------------------------------------------------------

def batches_of(idx, bs):
    return [idx[i:i + bs] for i in range(0, len(idx), bs)]


PHASES = ["forward", "loss", "backward+dense_opt", "embedding_adagrad", "bookkeeping"]


def run_online(m, st, order):
    """Progressive validation over `order`: score each batch, then train on
    it.  Returns (predictions, (cpu seconds, wall seconds), wall seconds per
    phase).  CPU time: the machines running benchmarks are shared."""
    preds = np.full((st.n, m.T), np.nan, dtype=np.float32)
    ph = dict.fromkeys(PHASES, 0.0)
    clock = time.perf_counter
    c0 = time.process_time()
    t0 = clock()
    for b in batches_of(order, m.cfg["batch_size"]):
        t = clock()
        logits, leaves = forward(m, st, b)
        with torch.no_grad():
            preds[b] = predictions(m, logits).numpy()
        t1 = clock()
        loss = loss_of(m, st, b, logits)
        t2 = clock()
        step_dense(m, loss)
        t3 = clock()
        step_embeddings(m, leaves)
        t4 = clock()
        bookkeeping(m, st, b)
        t5 = clock()
        for k, dt in zip(PHASES, (t1 - t, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            ph[k] += dt
    return preds, (time.process_time() - c0, clock() - t0), ph


def evaluate(m, st, order):
    preds = np.full((st.n, m.T), np.nan, dtype=np.float32)
    with torch.no_grad():
        for b in batches_of(order, m.cfg["batch_size"]):
            logits, _ = forward(m, st, b)
            preds[b] = predictions(m, logits).numpy()
    return preds


def fmt(res):
    out = []
    for name, r in res.items():
        if "auc_cum" in r:
            out.append("task=%s n=%d pos=%d auc_cum=%.4f auc_exact=%.4f logloss=%.4f" %
                       (name, r["n"], r["pos"], r["auc_cum"], r["auc_exact"], r["logloss"]))
        else:
            out.append("task=%s n=%d rmse=%s" % (name, r["n"], r["rmse"]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layout", required=True, help="the sample_layout helper program")
    ap.add_argument("--model", required=True, help="model config JSON (bench_trainer_dump)")
    ap.add_argument("--dump", required=True, help="trainer.dump_samples file")
    ap.add_argument("--mode", choices=["online", "offline"], default="online")
    ap.add_argument("--train-frac", type=float, default=0.8, help="offline: training share")
    ap.add_argument("--epochs", type=int, default=3, help="offline: epochs")
    ap.add_argument("--shuffle-seed", type=int, default=1, help="offline: batch order seed")
    ap.add_argument("--seed", type=int, help="override model.seed (as mtld with that seed)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="online: timing passes (median)")
    ap.add_argument("--preds-out", help="online: save per-sample predictions (.npy)")
    ap.add_argument("--json-out", help="write the results as JSON here")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    with open(a.model) as f:
        cfg = json.load(f)
    if a.seed is not None:
        cfg["seed"] = a.seed
    s = read_dump(a.dump, sample_dtype(a.layout))
    m = Model(cfg)
    t_prep = time.perf_counter()
    st = Stream(m, s)
    t_prep = time.perf_counter() - t_prep
    keep = np.nonzero(st.valid)[0]  # mtld_trainer_observe refuses the others
    out = {"samples": int(st.n), "accepted": int(len(keep)), "torch": torch.__version__,
           "batch_size": cfg["batch_size"],
           "threads": torch.get_num_threads(), "prep_s": t_prep,
           "dense_params": m.n_dense_params()}
    print("mtld_torch: %d samples (%d accepted), torch %s, %d thread(s), %d dense params, "
          "hashing/prep %.2f s" % (st.n, len(keep), torch.__version__, torch.get_num_threads(),
                                   m.n_dense_params(), t_prep))
    if a.mode == "online":
        preds, tm, ph = run_online(m, st, keep)
        res = task_metrics(m, st, preds, keep)
        times = [tm]
        for _ in range(a.repeat - 1):  # timing only: fresh models, same samples
            m2 = Model(cfg)
            st2 = Stream(m2, s)
            times.append(run_online(m2, st2, keep)[1])
        cpu = float(np.median([t[0] for t in times]))
        wall = float(np.median([t[1] for t in times]))
        out.update({"mode": "online", "cpu_seconds": cpu, "wall_seconds": wall,
                    "pass_seconds": times, "samples_per_s": len(keep) / cpu,
                    "samples_per_s_wall": len(keep) / wall, "phases_first_pass": ph,
                    "metrics": res})
        print("online: %.0f samples/s [wall %.0f], CPU time, median of %d pass(es) (score + "
              "train: forward, loss, backward, optimisers, bookkeeping; batch %d)"
              % (len(keep) / cpu, len(keep) / wall, len(times), cfg["batch_size"]))
        tot = sum(ph.values())
        print("  first pass by phase: " + ", ".join("%s %.0f%%" % (k, 100 * v / tot)
                                                     for k, v in ph.items()))
        print(fmt(res))
        if a.preds_out:
            np.save(a.preds_out, preds)
    else:
        ntr = int(len(keep) * a.train_frac)
        tr, te = keep[:ntr], keep[ntr:]
        out.update({"mode": "offline", "train": int(len(tr)), "test": int(len(te)),
                    "epochs": a.epochs, "test_from_ms": int(st.time[te[0]]) if len(te) else None})
        # offline practice: normaliser statistics of the training part, fixed
        v = st.dense[tr]
        m.norm_n, m.norm_mean = len(tr), v.mean(0)
        m.norm_m2 = ((v - m.norm_mean) ** 2).sum(0)
        m.norm_frozen = True
        rng = np.random.default_rng(a.shuffle_seed)
        out["per_epoch"] = []
        t0 = time.perf_counter()
        for ep in range(a.epochs):
            order = tr.copy()
            rng.shuffle(order)  # offline practice: a shuffled pass per epoch
            for b in batches_of(order, cfg["batch_size"]):
                logits, leaves = forward(m, st, b)
                update(m, st, b, leaves, loss_of(m, st, b, logits))
            res = task_metrics(m, st, evaluate(m, st, te), te)
            out["per_epoch"].append(res)
            print("offline epoch %d (train %d samples, test %d):" % (ep + 1, len(tr), len(te)))
            print(fmt(res))
        out["seconds"] = time.perf_counter() - t0
        out["metrics"] = out["per_epoch"][-1]
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    main()
