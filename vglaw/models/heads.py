"""Multi-task head (DESIGN §3.4): REC box by language-guided pooling, RES mask by pixel-text dot.

Box: (cx, cy, w, h) after a sigmoid, normalised to the padded S x S canvas.
Mask: logits (B, 1, S, S) on the same canvas.
"""

from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from vglaw.models.init import init_rng
from vglaw.models.resize import linear_resize_matrix

__all__ = ["sincos_2d", "RECHead", "RESHead", "MultiTaskHead", "align_corners_matrix"]


def sincos_2d(grid: int, channels: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position code (grid*grid, channels), row-major tokens (MAE style):
    half the channels encode the row, half the column, each as sin/cos at geometric frequencies."""
    if channels % 4:
        raise ValueError(f"the 2-D sin-cos position code needs channels divisible by 4, got {channels}")
    quarter = channels // 4
    omega = 1.0 / (10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter))  # (c/4,)
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64),
                         indexing="ij")

    def code(pos):
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([code(ys), code(xs)], axis=1).astype(np.float32)  # (g*g, c)


class RECHead(nn.Cell):
    """Query = Linear(c), keys = Linear(tokens), one head, softmax over tokens; values = tokens;
    then MLP -hidden-hidden-4 (ReLU) and a sigmoid.

    With `token_norm=False, pos_dim=0` this is the paper's head (DESIGN §3.4) exactly. The two
    options exist because a from-scratch backbone gives this head nothing to read the box from
    (issue 8): softmax pooling of position-free values is permutation invariant, and un-normalised
    tokens (RMS 0.9 -> 22 in 300 updates) saturate the softmax.
      token_norm: LayerNorm on the tokens entering the head (keys and values).
      pos_dim > 0: a fixed 2-D sin-cos code of pos_dim channels is added to the keys through a
        Linear and pooled by the same attention; the MLP reads concat(attn @ tokens, attn @ pos).
      mask_guide: the RES head's mask logits, averaged over each token's 4x4 cells and detached,
        are added (times a learnt scale, init 1) to the pooling logits: the box reads where the
        mask, which learns in ~100 updates, puts the referred object (`guide` argument).

    Args:
        vis_dim: backbone channels C. text_dim: [CLS] width D. attn_dim: q/k width. hidden: MLP width.
        grid: token grid side (for the position code).
    """

    def __init__(self, vis_dim: int, text_dim: int, attn_dim: int = 64, hidden: int = 256, *,
                 token_norm: bool = False, pos_dim: int = 0, grid: int = 28, mask_guide: bool = False):
        super().__init__()
        self.mask_guide = mask_guide
        if mask_guide:
            self.guide_scale = Parameter(Tensor(np.ones((1,), np.float32)), name="guide_scale")
        self.query = nn.Dense(text_dim, attn_dim)
        self.key = nn.Dense(vis_dim, attn_dim)
        self.scale = attn_dim ** -0.5
        self.token_norm = token_norm
        self.pos_dim = pos_dim
        if token_norm:
            self.norm = nn.LayerNorm((vis_dim,), epsilon=1e-6)
        if pos_dim:
            self.pos = Tensor(sincos_2d(grid, pos_dim)).expand_dims(0)  # (1, N, P), not a Parameter
            self.pos_key = nn.Dense(pos_dim, attn_dim)
        self.mlp = nn.SequentialCell(nn.Dense(vis_dim + pos_dim, hidden), nn.ReLU(),
                                     nn.Dense(hidden, hidden), nn.ReLU(), nn.Dense(hidden, 4))

    def attention(self, tokens: Tensor, cls: Tensor, guide=None) -> Tensor:
        """(B, N, C) tokens (after the optional norm), (B, D), guide (B, N) or None
        -> (B, 1, N) pooling weights."""
        q = self.query(cls).expand_dims(1)  # (B, 1, a)
        k = self.key(tokens)  # (B, N, a)
        if self.pos_dim:
            k = k + self.pos_key(self.pos)
        logits = ops.bmm(q, k.transpose(0, 2, 1)) * self.scale
        if self.mask_guide:
            logits = logits + self.guide_scale * guide.expand_dims(1)
        return ops.softmax(logits, axis=-1)

    def construct(self, tokens: Tensor, cls: Tensor, guide=None) -> Tensor:
        """tokens (B, N, C), cls (B, D), guide (B, N) detached token mask logits (mask_guide only)
        -> boxes (B, 4) sigmoid cxcywh on the canvas."""
        if self.token_norm:
            tokens = self.norm(tokens)
        attn = self.attention(tokens, cls, guide)  # (B, 1, N)
        pooled = ops.bmm(attn, tokens).squeeze(1)  # (B, C)
        if self.pos_dim:
            b = tokens.shape[0]
            pos = ops.broadcast_to(self.pos, (b, self.pos.shape[1], self.pos_dim))
            pooled = ops.concat((pooled, ops.bmm(attn, pos).squeeze(1)), -1)  # (B, C + P)
        return ops.sigmoid(self.mlp(pooled))


def align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 1-D linear interpolation matrix with align_corners=True."""
    return linear_resize_matrix(n_in, n_out, align_corners=True).astype(np.float32)


class RESHead(nn.Cell):
    """ConvT(C->hidden, k2 s2) -> channel LayerNorm -> GELU -> ConvT(hidden->D, k2 s2) -> dot with c
    -> bilinear (align_corners) to the canvas.

    A k2 s2 transposed convolution has no overlap, so it is a per-pixel matmul plus a pixel
    shuffle; weights keep the ConvTranspose2d layout (in, out, 2, 2) and names (up1.weight ...).
    The second one is folded into the dot with c (sum_o W2[:, o] c_o), so the (B, D, 4g, 4g)
    embedding map is never materialised: same result, a fraction of the CPU time. The bilinear
    resize is two matmuls with static matrices.

    Args:
        vis_dim: C. text_dim: D. hidden: channels between the transposed convolutions.
        img_size: canvas side S. grid: backbone token grid g.
    """

    def __init__(self, vis_dim: int, text_dim: int, hidden: int = 256, img_size: int = 448,
                 grid: int = 28):
        super().__init__()
        self.img_size, self.hidden, self.text_dim = img_size, hidden, text_dim
        self.up1 = _ConvT2x2(vis_dim, hidden)
        self.norm = nn.LayerNorm((hidden,), epsilon=1e-6)
        self.act = nn.GELU(approximate=False)
        self.up2 = _ConvT2x2(hidden, text_dim)
        m = align_corners_matrix(4 * grid, img_size)
        self.resize = Tensor(m)  # (S, 4g)
        self.resize_t = Tensor(np.ascontiguousarray(m.T))  # (4g, S)

    def construct(self, fmap: Tensor, cls: Tensor) -> Tensor:
        """fmap (B, C, g, g), cls (B, D) -> mask logits (B, 1, S, S)."""
        return self.to_canvas(self.low_res(fmap, cls))

    def to_canvas(self, y: Tensor) -> Tensor:
        """(B, 4g, 4g) logits -> (B, 1, S, S) by the align-corners bilinear resize."""
        if y.shape[1] != self.img_size:
            y = ops.matmul(ops.matmul(self.resize, y), self.resize_t)  # (B, S, S)
        return y.expand_dims(1)

    def low_res(self, fmap: Tensor, cls: Tensor) -> Tensor:
        """fmap (B, C, g, g), cls (B, D) -> mask logits (B, 4g, 4g) before the resize."""
        b, _, g, _ = fmap.shape
        x = self.up1(fmap.transpose(0, 2, 3, 1))  # (B, 2g, 2g, hid) NHWC
        x = self.act(self.norm(x))  # LayerNorm over channels
        # up2 folded with the dot product: kernel_b = sum_o W2[:, o, :, :] c_o -> (B, hid, 4)
        w2 = self.up2.weight.transpose(0, 2, 3, 1).reshape(1, self.hidden * 4, self.text_dim)
        k = ops.matmul(w2, cls.expand_dims(2)).reshape(b, self.hidden, 4)  # (B, hid, 4)
        bias = (self.up2.bias * cls).sum(-1).reshape(b, 1, 1)  # (B, 1, 1)
        y = ops.bmm(x.reshape(b, 4 * g * g, self.hidden), k) + bias  # (B, 2g*2g, 4)
        return y.reshape(b, 2 * g, 2 * g, 2, 2).transpose(0, 1, 3, 2, 4).reshape(b, 4 * g, 4 * g)


class _ConvT2x2(nn.Cell):
    """ConvTranspose2d(k=2, s=2) on NHWC input, torch weight layout (in, out, 2, 2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        bound = 1.0 / np.sqrt(cout * 4)  # torch default for ConvTranspose2d (fan_in = out*k*k)
        rng = init_rng()
        self.weight = Parameter(Tensor(rng.uniform(-bound, bound, (cin, cout, 2, 2)).astype(np.float32)),
                                name="weight")
        self.bias = Parameter(Tensor(rng.uniform(-bound, bound, (cout,)).astype(np.float32)), name="bias")
        self.cout = cout

    def construct(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape  # (B, h, w, Cin)
        y = ops.matmul(x.reshape(b * h * w, c), self.weight.reshape(c, self.cout * 4))
        y = y.reshape(b, h, w, self.cout, 2, 2).transpose(0, 1, 4, 2, 5, 3)  # (B, h, 2, w, 2, Cout)
        return y.reshape(b, 2 * h, 2 * w, self.cout) + self.bias


class MultiTaskHead(nn.Cell):
    """REC + RES on the backbone map and the [CLS] feature."""

    def __init__(self, cfg):
        super().__init__()
        # The guide needs a trained RES head: without use_mask (REC only) it is off.
        self.mask_guide = bool(cfg.rec_mask_guide and cfg.use_mask)
        self.rec = RECHead(cfg.vit_dim, cfg.text_hidden, cfg.rec_dim, cfg.rec_hidden,
                           token_norm=cfg.rec_token_norm, pos_dim=cfg.rec_pos_dim, grid=cfg.grid,
                           mask_guide=self.mask_guide)
        self.res = RESHead(cfg.vit_dim, cfg.text_hidden, cfg.res_hidden, cfg.img_size, cfg.grid)

    def construct(self, fmap: Tensor, cls: Tensor):
        b, c, h, w = fmap.shape
        tokens = fmap.reshape(b, c, h * w).transpose(0, 2, 1)  # (B, N, C)
        low = self.res.low_res(fmap, cls)  # (B, 4h, 4w)
        guide = None
        if self.mask_guide:  # mean logit of each token's 4x4 cells, no gradient into the RES head
            guide = ops.stop_gradient(low.reshape(b, h, 4, w, 4).mean(axis=(2, 4)).reshape(b, h * w))
        return self.rec(tokens, cls, guide), self.res.to_canvas(low)
