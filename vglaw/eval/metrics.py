"""Grounding metrics (NumPy only): REC Prec@t and box mIoU, RES mIoU / oIoU, canvas protocol.

DESIGN §6. Coordinate spaces:
  * REC boxes are compared as (x, y, w, h) in ORIGINAL image pixels; IoU comes from
    `vglaw.boxes.iou` (the single authority for box overlap).
  * RES masks are compared at the ORIGINAL image resolution (H, W): per expression we keep the
    intersection and union pixel counts; mIoU = mean of per-expression I/U, oIoU = sum I / sum U
    (LAVT / CRIS convention; oIoU favours large objects, mIoU treats every expression alike).
  * `miou_canvas` is the official comparability protocol: the mask probability on the padded
    S x S canvas, binarised with `prob > 0.35`, against the letterboxed GT mask on the same canvas.

An expression whose prediction and GT are both empty has union 0 and IoU 0 (as `vglaw.boxes.iou`
and LAVT's evaluation do); on oIoU it contributes nothing.

`GroundingMeter` accumulates per-expression statistics so evaluation streams over batches.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from vglaw import boxes

__all__ = ["DEFAULT_THRESHOLDS", "CANVAS_THRESHOLD", "prec_key", "box_ious", "precision_at",
           "mask_inter_union", "binarize", "mask_bbox", "canvas_inter_union", "safe_iou", "GroundingMeter"]

DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
CANVAS_THRESHOLD = 0.35  # sigmoid threshold of the official canvas protocol (DESIGN §6)


def prec_key(t: float) -> str:
    """Metric name of Prec@t: 0.5 -> "prec@0.5"."""
    return f"prec@{float(t):g}"


def _check_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    ts = tuple(float(t) for t in thresholds)
    if not ts:
        raise ValueError("thresholds must not be empty")
    bad = [t for t in ts if not 0.0 <= t <= 1.0]
    if bad:
        raise ValueError(f"IoU thresholds must lie in [0, 1], got {bad}")
    return ts


def box_ious(pred_xywh, gt_xywh) -> np.ndarray:
    """IoU of predicted vs GT boxes, both (N, 4) (x, y, w, h) in the same space -> (N,) float64."""
    p = np.asarray(pred_xywh, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4)
    if p.shape != g.shape:
        raise ValueError(f"pred and GT boxes differ in shape: {p.shape} vs {g.shape}")
    return np.asarray(boxes.iou(p, g, fmt="xywh"), dtype=np.float64)


def precision_at(ious, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, float]:
    """Share of IoUs >= t for every t (a hit exactly at the threshold counts) -> {"prec@t": frac}."""
    ious = np.asarray(ious, dtype=np.float64).ravel()
    ts = _check_thresholds(thresholds)
    if ious.size == 0:
        return {prec_key(t): float("nan") for t in ts}
    return {prec_key(t): float(np.mean(ious >= t)) for t in ts}


def binarize(prob, threshold: float) -> np.ndarray:
    """Probability (or {0,1}) map -> uint8 {0,1} with `prob > threshold`."""
    return (np.asarray(prob) > threshold).astype(np.uint8)


def mask_bbox(mask) -> np.ndarray | None:
    """(x, y, w, h) pixel box of a binary (H, W) mask's nonzero pixels, as pycocotools' toBbox
    (w = last column - first column + 1); None when the mask is empty."""
    m = np.asarray(mask) != 0
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], np.float64)


def mask_inter_union(pred_mask, gt_mask) -> tuple[int, int]:
    """Pixel counts |P & G| and |P | G| of two binary masks of the same (H, W)."""
    p = np.asarray(pred_mask).astype(bool)
    g = np.asarray(gt_mask).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"pred and GT masks differ in shape: {p.shape} vs {g.shape}; "
                         "map the prediction to the original resolution first")
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g))


def canvas_inter_union(prob_canvas, gt_canvas, threshold: float = CANVAS_THRESHOLD) -> tuple[int, int]:
    """Official protocol on the padded canvas: `prob > threshold` vs the letterboxed GT (S, S)."""
    return mask_inter_union(binarize(prob_canvas, threshold), np.asarray(gt_canvas) > 0.5)


def safe_iou(inter, union) -> np.ndarray:
    """Elementwise inter / union with union 0 -> 0."""
    i = np.asarray(inter, dtype=np.float64)
    u = np.asarray(union, dtype=np.float64)
    return np.where(u > 0, i / np.where(u > 0, u, 1.0), 0.0)


class GroundingMeter:
    """Streaming accumulator of REC and RES statistics.

    Feed per-batch arrays to `update` (any subset of box / mask / canvas statistics, but the same
    subset every call); `compute()` returns fractions:
      n, prec@t for t in `thresholds`, box_miou, miou, oiou, miou_canvas
    (mask keys are None when no mask statistics were given).

    Args:
        thresholds: IoU thresholds of Prec@t.
    """

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS):
        self.thresholds = _check_thresholds(thresholds)
        self.reset()

    def reset(self) -> None:
        self._box_iou: list[np.ndarray] = []
        self._inter: list[np.ndarray] = []
        self._union: list[np.ndarray] = []
        self._c_inter: list[np.ndarray] = []
        self._c_union: list[np.ndarray] = []

    @staticmethod
    def _vec(x) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).ravel()

    def update(self, *, pred_boxes=None, gt_boxes=None, box_iou=None, mask_inter=None,
               mask_union=None, canvas_inter=None, canvas_union=None) -> None:
        """Add one batch.

        Args:
            pred_boxes, gt_boxes: (B, 4) (x, y, w, h) original pixels (IoU computed here), or
            box_iou: (B,) precomputed box IoUs instead.
            mask_inter, mask_union: (B,) pixel counts at the original resolution.
            canvas_inter, canvas_union: (B,) pixel counts on the canvas (see `canvas_inter_union`).
        """
        if (pred_boxes is None) != (gt_boxes is None):
            raise ValueError("pass both pred_boxes and gt_boxes, or neither")
        if pred_boxes is not None:
            if box_iou is not None:
                raise ValueError("pass either pred_boxes/gt_boxes or box_iou, not both")
            box_iou = box_ious(pred_boxes, gt_boxes)
        for a, b, name in ((mask_inter, mask_union, "mask"), (canvas_inter, canvas_union, "canvas")):
            if (a is None) != (b is None):
                raise ValueError(f"pass both {name}_inter and {name}_union, or neither")
            if a is not None:
                a, b = self._vec(a), self._vec(b)
                if a.shape != b.shape:
                    raise ValueError(f"{name}_inter and {name}_union differ in length")
                if np.any(a > b) or np.any(a < 0):
                    raise ValueError(f"{name}_inter must satisfy 0 <= inter <= union")
        if box_iou is not None:
            self._box_iou.append(self._vec(box_iou))
        if mask_inter is not None:
            self._inter.append(self._vec(mask_inter))
            self._union.append(self._vec(mask_union))
        if canvas_inter is not None:
            self._c_inter.append(self._vec(canvas_inter))
            self._c_union.append(self._vec(canvas_union))

    @property
    def n(self) -> int:
        for parts in (self._box_iou, self._inter, self._c_inter):
            if parts:
                return int(sum(p.size for p in parts))
        return 0

    def compute(self) -> dict:
        """Metrics so far as a JSON-ready dict of fractions (None where nothing was fed)."""
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
        out: dict = {"n": self.n}
        ious = cat(self._box_iou)
        if ious.size:
            out.update(precision_at(ious, self.thresholds))
            out["box_miou"] = float(ious.mean())
        else:
            out.update({prec_key(t): None for t in self.thresholds})
            out["box_miou"] = None
        inter, union = cat(self._inter), cat(self._union)
        if inter.size:
            out["miou"] = float(safe_iou(inter, union).mean())
            out["oiou"] = float(inter.sum() / union.sum()) if union.sum() > 0 else 0.0
        else:
            out["miou"] = out["oiou"] = None
        c_inter, c_union = cat(self._c_inter), cat(self._c_union)
        out["miou_canvas"] = float(safe_iou(c_inter, c_union).mean()) if c_inter.size else None
        sizes = {len(v) for v in (ious, inter, c_inter) if len(v)}
        if len(sizes) > 1:
            raise ValueError(f"box and mask statistics were fed for different counts: {sorted(sizes)}")
        return out
