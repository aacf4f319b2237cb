"""What the language-adaptive weights do: the generated weights of expressions, compared.

For `svd` (DESIGN §3.3) block i's qkv weight becomes W0_i + P·Phi_i(expr)·Q; the size of that
update relative to W0_i, and how similar two expressions' Phi are, show whether (and where) the
backbone actually adapts to the expression. For `la`/`od*` the generated weights are channel
scalings (1 = no change).
"""

from __future__ import annotations

import numpy as np

__all__ = ["generated_weights", "relative_update", "pairwise_distance", "pairwise_cosine"]


def generated_weights(model, tokenizer, phrases: list[str]) -> np.ndarray:
    """(N, n_adaptive_blocks, ...) generated weights of `phrases` (svd: K x K Phi; else scalings)."""
    from mindspore import Tensor

    from vglaw.data.tokenizer import tokenize

    if not phrases:
        raise ValueError("phrases is empty: give at least one expression")
    ids, mask = tokenize(tokenizer, list(phrases), model.config.max_len)
    model.set_train(False)
    return model.generated_weights(Tensor(ids), Tensor(mask)).asnumpy()


def relative_update(model, gen: np.ndarray) -> np.ndarray:
    """(N, n_adaptive) size of the expression's change of each adaptive block's qkv weight.

    svd: ||P Phi Q||_F / ||W0||_F. la/od*: mean |scaling - 1| (a relative change of the
    channels it scales).
    """
    cfg = model.config
    if cfg.law_type != "svd":
        return np.abs(gen - 1.0).mean(axis=-1)
    p_all, q_all = model.law.P.asnumpy(), model.law.Q.asnumpy()  # (nP, 3C, K), (nP, K, C)
    blocks = cfg.adaptive_blocks
    out = np.zeros(gen.shape[:2], np.float64)
    for j, block in enumerate(blocks):
        p, q = p_all[0 if p_all.shape[0] == 1 else j], q_all[0 if q_all.shape[0] == 1 else j]
        w0 = model.backbone.blocks[block].attn.qkv.weight.asnumpy()  # (3C, C)
        for n in range(gen.shape[0]):
            out[n, j] = np.linalg.norm(p @ gen[n, j] @ q) / max(np.linalg.norm(w0), 1e-12)
    return out


def pairwise_distance(gen: np.ndarray, law_type: str = "svd") -> np.ndarray:
    """(n_adaptive, N, N) relative distance between the expressions' generated weights, per block:
    ||g_i - g_j|| / mean_k ||g_k|| (scalings la/od* by their change from 1). 0 = identical.

    Unlike the cosine, which sits at ~1.0 whenever the expression-specific part is small next to
    the part all expressions share, this shows how far apart two expressions' weights are."""
    flat = gen.reshape(gen.shape[0], gen.shape[1], -1).transpose(1, 0, 2).astype(np.float64)  # (nA, N, D)
    if law_type != "svd":
        flat = flat - 1.0
    dist = np.linalg.norm(flat[:, :, None, :] - flat[:, None, :, :], axis=-1)
    scale = np.linalg.norm(flat, axis=-1).mean(axis=1)[:, None, None]
    return dist / np.maximum(scale, 1e-12)


def pairwise_cosine(gen: np.ndarray, law_type: str = "svd") -> np.ndarray:
    """(n_adaptive, N, N) cosine similarity of the expressions' generated weights, per block.

    Scalings (la/od*) are compared by their change from 1, Phi (svd) as it is.
    """
    flat = gen.reshape(gen.shape[0], gen.shape[1], -1).transpose(1, 0, 2)  # (nA, N, D)
    if law_type != "svd":
        flat = flat - 1.0
    norm = np.linalg.norm(flat, axis=-1, keepdims=True)
    unit = flat / np.maximum(norm, 1e-12)
    return unit @ unit.transpose(0, 2, 1)
