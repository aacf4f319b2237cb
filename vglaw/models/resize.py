"""Host-side (NumPy only) resampling of pretrained position tables (DESIGN §3.1).

One implementation for the backbone's init (`vglaw.models.vit`) and the detectron2 loader
(`vglaw.models.weights`); tested against torch's `F.interpolate` in tests/models.

Coordinate convention everywhere: `align_corners=False` (half-pixel centres), i.e. output index
`o` samples the input at `src = (o + 0.5) * n_in / n_out - 0.5`, as torch does. Matrices are
(n_out, n_in) and computed in float64; resized arrays come back in the input's dtype.

The bicubic resize of the absolute position table has two rules (`ModelConfig.pos_resize`):
  torch      torch / detectron2: Keys cubic a = -0.75, out-of-range taps clamped to the border;
  mindspore  MindSpore's `ops.interpolate(mode="bicubic", align_corners=False)`, which the authors'
             release runs in every forward: a = -0.5, taps outside the input dropped and the
             remaining weights renormalised to sum 1 (issue 12; tested against the op itself).
"""

from __future__ import annotations

import math

import numpy as np

from vglaw.config import POS_RESIZE_RULES

__all__ = ["WeightsError", "POS_RESIZE_RULES", "linear_resize_matrix", "bicubic_resize_matrix", "linear_resize", "resize_rel_pos",
           "bicubic_resize", "crop_rel_pos", "crop_or_resize_rel_pos", "resize_abs_pos", "resize_abs_pos_embed"]


class WeightsError(ValueError):
    """A pretrained file does not fit the model (name, shape or config mismatch).

    Defined here so that the resizes below, which only ever fit pretrained tensors to the model,
    raise it; `vglaw.models.weights` re-exports it."""


