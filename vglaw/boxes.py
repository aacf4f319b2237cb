"""Box formats and overlap measures: the single authority (NumPy).

Formats (the last axis holds 4 numbers):
  xywh    (x, y, w, h)      top-left corner + size; COCO/refer annotations, original pixels
  xyxy    (x0, y0, x1, y1)  corners; IoU/GIoU are computed on this form
  cxcywh  (cx, cy, w, h)    centre + size; the model's output, normalised to the padded canvas

A box has no coordinate space of its own: every function works in whatever space it is given
(original pixels, canvas pixels or [0, 1]); `normalize`/`denormalize` move between pixels and
fractions of a (width, height). Following detectron2's `structures/boxes.py`, continuous
coordinates are used: a box's width is x1 - x0 (no "+1").
"""

from __future__ import annotations

import numpy as np

__all__ = ["xywh_to_xyxy", "xyxy_to_xywh", "xyxy_to_cxcywh", "cxcywh_to_xyxy", "xywh_to_cxcywh",
           "cxcywh_to_xywh", "convert", "normalize", "denormalize", "clip_xyxy", "area_xyxy",
           "iou", "giou", "pairwise_iou", "pairwise_giou", "FORMATS"]

FORMATS = ("xywh", "xyxy", "cxcywh")


def _arr(b) -> np.ndarray:
    a = np.asarray(b)
    a = a if a.dtype == np.float64 else a.astype(np.float32)
    if a.shape[-1:] != (4,):
        raise ValueError(f"boxes need a last axis of size 4, got shape {a.shape}")
    return a


def xywh_to_xyxy(b):
    a = _arr(b)
    return np.concatenate([a[..., :2], a[..., :2] + a[..., 2:]], axis=-1)


def xyxy_to_xywh(b):
    a = _arr(b)
    return np.concatenate([a[..., :2], a[..., 2:] - a[..., :2]], axis=-1)


def xyxy_to_cxcywh(b):
    a = _arr(b)
    return np.concatenate([(a[..., :2] + a[..., 2:]) / 2, a[..., 2:] - a[..., :2]], axis=-1)


def cxcywh_to_xyxy(b):
    a = _arr(b)
    return np.concatenate([a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2], axis=-1)


def xywh_to_cxcywh(b):
    a = _arr(b)
    return np.concatenate([a[..., :2] + a[..., 2:] / 2, a[..., 2:]], axis=-1)


def cxcywh_to_xywh(b):
    a = _arr(b)
    return np.concatenate([a[..., :2] - a[..., 2:] / 2, a[..., 2:]], axis=-1)


_TO_XYXY = {"xywh": xywh_to_xyxy, "xyxy": lambda b: _arr(b).copy(), "cxcywh": cxcywh_to_xyxy}
_FROM_XYXY = {"xywh": xyxy_to_xywh, "xyxy": lambda b: _arr(b).copy(), "cxcywh": xyxy_to_cxcywh}


def convert(b, src: str, dst: str) -> np.ndarray:
    """Convert boxes between any two of `FORMATS` (same coordinate space in and out)."""
    for f in (src, dst):
        if f not in FORMATS:
            raise ValueError(f"unknown box format {f!r}; allowed: {', '.join(FORMATS)}")
    return _FROM_XYXY[dst](_TO_XYXY[src](b))


def normalize(b, width: float, height: float) -> np.ndarray:
    """Pixels -> fractions of (width, height); valid for every format (all are x, y, x/w, y/h)."""
    return _arr(b) / np.array([width, height, width, height], dtype=np.float32)


def denormalize(b, width: float, height: float) -> np.ndarray:
    """Fractions of (width, height) -> pixels; inverse of `normalize`."""
    return _arr(b) * np.array([width, height, width, height], dtype=np.float32)


def clip_xyxy(b, width: float, height: float) -> np.ndarray:
    """Clip xyxy boxes to [0, width] x [0, height]."""
    a = _arr(b).copy()
    a[..., 0::2] = np.clip(a[..., 0::2], 0, width)
    a[..., 1::2] = np.clip(a[..., 1::2], 0, height)
    return a


def area_xyxy(b) -> np.ndarray:
    a = _arr(b)
    return np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)


def _iou_parts(a: np.ndarray, b: np.ndarray):
    # a, b broadcast against each other; both xyxy
    lt = np.maximum(a[..., :2], b[..., :2])
    rb = np.minimum(a[..., 2:], b[..., 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_xyxy(a) + area_xyxy(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou_ = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return iou_, union


def _giou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iou_, union = _iou_parts(a, b)
    lt = np.minimum(a[..., :2], b[..., :2])
    rb = np.maximum(a[..., 2:], b[..., 2:])
    wh = np.clip(rb - lt, 0, None)
    hull = wh[..., 0] * wh[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return iou_ - np.where(hull > 0, (hull - union) / np.where(hull > 0, hull, 1), 0.0)


def iou(a, b, fmt: str = "xyxy") -> np.ndarray:
    """Elementwise IoU of boxes `a` and `b` (shapes broadcast, (..., 4)) -> (...). Empty union -> 0."""
    return _iou_parts(convert(a, fmt, "xyxy"), convert(b, fmt, "xyxy"))[0]


def giou(a, b, fmt: str = "xyxy") -> np.ndarray:
    """Elementwise generalised IoU (Rezatofighi et al. 2019) in [-1, 1]."""
    return _giou(convert(a, fmt, "xyxy"), convert(b, fmt, "xyxy"))


def pairwise_iou(a, b, fmt: str = "xyxy") -> np.ndarray:
    """IoU of every box in `a` (N, 4) against every box in `b` (M, 4) -> (N, M)."""
    a, b = convert(a, fmt, "xyxy"), convert(b, fmt, "xyxy")
    return _iou_parts(a[:, None, :], b[None, :, :])[0]


def pairwise_giou(a, b, fmt: str = "xyxy") -> np.ndarray:
    """GIoU of every box in `a` (N, 4) against every box in `b` (M, 4) -> (N, M)."""
    a, b = convert(a, fmt, "xyxy"), convert(b, fmt, "xyxy")
    return _giou(a[:, None, :], b[None, :, :])
