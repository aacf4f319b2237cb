"""The box of the predicted mask against the REC head's box, over runs scored with box_source "mask".

    python benchmarks/box_source_gain.py reports/ablation_runs/ablation-*-136ff644 [--split val]

Every run folder (or record) whose predictions_<split>.json carries both boxes (`box_iou` of the
mask's box, `head_box_iou` of the head's: an evaluation with box_source "mask", or a record
re-scored by `vglaw.workbook.rescore`) gives per-sentence differences, mask minus head, of the hit
(IoU >= 0.5) and the box IoU. Prints a markdown table: per law_type and over all the runs, the mean
difference in points with a 95 % CI from the two-level bootstrap of notebook 03
(`vglaw.workbook.ablation.hierarchical_bootstrap`: runs, then the sentences they share), and in how
many runs the mask's box scored higher. Session 16's evidence for the tiny recipe's box_source.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def differences(pred_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-sentence (mask - head) hit and box-IoU differences of one run, ordered by sent_id."""
    rows = sorted(json.loads(pred_file.read_text()), key=lambda r: r["sent_id"])
    if not rows or any("head_box_iou" not in r for r in rows):
        raise SystemExit(f"{pred_file}: no head_box_iou: not scored with box_source 'mask' "
                         "(evaluate with it, or re-score the record with vglaw.workbook.rescore)")
    mask = np.array([r["box_iou"] for r in rows])
    head = np.array([r["head_box_iou"] for r in rows])
    return (mask >= 0.5).astype(float) - (head >= 0.5).astype(float), mask - head


def table(runs: list[Path], split: str = "val", n_boot: int = 2000) -> str:
    from vglaw.workbook.ablation import hierarchical_bootstrap
    groups: dict[str, list] = defaultdict(list)
    sent_ids = None
    for run in runs:
        pred = run / f"predictions_{split}.json"
        ids = sorted(r["sent_id"] for r in json.loads(pred.read_text()))
        if sent_ids is not None and ids != sent_ids:
            raise SystemExit(f"{run}: scored on other sentences than the first run: not paired")
        sent_ids = ids
        law = json.loads((run / "config.json").read_text())["train"]["law_type"]
        groups[law].append(differences(pred))
    groups["all runs"] = [d for law in list(groups) for d in groups[law]]
    lines = [f"| runs | n | Prec@0.5, mask - head (points) | box mIoU, mask - head (points) | runs where the mask's box is higher (Prec@0.5 / box mIoU) |",
             "|---|---|---|---|---|"]
    for name, diffs in groups.items():
        cells = []
        for j in (0, 1):
            d = np.stack([x[j] for x in diffs])  # (R, N)
            boot = hierarchical_bootstrap(d[None], n_boot=n_boot)[0]
            lo, hi = np.percentile(boot, [2.5, 97.5])
            cells.append(f"{100 * d.mean():+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
        higher = [sum(x[j].mean() > 0 for x in diffs) for j in (0, 1)]
        lines.append(f"| {name} | {len(diffs)} | {cells[0]} | {cells[1]} | {higher[0]} / {higher[1]} of {len(diffs)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders or archived records")
    ap.add_argument("--split", default="val")
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args(argv)
    print(f"`python benchmarks/box_source_gain.py {' '.join(str(r) for r in args.runs)}`\n")
    print(table(args.runs, args.split, args.resamples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
