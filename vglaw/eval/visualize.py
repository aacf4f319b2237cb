"""GT vs predicted box and mask panels + `python -m vglaw.visualize`.

`draw_panels` works from predictions already computed (`predictions_<split>.json` records, joined
to the dataset by sent_id), so notebooks plot without re-running the model; the CLI runs the model
on the chosen samples first.

    python -m vglaw.visualize --checkpoint runs/x/best.ckpt --dataset shapes --split_by unc \
        --split val --indices 0,5,9 --out_dir reports/figures/vis
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["draw_panels", "draw_sample", "predictions_by_sent_id", "pick_indices", "plot_training_curves", "main"]

log = logging.getLogger("vglaw")

GT_COLOR = (0.1, 0.85, 0.2)
PRED_COLOR = (1.0, 0.25, 0.1)


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(run_dir: str | Path):
    """A run's train_log.jsonl as four panels: training losses, the LR of each group, val accuracy
    against updates and against seconds. Returns the figure.

    LR groups often share values (lang = visual in the tiny recipe): each group gets its own line
    style and width, so a line drawn over another stays visible and the legend says which is which.
    """
    import json

    import pandas as pd

    plt = _plt()
    lines = (Path(run_dir) / "train_log.jsonl").read_text().splitlines()
    rows = pd.json_normalize([json.loads(line) for line in lines])
    is_val = rows["eval"].eq("val") if "eval" in rows else pd.Series(False, index=rows.index)
    train, val = rows[~is_val], rows[is_val].drop_duplicates("step", keep="last")  # a redone evaluation: last row
    loss_cols = [c for c in ("loss", "l1", "giou", "focal", "dice") if c in train]
    lr_cols = [c for c in train.columns if c.startswith("lr.")]
    val_cols = [c for c in ("prec@0.5", "miou") if c in val and val[c].notna().any()]  # miou: use_mask runs
    fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(11, 7))
    train.plot(x="step", y=loss_cols, ax=ax1, logy=True, title="training losses")
    styles = ("-", "--", ":", "-.")
    for i, col in enumerate(lr_cols):
        ax2.plot(train["step"], train[col], linestyle=styles[i % len(styles)], linewidth=3.0 - 0.8 * (i % 3),
                 label=col[len("lr."):])
    ax2.set_yscale("log")
    ax2.set_title("learning rate per group")
    ax2.set_xlabel("step")
    ax2.legend()
    for ax, x, label in ((ax3, "step", "optimiser updates"), (ax4, "time", "seconds since the start")):
        if x in val and val_cols:
            val.plot(x=x, y=val_cols, ax=ax, marker="o", ylim=(-0.02, 1.02), title=f"val accuracy vs {label}")
            ax.set_xlabel(label)
            ax.set_ylabel("fraction")
    fig.tight_layout()
    return fig


def predictions_by_sent_id(predictions: Sequence[dict]) -> dict[int, dict]:
    """Index prediction records by sent_id."""
    return {int(p["sent_id"]): p for p in predictions}


def _tint(image: np.ndarray, mask, color, alpha: float = 0.45) -> np.ndarray:
    img = image.astype(np.float32) / 255.0
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        img[m] = (1 - alpha) * img[m] + alpha * np.asarray(color, np.float32)
    return img


def _box(ax, xywh, color, label=None):
    from matplotlib.patches import Rectangle

    x, y, w, h = xywh
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=2, label=label))


def draw_sample(axes, image, sample: dict, pred: dict | None) -> None:
    """Draw GT (axes[0]) and prediction (axes[1]) of one expression; one axis: both overlaid.

    Args:
        axes: one or two matplotlib axes.
        image: (H, W, 3) uint8 original image.
        sample: RefDataset item (bbox x, y, w, h original px; mask (H, W); phrase).
        pred: prediction record (pred_box x, y, w, h original px; optional pred_mask RLE, box_iou,
            mask_inter/mask_union) or None.
    """
    from vglaw.utils.io import rle_to_mask

    axes = list(np.atleast_1d(axes))
    pmask = rle_to_mask(pred["pred_mask"]) if pred is not None and pred.get("pred_mask") else None
    title = sample["phrase"]
    if pred is not None:
        title += f"\nbox IoU {pred['box_iou']:.2f}"
        if pred.get("mask_union"):
            title += f"  mask IoU {pred['mask_inter'] / pred['mask_union']:.2f}"
    if len(axes) >= 2:
        axes[0].imshow(_tint(image, sample.get("mask"), GT_COLOR))
        _box(axes[0], sample["bbox"], GT_COLOR)
        axes[0].set_title(f"GT: {sample['phrase']}", fontsize=8)
        axes[1].imshow(_tint(image, pmask, PRED_COLOR))
        if pred is not None:
            _box(axes[1], pred["pred_box"], PRED_COLOR)
        axes[1].set_title("prediction" + (title[len(sample["phrase"]):] if pred else ": none"), fontsize=8)
    else:
        img = _tint(image, sample.get("mask"), GT_COLOR, alpha=0.3)
        axes[0].imshow(_tint((img * 255).astype(np.uint8), pmask, PRED_COLOR, alpha=0.35))
        _box(axes[0], sample["bbox"], GT_COLOR)
        if pred is not None:
            _box(axes[0], pred["pred_box"], PRED_COLOR)
        axes[0].set_title(title, fontsize=8)
    for ax in axes:
        ax.set_axis_off()


def draw_panels(ref_ds, predictions: Sequence[dict], indices: Sequence[int], *, out_dir=None,
                ncols: int = 4, grid_name: str = "grid.png"):
    """Plot GT (green) vs prediction (red) for `indices` of `ref_ds`.

    Args:
        ref_ds: the RefDataset the predictions were made on.
        predictions: records from `evaluate_split` / `predictions_<split>.json` (joined by sent_id).
        indices: dataset indices to plot.
        out_dir: if given, writes `sample_<index>.png` (GT | prediction) per sample and the grid.
        ncols: columns of the grid (one overlaid panel per sample).

    Returns:
        (grid matplotlib Figure, list of written PNG paths).
    """
    plt = _plt()
    if not len(indices):
        raise ValueError("indices is empty: nothing to draw")
    bad = [i for i in indices if not 0 <= int(i) < len(ref_ds)]
    if bad:
        raise IndexError(f"indices {bad} out of range for a split of {len(ref_ds)} expressions")
    by_id = predictions_by_sent_id(predictions)
    written: list[Path] = []
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    ncols = max(1, min(ncols, len(indices)))
    nrows = math.ceil(len(indices) / ncols)
    grid, gaxes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.4 * nrows), squeeze=False)
    for k, i in enumerate(indices):
        sample = ref_ds[int(i)]
        image = ref_ds.load_image(int(i))
        pred = by_id.get(int(sample["sent_id"]))
        if pred is None:
            log.warning("no prediction for sent_id %s (index %d)", sample["sent_id"], i)
        draw_sample(gaxes[k // ncols][k % ncols], image, sample, pred)
        if out_dir is not None:
            fig, axes = plt.subplots(1, 2, figsize=(7, 3.8))
            draw_sample(axes, image, sample, pred)
            fig.tight_layout()
            path = out_dir / f"sample_{int(i):05d}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    for k in range(len(indices), nrows * ncols):
        gaxes[k // ncols][k % ncols].set_axis_off()
    grid.tight_layout()
    if out_dir is not None:
        path = out_dir / grid_name
        grid.savefig(path, dpi=100)
        written.append(path)
    return grid, written


def pick_indices(n_total: int, *, indices: str | None = None, num: int | None = None,
                 seed: int = 0) -> list[int]:
    """Parse "0,5,9" or draw `num` distinct indices (seeded, sorted)."""
    if indices:
        try:
            out = [int(s) for s in indices.split(",") if s.strip()]
        except ValueError as err:
            raise ValueError(f"--indices must be comma-separated integers, got {indices!r}") from err
        bad = [i for i in out if not 0 <= i < n_total]
        if bad:
            raise ValueError(f"indices {bad} out of range: the split has {n_total} expressions")
        return out
    num = min(num or 8, n_total)
    return sorted(np.random.default_rng(seed).choice(n_total, size=num, replace=False).tolist())


def predict_records(model, tokenizer, ref_ds, indices: Sequence[int], *, threshold: float = 0.5) -> list[dict]:
    """Run `vglaw.eval.predict.predict` on chosen samples -> records shaped like `evaluate_split`'s."""
    from vglaw.eval.evaluate import make_forward
    from vglaw.utils.io import mask_to_rle
    from vglaw.eval.metrics import box_ious, mask_inter_union
    from vglaw.eval.predict import predict

    fwd = make_forward(model, use_jit=len(indices) > 16)  # compiling pays off for many samples only
    out = []
    for i in indices:
        s = ref_ds[int(i)]
        r = predict(model, tokenizer, ref_ds.load_image(int(i)), s["phrase"], threshold=threshold, forward=fwd)
        inter, union = mask_inter_union(r["mask"], s["mask"])
        out.append({"sent_id": int(s["sent_id"]), "pred_box": r["box_xywh"],
                    "box_iou": float(box_ious([r["box_xywh"]], [s["bbox"]])[0]),
                    "pred_mask": mask_to_rle(r["mask"]), "mask_inter": inter, "mask_union": union})
    return out


