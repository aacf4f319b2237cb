"""ViTDet plain ViT backbone (DESIGN §3.1) with a language-adaptive qkv hook (§3.3).

Follows detectron2 `modeling/backbone/vit.py` (Li et al., ViTDet): window attention in most
blocks, global attention in a few, decomposed relative position in every block, an absolute
position embedding learnt at the pretrain grid and resized to the token grid, no final norm.
Parameter names under `backbone.` equal detectron2's under `backbone.net.` except LayerNorm
weight/bias (MindSpore: gamma/beta), see `VIT_DETECTRON2_NAME_MAP` / `detectron2_to_vglaw_name`.
The pos-embed and rel-pos resizes happen on the host (NumPy, `vglaw.models.resize`) at init / load;
with `pos_table="pretrain"` (the authors' layout) the pos-embed parameter stays at the pretrain
grid and a constant host-built matrix resizes it in construct (one matmul).
"""

from __future__ import annotations

import math

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import TruncatedNormal, Zero, initializer

from vglaw.models.init import init_rng
from vglaw.models.law import adaptive_qkv
from vglaw.models.layers import Gelu, LastAxisSoftmax, expand, linear, relayout
from vglaw.models.resize import bicubic_resize_matrix, linear_resize_matrix, resize_abs_pos_embed

__all__ = ["ViTDet", "Block", "Attention", "window_partition", "window_unpartition",
           "rel_pos_index", "VIT_DETECTRON2_NAME_MAP", "detectron2_to_vglaw_name"]

# detectron2 suffix -> vglaw suffix (names under `backbone.net.` -> under `backbone.`); all
# others (patch_embed.proj.*, pos_embed, attn.qkv.*, attn.proj.*, attn.rel_pos_*, mlp.fc*) are equal.
VIT_DETECTRON2_NAME_MAP = {"norm1.weight": "norm1.gamma", "norm1.bias": "norm1.beta",
                           "norm2.weight": "norm2.gamma", "norm2.bias": "norm2.beta"}
DETECTRON2_PREFIX = "backbone.net."


def detectron2_to_vglaw_name(name: str, prefix: str = "backbone.") -> str | None:
    """`backbone.net.blocks.3.norm1.weight` -> `backbone.blocks.3.norm1.gamma`; None if not ViT."""
    if not name.startswith(DETECTRON2_PREFIX):
        return None
    rest = name[len(DETECTRON2_PREFIX):]
    for old, new in VIT_DETECTRON2_NAME_MAP.items():
        if rest.endswith("." + old):
            rest = rest[: -len(old)] + new
            break
    return prefix + rest


# ----------------------------------------------------------------------------- rel-pos indices
def rel_pos_index(q_size: int, k_size: int) -> np.ndarray:
    """(q_size, k_size) int indices into a (2*max-1, C) table, detectron2's `get_rel_pos`."""
    q = np.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k = np.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    return ((q - k) + (k_size - 1) * max(q_size / k_size, 1.0)).astype(np.int32)


