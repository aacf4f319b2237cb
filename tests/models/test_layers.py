"""vglaw.models.layers: `permute` gives the values and gradients of `transpose` bit for bit (GRAPH and
PYNATIVE), and every model cell uses it for layout transposes, not `.transpose`."""

import re
from pathlib import Path

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

from vglaw.models.layers import permute


class _Heads(nn.Cell):
    """The ViT's head split then merge, either spelling, followed by a matmul (as in the model)."""

    def __init__(self, use_permute: bool):
        super().__init__()
        self.use_permute = use_permute

    def construct(self, x, w):
        y = x.reshape(2, 7, 3, 4, 5)
        if self.use_permute:
            y = permute(y, (2, 0, 3, 1, 4)).reshape(3, 8, 7, 5)
        else:
            y = y.transpose(2, 0, 3, 1, 4).reshape(3, 8, 7, 5)
        z = ops.bmm(y[0] * 0.5, y[1].transpose(0, 2, 1))
        return ops.matmul(ops.softmax(z, -1), w)


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE])
def test_permute_equals_transpose_with_gradients(mode):
    prev = ms.get_context("mode")
    ms.set_context(mode=mode)
    try:
        rng = np.random.default_rng(0)
        x = Tensor(rng.standard_normal((2, 7, 60)).astype(np.float32))
        w = Tensor(rng.standard_normal((7, 6)).astype(np.float32))
        outs = []
        for use_permute in (False, True):
            net = _Heads(use_permute)
            out = net(x, w).asnumpy()
            gx, gw = ms.grad(net, grad_position=(0, 1))(x, w)
            outs.append((out, gx.asnumpy(), gw.asnumpy()))
        for a, b in zip(*outs):
            assert np.array_equal(a, b)
    finally:
        ms.set_context(mode=prev)


def test_model_cells_use_permute_for_layout_transposes():
    # A layout `.transpose(` in vit.py / law.py keeps a buffer per graph node on CPU (layers.py);
    # only transposes that are a matmul operand (folded into the MatMul) may stay.
    root = Path(__file__).resolve().parents[2] / "vglaw" / "models"
    for name in ("vit.py", "law.py"):
        for line in (root / name).read_text().splitlines():
            code = line.split("#")[0]
            for m in re.finditer(r"\.transpose\(", code):
                assert re.search(r"ops\.(bmm|matmul)\(", code), f"{name}: layout transpose left: {line.strip()}"
