"""Language-adaptive weights (LAW, DESIGN §3.3): the generator and the adaptive qkv.

For block i, with W0_i / b0_i the block's ordinary qkv weight and bias (kept in the backbone):

    svd  qkv(x) = W0 x + b0 + P · Phi_i · Q · x        Phi_i (K x K) per sample, P/Q shared
    la   qkv(x) = W0 (s ⊙ x) + b0                      s (C) per sample
    od1  qkv(x) = s_out ⊙ (W0 (s_in ⊙ x)) + b0          s_in (C) shared by q, k, v; s_out (3C)
    od2  as od1 with separate s_in for [q,k] and v      (2 x C)
    od3  as od1 with separate s_in for q, k and v       (3 x C)

The per-sample weight is never materialised: svd computes Q·x, a batched K x K matmul, then P.
Generators start so that the backbone equals the static one: the last Linear is zero (svd) or
weight 0 / bias 1 (scalings of 1), so at initialisation every law_type == "none".
"""

from __future__ import annotations

import math

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from vglaw.models.init import init_rng
from vglaw.models.layers import expand, linear_t

__all__ = ["LAW", "adaptive_qkv", "generator_out_dim"]


def generator_out_dim(law_type: str, dim: int, rank: int) -> int:
    """Width of one block's generated vector."""
    return {"svd": rank * rank, "la": dim, "od1": dim + 3 * dim, "od2": 2 * dim + 3 * dim,
            "od3": 3 * dim + 3 * dim}[law_type]


def adaptive_qkv(law_type: str, x: Tensor, w0: Tensor, b0: Tensor, g: Tensor, p: Tensor,
                 q: Tensor, rank: int, lean: bool = False) -> Tensor:
    """Language-adaptive qkv for the tokens of each image.

    Args:
        x: (B, N, C) tokens of one image (all its windows together).
        w0, b0: (3C, C), (3C,) the block's static qkv.
        g: (B, out) this block's generator output (`generator_out_dim`).
        p, q: (3C, K), (K, C) low-rank factors (svd only).
        lean: broadcasts spelt out (`vglaw.models.layers.expand`; the same values).
    Returns: (B, N, 3C).
    """
    b, n, c = x.shape
    out = (b, n, 3 * c)
    if law_type == "svd":
        base = linear_t(x, w0, lean) + expand(b0, out, lean)  # (B, N, 3C)
        phi = g.reshape(b, rank, rank)  # (B, K, K)
        t = linear_t(x, q, lean)  # (B, N, K)
        t = ops.bmm(t, phi.transpose(0, 2, 1))  # (B, N, K): Phi·(Q x) per token
        return base + linear_t(t, p, lean)
    if law_type == "la":
        return linear_t(x * expand(g.expand_dims(1), x.shape, lean), w0, lean) + expand(b0, out, lean)
    s_out = expand(g[:, -3 * c:].expand_dims(1), out, lean)  # (B, 1, 3C); lean: (B, N, 3C)
    if law_type == "od1":
        y = linear_t(x * expand(g[:, :c].expand_dims(1), x.shape, lean), w0, lean)
    elif law_type == "od2":
        y_qk = linear_t(x * expand(g[:, :c].expand_dims(1), x.shape, lean), w0[: 2 * c], lean)
        y_v = linear_t(x * expand(g[:, c:2 * c].expand_dims(1), x.shape, lean), w0[2 * c:], lean)
        y = ops.concat((y_qk, y_v), -1)
    else:  # od3
        y_q = linear_t(x * expand(g[:, :c].expand_dims(1), x.shape, lean), w0[:c], lean)
        y_k = linear_t(x * expand(g[:, c:2 * c].expand_dims(1), x.shape, lean), w0[c:2 * c], lean)
        y_v = linear_t(x * expand(g[:, 2 * c:3 * c].expand_dims(1), x.shape, lean), w0[2 * c:], lean)
        y = ops.concat((y_q, y_k, y_v), -1)
    return y * s_out + expand(b0, out, lean)


def _kaiming_uniform(shape, fan_in: int) -> np.ndarray:
    # torch nn.Linear default (kaiming_uniform with a = sqrt 5): bound = 1 / sqrt(fan_in).
    bound = 1.0 / math.sqrt(fan_in)
    return init_rng().uniform(-bound, bound, shape).astype(np.float32)


