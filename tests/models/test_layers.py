"""`VGLAW.set_lean_kernels` (issue 10): the CPU-lean spellings compute the same model.

Layout transposes as `mint.permute` and spelt-out broadcasts give the same bits (forward, loss and
every gradient, GRAPH); the erf-spelt GELU the same function to rounding (checked alone). Their memory effect is
measured in benchmarks (bench_op_memory.py, bench_memory.py --lean_kernels), not here.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
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
        assert switched == 4 * CFG["vit_depth"] + 2  # blocks, attns, MLP GELUs, DropPaths, stem, ViT
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


@pytest.mark.parametrize("law_type", ["od3", "svd"])
def test_lean_layout_and_broadcasts_are_bit_identical(law_type):
    # od3 spells out every broadcast of adaptive_qkv (the input scalings, the output scaling, the
    # bias that svd and la also add); svd reads W0, P and Q transposed inside its MatMuls
    # (`linear_t`); two GRAPH compiles each, ~11 s apiece. The erf GELU and the lean DropPath (the
    # parts that differ in the last bit) are compared on their own below.
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


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE])
def test_lean_drop_path_drops_the_same_samples(mode):
    """Lean DropPath multiplies by a broadcast per-sample factor (0 or 1/keep) instead of dividing by
    keep and multiplying by the mask: under one seed the same samples are dropped, the kept ones
    are equal to rounding, and so is the gradient."""
    from mindspore import nn
    from vglaw.models.vit import DropPath

    class Probe(nn.Cell):
        def __init__(self, lean):
            super().__init__()
            self.dp = DropPath(0.5)
            self.dp.lean = lean
            self.w = Tensor(np.linspace(0.5, 1.5, 8).astype(np.float32))

        def construct(self, a):
            y = self.dp(a)
            return (y * self.w).sum(), y

    ms.set_context(mode=mode)
    x = Tensor(np.random.default_rng(0).standard_normal((16, 3, 3, 8)).astype(np.float32))
    outs = []
    for lean in (False, True):
        ms.set_seed(7)
        net = Probe(lean)
        net.set_train(True)
        fn = ms.value_and_grad(net, 0, None, has_aux=True)
        (_, y), gx = (ms.jit(fn) if mode == ms.GRAPH_MODE else fn)(x)
        outs.append((y.asnumpy(), gx.asnumpy()))
    (y0, g0), (y1, g1) = outs
    dropped = np.abs(y0).reshape(16, -1).max(1) == 0
    assert 0 < dropped.sum() < 16  # keep 0.5 over 16 samples: some dropped, some kept
    np.testing.assert_array_equal(np.abs(y1).reshape(16, -1).max(1) == 0, dropped)
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(y0[~dropped], 2.0 * x.asnumpy()[~dropped], rtol=1e-6)  # 1 / keep
    np.testing.assert_allclose(g1, g0, rtol=1e-6, atol=1e-7)


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
