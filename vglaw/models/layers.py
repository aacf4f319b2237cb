"""Spellings that keep MindSpore's CPU graphs small, with the same bits (issue 10).

MindSpore 2.10's CPU kernels keep buffers per graph node for some ops, and a GRAPH-mode model holds
all of them at once. 40 chained ops on a (8, 784, 768) float tensor (18.4 MB), GRAPH, RSS growth per
node (`/tmp` probe, session 9):

- `Transpose`: +38.7 MB (2 tensors) at compile. `mindspore.mint.permute` (`permute` here): +1.2 MB,
  with the same values and gradients bit for bit (tested on the whole model, GRAPH and PYNATIVE).
- an implicitly broadcasting `Add` / `Mul` (a bias, a (B, 1, C) scaling, the decomposed rel-pos
  terms), and `Div` even by a Python scalar: +74 MB (4 tensors) at the first run. Broadcasting
  first with `ops.broadcast_to`, then a same-shape op: +1.9 MB, the same values.
- `GeLU`: +75 MB; its exact erf spelling needs a `Div` (`x * 0.5 * (1 + erf(x / sqrt 2))`, the one
  with the kernel's bits) and keeps as much, so GELU is left as it is.
- unaffected (+0.9 MB): same-shape Add/Mul, Add/Mul by a Python scalar, Softmax, LayerNorm,
  BatchMatMul, a 2-D MatMul, Erf, Sigmoid, Reshape.

Model cells use `permute` for the layout transposes (window partition, head split and merge, rel-pos
reshuffles). A transpose that feeds a MatMul as an operand stays `.transpose` / `.T`: the graph
folds it into the MatMul, and rewriting it changes gradients in the last bit.
"""

from __future__ import annotations

from mindspore import Tensor, mint

__all__ = ["permute"]


def permute(x: Tensor, axes: tuple) -> Tensor:
    """`x.transpose(*axes)` without the CPU Transpose kernel's per-node buffer."""
    return mint.permute(x, axes)
