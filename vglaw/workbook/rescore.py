"""Re-score a finished run's record with the box of its predicted masks (ModelConfig.box_source).

Session 16 made the `tiny` recipe's predicted box the bounding box of the predicted mask
(`box_source` "mask"). Training is unchanged by it, so a record made before (its config.json
without `box_source`, i.e. "head") holds everything the new scoring needs: every val sentence's
predicted mask at the original resolution (`pred_mask`, thresholded at the run's mask_threshold)
and the data's content digest. `rescore_record` recomputes each sentence's box and box IoU from
that mask exactly as `vglaw.eval.evaluate.evaluate_split` does with box_source "mask" (the head's
box where the mask is empty; the head's box and IoU kept as head_box / head_box_iou), the box
metrics of metrics.json (mask metrics unchanged; head_prec@t and head_box_miou added), and sets
box_source "mask" in config.json's train and model settings, with a `rescored` entry saying what
was done. One thing a rerun could do differently is not redone: best.ckpt was chosen on the
head's box (`status.json` best_step), and a run scored on the mask's box might choose another of
its evaluations; the `rescored` entry says so.

    python -m vglaw.workbook.rescore reports/ablation_runs [--cache_dir .cache/refer]

rescores every record of the folder that the `tiny` recipe now scores with the mask's box
(preset tiny, use_mask, no box_source yet) and leaves the others; a record is rewritten in a
temporary copy and swapped in, never left half-written. A grid point's record is renamed to the
name its new settings give (the fingerprint at the end of `ablation-<law>-s<seed>-<fingerprint>`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["needs_rescore", "rescore_predictions", "rescore_record", "rescore_folder", "main"]


def needs_rescore(config: dict) -> bool:
    """Whether a record (its config.json) is a run the tiny recipe now scores with the mask's box."""
    from vglaw.train.config import RECIPES
    train = config.get("train", {})
    return (train.get("preset") == "tiny" and bool(train.get("use_mask"))
            and "box_source" not in train and RECIPES["tiny"].get("box_source") == "mask")


def rescore_predictions(predictions: list[dict], gt_boxes: dict[int, list]) -> list[dict]:
    """Prediction rows with pred_box / box_iou from the box of pred_mask (the head's when the mask is
    empty), the head's kept as head_box / head_box_iou. gt_boxes: sent_id -> (x, y, w, h)."""
    from vglaw.eval.metrics import box_ious, mask_bbox
    from vglaw.utils.io import rle_to_mask
    out = []
    for p in predictions:
        if "pred_mask" not in p:
            raise ValueError(f"sent_id {p.get('sent_id')}: the prediction has no pred_mask (a run "
                             "evaluated without masks cannot be scored with the mask's box)")
        if "head_box" in p:
            raise ValueError(f"sent_id {p['sent_id']}: already scored with the mask's box (head_box present)")
        gt = np.asarray(gt_boxes[int(p["sent_id"])], np.float64)[None]
        head = np.asarray(p["pred_box"], np.float64)
        mb = mask_bbox(rle_to_mask(p["pred_mask"]))
        # an empty mask keeps the head's box and its IoU (computed before pred_box was rounded)
        iou = p["box_iou"] if mb is None else float(box_ious(mb[None], gt)[0])
        box = head if mb is None else mb
        q = dict(p, pred_box=[round(float(v), 2) for v in box], box_iou=iou,
                 head_box=p["pred_box"], head_box_iou=p["box_iou"])
        out.append(q)
    return out


def _box_metrics(rows: list[dict], thresholds) -> dict:
    from vglaw.eval.evaluate import head_metrics
    from vglaw.eval.metrics import precision_at
    ious = np.array([r["box_iou"] for r in rows], np.float64)
    out = dict(precision_at(ious, thresholds), box_miou=float(ious.mean()))
    out.update(head_metrics([r["head_box_iou"] for r in rows], thresholds))
    return out


