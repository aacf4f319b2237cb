"""Evaluation loop over a referring split + `python -m vglaw.evaluate` (DESIGN §6).

Every batch runs through one compiled forward (`mindspore.jit`) of a fixed batch size; the last
partial batch is padded by repeating its last row and the padded results are dropped, so the graph
is compiled once. Per expression, the predicted box (cx, cy, w, h normalised to the S x S canvas)
is mapped to (x, y, w, h) ORIGINAL pixels and the mask probability to the ORIGINAL resolution
through the sample's `Letterbox`; metrics come from `vglaw.eval.metrics`.

    python -m vglaw.evaluate --checkpoint runs/x/best.ckpt --dataset shapes --split_by unc --split val
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vglaw.eval.cli import DATASETS, SPLIT_BYS, SPLITS, add_device_args, open_split, setup_mindspore
from vglaw.utils.io import mask_to_rle, read_json, write_json_atomic
from vglaw.eval.metrics import (CANVAS_THRESHOLD, DEFAULT_THRESHOLDS, GroundingMeter, binarize,
                                box_ious, canvas_inter_union, mask_bbox, mask_inter_union, prec_key,
                                precision_at)

__all__ = ["evaluate_split", "make_forward", "load_model_from_checkpoint", "format_table",
           "sigmoid", "box_from_mask", "head_metrics", "build_parser", "main"]

log = logging.getLogger("vglaw")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float32)."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def make_forward(model, *, use_jit: bool = True) -> Callable:
    """`fwd(images, input_ids, attention_mask) -> (boxes, mask_logits)` as NumPy, eval mode.

    In PYNATIVE mode the forward is wrapped in `mindspore.jit` (graph-compiled once per input
    shape); in GRAPH mode the cell already compiles itself. If compilation fails the error is
    logged and the forward falls back to running op by op, so evaluation still finishes.
    """
    import mindspore
    from mindspore import Tensor

    model.set_train(False)
    compiled = None
    if use_jit and mindspore.get_context("mode") == mindspore.PYNATIVE_MODE:
        def _forward(images, input_ids, attention_mask):  # jit cannot parse an inline lambda
            return model(images, input_ids, attention_mask)

        compiled = mindspore.jit(_forward)
    state = {"fn": compiled or model}

    def fwd(images, input_ids, attention_mask):
        args = (Tensor(np.ascontiguousarray(images, np.float32)),
                Tensor(np.ascontiguousarray(input_ids, np.int32)),
                Tensor(np.ascontiguousarray(attention_mask, np.int32)))
        try:
            boxes, logits = state["fn"](*args)
        except Exception as err:  # compile errors only; the eager path re-raises real bugs
            if state["fn"] is model:
                raise
            log.warning("mindspore.jit compilation of the forward failed (%s: %s); "
                        "falling back to PYNATIVE", type(err).__name__, str(err).splitlines()[0])
            state["fn"] = model
            boxes, logits = model(*args)
        return boxes.asnumpy(), logits.asnumpy()

    return fwd


def _pad_rows(a: np.ndarray, n: int) -> np.ndarray:
    """Pad axis 0 to `n` rows by repeating the last row (keeps the compiled batch shape)."""
    if len(a) == n:
        return a
    return np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)], axis=0)


def evaluate_split(model, ref_ds, tokenizer, *, img_size: int, max_len: int, batch_size: int,
                   mask_threshold: float = 0.5, canvas_threshold: float = CANVAS_THRESHOLD,
                   with_masks: bool = True, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                   progress: bool = True, use_jit: bool = True, forward: Callable | None = None,
                   ) -> tuple[dict, list[dict]]:
    """Run `model` over every expression of `ref_ds` and score it.

    Args:
        model: a VGLAW cell (put into eval mode here).
        ref_ds: a `vglaw.data.RefDataset`.
        tokenizer: from `vglaw.data.tokenizer.load_tokenizer`.
        img_size, max_len: canvas side and token length the model was built for.
        batch_size: compiled batch size (the last partial batch is padded, results dropped).
        mask_threshold: probability threshold of the mask at the original resolution.
        canvas_threshold: threshold of the official canvas protocol (`miou_canvas`).
        with_masks: score and export masks (False: REC only, mask keys are None/absent).
        thresholds: IoU thresholds of Prec@t.
        progress: show a tqdm bar.
        use_jit: compile the forward with `mindspore.jit` (PYNATIVE mode).
        forward: optional prebuilt `make_forward(model)` (reuse one compiled graph across splits).

    Returns:
        metrics: {n, prec@t..., box_miou, miou, oiou, miou_canvas} as fractions.
        predictions: one record per expression in dataset order: {sent_id, pred_box (x, y, w, h
            original px), box_iou, pred_mask (COCO RLE, counts str), mask_inter, mask_union};
            the mask fields are absent when `with_masks` is False. With box_source "mask"
            (`box_from_mask`), pred_box is the predicted mask's box (the head's where the mask is
            empty), and head_box / head_box_iou hold the REC head's; the metrics add head_prec@t
            and head_box_miou.
    """
    from tqdm import tqdm  # plain text bars: tqdm.auto needs ipywidgets in notebooks

    from vglaw.data.pipeline import build_dataset
    from vglaw.data.transforms import Letterbox

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(ref_ds) == 0:
        raise ValueError("the dataset split is empty: nothing to evaluate")
    model.set_train(False)
    fwd = forward or make_forward(model, use_jit=use_jit)
    pipe = build_dataset(ref_ds, tokenizer, img_size=img_size, max_len=max_len,
                         batch_size=batch_size, train=False, drop_remainder=False)
    meter = GroundingMeter(thresholds)
    # ModelConfig.box_source "mask": the box is the predicted mask's (the head's when it is empty)
    from_mask = box_from_mask(getattr(model, "config", None))
    head_ious: list[float] = []
    predictions: list[dict] = []
    bar = tqdm(total=len(ref_ds), desc="evaluate", unit="expr", disable=not progress)
    hits = 0
    for image, input_ids, attn, _box, canvas_mask, lb_arr, index in pipe.create_tuple_iterator(
            output_numpy=True, num_epochs=1):
        b = len(index)
        boxes_c, logits = fwd(_pad_rows(image, batch_size), _pad_rows(input_ids, batch_size),
                              _pad_rows(attn, batch_size))
        boxes_c, logits = boxes_c[:b], logits[:b, 0]                  # (b, 4), (b, S, S)
        batch_iou, b_inter, b_union, c_inter, c_union = [], [], [], [], []
        for i in range(b):
            rec = ref_ds[int(index[i])]
            lb = Letterbox.from_array(lb_arr[i])
            gt_box = np.asarray(rec["bbox"], np.float64)[None]
            head_box = np.asarray(lb.box_to_original(boxes_c[i]), dtype=np.float64)  # (4,) xywh px
            pred_box, pred_mask = head_box, None
            if with_masks or from_mask:
                prob = sigmoid(logits[i])                             # (S, S) canvas
                pred_mask = binarize(lb.mask_to_original(prob), mask_threshold)  # (H, W) original
            if from_mask:
                mb = mask_bbox(pred_mask)
                pred_box = head_box if mb is None else mb
            biou = float(box_ious(pred_box[None], gt_box)[0])
            out = {"sent_id": int(rec["sent_id"]), "pred_box": [round(float(v), 2) for v in pred_box],
                   "box_iou": biou}
            if from_mask:  # the REC head's own box, for comparison (head_prec@t, head_box_miou)
                hiou = float(box_ious(head_box[None], gt_box)[0])
                out.update(head_box=[round(float(v), 2) for v in head_box], head_box_iou=hiou)
                head_ious.append(hiou)
            batch_iou.append(biou)
            if with_masks:
                ci, cu = canvas_inter_union(prob, canvas_mask[i], canvas_threshold)
                mi, mu = mask_inter_union(pred_mask, rec["mask"])
                out.update(pred_mask=mask_to_rle(pred_mask), mask_inter=mi, mask_union=mu)
                b_inter.append(mi), b_union.append(mu), c_inter.append(ci), c_union.append(cu)
            predictions.append(out)
        if with_masks:
            meter.update(box_iou=batch_iou, mask_inter=b_inter, mask_union=b_union,
                         canvas_inter=c_inter, canvas_union=c_union)
        else:
            meter.update(box_iou=batch_iou)
        hits += sum(v >= 0.5 for v in batch_iou)
        bar.update(b)
        bar.set_postfix({"prec@0.5": f"{hits / len(predictions):.3f}"})
    bar.close()
    if len(predictions) != len(ref_ds):
        raise RuntimeError(f"evaluation saw {len(predictions)} expressions but the split has "
                           f"{len(ref_ds)}: the eval pipeline dropped or repeated samples")
    metrics = meter.compute()
    metrics.update(mask_threshold=float(mask_threshold), canvas_threshold=float(canvas_threshold))
    if from_mask:
        metrics.update(head_metrics(head_ious, thresholds))
    return metrics, predictions


def box_from_mask(model_config) -> bool:
    """Whether a model's predicted box is its mask's (box_source "mask" and a trained RES head)."""
    return getattr(model_config, "box_source", "head") == "mask" and bool(getattr(model_config, "use_mask", True))


def head_metrics(head_ious, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict:
    """{head_prec@t..., head_box_miou}: the REC head's own box where the scored box is the mask's."""
    ious = np.asarray(head_ious, np.float64)
    out = {f"head_{k}": v for k, v in precision_at(ious, thresholds).items()}
    out["head_box_miou"] = float(ious.mean()) if ious.size else 0.0
    return out


def format_table(metrics: dict, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> str:
    """Two-line text table of the headline metrics (percent)."""
    keys = [prec_key(t) for t in thresholds] + ["box_miou", "miou", "oiou", "miou_canvas"]
    keys = [k for k in keys if k in metrics]
    cells = ["-" if metrics[k] is None else f"{100 * metrics[k]:.2f}" for k in keys]
    widths = [max(len(k), len(c)) for k, c in zip(keys, cells)]
    head = "  ".join(k.rjust(w) for k, w in zip(keys, widths))
    row = "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    return f"n = {metrics.get('n')}\n{head}\n{row}"


def load_model_from_checkpoint(checkpoint, *, strict: bool = True):
    """Build VGLAW from the config stored in `checkpoint` (meta["config"]) and load its weights.

    Raises FileNotFoundError for a missing file and `CheckpointError` (a ValueError) for a
    checkpoint that stores no config, is corrupt, or does not fit.
    """
    from vglaw.config import config_from_dict
    from vglaw.models import VGLAW
    from vglaw.models.checkpoint import CheckpointError, load_model, read_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    _, meta = read_checkpoint(checkpoint)
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"checkpoint {checkpoint} stores no model config (meta['config']); "
                              "save it with vglaw.models.checkpoint.save_model")
    model = VGLAW(config_from_dict(meta["config"]))
    load_model(model, checkpoint, strict=strict)
    model.set_train(False)
    log.info("loaded %s (preset %s, law_type %s)", checkpoint, model.config.preset, model.config.law_type)
    return model


def _default_out_dir(checkpoint: Path, dataset: str, split_by: str) -> Path:
    return checkpoint.parent / f"eval_{checkpoint.stem}" / f"{dataset}({split_by})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vglaw.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="model checkpoint (.ckpt)")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--split_by", required=True, choices=SPLIT_BYS)
    p.add_argument("--split", default="val", choices=SPLITS)
    p.add_argument("--data_root", type=Path, default=None, help="default: vglaw.utils.paths.default_data_root()")
    p.add_argument("--cache_dir", type=Path, default=None, help="default: vglaw.utils.paths.default_cache_dir()")
    p.add_argument("--out_dir", type=Path, default=None,
                   help="default: <checkpoint dir>/eval_<ckpt stem>/<dataset>(<split_by>)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--mask_threshold", type=float, default=0.5)
    p.add_argument("--canvas_threshold", type=float, default=CANVAS_THRESHOLD)
    p.add_argument("--no_masks", action="store_true", help="REC only (skip mask metrics and RLEs)")
    add_device_args(p, mode_help="PYNATIVE still compiles the forward once with mindspore.jit")
    p.add_argument("--lean_kernels", action="store_true",
                   help="the ViT's CPU-lean op spellings (less CPU memory; GELU to the last bit; VGLAW.set_lean_kernels)")
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--debug", action="store_true", help="print the traceback of an error (also VGLAW_DEBUG=1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user error (one line on stderr), 1 a runtime failure; --debug or
    VGLAW_DEBUG=1 prints the traceback."""
    from vglaw.utils.errors import UsageExit, run_main
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.checkpoint.is_file():
        raise UsageExit(parser.prog, f"checkpoint {args.checkpoint} does not exist")
    if args.batch_size < 1:
        raise UsageExit(parser.prog, f"--batch_size must be >= 1, got {args.batch_size}")
    for name in ("mask_threshold", "canvas_threshold"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise UsageExit(parser.prog, f"--{name} must lie in [0, 1], got {getattr(args, name)}")
    stored = DATASETS.get(args.dataset, {}).get(args.split_by, ())
    if args.split == "test" and stored and "test" not in stored:
        # the refer API's aggregate would silently score testA+testB... as one split
        raise UsageExit(parser.prog, f"{args.dataset}({args.split_by}) has no split 'test'; its splits are "
                                     f"{', '.join(stored)}: evaluate each test split")
    return run_main(parser.prog, lambda: _evaluate_cli(args, parser.prog), args.debug)


def _evaluate_cli(args, prog: str) -> int:
    from vglaw.utils.errors import UsageExit
    setup_mindspore(args.device_target, args.mode_name)
    from vglaw.data.tokenizer import load_tokenizer

    try:
        ref_ds = open_split(args.dataset, args.split_by, args.split, args.data_root, args.cache_dir)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise UsageExit(prog, str(err)) from err
    model = load_model_from_checkpoint(args.checkpoint)
    if args.lean_kernels:
        from vglaw.utils.malloc import release_freed_pages
        model.set_lean_kernels()
        release_freed_pages()
    cfg = model.config
    metrics, preds = evaluate_split(model, ref_ds, load_tokenizer(), img_size=cfg.img_size,
                                    max_len=cfg.max_len, batch_size=args.batch_size,
                                    mask_threshold=args.mask_threshold,
                                    canvas_threshold=args.canvas_threshold,
                                    with_masks=not args.no_masks, progress=not args.no_progress)
    out_dir = args.out_dir or _default_out_dir(args.checkpoint, args.dataset, args.split_by)
    # Same shape as a run directory's metrics.json ({split: metrics}, see vglaw.workbook.reports), merged
    # with splits evaluated earlier into the same folder.
    old = out_dir / "metrics.json"
    record = read_json(old) if old.is_file() else {}
    record.update({args.split: metrics, "dataset": args.dataset, "split_by": args.split_by,
                   "checkpoint": str(args.checkpoint)})
    write_json_atomic(out_dir / "metrics.json", record)
    write_json_atomic(out_dir / f"predictions_{args.split}.json", preds, indent=None)
    print(f"{args.dataset}({args.split_by}) {args.split}  checkpoint {args.checkpoint}")
    print(format_table(metrics))
    print(f"wrote {out_dir / 'metrics.json'} and {out_dir / f'predictions_{args.split}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
