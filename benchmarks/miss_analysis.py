"""Where a run's REC misses come from: the wrong object, or a loose box on the right one.

    python benchmarks/miss_analysis.py --predictions runs/train-shapes-tiny-svd/predictions_val.json \
        [--dataset shapes --split_by unc] [--data_root data]
    python benchmarks/miss_analysis.py --predictions reports/ablation_runs/ablation-*-136ff644/predictions_val.json

Each sentence's predicted box is matched to the image's annotated objects (highest IoU) and put in
one of four classes: `hit` (IoU with the referred object >= 0.5), `loose` (the best-matching object
is the referred one, IoU < 0.5), `other` (the best match is another object), `none` (no object
overlaps the box). One row per expression kind of the synthetic generator (`vglaw.data.synthetic.
expression_kind`; "all" only, for a real dataset), then the same sentences scored with the box of
the predicted mask (predictions written with masks) beside the REC head's box. The classes are of
the box the run scored (`pred_box`: the head's, or with box_source "mask" the mask's; such runs
keep the head's as `head_box`).

A second table splits the synthetic set's "base" sentences ("the red circle") by the words the
image makes necessary: `shape` when another object has the referred one's colour (its colour word
alone would fit two objects), `colour` when another has its shape, `both`, or `either` (colour or
shape alone names it). A model that does not read one of the two words fails its rows. Several
prediction files (e.g. the runs of an ablation grid on one split) are pooled: each sentence counts
once per run.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

CLASSES = ("hit", "loose", "other", "none")
NEEDS = ("either", "colour", "shape", "both")  # words a "base" sentence cannot do without (needed_words)


def box_iou(a, b) -> float:
    """IoU of two (x, y, w, h) boxes (`vglaw.boxes.iou`)."""
    from vglaw.boxes import iou

    return float(iou(a, b, fmt="xywh"))


def classify(pred_box, target_id: int, objects: dict[int, list]) -> tuple[str, float]:
    """(class, IoU with the referred object) of one predicted box; objects: ann_id -> (x, y, w, h)."""
    iou_target = box_iou(pred_box, objects[target_id])
    if iou_target >= 0.5:
        return "hit", iou_target
    best_id, best = max(((i, box_iou(pred_box, b)) for i, b in objects.items()), key=lambda t: t[1])
    if best <= 0.0:
        return "none", iou_target
    return ("loose" if best_id == target_id else "other"), iou_target


def needed_words(target: dict, others: list[dict]) -> str:
    """Which of a "base" sentence's two words the image makes necessary (one of NEEDS): "shape" when
    another object has the referred object's colour, "colour" when another has its shape, "both", or
    "either". target / others: instances.json annotations of the synthetic set (`colour`, `category_id`)."""
    same_colour = any(o["colour"] == target["colour"] for o in others)
    same_shape = any(o["category_id"] == target["category_id"] for o in others)
    return {(False, False): "either", (True, False): "shape", (False, True): "colour",
            (True, True): "both"}[(same_colour, same_shape)]


def mask_box(rle: dict) -> list[float] | None:
    """(x, y, w, h) of a predicted mask (COCO RLE), as pycocotools' toBbox; None when it is empty
    (`vglaw.eval.metrics.mask_bbox`, the box that box_source "mask" predicts)."""
    from vglaw.eval.metrics import mask_bbox
    from vglaw.utils.io import rle_to_mask

    box = mask_bbox(rle_to_mask(rle))
    return None if box is None else [float(v) for v in box]


def analyse(predictions: list[dict], dataset: str, split_by: str, data_root) -> dict:
    """{"kinds": {kind: {n, hit, loose, other, none, iou_on_target}}, "mask_box": {...} | None,
    "needs": {group: {n, hit, loose, other, none}} (the "base" sentences by `needed_words`; empty
    for data without colours)}."""
    from vglaw.data.refer import read_refer
    from vglaw.data.synthetic import expression_kind

    samples, _ = read_refer(data_root, dataset, split_by, check_images=False)[:2]
    by_sent = {s.sent_id: s for s in samples}
    inst = json.loads(Path(data_root, dataset, "instances.json").read_text())
    objects: dict[int, dict[int, list]] = defaultdict(dict)
    anns = {a["id"]: a for a in inst["annotations"]}
    for a in inst["annotations"]:
        objects[a["image_id"]][a["id"]] = a["bbox"]
    rows: dict[str, dict] = defaultdict(lambda: dict({c: 0 for c in CLASSES}, n=0, target_ious=[]))
    needs: dict[str, dict] = {}
    mask_ious = []
    for p in predictions:
        s = by_sent.get(p["sent_id"])
        if s is None:
            raise SystemExit(f"sent_id {p['sent_id']} is not in {dataset}({split_by}): wrong --dataset?")
        cls, iou_t = classify(p["pred_box"], s.ann_id, objects[s.image_id])
        for kind in {expression_kind(s.phrase) or "other kinds", "all"}:
            r = rows[kind]
            r["n"] += 1
            r[cls] += 1
            if cls in ("hit", "loose"):
                r["target_ious"].append(iou_t)
        target = anns[s.ann_id]
        if expression_kind(s.phrase) == "base" and "colour" in target:
            group = needed_words(target, [anns[i] for i in objects[s.image_id] if i != s.ann_id])
            r = needs.setdefault(group, dict({c: 0 for c in CLASSES}, n=0))
            r["n"] += 1
            r[cls] += 1
        if p.get("pred_mask"):
            mb = mask_box(p["pred_mask"])
            mask_ious.append(0.0 if mb is None else box_iou(mb, objects[s.image_id][s.ann_id]))
    kinds = {}
    for kind, r in rows.items():
        ious = r.pop("target_ious")
        kinds[kind] = dict(r, iou_on_target=float(np.mean(ious)) if ious else None)
    head = np.array([p.get("head_box_iou", p["box_iou"]) for p in predictions])
    mask = None
    if len(mask_ious) == len(predictions):
        m = np.array(mask_ious)
        mask = {"prec@0.5": float((m >= 0.5).mean()), "box_miou": float(m.mean()),
                "head_prec@0.5": float((head >= 0.5).mean()), "head_box_miou": float(head.mean())}
    return {"kinds": kinds, "mask_box": mask, "needs": {g: needs[g] for g in NEEDS if g in needs}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictions", required=True, type=Path, nargs="+",
                    help="a run's predictions_<split>.json; several (one split) are pooled")
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--split_by", default="unc")
    ap.add_argument("--data_root", type=Path, default=None, help="default: vglaw.utils.paths.default_data_root()")
    a = ap.parse_args(argv)
    from vglaw.utils.paths import default_data_root

    preds = [p for f in a.predictions for p in json.loads(f.read_text())]
    res = analyse(preds, a.dataset, a.split_by, a.data_root or default_data_root())
    where = str(a.predictions[0]) if len(a.predictions) == 1 else f"{len(a.predictions)} runs pooled"
    print(f"{where} ({a.dataset}, {a.split_by}); shares of each kind's sentences, %")
    print("| kind | n | hit | loose box on the referred object | another object | no object "
          "| referred object found | its mean box IoU |")
    print("|---|---|---|---|---|---|---|---|")
    order = sorted(res["kinds"], key=lambda k: (k == "all", -res["kinds"][k]["n"]))
    for kind in order:
        r = res["kinds"][kind]
        pct = {c: 100 * r[c] / r["n"] for c in CLASSES}
        iou = "-" if r["iou_on_target"] is None else f"{r['iou_on_target']:.3f}"
        print(f"| {kind} | {r['n']} | {pct['hit']:.1f} | {pct['loose']:.1f} | {pct['other']:.1f} | "
              f"{pct['none']:.1f} | {pct['hit'] + pct['loose']:.1f} | {iou} |")
    if res["needs"]:
        runs = len(a.predictions)
        print(f"\n\"base\" sentences by the words the image makes necessary (n: sentences x {runs} run(s)), %")
        print("| needs | n | hit | loose | another object | no object |")
        print("|---|---|---|---|---|---|")
        for g, r in res["needs"].items():
            pct = {c: 100 * r[c] / r["n"] for c in CLASSES}
            print(f"| {g} | {r['n']} | {pct['hit']:.1f} | {pct['loose']:.1f} | {pct['other']:.1f} | {pct['none']:.1f} |")
    m = res["mask_box"]
    if m:
        print(f"\nbox of the predicted mask instead of the REC box: Prec@0.5 {100 * m['prec@0.5']:.1f} "
              f"(REC head {100 * m['head_prec@0.5']:.1f}), box mIoU {100 * m['box_miou']:.1f} "
              f"(REC head {100 * m['head_box_miou']:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
