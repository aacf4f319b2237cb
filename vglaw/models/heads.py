"""Multi-task head (DESIGN §3.4): REC box by language-guided pooling, RES mask by pixel-text dot.

Box: (cx, cy, w, h) after a sigmoid, normalised to the padded S x S canvas.
Mask: logits (B, 1, S, S) on the same canvas.
"""

from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

__all__ = ["RECHead", "RESHead", "MultiTaskHead", "align_corners_matrix"]


class RECHead(nn.Cell):
    """Query = Linear(c), keys = Linear(tokens), one head, softmax over tokens; values = raw tokens;
    then MLP C-hidden-hidden-4 (ReLU) and a sigmoid.

    Args:
        vis_dim: backbone channels C. text_dim: [CLS] width D. attn_dim: q/k width. hidden: MLP width.
    """

    def __init__(self, vis_dim: int, text_dim: int, attn_dim: int = 64, hidden: int = 256):
        super().__init__()
        self.query = nn.Dense(text_dim, attn_dim)
        self.key = nn.Dense(vis_dim, attn_dim)
        self.scale = attn_dim ** -0.5
        self.mlp = nn.SequentialCell(nn.Dense(vis_dim, hidden), nn.ReLU(), nn.Dense(hidden, hidden),
                                     nn.ReLU(), nn.Dense(hidden, 4))

    def construct(self, tokens: Tensor, cls: Tensor) -> Tensor:
        """tokens (B, N, C), cls (B, D) -> boxes (B, 4) sigmoid cxcywh on the canvas."""
        q = self.query(cls).expand_dims(1)  # (B, 1, a)
        k = self.key(tokens)  # (B, N, a)
        attn = ops.softmax(ops.bmm(q, k.transpose(0, 2, 1)) * self.scale, axis=-1)  # (B, 1, N)
        pooled = ops.bmm(attn, tokens).squeeze(1)  # (B, C)
        return ops.sigmoid(self.mlp(pooled))


def align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) 1-D linear interpolation matrix with align_corners=True."""
    m = np.zeros((n_out, n_in), np.float32)
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    for i in range(n_out):
        src = i * scale
        x0 = min(int(np.floor(src)), n_in - 1)
        x1 = min(x0 + 1, n_in - 1)
        m[i, x0] += 1.0 - (src - x0)
        m[i, x1] += src - x0
    return m


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
        b, _, g, _ = fmap.shape
        x = self.up1(fmap.transpose(0, 2, 3, 1))  # (B, 2g, 2g, hid) NHWC
        x = self.act(self.norm(x))  # LayerNorm over channels
        # up2 folded with the dot product: kernel_b = sum_o W2[:, o, :, :] c_o -> (B, hid, 4)
        w2 = self.up2.weight.transpose(0, 2, 3, 1).reshape(1, self.hidden * 4, self.text_dim)
        k = ops.matmul(w2, cls.expand_dims(2)).reshape(b, self.hidden, 4)  # (B, hid, 4)
        bias = (self.up2.bias * cls).sum(-1).reshape(b, 1, 1)  # (B, 1, 1)
        y = ops.bmm(x.reshape(b, 4 * g * g, self.hidden), k) + bias  # (B, 2g*2g, 4)
        y = y.reshape(b, 2 * g, 2 * g, 2, 2).transpose(0, 1, 3, 2, 4).reshape(b, 4 * g, 4 * g)
        if 4 * g != self.img_size:
            y = ops.matmul(ops.matmul(self.resize, y), self.resize_t)  # (B, S, S)
        return y.expand_dims(1)


class _ConvT2x2(nn.Cell):
    """ConvTranspose2d(k=2, s=2) on NHWC input, torch weight layout (in, out, 2, 2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        bound = 1.0 / np.sqrt(cout * 4)  # torch default for ConvTranspose2d (fan_in = out*k*k)
        rng = np.random.default_rng(1)
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
        self.rec = RECHead(cfg.vit_dim, cfg.text_hidden, cfg.rec_dim, cfg.rec_hidden)
        self.res = RESHead(cfg.vit_dim, cfg.text_hidden, cfg.res_hidden, cfg.img_size, cfg.grid)

    def construct(self, fmap: Tensor, cls: Tensor):
        b, c, h, w = fmap.shape
        tokens = fmap.reshape(b, c, h * w).transpose(0, 2, 1)  # (B, N, C)
        return self.rec(tokens, cls), self.res(fmap, cls)
