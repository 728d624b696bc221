#!/usr/bin/python3
"""compare.py - the comparisons of bench/reference/run.sh, printed as tables.

  agree   progressive AUC per task: mtld (its "pv ... scenario=all" log lines)
          vs the PyTorch replica (mtld_torch.py --json-out); per-sample
          prediction differences when both prediction files are given.
          Exits 1 when a binary task's cumulative AUC differs by more than
          --tol (default 0.005).
  speed   samples/s of mtld (bench_trainer_dump's output) vs PyTorch on the
          same samples, and the BLIS fraction.
  taobao  mtld's progressive AUC over the whole stream and over its last
          (1 - train_frac) share, vs the offline PyTorch baseline trained on
          the first share and evaluated on that same last share.
"""

import argparse
import json
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtld_torch as M  # noqa: E402


def pv_lines(log):
    """{task: {key: value}} from the last "pv task=... scenario=all" lines."""
    res = {}
    with open(log) as f:
        for line in f:
            i = line.find(" pv task=")
            if i < 0 or " scenario=all " not in line:
                continue
            kv = dict(p.split("=", 1) for p in line[i + 4:].split() if "=" in p)
            res[kv["task"]] = kv
    return res


def read_preds(path):
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:8] != b"MTLDPRD1":
        sys.exit("compare: %s: not a prediction file" % path)
    t, n = np.frombuffer(head[8:16], dtype="<u4")
    return np.fromfile(path, dtype="<f4", offset=16).reshape(int(n), int(t))


