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


def cell_centres(cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float32 (cells**2,) centres of a cells x cells grid on the unit canvas, row-major."""
    c = (np.arange(cells, dtype=np.float32) + 0.5) / cells
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return xx.ravel(), yy.ravel()


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
      cell_pool: the pooling runs over the RES head's 4g x 4g cells (16 per token) instead of
        the tokens: each cell's key is its token's key plus its own position code, the guide is
        the detached cell logit itself; the MLP also reads the first and second moments of the
        pooling weights (a centre and a side), and adds that moment box in logit space times a
        learnt weight (init 0). A token is 16 pixels, a cell 4: the box is no longer regressed from
        token-resolution features, and the softmax keeps the choice of one object (a mask's own
        moments average two "purple diamonds" when the mask marks both).

    Args:
        vis_dim: backbone channels C. text_dim: [CLS] width D. attn_dim: q/k width. hidden: MLP width.
        grid: token grid side (for the position code).
    """

    def __init__(self, vis_dim: int, text_dim: int, attn_dim: int = 64, hidden: int = 256, *,
                 token_norm: bool = False, pos_dim: int = 0, grid: int = 28, mask_guide: bool = False,
                 cell_pool: bool = False):
        super().__init__()
        if cell_pool and not pos_dim:
            raise ValueError("cell_pool needs the position code (pos_dim > 0)")
        self.mask_guide = mask_guide
        self.cell_pool = cell_pool
        self.grid = grid
        if mask_guide:
            self.guide_scale = Parameter(Tensor(np.ones((1,), np.float32)), name="guide_scale")
        self.query = nn.Dense(text_dim, attn_dim)
        self.key = nn.Dense(vis_dim, attn_dim)
        self.scale = attn_dim ** -0.5
        self.token_norm = token_norm
        self.pos_dim = pos_dim
        if token_norm:
            self.norm = nn.LayerNorm((vis_dim,), epsilon=1e-6)
        if cell_pool:  # the RES head's 4g x 4g cells: their code and centres on the unit canvas
            cells = 4 * grid
            self.pos = Tensor(sincos_2d(cells, pos_dim)).expand_dims(0)  # (1, M, P)
            xx, yy = cell_centres(cells)
            xy = np.stack([xx, yy], 1)
            self.cell_xy, self.cell_xy2 = Tensor(xy), Tensor(xy ** 2)  # (M, 2)
            self.prior_weight = Parameter(Tensor(np.zeros((1,), np.float32)), name="prior_weight")
            self.pos_key = nn.Dense(pos_dim, attn_dim)
        elif pos_dim:
            self.pos = Tensor(sincos_2d(grid, pos_dim)).expand_dims(0)  # (1, N, P), not a Parameter
            self.pos_key = nn.Dense(pos_dim, attn_dim)
        n_in = vis_dim + pos_dim + (4 if cell_pool else 0)
        self.mlp = nn.SequentialCell(nn.Dense(n_in, hidden), nn.ReLU(),
                                     nn.Dense(hidden, hidden), nn.ReLU(), nn.Dense(hidden, 4))

    def attention(self, tokens: Tensor, cls: Tensor, guide=None) -> Tensor:
        """(B, N, C) tokens (after the optional norm), (B, D), guide (B, N) or None
        -> (B, 1, N) pooling weights; with cell_pool, guide (B, 16N) -> (B, 1, 16N) over the cells."""
        q = self.query(cls).expand_dims(1)  # (B, 1, a)
        k = self.key(tokens)  # (B, N, a)
        if self.cell_pool:  # each token's key on its 4 x 4 cells
            b, n, a = k.shape
            g = self.grid
            k = ops.broadcast_to(k.reshape(b, g, 1, g, 1, a), (b, g, 4, g, 4, a)).reshape(b, 16 * n, a)
        if self.pos_dim:
            k = k + self.pos_key(self.pos)
        logits = ops.bmm(q, k.transpose(0, 2, 1)) * self.scale
        if self.mask_guide:
            logits = logits + self.guide_scale * guide.expand_dims(1)
        return ops.softmax(logits, axis=-1)

    def cell_moments(self, attn: Tensor) -> Tensor:
        """(B, M) weights over the cells -> (B, 4) cxcywh box of their first and second moments:
        centre = mean cell centre, side = sqrt(12 var + 1/G^2) (n cells of side 1/G in a row have
        variance (n^2 - 1) / (12 G^2)), clipped to [0.01, 0.99]."""
        mean = ops.matmul(attn, self.cell_xy)  # (B, 2)
        var = ops.relu(ops.matmul(attn, self.cell_xy2) - mean * mean)
        side = ops.sqrt(12.0 * var + 1.0 / attn.shape[1])
        return ops.clip_by_value(ops.concat((mean, side), -1), 0.01, 0.99)

    def construct(self, tokens: Tensor, cls: Tensor, guide=None) -> Tensor:
        """tokens (B, N, C), cls (B, D), guide detached mask logits (mask_guide only): per token
        (B, N), or per cell (B, 16N) with cell_pool -> boxes (B, 4) sigmoid cxcywh on the canvas."""
        if self.token_norm:
            tokens = self.norm(tokens)
        attn = self.attention(tokens, cls, guide)  # (B, 1, N) or (B, 1, 16N)
        b = tokens.shape[0]
        if self.cell_pool:
            g = self.grid
            on_tokens = attn.reshape(b, g, 4, g, 4).sum(axis=(2, 4)).reshape(b, 1, g * g)
            cells = attn.squeeze(1)  # (B, M)
            box = self.cell_moments(cells)
            pooled = ops.concat((ops.bmm(on_tokens, tokens).squeeze(1), ops.matmul(cells, self.pos[0]), box), -1)
            # plus the moment box in logit space, times a learnt weight that starts at 0: at
            # initialisation the pooling is spread over the canvas, its moment box is the whole
            # image, and a fixed prior there made the box gradient swamp the mask's under the
            # global-norm clip (measured: val mask mIoU 0.09 at 175 updates against 0.45)
            return ops.sigmoid(self.mlp(pooled) + self.prior_weight * ops.log(box / (1.0 - box)))
        pooled = ops.bmm(attn, tokens).squeeze(1)  # (B, C)
        if self.pos_dim:
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
        w2 = self.up2.weight.transpose(0, 2, 3, 1).reshape(self.hidden * 4, self.text_dim)
        k = ops.matmul(cls, w2.T).reshape(b, self.hidden, 4)  # (B, hid, 4), no (B, hid*4, D) broadcast of W2
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


class PixelRefine(nn.Cell):
    """`res_refine` (not in the paper; issue 8): a per-cell correction of the RES head's stride-4
    logits from what the token grid cannot hold, the pixels inside each token. For each
    (p/4)^2-pixel cell: MLP([stem features (d), token logit (1)] + Linear(c)) -> 1, added to the
    logit. The token logit tells it where the referred object is; the stem features where its
    edge runs inside the token; the sentence bias which colour is wanted."""

    def __init__(self, stem_dim: int, text_dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Dense(stem_dim + 1, hidden)
        self.text = nn.Dense(text_dim, hidden)
        self.act = nn.GELU(approximate=False)
        self.fc2 = nn.Dense(hidden, 1)

    def construct(self, low: Tensor, cells: Tensor, cls: Tensor) -> Tensor:
        """low (B, G, G) logits, cells (B, G, G, d), cls (B, D) -> (B, G, G) refined logits."""
        b, g, _ = low.shape
        x = ops.concat((cells, low.expand_dims(-1)), -1).reshape(b, g * g, -1)  # (B, G*G, d+1)
        h = self.act(self.fc1(x) + self.text(cls).expand_dims(1))  # (B, G*G, hidden)
        return low + self.fc2(h).reshape(b, g, g)


class BoxSelect(nn.Cell):
    """`res_select` (not in the paper; issue 8): a per-cell correction of the RES head's stride-4
    logits from the REC head's box, detached. On "the left purple diamond" the mask tends to mark
    both diamonds while the box, which reads positions, picks one; each cell gets
    MLP([logit, |x - cx| / (w/2), |y - cy| / (h/2)]) -> 1 added to its logit, so the mask can drop
    what lies far outside the box. The last layer starts at zero: at initialisation the mask is
    the RES head's alone."""

    def __init__(self, cells: int, hidden: int):
        super().__init__()
        xx, yy = cell_centres(cells)
        self.cx, self.cy = Tensor(xx.reshape(1, -1)), Tensor(yy.reshape(1, -1))  # (1, M)
        self.fc1 = nn.Dense(3, hidden)
        self.act = nn.GELU(approximate=False)
        self.fc2 = nn.Dense(hidden, 1, weight_init="zeros", bias_init="zeros")

    def construct(self, low: Tensor, box: Tensor) -> Tensor:
        """low (B, G, G) logits, box (B, 4) cxcywh on the unit canvas -> (B, G, G) logits."""
        b, g, _ = low.shape
        box = ops.stop_gradient(box)
        half = ops.maximum(box[:, 2:] * 0.5, 1e-3)  # (B, 2)
        dx = ops.abs(self.cx - box[:, 0:1]) / half[:, 0:1]  # (B, M)
        dy = ops.abs(self.cy - box[:, 1:2]) / half[:, 1:2]
        x = ops.stack((low.reshape(b, g * g), dx, dy), -1)  # (B, M, 3)
        return low + self.fc2(self.act(self.fc1(x))).reshape(b, g, g)


class MultiTaskHead(nn.Cell):
    """REC + RES on the backbone map and the [CLS] feature (and, with `res_refine`, the stem's cells)."""

    def __init__(self, cfg):
        super().__init__()
        # The guide needs a trained RES head: without use_mask (REC only) it is off.
        self.mask_guide = bool(cfg.rec_mask_guide and cfg.use_mask)
        self.cell_pool = cfg.rec_cell_pool
        self.rec = RECHead(cfg.vit_dim, cfg.text_hidden, cfg.rec_dim, cfg.rec_hidden,
                           token_norm=cfg.rec_token_norm, pos_dim=cfg.rec_pos_dim, grid=cfg.grid,
                           mask_guide=self.mask_guide, cell_pool=self.cell_pool)
        self.res = RESHead(cfg.vit_dim, cfg.text_hidden, cfg.res_hidden, cfg.img_size, cfg.grid)
        self.refine_on = cfg.res_refine > 0
        if self.refine_on:
            self.refine = PixelRefine(cfg.stem_dim, cfg.text_hidden, cfg.res_refine)
        self.select_on = cfg.res_select > 0
        if self.select_on:
            self.select = BoxSelect(4 * cfg.grid, cfg.res_select)

    def construct(self, fmap: Tensor, cls: Tensor, cells=None):
        b, c, h, w = fmap.shape
        tokens = fmap.reshape(b, c, h * w).transpose(0, 2, 1)  # (B, N, C)
        low = self.res.low_res(fmap, cls)  # (B, 4h, 4w)
        if self.refine_on:
            if cells is None:
                raise ValueError("res_refine reads the hmlp stem's cells: call head(fmap, cls, cells) "
                                 "with the second output of ViTDet.features")
            low = self.refine(low, cells, cls)
        guide = None
        if self.mask_guide and self.cell_pool:  # each cell's logit, no gradient into the RES head
            guide = ops.stop_gradient(low.reshape(b, 16 * h * w))
        elif self.mask_guide:  # mean logit of each token's 4x4 cells, no gradient into the RES head
            guide = ops.stop_gradient(low.reshape(b, h, 4, w, 4).mean(axis=(2, 4)).reshape(b, h * w))
        box = self.rec(tokens, cls, guide)
        if self.select_on:
            low = self.select(low, box)
        return box, self.res.to_canvas(low)
