#!/usr/bin/python3
"""mf_ceiling.py - how close can a learner get to mtld-gen's oracle on a stream?

mtld-gen's oracle AUC is what a model would reach knowing every user's and
item's true parameters.  On a finite stream those have to be learnt from each
user's and item's own events, so the reachable AUC lies below it.  This script
fits the generator's own model family to a sample dump of mtld (trainer.
dump_samples) and reports, over the last --window impressions (the progressive
validation window of the daemon):

  oracle   AUC of the true click probabilities (from mtld-gen --truth)
  online   a correctly specified logistic matrix factorisation (user and item
           vectors and biases, scenario, position and hour biases) trained
           online, each batch scored before it is learnt, Adagrad
  offline  the same model trained for --epochs epochs on every impression
           before the window, then scored on the window

  usage: mf_ceiling.py --layout BUILD/tests/sample_layout --dump samples.bin
                       --truth truth.csv [--window 100000] [--dim 8]
                       [--epochs 3] [--lr 0.1] [--batch 256]
Needs Debian's python3-torch and python3-numpy (/usr/bin/python3).
"""

import argparse
import csv
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtld_torch as M  # noqa: E402


class MF(torch.nn.Module):
    def __init__(self, sizes, dim):
        super().__init__()
        nu, ni, ns, npos, nh = sizes
        self.u = torch.nn.Embedding(nu, dim)
        self.i = torch.nn.Embedding(ni, dim)
        self.bias = torch.nn.ModuleList(torch.nn.Embedding(n, 1) for n in sizes)
        for e in (self.u, self.i):
            torch.nn.init.normal_(e.weight, std=0.1)
        for e in self.bias:
            torch.nn.init.zeros_(e.weight)

    def forward(self, ids):
        z = (self.u(ids[:, 0]) * self.i(ids[:, 1])).sum(1) - 2.5
        for k, e in enumerate(self.bias):
            z = z + e(ids[:, k])[:, 0]
        return z


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layout", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--window", type=int, default=100000)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)

    s = M.read_dump(a.dump, M.sample_dtype(a.layout))
    imp = s[s["kind"] == 1]
    y = imp["labels"][:, 0].astype(np.float32)
    n = len(y)
    if n <= a.window:
        sys.exit("mf_ceiling: %d impressions, not more than the window (%d)" % (n, a.window))
    h = n - a.window
    truth = {}
    with open(a.truth) as f:
        for row in csv.DictReader(f):
            if row["kind"] == "impression":
                truth[int(row["event_id"])] = float(row["p_click"])
    p = np.array([truth[int(i)] for i in imp["sample_id"][h:]])
    # fields: user, item, category, scenario, position, hour -> dense indices
    cols = []
    for f in (0, 1, 3, 4, 5):
        _, inv = np.unique(imp["fields"][:, f], return_inverse=True)
        cols.append(inv)
    ids = torch.tensor(np.stack(cols, 1))
    sizes = [int(c.max()) + 1 for c in cols]
    yt = torch.tensor(y)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    print("%d impressions, %d users, %d items; window = the last %d" % (n, sizes[0], sizes[1], a.window))
    print("oracle   AUC %.4f" % M.auc_exact(p, y[h:]))

    m = MF(sizes, a.dim)
    opt = torch.optim.Adagrad(m.parameters(), lr=a.lr)
    z_all = np.zeros(n)
    for b in range(0, n, a.batch):
        j = slice(b, min(n, b + a.batch))
        z = m(ids[j])
        z_all[j] = z.detach().numpy()
        loss = bce(z, yt[j])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("online   AUC %.4f  (Adagrad lr %g, batch %d, dim %d)" % (M.auc_exact(z_all[h:], y[h:]), a.lr, a.batch, a.dim))

    m = MF(sizes, a.dim)
    opt = torch.optim.Adam(m.parameters(), lr=0.003)
    for _ in range(a.epochs):
        perm = torch.randperm(h)
        for b in range(0, h, 1024):
            j = perm[b : b + 1024]
            loss = bce(m(ids[j]), yt[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        z = m(ids[h:]).numpy()
    print("offline  AUC %.4f  (Adam, %d epochs over the %d impressions before the window)" % (M.auc_exact(z, y[h:]), a.epochs, h))


if __name__ == "__main__":
    main()
