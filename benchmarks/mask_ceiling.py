"""What a mask head at a given resolution can score at best (issue 8): the resolution ceiling.

    python benchmarks/mask_ceiling.py --cache_dir .cache/refer --split val

For every sentence of the split: the ground-truth mask on the canvas (as training sees it), each
cell's occupancy as the logit map (occupancy - 0.5, the best a map of that resolution can say),
the head's own path back (align-corners bilinear to the canvas, then to the original image,
threshold 0) and the IoU with the ground truth at the original resolution. Prints the mIoU for
the tiny preset's 4 x 4-pixel cells (its RES head's stride-4 logits) and for the full canvas.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache_dir", default=None, help="preprocessed cache (default: the repository's .cache/refer)")
    p.add_argument("--dataset", default="shapes")
    p.add_argument("--split_by", default="unc")
    p.add_argument("--split", default="val")
    p.add_argument("--img_size", type=int, default=128, help="canvas side (tiny preset: 128)")
    p.add_argument("--cell", type=int, default=4, help="pixels per logit cell (tiny RES head: 4)")
    a = p.parse_args()

    from vglaw.data import RefDataset
    from vglaw.data.transforms import letterbox_mask, make_letterbox
    from vglaw.models.resize import linear_resize_matrix
    from vglaw.utils.paths import default_cache_dir

    s, c = a.img_size, a.img_size // a.cell
    up = linear_resize_matrix(c, s, align_corners=True).astype(np.float32)  # (S, C)
    ds = RefDataset(a.cache_dir or default_cache_dir(), a.dataset, a.split_by, a.split)
    ious = {f"{a.cell} x {a.cell}-pixel cells ({c} x {c})": [], f"canvas ({s} x {s})": []}
    sides = []
    for i in range(len(ds)):
        gt = ds[i]["mask"] > 0
        lb = make_letterbox(*gt.shape, s)
        canvas = letterbox_mask(gt, lb)
        occupancy = canvas.reshape(c, a.cell, c, a.cell).mean((1, 3))
        for name, logit in zip(ious, (up @ (occupancy - 0.5) @ up.T, canvas - 0.5)):
            pred = lb.mask_to_original(logit) > 0
            ious[name].append(np.logical_and(pred, gt).sum() / max(np.logical_or(pred, gt).sum(), 1))
        sides.append(np.sqrt(canvas.sum()))
    print(f"{a.dataset} {a.split}: {len(ds)} sentences; object side on the canvas (sqrt of its area): "
          f"median {np.median(sides):.1f} px, 10th percentile {np.percentile(sides, 10):.1f} px")
    print(f"{'logit map':<32} {'best mIoU':>9} {'10th pct IoU':>13}")
    for name, v in ious.items():
        print(f"{name:<32} {np.mean(v):>9.4f} {np.percentile(v, 10):>13.3f}")


if __name__ == "__main__":
    main()
