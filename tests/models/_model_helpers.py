"""Shared helpers of the model tests: a very small config, inputs, generator perturbation."""

from __future__ import annotations

import numpy as np
from mindspore import Tensor

# A model small enough for PYNATIVE in a second: 4x4 token grid, 2x2 windows, one global block.
SMALL = dict(img_size=64, patch_size=16, vit_dim=32, vit_depth=2, vit_heads=2, window_size=2,
             global_blocks=(1,), pretrain_grid=4, text_hidden=32, text_layers=1, text_heads=2,
             text_ffn=64, vocab_size=100, max_len=8, law_rank=4, res_hidden=8, rec_hidden=16, rec_dim=8,
             # ViTDet's linear patch stem and token pooling, as the detectron2 / authors' weights need;
             # the tiny preset's hmlp stem, cell refinement, cell pooling and box select: test_stem_refine.py (HMLP)
             stem="patch", res_refine=0, rec_cell_pool=False, res_select=0)


def make_inputs(b=2, seed=0, cfg=None):
    cfg = cfg or SMALL
    rng = np.random.default_rng(seed)
    s, n = cfg["img_size"], cfg["max_len"]
    ids = rng.integers(5, cfg["vocab_size"], (b, n)).astype(np.int32)
    mask = np.ones((b, n), np.int32)
    mask[0, n // 2:] = 0
    ids[0, n // 2:] = 0
    return (Tensor(rng.standard_normal((b, 3, s, s)).astype(np.float32)), Tensor(ids), Tensor(mask))


def perturb_generator(model, scale=0.5, seed=0):
    """Random last generator layer (the zero/identity init made LAW a no-op)."""
    rng = np.random.default_rng(seed)
    for p in (model.law.fc2_weight, model.law.fc2_bias):
        p.set_data(Tensor((p.asnumpy() + rng.standard_normal(p.shape) * scale).astype(np.float32)))
