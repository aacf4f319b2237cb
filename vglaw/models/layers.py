"""CPU-lean spellings of a few ops, switched on per model by `VGLAW.set_lean_kernels()` (issue 10).

MindSpore 2.10's CPU kernels keep buffers per graph node for some ops, and a GRAPH-mode model holds
all of them at once (`benchmarks/bench_op_memory.py`: 40 chained nodes on an (8, 784, 768) float
tensor, 18.4 MB; RSS growth per node, table in benchmarks/RESULTS_model.md):

- `Transpose`: +38.8 MB at compile. `mindspore.mint.permute`: +1.2 MB, the same values and
  gradients bit for bit.
- an implicitly broadcasting `Add` / `Mul` (a bias, a (B, 1, C) scaling, the decomposed rel-pos
  terms): +74 MB at the first run. `ops.broadcast_to` first, then a same-shape op: ~2 MB, the
  same values.
- `GeLU` (exact): +75 MB. `x * 0.5 * (1 + erf(x * 1/sqrt 2))` keeps ~1 MB; it differs from the
  kernel in the last bit (the kernel divides by sqrt 2, and a `Div` keeps as much as `GeLU`).

Off (the default), every helper here is the plain op, so a model computes what it always has.
On, the ViT's layout transposes, its broadcasts and its MLP's GELU use the lean spellings. It is
off by default because the tiny preset's train step measured 10-20 % slower with the permutes
(session 9, `benchmarks/profile_train_step.py`); it is for the paper preset's CPU memory.
"""

from __future__ import annotations

from mindspore import Tensor, mint, nn, ops

__all__ = ["Gelu", "LastAxisSoftmax", "expand", "linear", "linear_t", "relayout"]

_INV_SQRT2 = 0.7071067811865476


def linear(x: Tensor, w: Tensor) -> Tensor:
    """`x @ w` for x (..., n) and a 2-D w (n, m), as one 2-D MatMul over the flattened rows.

    The same sums as `ops.matmul(x, w)`, but MindSpore expands an N-D x 2-D `ops.matmul` into a
    BroadcastTo of `w` to (..., n, m) and a BatchMatMul, and its gradient into a batched product and a
    ReduceSum over the broadcast copies: on CPU the tiny train step spent ~10 % of its time there
    (issue 10; `benchmarks/profile_train_step.py`). `nn.Dense` flattens the same way.
    """
    if x.ndim == 2:
        return ops.matmul(x, w)
    return ops.matmul(x.reshape(-1, x.shape[-1]), w).reshape(x.shape[:-1] + (w.shape[-1],))


_MATMUL_NT = ops.MatMul(transpose_b=True)


def linear_t(x: Tensor, w: Tensor, lean: bool) -> Tensor:
    """`linear(x, w.T)` for a 2-D w (m, n); lean: one MatMul that reads w transposed, so no
    `Transpose` node copies the weight (two weight-sized CPU buffers per node, in the forward, the
    recomputed forward and the backward: ~0.65 GB in the paper preset's svd train step)."""
    if not lean:
        return linear(x, w.T)
    return _MATMUL_NT(x.reshape(-1, x.shape[-1]), w).reshape(x.shape[:-1] + (w.shape[0],))


def relayout(x: Tensor, axes: tuple, lean: bool) -> Tensor:
    """`x.transpose(*axes)`; lean: `mint.permute` (same bits, no per-node CPU buffer)."""
    if lean:
        return mint.permute(x, axes)
    return ops.transpose(x, axes)


def expand(x: Tensor, shape: tuple, lean: bool) -> Tensor:
    """`x` for an implicitly broadcasting Add/Mul; lean: broadcast to `shape` first (same values)."""
    if lean:
        return ops.broadcast_to(x, shape)
    return x


class LastAxisSoftmax(nn.Cell):
    """`ops.softmax(x, -1)` whose gradient is MindSpore's own, `y * (dy - sum(y * dy, -1))`, with the
    sum broadcast explicitly: the bprop's implicitly broadcasting `Sub` keeps four attention-map-sized
    CPU buffers per graph node (116 MB for a (12, 784, 784) map; `benchmarks/bench_op_memory.py`),
    ~0.7 GB per sample in the paper preset's train step. The same bits (tests/models/test_layers.py)."""

    def construct(self, x: Tensor) -> Tensor:
        return ops.softmax(x, -1)

    def bprop(self, x: Tensor, out: Tensor, dout: Tensor):
        s = (out * dout).sum(-1, keepdims=True)
        return (out * (dout - ops.broadcast_to(s, out.shape)),)


class Gelu(nn.Cell):
    """Exact GELU (`nn.GELU(approximate=False)`); with `lean`, spelt with erf and no Div."""

    def __init__(self):
        super().__init__()
        self.lean = False
        self.act = nn.GELU(approximate=False)

    def construct(self, x: Tensor) -> Tensor:
        if self.lean:
            return x * 0.5 * (1.0 + ops.erf(x * _INV_SQRT2))
        return self.act(x)