# ----------------------------------------------------------------------------- windows
def window_partition(x: Tensor, ws: int, lean: bool = False):
    """(B, H, W, C) -> windows (B*nW, ws, ws, C), zero-padded to multiples of ws; (Hp, Wp)."""
    b, h, w, c = x.shape
    pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
    if pad_h > 0 or pad_w > 0:
        x = ops.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.reshape(b, hp // ws, ws, wp // ws, ws, c)
    return relayout(x, (0, 1, 3, 2, 4, 5), lean).reshape(-1, ws, ws, c), (hp, wp)


def window_unpartition(windows: Tensor, ws: int, pad_hw, hw, lean: bool = False) -> Tensor:
    """Inverse of window_partition: (B*nW, ws, ws, C) -> (B, H, W, C), padding removed."""
    hp, wp = pad_hw
    h, w = hw
    b = windows.shape[0] // ((hp // ws) * (wp // ws))
    x = windows.reshape(b, hp // ws, wp // ws, ws, ws, -1)
    x = relayout(x, (0, 1, 3, 2, 4, 5), lean).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


# ----------------------------------------------------------------------------- cells
class DropPath(nn.Cell):
    """Stochastic depth per sample (active only in training)."""

    def __init__(self, prob: float = 0.0):
        super().__init__()
        self.keep = 1.0 - prob
        self.lean = False  # VGLAW.set_lean_kernels (vglaw.models.layers)

    def construct(self, x: Tensor) -> Tensor:
        if not self.training or self.keep >= 1.0:
            return x
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = ops.floor(self.keep + ops.rand(shape, dtype=x.dtype))
        if self.lean:
            # A Div and an implicitly broadcasting Mul each keep four token-map-sized CPU buffers
            # per graph node; one same-shape Mul by the per-sample factor 0 or 1/keep does not
            # (the same function to rounding: x * (1/keep) against x / keep).
            return x * ops.broadcast_to(mask * (1.0 / self.keep), x.shape)
        return x / self.keep * mask


class Attention(nn.Cell):
    """Multi-head attention with decomposed rel-pos and an optional language-adaptive qkv.

    Args:
        dim: channels. num_heads: heads. input_size: (h, w) tokens it attends over (window or grid).
        law_type: the LAW variant for this block ("none" = plain qkv).
        law_rank: K (svd only).
    """

    def __init__(self, dim: int, num_heads: int, input_size: tuple, law_type: str = "none",
                 law_rank: int = 0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.law_type = law_type
        self.law_rank = law_rank
        self.lean = False  # VGLAW.set_lean_kernels (vglaw.models.layers)
        self.qkv = nn.Dense(dim, dim * 3, weight_init=TruncatedNormal(0.02), bias_init="zeros")
        self.proj = nn.Dense(dim, dim, weight_init=TruncatedNormal(0.02), bias_init="zeros")
        self.lean_softmax = LastAxisSoftmax()  # used only when lean
        h, w = input_size
        # detectron2 default rel_pos_zero_init=True; the pretrained tables replace them.
        self.rel_pos_h = Parameter(initializer(Zero(), (2 * h - 1, self.head_dim), ms.float32), name="rel_pos_h")
        self.rel_pos_w = Parameter(initializer(Zero(), (2 * w - 1, self.head_dim), ms.float32), name="rel_pos_w")
        self.idx_h = Tensor(rel_pos_index(h, h))  # static gather indices
        self.idx_w = Tensor(rel_pos_index(w, w))

    def _rel_table(self, table: Tensor, size: int) -> Tensor:
        # Interpolate only when a loaded table has another length (static, host-built matrix).
        need = 2 * size - 1
        if table.shape[0] != need:
            table = ops.matmul(Tensor(linear_resize_matrix(table.shape[0], need), ms.float32), table)
        return table

    def construct(self, x: Tensor, gen=None, lp=None, lq=None, n_img: int = 1) -> Tensor:
        bw, h, w, c = x.shape  # (B*nW, h, w, C)
        if self.law_type == "none":
            qkv = self.qkv(x)
        else:
            # LAW branch over all windows of an image at once: (B, nW*h*w, C), one Phi per image.
            xt = x.reshape(n_img, -1, c)
            qkv = adaptive_qkv(self.law_type, xt, self.qkv.weight, self.qkv.bias, gen, lp, lq,
                               self.law_rank, self.lean)
        qkv = relayout(qkv.reshape(bw, h * w, 3, self.num_heads, self.head_dim), (2, 0, 3, 1, 4), self.lean)
        # Unstack, not qkv[0], qkv[1], qkv[2]: MindSpore's CPU StridedSlice copied each third at
        # ~20 ns per value (~2.5 ms apiece in the tiny step, 12 of them; the same values).
        q, k, v = ops.unstack(qkv.reshape(3, bw * self.num_heads, h * w, self.head_dim), 0)  # (B*nW*nH, N, d)
        attn = ops.bmm(q * self.scale, k.transpose(0, 2, 1))  # (BH, N, N)
        attn = self.add_decomposed_rel_pos(attn, q, h, w)
        attn = self.lean_softmax(attn) if self.lean else ops.softmax(attn, axis=-1)
        out = ops.bmm(attn, v).reshape(bw, self.num_heads, h, w, self.head_dim)
        out = relayout(out, (0, 2, 3, 1, 4), self.lean).reshape(bw, h, w, c)
        return self.proj(out)

    def add_decomposed_rel_pos(self, attn: Tensor, q: Tensor, h: int, w: int) -> Tensor:
        """detectron2 `add_decomposed_rel_pos` for q_size == k_size == (h, w), no einsum."""
        rh = ops.gather(self._rel_table(self.rel_pos_h, h), self.idx_h, 0)  # (h, h, d)
        rw = ops.gather(self._rel_table(self.rel_pos_w, w), self.idx_w, 0)  # (w, w, d)
        b, d = q.shape[0], q.shape[2]
        r_q = q.reshape(b, h, w, d)
        # rel_h[b,y,x,ky] = sum_c r_q[b,y,x,c] * rh[y,ky,c]
        lean = self.lean
        qh = relayout(r_q, (1, 0, 2, 3), lean).reshape(h, b * w, d)
        rel_h = relayout(ops.bmm(qh, rh.transpose(0, 2, 1)).reshape(h, b, w, h), (1, 0, 2, 3), lean)
        # rel_w[b,y,x,kx] = sum_c r_q[b,y,x,c] * rw[x,kx,c]
        qw = relayout(r_q, (2, 0, 1, 3), lean).reshape(w, b * h, d)
        rel_w = relayout(ops.bmm(qw, rw.transpose(0, 2, 1)).reshape(w, b, h, w), (1, 2, 0, 3), lean)
        full = (b, h, w, h, w)
        attn = attn.reshape(full) + expand(rel_h.expand_dims(4), full, lean) + expand(rel_w.expand_dims(3), full, lean)
        return attn.reshape(b, h * w, h * w)


class Mlp(nn.Cell):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Dense(dim, hidden, weight_init=TruncatedNormal(0.02), bias_init="zeros")
        self.act = Gelu()
        self.fc2 = nn.Dense(hidden, dim, weight_init=TruncatedNormal(0.02), bias_init="zeros")

    def construct(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Cell):
    """ViTDet block: (window or global) attention + MLP, pre-norm, drop-path.

    Args:
        window_size: 0 for global attention, else the window side in tokens.
        grid: token grid side (global blocks attend over grid x grid).
        law_index / p_index: row of this block in the generated tensor / in P, Q (adaptive only).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float,
                 window_size: int, grid: int, eps: float = 1e-6, law_type: str = "none",
                 law_rank: int = 0, law_index: int = -1, p_index: int = 0):
        super().__init__()
        self.window_size = window_size
        self.law_type = law_type
        self.law_index = law_index
        self.p_index = p_index
        self.lean = False  # VGLAW.set_lean_kernels (vglaw.models.layers)
        self.norm1 = nn.LayerNorm((dim,), epsilon=eps)
        size = (window_size, window_size) if window_size > 0 else (grid, grid)
        self.attn = Attention(dim, num_heads, size, law_type, law_rank)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm((dim,), epsilon=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def construct(self, x: Tensor, gen=None, lp=None, lq=None) -> Tensor:
        b, h, w, _ = x.shape  # (B, H, W, C)
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            x, pad_hw = window_partition(x, self.window_size, self.lean)
        if self.law_type == "none":
            x = self.attn(x)
        else:
            x = self.attn(x, gen[:, self.law_index], lp[self.p_index], lq[self.p_index], b)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (h, w), self.lean)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _PatchProj(nn.Cell):
    """Conv2d(3, C, k=p, s=p) parameters in torch layout: weight (C, 3, p, p), bias (C,)."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(3 * patch * patch)  # torch Conv2d default init
        rng = init_rng()
        self.weight = Parameter(Tensor(rng.uniform(-bound, bound, (dim, 3, patch, patch)).astype(np.float32)),
                                name="weight")
        self.bias = Parameter(Tensor(rng.uniform(-bound, bound, (dim,)).astype(np.float32)), name="bias")


class PatchEmbed(nn.Cell):
    """Non-overlapping patch projection as patchify + matmul: equal to the k=s=p Conv2d, but
    MindSpore's CPU Conv2d with a 16x16 stride-16 kernel is ~100x slower than one matmul."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch, self.dim = patch, dim
        self.lean = False  # VGLAW.set_lean_kernels (vglaw.models.layers)
        self.proj = _PatchProj(patch, dim)

    def construct(self, x: Tensor) -> Tensor:
        b, c, hh, ww = x.shape  # (B, 3, S, S)
        p = self.patch
        h, w = hh // p, ww // p
        t = relayout(x.reshape(b, c, h, p, w, p), (0, 2, 4, 1, 3, 5), self.lean).reshape(b * h * w, c * p * p)
        y = ops.matmul(t, self.proj.weight.reshape(self.dim, c * p * p).T) + self.proj.bias
        return y.reshape(b, h, w, self.dim)  # (B, H, W, C)


class _Dense(nn.Cell):
    """x @ weight.T + bias with torch Linear layout and init, on a flattened (rows, in) input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        bound = 1.0 / math.sqrt(cin)
        rng = init_rng()
        self.weight = Parameter(Tensor(rng.uniform(-bound, bound, (cout, cin)).astype(np.float32)), name="weight")
        self.bias = Parameter(Tensor(rng.uniform(-bound, bound, (cout,)).astype(np.float32)), name="bias")

    def construct(self, x: Tensor) -> Tensor:
        return linear(x, self.weight.T) + self.bias


def _cells(x: Tensor, k: int) -> Tensor:
    """(B, H, W, C) -> (B, H/k, W/k, k*k*C): each k x k cell's values, row-major, channels last."""
    b, h, w, c = x.shape
    return x.reshape(b, h // k, k, w // k, k, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // k, w // k, k * k * c)


class HMLPStem(nn.Cell):
    """Hierarchical MLP patch stem (`stem="hmlp"`, not in the paper; issue 8): the p x p patch is
    embedded in three non-overlapping stages, (p/4)^2 pixels -> d, 2x2 -> d, 2x2 -> C, the first
    two followed by LayerNorm + GELU (Touvron et al. 2022, "Three things everyone should know about
    vision transformers"). Patches stay independent, as with the linear projection, but each one is
    read by a small MLP instead of one matrix. All matmuls (MindSpore's CPU Conv2d is slow).

    `construct` returns the (B, g, g, C) tokens and the first stage's (B, 4g, 4g, d) map (one
    vector per (p/4)^2-pixel cell), which the RES head's `res_refine` reads.
    """

    def __init__(self, patch: int, dim: int, stem_dim: int):
        super().__init__()
        self.k1 = patch // 4
        self.stage1 = _Dense(3 * self.k1 * self.k1, stem_dim)
        self.norm1 = nn.LayerNorm((stem_dim,), epsilon=1e-6)
        self.stage2 = _Dense(4 * stem_dim, stem_dim)
        self.norm2 = nn.LayerNorm((stem_dim,), epsilon=1e-6)
        self.stage3 = _Dense(4 * stem_dim, dim)
        self.act = nn.GELU(approximate=False)

    def construct(self, x: Tensor):
        x = _cells(x.transpose(0, 2, 3, 1), self.k1)  # (B, 4g, 4g, 3*k1*k1)
        f1 = self.act(self.norm1(self.stage1(x)))  # (B, 4g, 4g, d)
        f2 = self.act(self.norm2(self.stage2(_cells(f1, 2))))  # (B, 2g, 2g, d)
        return self.stage3(_cells(f2, 2)), f1  # (B, g, g, C), (B, 4g, 4g, d)


class ViTDet(nn.Cell):
    """ViTDet backbone: (B, 3, S, S) -> (B, C, S/p, S/p). See DESIGN §3.1.

    Args:
        cfg: `vglaw.config.ModelConfig` (img_size, patch_size, vit_*, window_size, global_blocks,
            pretrain_grid, pos_resize, pos_table, drop_path, law_type, law_rank, law_shared, law_blocks).
    """

    def __init__(self, cfg):
        super().__init__()
        self.grid = cfg.grid
        self.lean = False  # VGLAW.set_lean_kernels (vglaw.models.layers)
        self.hmlp = cfg.stem == "hmlp"
        if self.hmlp:
            self.patch_embed = HMLPStem(cfg.patch_size, cfg.vit_dim, cfg.stem_dim)
        else:
            self.patch_embed = PatchEmbed(cfg.patch_size, cfg.vit_dim)
        # Learnt at the pretrain grid (+cls). pos_table "token": resized here once on the host, as
        # the loader does; "pretrain": kept as (1, 1+S*S, C) and resized in construct (authors).
        rng = init_rng()
        pre = np.clip(rng.normal(0, 0.02, (1, 1 + cfg.pretrain_grid ** 2, cfg.vit_dim)), -0.04, 0.04)
        if cfg.pos_init == "sincos":  # row 0 is the (unused) cls entry
            from vglaw.models.heads import sincos_2d
            pre = np.concatenate([np.zeros((1, 1, cfg.vit_dim)), sincos_2d(cfg.pretrain_grid, cfg.vit_dim)[None]], 1)
        self.embed_norm_on = cfg.embed_norm
        if cfg.embed_norm:
            self.embed_norm = nn.LayerNorm((cfg.vit_dim,), epsilon=1e-6)
        self.pos_per_forward = cfg.pos_table == "pretrain"
        self.pos_rule = cfg.pos_resize  # read by the loaders that resize a pretrained table
        if self.pos_per_forward:
            self.pos_embed = Parameter(Tensor(pre.astype(np.float32)), name="pos_embed")  # (1, 1+S*S, C)
            mh = bicubic_resize_matrix(cfg.pretrain_grid, cfg.grid, cfg.pos_resize)  # (g, S)
            self.pos_matrix = Tensor(np.kron(mh, mh).astype(np.float32))  # (g*g, S*S), row-major grids
        else:
            self.pos_embed = Parameter(Tensor(resize_abs_pos_embed(pre.astype(np.float32), cfg.grid,
                                                                   cfg.pos_resize)), name="pos_embed")  # (1, g, g, C)
        adaptive = cfg.adaptive_blocks
        dpr = np.linspace(0.0, cfg.drop_path, cfg.vit_depth)
        blocks = []
        for i in range(cfg.vit_depth):
            law = i in adaptive
            blocks.append(Block(
                cfg.vit_dim, cfg.vit_heads, cfg.vit_mlp_ratio, float(dpr[i]),
                0 if i in cfg.global_blocks else cfg.window_size, cfg.grid, cfg.vit_ln_eps,
                law_type=cfg.law_type if law else "none", law_rank=cfg.law_rank,
                law_index=adaptive.index(i) if law else -1,
                p_index=0 if (cfg.law_shared or not law) else adaptive.index(i)))
        self.blocks = nn.CellList(blocks)

    def abs_pos(self) -> Tensor:
        """(1, g, g, C) absolute position embedding on the token grid."""
        if not self.pos_per_forward:
            return self.pos_embed
        c = self.pos_embed.shape[2]
        grid = ops.matmul(self.pos_matrix, self.pos_embed[0, 1:])  # (g*g, C), cls entry unused
        return grid.reshape(1, self.grid, self.grid, c)

    def construct(self, x: Tensor, gen=None, lp=None, lq=None) -> Tensor:
        """x (B,3,S,S) normalised canvas; gen (B, nA, out) generator output; lp/lq (nP,3C,K)/(nP,K,C)."""
        return self.features(x, gen, lp, lq)[0]

    def features(self, x: Tensor, gen=None, lp=None, lq=None):
        """-> ((B, C, g, g) map, the hmlp stem's (B, 4g, 4g, d) first stage or None)."""
        cells = None
        if self.hmlp:
            x, cells = self.patch_embed(x)
        else:
            x = self.patch_embed(x)
        if self.embed_norm_on:
            x = self.embed_norm(x)
        x = x + self.abs_pos()  # (B, g, g, C)
        for blk in self.blocks:
            x = blk(x, gen, lp, lq)
        return relayout(x, (0, 3, 1, 2), self.lean), cells  # (B, C, g, g)