def se_auc(auc, npos, nneg):
    """Hanley & McNeil (1982) standard error of an AUC."""
    if not (npos and nneg) or math.isnan(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    v = (auc * (1 - auc) + (npos - 1) * (q1 - auc * auc) + (nneg - 1) * (q2 - auc * auc))
    return math.sqrt(max(v, 0.0) / (npos * nneg))


def cmd_agree(a):
    mt = pv_lines(a.log)
    with open(a.torch_json) as f:
        tj = json.load(f)
    if not mt:
        sys.exit("compare: no pv lines in %s" % a.log)
    ok = True
    print("%-10s %8s %9s %10s %10s %8s %s" % ("task", "n", "positives", "mtld_auc", "torch_auc",
                                              "|diff|", "verdict"))
    for name, r in tj["metrics"].items():
        m = mt.get(name)
        if m is None:
            print("%-10s missing in the mtld log" % name)
            ok = False
            continue
        if "auc_cum" not in r:
            print("%-10s %8s %9s %10s %10s %8s (regression: rmse mtld %s, torch %.4f)"
                  % (name, m["n"], "-", "-", "-", "-", m["rmse"], r["rmse"]))
            continue
        ma, ta = float(m["auc_cum"]), r["auc_cum"]
        d = abs(ma - ta)
        good = d <= a.tol and int(m["n"]) == r["n"]
        ok &= good
        print("%-10s %8s %9s %10.4f %10.4f %8.4f %s" % (name, m["n"], m["pos"], ma, ta, d,
                                                        "ok" if good else "DIFFERS"))
    if a.mtld_preds and a.torch_preds:
        mp, tp = read_preds(a.mtld_preds), np.load(a.torch_preds)
        d = np.abs(mp.astype(np.float64) - tp)
        names = list(tj["metrics"])
        print("per-sample |mtld - torch| prediction: " + ", ".join(
            "%s max %.2g mean %.2g" % (names[t], np.nanmax(d[:, t]), np.nanmean(d[:, t]))
            for t in range(d.shape[1])))
    print("agreement within %.3f: %s" % (a.tol, "yes" if ok else "NO"))
    return 0 if ok else 1


def bench_numbers(path):
    out = {}
    pat = {
        "observe": r"^trainer_observe\s+([\d.]+) samples/s",
        "observe_wall": r"^trainer_observe .*\[wall ([\d.]+)\]",
        "step": r"^train_step\s+([\d.]+) samples/s",
        "step_wall": r"^train_step .*\[wall ([\d.]+)\]",
        "model_gflops": r"^model dense flops .*-> ([\d.]+) GFLOP/s",
        "sgemm_gflops": r"^sgemm \S+\s+([\d.]+) GFLOP/s",
        "sgemm_shape": r"^sgemm (\S+)",
        "ratio": r"^ratio model/sgemm\s+([\d.]+)",
    }
    with open(path) as f:
        for line in f:
            for k, p in pat.items():
                mm = re.search(p, line)
                if mm:
                    out[k] = mm.group(1) if k == "sgemm_shape" else float(mm.group(1))
    return out


def cmd_speed(a):
    b = bench_numbers(a.bench_out)
    with open(a.torch_json) as f:
        tj = json.load(f)
    t, tw = tj["samples_per_s"], tj["samples_per_s_wall"]
    print("same %d samples, batch %d, one thread each (BLIS for both); samples/s in CPU time "
          "of the process, wall clock in brackets" % (tj["accepted"], tj["batch_size"]))
    print("%-46s %10s %10s %9s" % ("", "samples/s", "[wall]", "vs torch"))
    print("%-46s %10.0f %10.0f %8.2fx" % ("mtld trainer (score + metrics + train)",
                                          b["observe"], b["observe_wall"], b["observe"] / t))
    print("%-46s %10.0f %10.0f %8.2fx" % ("mtld training step (forward+backward+update)",
                                          b["step"], b["step_wall"], b["step"] / t))
    print("%-46s %10.0f %10.0f %8.2fx" % ("PyTorch %s replica (score + train)" % tj["torch"],
                                          t, tw, 1.0))
    ph = tj.get("phases_first_pass", {})
    if ph:
        tot = sum(ph.values())
        print("PyTorch time by phase: " + ", ".join("%s %.0f%%" % (k, 100 * v / tot)
                                                    for k, v in ph.items()))
    print("mtld dense GFLOP/s %.2f = %.3f of BLIS sgemm %s (%.2f GFLOP/s)"
          % (b["model_gflops"], b["ratio"], b["sgemm_shape"], b["sgemm_gflops"]))
    ratio = b["observe"] / t
    print("target mtld/PyTorch >= 3x (whole trainer path, CPU time, batch %d): %.2fx -> %s"
          % (tj["batch_size"], ratio, "met" if ratio >= 3.0 else "MISSED"))
    return 0


def cmd_taobao(a):
    mt = pv_lines(a.log)
    s = M.read_dump(a.dump, M.sample_dtype(a.layout))
    with open(a.model) as f:
        cfg = json.load(f)
    with open(a.offline_json) as f:
        off = json.load(f)
    mp = read_preds(a.mtld_preds)
    ok = np.isfinite(s["weight"]) & (s["weight"] >= 0)
    keep = np.nonzero(ok)[0]
    ntr = int(len(keep) * a.train_frac)
    te = keep[ntr:]
    labels = s["labels"]
    mask = np.stack([(s["label_mask"] >> l) & 1 for l in range(4)], axis=1).astype(bool)
    print("samples %d; test = last %d by time (from %s ms), train = first %d"
          % (len(keep), len(te), s["time_ms"][te[0]], ntr))
    print("%-9s %-38s %8s %6s %8s %7s" % ("task", "what", "n", "pos", "AUC", "+-SE"))
    for t, k in enumerate(cfg["tasks"]):
        if k["type"] == M.TASK_REGRESSION:
            continue
        name, lab = k["name"], k["label"]
        m = mt.get(name, {})
        if m:
            print("%-9s %-38s %8s %6s %8s %7s" % (name, "mtld progressive, whole stream (log)",
                                                 m["n"], m["pos"], m["auc_cum"], ""))
        i = te[mask[te, lab]]
        y = labels[i, lab]
        auc = M.auc_exact(mp[i, t], y)
        npos = int((y > 0.5).sum())
        print("%-9s %-38s %8d %6d %8.4f %7.4f" % (name, "mtld progressive, test share", len(i),
                                                  npos, auc, se_auc(auc, npos, len(i) - npos)))
        for ep, res in enumerate(off["per_epoch"]):
            r = res[name]
            print("%-9s %-38s %8d %6d %8.4f %7.4f"
                  % (name, "PyTorch offline, epoch %d, test share" % (ep + 1), r["n"], r["pos"],
                     r["auc_exact"], se_auc(r["auc_exact"], r["pos"], r["n"] - r["pos"])))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("agree")
    p.add_argument("--log", required=True)
    p.add_argument("--torch-json", required=True)
    p.add_argument("--mtld-preds")
    p.add_argument("--torch-preds")
    p.add_argument("--tol", type=float, default=0.005)
    p = sub.add_parser("speed")
    p.add_argument("--bench-out", required=True)
    p.add_argument("--torch-json", required=True)
    p = sub.add_parser("taobao")
    p.add_argument("--log", required=True)
    p.add_argument("--layout", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--dump", required=True)
    p.add_argument("--mtld-preds", required=True)
    p.add_argument("--offline-json", required=True)
    p.add_argument("--train-frac", type=float, default=0.8)
    a = ap.parse_args()
    sys.exit({"agree": cmd_agree, "speed": cmd_speed, "taobao": cmd_taobao}[a.cmd](a))


if __name__ == "__main__":
    main()
