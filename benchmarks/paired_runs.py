"""Paired comparison of two groups of runs on the same split: per-sentence hits averaged over each
group's runs, their difference, and a 95 % percentile-bootstrap CI over the sentences.

    python benchmarks/paired_runs.py --a runs/x/predictions_val.json runs/y/predictions_val.json \
        --b runs/z/predictions_val.json [--resamples 2000]

The CI covers the sentence sample only: with a handful of runs per group, also compare the runs'
own spread (a difference the seeds alone produce is noise). Used for issue 8's session-4 numbers.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

METRICS = (("prec@0.5", lambda r: float(r["box_iou"] >= 0.5)), ("box mIoU", lambda r: r["box_iou"]),
           ("mask mIoU", lambda r: r["mask_inter"] / max(1, r["mask_union"])))


def _load(path: str) -> dict:
    return {r["sent_id"]: r for r in json.load(open(path))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", nargs="+", required=True, help="predictions_<split>.json of group A's runs")
    ap.add_argument("--b", nargs="+", required=True, help="predictions_<split>.json of group B's runs")
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args(argv)
    a_runs, b_runs = [_load(p) for p in args.a], [_load(p) for p in args.b]
    ids = sorted(a_runs[0])
    for runs in (a_runs, b_runs):
        for r in runs:
            if sorted(r) != ids:
                raise SystemExit("the runs do not hold the same sentences: compare predictions of one split")
    rng = np.random.default_rng(0)
    print(f"| metric | A ({len(a_runs)} runs) | B ({len(b_runs)} runs) | A - B | 95 % CI (sentences) |")
    print("|---|---|---|---|---|")
    for name, fn in METRICS:
        if name == "mask mIoU" and "mask_inter" not in a_runs[0][ids[0]]:
            continue
        a = np.array([[fn(r[i]) for i in ids] for r in a_runs]).mean(0)
        b = np.array([[fn(r[i]) for i in ids] for r in b_runs]).mean(0)
        d = a - b
        boots = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(args.resamples)]
        lo, hi = np.percentile(boots, [2.5, 97.5])
        print(f"| {name} | {a.mean():.3f} | {b.mean():.3f} | {d.mean():+.3f} | {lo:+.3f} to {hi:+.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