def rescore_record(record: str | Path, cache_dir: str | Path, *, split: str = "val", rename: bool = True) -> dict:
    """Rewrite `record` (a finished run's folder, or its archived record) scored with the mask's box.

    Refuses (ValueError) a record that is not finished, has no masks, was already rescored, or
    whose data content differs from the cache's (its sentences could not be matched to their
    boxes). A record named like a grid point (`<...>-<fingerprint of its settings>`) is renamed to
    the fingerprint of its new settings (`rename`). Returns {"record" (its folder now),
    "renamed_from", "before": {prec@0.5, box_miou}, "after": {...}}.
    """
    from vglaw.data import RefDataset, read_manifest
    from vglaw.data.refer import DEFAULT_SPLIT_BY
    from vglaw.eval.metrics import DEFAULT_THRESHOLDS
    from vglaw.train.config import selection_value
    from vglaw.utils.io import read_json, write_json_atomic

    record = Path(record)
    status, config = read_json(record / "status.json"), read_json(record / "config.json")
    metrics = read_json(record / "metrics.json")
    if status.get("state") != "finished":
        raise ValueError(f"{record}: not a finished run (status {status.get('state')!r})")
    train = config.get("train", {})
    if "box_source" in train:
        raise ValueError(f"{record}: already scored with box_source {train['box_source']!r}")
    dataset = train["dataset"]
    split_by = train.get("split_by") or DEFAULT_SPLIT_BY[dataset]
    ds = RefDataset(cache_dir, dataset, split_by, split)
    content = (read_manifest(ds.folder) or {}).get("content")
    stored = (config.get("data") or {}).get("content")
    if content is None or stored != content:
        raise ValueError(f"{record}: its data content {stored!r} is not the cache's {content!r} "
                         f"({ds.folder}): rescore it against the data it was trained on")
    gt = {int(ds.record(i)["sent_id"]): ds.record(i)["bbox"] for i in range(len(ds))}
    preds = read_json(record / f"predictions_{split}.json")
    rows = rescore_predictions(preds, gt)
    old = metrics[split]
    thresholds = [float(k.split("@")[1]) for k in old if k.startswith("prec@")] or list(DEFAULT_THRESHOLDS)
    new = dict(old, **_box_metrics(rows, thresholds))
    when = time.strftime("%Y-%m-%dT%H:%M:%S")
    note = {"box_source": ["head", "mask"], "split": split, "time": when, "by": "vglaw.workbook.rescore",
            "selection": (f"best.ckpt (update {status.get('best_step')}) was chosen on the head's box "
                          f"({status.get('best_metric')}); a run scored on the mask's box might choose "
                          "another of its evaluations")}
    config = dict(config, train=dict(train, box_source="mask"),
                  model=dict(config.get("model", {}), box_source="mask"),
                  rescored=list(config.get("rescored", [])) + [note])
    status = dict(status, best_val_prec50=new["prec@0.5"], rescored=note)
    if status.get("best_metric"):
        status["best_value"] = selection_value(new, status["best_metric"])
    metrics = dict(metrics, **{split: new})
    # a grid point's name ends in the fingerprint of its settings (vglaw.workbook.ablation): a record
    # so named takes the name its new settings give, the one `make ablation` now looks up
    from vglaw.workbook.ablation import _fingerprint
    name = record.name
    if rename and name.endswith("-" + _fingerprint(train)):
        name = name[: -len(_fingerprint(train))] + _fingerprint(config["train"])
    dest = record.parent / name
    if dest != record and dest.exists():
        raise ValueError(f"{record}: its rescored record would be {dest}, which exists")
    tmp = record.parent / f".{record.name}.rescore"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(record, tmp)
    write_json_atomic(tmp / f"predictions_{split}.json", rows)  # as a run writes it
    write_json_atomic(tmp / "metrics.json", metrics)
    write_json_atomic(tmp / "config.json", config)
    write_json_atomic(tmp / "status.json", status)
    old_dir = record.parent / f".{record.name}.old"
    shutil.rmtree(old_dir, ignore_errors=True)
    record.rename(old_dir)
    tmp.rename(dest)
    shutil.rmtree(old_dir, ignore_errors=True)
    return {"record": str(dest), "renamed_from": record.name if dest != record else None, "before": {"prec@0.5": old["prec@0.5"], "box_miou": old["box_miou"]},
            "after": {"prec@0.5": new["prec@0.5"], "box_miou": new["box_miou"]}}


def rescore_folder(folder: str | Path, cache_dir: str | Path) -> list[dict]:
    """`rescore_record` for every record in `folder` that `needs_rescore`; the others are left."""
    from vglaw.utils.io import read_json
    done = []
    for record in sorted(Path(folder).iterdir()):
        if record.name.startswith(".") or not (record / "config.json").is_file():
            continue
        if needs_rescore(read_json(record / "config.json")):
            done.append(rescore_record(record, cache_dir))
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vglaw.workbook.rescore", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a folder of run records (e.g. reports/ablation_runs)")
    ap.add_argument("--cache_dir", type=Path, default=None, help="default: vglaw.utils.paths.default_cache_dir()")
    args = ap.parse_args(argv)
    from vglaw.utils import paths
    if not args.folder.is_dir():
        ap.error(f"{args.folder} is not a folder")
    done = rescore_folder(args.folder, args.cache_dir or paths.default_cache_dir())
    for r in done:
        b, a = r["before"], r["after"]
        was = f" (was {r['renamed_from']})" if r["renamed_from"] else ""
        print(f"{Path(r['record']).name}{was}: prec@0.5 {100 * b['prec@0.5']:.1f} -> {100 * a['prec@0.5']:.1f}, "
              f"box mIoU {100 * b['box_miou']:.1f} -> {100 * a['box_miou']:.1f}")
    print(json.dumps({"rescored": len(done)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