class LAW(nn.Cell):
    """LAW generator: token features -> per-block generated weights, plus the P/Q factors.

    Linguistic feature aggregation: a learnt layer embedding E (nA x D) queries the token
    features T with parameter-free multi-head scaled dot-product attention (padding masked),
    then per block Linear(D->hidden) -> LayerNorm -> GELU -> Linear(hidden->out).
    The per-block MLPs are stored batched over blocks (one matmul for all blocks).

    Args:
        cfg: ModelConfig (law_type != "none", law_rank, law_shared, law_blocks, law_hidden,
            law_ln_eps, text_hidden, text_heads, vit_dim).
    """

    def __init__(self, cfg):
        super().__init__()
        if cfg.law_type == "none":
            raise ValueError("LAW generator requested for law_type='none'")
        self.law_type = cfg.law_type
        self.rank = cfg.law_rank
        self.n_blocks = len(cfg.adaptive_blocks)
        d, hid, n = cfg.text_hidden, cfg.law_hidden, self.n_blocks
        self.heads = cfg.text_heads
        self.head_dim = d // cfg.text_heads
        self.out_dim = generator_out_dim(cfg.law_type, cfg.vit_dim, cfg.law_rank)
        self.ln_eps = float(cfg.law_ln_eps)
        self.layer_embed = Parameter(initializer(Normal(0.02), (n, d), ms.float32), name="layer_embed")
        self.fc1_weight = Parameter(Tensor(_kaiming_uniform((n, d, hid), d)), name="fc1_weight")
        self.fc1_bias = Parameter(Tensor(_kaiming_uniform((n, 1, hid), d)), name="fc1_bias")
        self.ln_gamma = Parameter(Tensor(np.ones((n, 1, hid), np.float32)), name="ln_gamma")
        self.ln_beta = Parameter(Tensor(np.zeros((n, 1, hid), np.float32)), name="ln_beta")
        self.fc2_weight = Parameter(Tensor(np.zeros((n, hid, self.out_dim), np.float32)), name="fc2_weight")
        b2 = 0.0 if cfg.law_type == "svd" else 1.0
        self.fc2_bias = Parameter(Tensor(np.full((n, 1, self.out_dim), b2, np.float32)), name="fc2_bias")
        self.gelu = nn.GELU(approximate=False)
        if cfg.law_type == "svd":
            n_p = 1 if cfg.law_shared else n
            c, k = cfg.vit_dim, cfg.law_rank
            self.P = Parameter(Tensor(_kaiming_uniform((n_p, 3 * c, k), k)), name="P")  # (nP, 3C, K)
            self.Q = Parameter(Tensor(_kaiming_uniform((n_p, k, c), c)), name="Q")  # (nP, K, C)
        else:
            # Unused placeholders keep the backbone call signature uniform (not trainable).
            self.P = Parameter(Tensor(np.zeros((1, 1, 1), np.float32)), name="P", requires_grad=False)
            self.Q = Parameter(Tensor(np.zeros((1, 1, 1), np.float32)), name="Q", requires_grad=False)

    def aggregate(self, feats: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, L, D) tokens, (B, L) 1/0 mask -> (B, nA, D) per-block language features."""
        b, l, d = feats.shape
        h, hd = self.heads, self.head_dim
        q = self.layer_embed.reshape(1, self.n_blocks, h, hd).transpose(0, 2, 1, 3)  # (1, h, nA, hd)
        k = feats.reshape(b, l, h, hd).transpose(0, 2, 1, 3)  # (B, h, L, hd)
        scores = ops.matmul(q, k.transpose(0, 1, 3, 2)) * (hd ** -0.5)  # (B, h, nA, L)
        pad = (1.0 - attention_mask.astype(feats.dtype)).reshape(b, 1, 1, l)
        attn = ops.softmax(scores - pad * 1e4, axis=-1)
        out = ops.matmul(attn, k)  # (B, h, nA, hd)
        return out.transpose(0, 2, 1, 3).reshape(b, self.n_blocks, d)

    def construct(self, feats: Tensor, attention_mask: Tensor) -> Tensor:
        """Returns (B, nA, out): svd Phi flattened (K*K); la/od* scalings."""
        g = self.aggregate(feats, attention_mask).transpose(1, 0, 2)  # (nA, B, D)
        hdn = ops.bmm(g, self.fc1_weight) + self.fc1_bias  # (nA, B, hid)
        mean = hdn.mean(-1, keep_dims=True)
        var = ((hdn - mean) ** 2).mean(-1, keep_dims=True)
        hdn = (hdn - mean) / ops.sqrt(var + self.ln_eps) * self.ln_gamma + self.ln_beta
        out = ops.bmm(self.gelu(hdn), self.fc2_weight) + self.fc2_bias  # (nA, B, out)
        return out.transpose(1, 0, 2)