def build_parser() -> argparse.ArgumentParser:
    from vglaw.eval.cli import DATASETS, SPLIT_BYS, SPLITS, add_device_args

    p = argparse.ArgumentParser(prog="python -m vglaw.visualize", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="model to run on the chosen samples (or give --predictions)")
    p.add_argument("--predictions", type=Path, default=None,
                   help="predictions_<split>.json from vglaw.eval.evaluate (no model run)")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--split_by", required=True, choices=SPLIT_BYS)
    p.add_argument("--split", default="val", choices=SPLITS)
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--indices", default=None, help="comma-separated dataset indices, e.g. 0,5,9")
    sel.add_argument("--num", type=int, default=None, help="number of random samples (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--data_root", type=Path, default=None)
    p.add_argument("--cache_dir", type=Path, default=None)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--ncols", type=int, default=4)
    add_device_args(p)
    p.add_argument("--debug", action="store_true", help="print the traceback of an error (also VGLAW_DEBUG=1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user error (one line on stderr), 1 a runtime failure; --debug or
    VGLAW_DEBUG=1 prints the traceback."""
    from vglaw.utils.errors import UsageExit, run_main
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if (args.checkpoint is None) == (args.predictions is None):
        raise UsageExit(prog, "give exactly one of --checkpoint (run the model) or --predictions")
    for flag in ("checkpoint", "predictions"):
        path = getattr(args, flag)
        if path is not None and not path.is_file():
            raise UsageExit(prog, f"--{flag} {path} does not exist")
    if args.num is not None and args.num < 1:
        raise UsageExit(prog, f"--num must be >= 1, got {args.num}")
    return run_main(prog, lambda: _visualize_cli(args, prog), args.debug)


def _visualize_cli(args, prog: str) -> int:
    from vglaw.utils.errors import UsageExit
    from vglaw.eval.cli import open_split, setup_mindspore

    try:
        ref_ds = open_split(args.dataset, args.split_by, args.split, args.data_root, args.cache_dir)
        indices = pick_indices(len(ref_ds), indices=args.indices, num=args.num, seed=args.seed)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise UsageExit(prog, str(err)) from err
    if args.predictions is not None:
        from vglaw.utils.io import read_json

        preds = read_json(args.predictions)
    else:
        from vglaw.data.tokenizer import load_tokenizer
        from vglaw.eval.evaluate import load_model_from_checkpoint

        setup_mindspore(args.device_target, args.mode_name)
        model = load_model_from_checkpoint(args.checkpoint)
        preds = predict_records(model, load_tokenizer(), ref_ds, indices, threshold=args.threshold)
    _, written = draw_panels(ref_ds, preds, indices, out_dir=args.out_dir, ncols=args.ncols)
    print(f"wrote {len(written)} PNGs to {args.out_dir} (samples {indices})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