def linear_resize_matrix(n_in: int, n_out: int, *, align_corners: bool = False) -> np.ndarray:
    """(n_out, n_in) float64 matrix of torch `F.interpolate(mode="linear", align_corners=...)`, the
    project's one 1-D linear interpolation (rel-pos tables: False; the RES head's upsampling: True).

    align_corners=False: half-pixel centres, negative source coordinates clamped to 0 (torch);
    True: the end samples map onto each other. The right neighbour is clamped to n_in - 1."""
    m = np.zeros((n_out, n_in), np.float64)
    if align_corners:
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        scale = n_in / n_out
    for o in range(n_out):
        src = o * scale if align_corners else max((o + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        m[o, i0] += 1.0 - lam
        m[o, i1] += lam
    return m


def _cubic(t: float, a: float = -0.75) -> np.ndarray:
    """Keys cubic-convolution weights of the taps at offsets (-1, 0, 1, 2) from floor(src), t = src - floor(src),
    as torch's upsample_bicubic2d (A = -0.75)."""
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.array([far(t + 1), near(t), near(1 - t), far(2 - t)])


def bicubic_resize_matrix(n_in: int, n_out: int, rule: str = "torch") -> np.ndarray:
    """(n_out, n_in) 1-D matrix of a bicubic resize with align_corners=False (half-pixel centres).

    rule "torch": torch's `F.interpolate(mode="bicubic")`: a = -0.75, the source coordinate is not
    clamped, out-of-range taps are clamped to the border. rule "mindspore": MindSpore's
    `ops.interpolate(mode="bicubic")`: a = -0.5, out-of-range taps are dropped and the weights of
    the taps inside renormalised to sum 1."""
    if rule not in POS_RESIZE_RULES:
        raise ValueError(f"unknown resize rule {rule!r}; expected one of {list(POS_RESIZE_RULES)}")
    m = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    for o in range(n_out):
        src = (o + 0.5) * scale - 0.5
        i0 = int(math.floor(src))
        if rule == "torch":
            w = _cubic(src - i0)
            for k in range(4):
                m[o, min(max(i0 - 1 + k, 0), n_in - 1)] += w[k]
        else:
            w = _cubic(src - i0, a=-0.5)
            inside = [k for k in range(4) if 0 <= i0 - 1 + k < n_in]
            total = sum(w[k] for k in inside)
            for k in inside:
                m[o, i0 - 1 + k] += w[k] / total
    return m


def linear_resize(table: np.ndarray, out_len: int) -> np.ndarray:
    """Resize (L, C) to (out_len, C) along axis 0 like torch's linear F.interpolate (ViTDet `get_rel_pos`).

    A table that already has out_len rows is returned as it is."""
    if table.shape[0] == out_len:
        return table
    return (linear_resize_matrix(table.shape[0], out_len) @ table.astype(np.float64)).astype(table.dtype)


resize_rel_pos = linear_resize  # the backbone's name for the same resize


def bicubic_resize(grid: np.ndarray, out_hw: tuple[int, int], rule: str = "torch") -> np.ndarray:
    """Resize (H, W, C) to (h, w, C) bicubically with align_corners=False (`bicubic_resize_matrix`)."""
    h_in, w_in, _ = grid.shape
    mh, mw = bicubic_resize_matrix(h_in, out_hw[0], rule), bicubic_resize_matrix(w_in, out_hw[1], rule)
    out = np.einsum("oh,hwc,pw->opc", mh, grid.astype(np.float64), mw)
    return out.astype(grid.dtype)


def crop_rel_pos(table: np.ndarray, length: int) -> np.ndarray:
    """Centre crop of a rel-pos table (L, C) -> (length, C).

    Row (L-1)/2 is offset 0, so the crop keeps the embeddings of offsets -(length-1)/2 .. (length-1)/2
    (DESIGN §3.1: the (127, 64) tables of the 1024-px detectron2 checkpoint become (55, 64) at 448).
    Raises `WeightsError` (a ValueError) if length > L or L - length is odd."""
    n = table.shape[0]
    if length > n or (n - length) % 2:
        raise WeightsError(f"cannot centre-crop a relative-position table of {n} rows to {length} "
                           "rows (both must be odd, 2*size-1)")
    start = (n - length) // 2
    return table[start:start + length]


def crop_or_resize_rel_pos(table: np.ndarray, out_len: int) -> tuple[np.ndarray, str]:
    """Fit a (2S-1, d) relative-position table to out_len rows.

    Larger tables are centre-cropped (`crop_rel_pos`, keeps the offsets the smaller window can see);
    smaller ones are interpolated linearly (`linear_resize`) as ViTDet's `get_rel_pos` does.
    Returns the table and a word saying which was done."""
    n = table.shape[0]
    if n == out_len:
        return table, "kept"
    if n > out_len:
        return crop_rel_pos(table, out_len), "centre-cropped"
    return linear_resize(table, out_len), "linearly interpolated"


def resize_abs_pos(pos: np.ndarray, target_shape: tuple[int, ...], rule: str = "torch") -> tuple[np.ndarray, str]:
    """Fit an absolute position embedding (1, [1+] S*S, C) to `target_shape` (ViTDet's `get_abs_pos`).

    The cls entry (present when the count is 1 + a square) is dropped and the S x S grid (row-major,
    y then x) is resized bicubically (`bicubic_resize`) to the target grid. Targets: (1, h, w, C),
    (1, h*w, C) with a square grid, or (1, 1+h*w, C) which keeps the cls entry. A (1, S, S, C)
    source (no cls) is accepted too. `rule`: "torch" or "mindspore" (`bicubic_resize_matrix`).
    Returns the array (input dtype) and a note of what was done."""
    if pos.ndim == 4 and pos.shape[0] == 1 and pos.shape[1] == pos.shape[2]:
        pos = pos.reshape(1, pos.shape[1] * pos.shape[2], pos.shape[3])
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise WeightsError(f"pos_embed must be (1, N, C), got {pos.shape}")
    n, c = pos.shape[1], pos.shape[2]
    side = math.isqrt(n)
    has_cls = side * side != n
    if has_cls:
        side = math.isqrt(n - 1)
        if side * side != n - 1:
            raise WeightsError(f"pos_embed has {n} positions: neither S*S nor 1+S*S")
    cls, grid = (pos[:, :1], pos[:, 1:]) if has_cls else (None, pos)
    grid = grid.reshape(side, side, c)
    if len(target_shape) == 4:
        _, h, w, tc = target_shape
        keep_cls, flat = False, False
    elif len(target_shape) == 3:
        tn, tc = target_shape[1], target_shape[2]
        keep_cls = math.isqrt(tn) ** 2 != tn
        h = w = math.isqrt(tn - 1 if keep_cls else tn)
        if h * w != tn - int(keep_cls):
            raise WeightsError(f"target pos_embed {target_shape} is not a square token grid")
        flat = True
    else:
        raise WeightsError(f"unsupported target pos_embed shape {target_shape}")
    if tc != c:
        raise WeightsError(f"pos_embed width {c} in the file, {tc} in the model")
    if keep_cls and cls is None:
        raise WeightsError(f"the model's pos_embed {target_shape} has a cls entry, the file's {pos.shape} has not")
    out = grid if (h, w) == (side, side) else bicubic_resize(grid, (h, w), rule)
    how = f"bicubic ({rule} rule) {side}x{side} -> {h}x{w}"
    if has_cls and not keep_cls:
        how = "dropped cls, " + how
    out = out[None]  # (1, h, w, C)
    if flat:
        out = out.reshape(1, h * w, c)
        if keep_cls:
            out = np.concatenate([cls, out], axis=1)
    return out, how


def resize_abs_pos_embed(pos: np.ndarray, grid: int, rule: str = "torch") -> np.ndarray:
    """(1, [1+] G*G, C) or (1, G, G, C) -> (1, grid, grid, C) float32, cls dropped: `resize_abs_pos`
    to a square grid (the backbone's init)."""
    pos = np.asarray(pos)
    out, _ = resize_abs_pos(pos, (1, grid, grid, pos.shape[-1]), rule)
    return out.astype(np.float32)
