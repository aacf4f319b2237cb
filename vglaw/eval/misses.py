"""Where a run's REC misses come from: the wrong object, or a loose box on the right one.

Each sentence's predicted box is matched to the image's annotated objects (highest IoU) and put in
one of four classes: `hit` (IoU with the referred object >= 0.5), `loose` (the best-matching object
is the referred one, IoU < 0.5), `other` (the best match is another object), `none` (no object
overlaps the box). `analyse` counts them per expression kind of the synthetic generator
(`vglaw.data.synthetic.expression_kind`; "all" only, for a real dataset), scores the box of the
predicted mask beside the REC head's box (predictions written with masks), and splits the synthetic
set's "base" sentences ("the red circle") by the words the image makes necessary (`needed_words`):
a model that does not read one of the two words fails its rows. The classes are of the box the run
scored (`pred_box`: the head's, or with box_source "mask" the mask's; such runs keep the head's as
`head_box`). CLI: `benchmarks/miss_analysis.py`; notebook 05 shows the tables for its run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["CLASSES", "NEEDS", "box_iou", "classify", "needed_words", "mask_box", "analyse", "tables"]

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
        sentence_kind = expression_kind(s.phrase)
        for kind in {sentence_kind or "other kinds", "all"}:
            r = rows[kind]
            r["n"] += 1
            r[cls] += 1
            if cls in ("hit", "loose"):
                r["target_ious"].append(iou_t)
        target = anns[s.ann_id]
        if sentence_kind == "base" and "colour" in target:
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


def tables(res: dict) -> dict:
    """`analyse`'s result as rows for display: {"kinds": [...], "needs": [...]}, shares in %."""
    kinds = []
    for kind in sorted(res["kinds"], key=lambda k: (k == "all", -res["kinds"][k]["n"])):
        r = res["kinds"][kind]
        pct = {c: 100 * r[c] / r["n"] for c in CLASSES}
        kinds.append({"kind": kind, "n": r["n"], "hit %": pct["hit"], "loose box on the referred object %": pct["loose"],
                      "another object %": pct["other"], "no object %": pct["none"],
                      "referred object found %": pct["hit"] + pct["loose"], "its mean box IoU": r["iou_on_target"]})
    needs = [dict({"needs": g, "n": r["n"]}, **{f"{c} %": 100 * r[c] / r["n"] for c in CLASSES})
             for g, r in res["needs"].items()]
    return {"kinds": kinds, "needs": needs}
