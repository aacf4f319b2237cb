"""`VGLAW.set_lean_kernels` (issue 10): the CPU-lean spellings compute the same model.

Layout transposes as `mint.permute` and spelt-out broadcasts give the same bits (forward, loss and
every gradient, GRAPH); the erf-spelt GELU the same function to rounding (checked alone). Their memory effect is
measured in benchmarks (bench_op_memory.py, bench_memory.py --lean_kernels), not here.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Tensor

from vglaw.models import build_model
from vglaw.models.layers import Gelu
from vglaw.models.losses import GroundingLoss

from _model_helpers import SMALL, make_inputs, perturb_generator

# window (2 x 2 of the 4 x 4 token grid) and global blocks, rel-pos, LAW, both heads
CFG = dict(SMALL, drop_path=0.0, hidden_dropout=0.0, use_mask=True)


def _run(law_type: str, lean: bool):
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    model = build_model("tiny", law_type=law_type, **CFG)
    perturb_generator(model)
    if lean:
        switched = model.set_lean_kernels()
        assert switched == 2 * CFG["vit_depth"] + CFG["vit_depth"] + 2  # blocks, attns, MLP GELUs, stem, ViT
        for _, cell in model.backbone.cells_and_names():  # the erf GELU is compared alone, below
            if isinstance(cell, Gelu):
                cell.lean = False
    model.set_train(True)
    images, ids, mask = make_inputs(2, cfg=CFG)
    rng = np.random.default_rng(1)
    gt_box = Tensor(rng.uniform(0.3, 0.6, (2, 4)).astype(np.float32))
    gt_mask = Tensor((rng.random((2, CFG["img_size"], CFG["img_size"])) > 0.5).astype(np.float32))
    loss = GroundingLoss()
    params = model.trainable_params()

    def fwd(a, b, c):
        boxes, logits = model(a, b, c)
        return loss(boxes, logits, gt_box, gt_mask)[0], boxes, logits

    (value, boxes, logits), grads = ms.jit(ms.value_and_grad(fwd, None, params, has_aux=True))(images, ids, mask)
    return [value.asnumpy(), boxes.asnumpy(), logits.asnumpy()] + [g.asnumpy() for g in grads]


def test_lean_layout_and_broadcasts_are_bit_identical():
    # od3 spells out every broadcast of adaptive_qkv (the input scalings, the output scaling, the
    # bias that svd and la also add); two GRAPH compiles, ~11 s each. The erf GELU (the one part that
    # differs in the last bit) is compared on its own below.
    law_type = "od3"
    plain = _run(law_type, lean=False)
    assert sum(float(np.abs(a).sum()) > 0 for a in plain[3:]) > len(plain[3:]) // 2
    same = _run(law_type, lean=True)
    differ = [i for i, (a, b) in enumerate(zip(plain, same)) if not np.array_equal(a, b)]
    assert not differ, differ[:5]


def test_lean_gelu_is_the_exact_gelu():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    x = Tensor(np.linspace(-6, 6, 2001).astype(np.float32))
    g = Gelu()
    plain = g(x).asnumpy()
    g.lean = True
    lean = g(x).asnumpy()
    np.testing.assert_allclose(lean, plain, rtol=1e-6, atol=1e-7)
    from math import erf, sqrt
    want = np.array([v * 0.5 * (1.0 + erf(v / sqrt(2.0))) for v in x.asnumpy().astype(np.float64)])
    np.testing.assert_allclose(lean, want, rtol=1e-6, atol=1e-7)  # GELU itself, not just the kernel's twin


def test_linear_is_the_broadcast_matmul_bit_for_bit():
    """`linear` (one 2-D MatMul over flattened rows; issue 10: ~13 % of the tiny step) gives the bits
    of `ops.matmul`'s broadcast BatchMatMul, values and both gradients, for 2-, 3- and 4-D inputs."""
    from mindspore import ops
    from vglaw.models.layers import linear
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((24, 40)).astype(np.float32))
    for shape in ((7, 24), (3, 7, 24), (2, 5, 3, 24)):
        x = Tensor(rng.standard_normal(shape).astype(np.float32))
        up = Tensor(rng.standard_normal(shape[:-1] + (40,)).astype(np.float32))

        def plain(a, b):
            return (ops.matmul(a, b) * up).sum()

        def flat(a, b):
            return (linear(a, b) * up).sum()

        want = ms.jit(ms.value_and_grad(plain, (0, 1)))(x, w)
        got = ms.jit(ms.value_and_grad(flat, (0, 1)))(x, w)
        assert linear(x, w).shape == shape[:-1] + (40,)
        np.testing.assert_array_equal(linear(x, w).asnumpy(), ops.matmul(x, w).asnumpy())
        for a, b in zip((want[0], *want[1]), (got[0], *got[1])):
            np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
