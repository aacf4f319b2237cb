"""The train step in mindcv's functional style (`train_with_func.py`), with gradient accumulation.

    (loss, parts), grads = value_and_grad(forward, None, weights, has_aux=True)(batch)
    grads = reducer(grads)                 # data parallel: mean over ranks (identity alone)
    grads = clip_by_global_norm(grads)     # DESIGN §5: 0.15
    loss = ops.depend(loss, optimizer(grads))

With `accum_steps = k > 1` the update is split in two compiled functions: `micro` adds one
micro-batch's gradient into `accum.*` buffers, `apply` divides by k (so the update equals the
one of a k-times bigger batch, every loss being a per-sample mean), reduces, clips, steps the
optimiser and zeroes the buffers. Python calls `apply` after every k-th `micro`, so no control
flow enters the graph. Under `mode_name=GRAPH` both are `mindspore.jit` functions; PYNATIVE runs
the same functions op by op (debugging, and the invariance test).
"""

from __future__ import annotations

import math

import mindspore as ms
from mindspore import nn, ops

__all__ = ["TrainStep", "NonFiniteLossError", "LOSS_NAMES", "clip_global_norm"]

LOSS_NAMES = ("loss", "l1", "giou", "focal", "dice")


class NonFiniteLossError(FloatingPointError):
    """A loss came out NaN/inf; the run stops before checkpointing the damaged state."""


def clip_global_norm(grads, clip: float, lean: bool = False):
    """`ops.clip_by_global_norm(grads, clip)`; lean: the same clip spelt for MindSpore's CPU kernels.

    MindSpore scales every gradient by `g * clip / norm` with (1,)-shaped tensors: an implicitly
    broadcasting Mul and a Div per parameter, kernels that keep parameter-sized CPU buffers per
    graph node (+0.8 GB in the paper preset's train step, `benchmarks/bench_memory.py`). Lean:
    one factor `clip / max(norm, clip)`, broadcast explicitly, one same-shape Mul per gradient
    (the same function to rounding; exactly `g` when the norm is within the clip).
    """
    if not lean:
        return ops.clip_by_global_norm(grads, clip)
    norm = ops.sqrt(ops.stack([ops.square(g).sum() for g in grads]).sum())
    scale = clip / ops.maximum(norm, clip)
    return tuple(g * ops.broadcast_to(scale, g.shape) for g in grads)


class TrainStep:
    """Holds the compiled step functions of one model/loss/optimiser.

    Args:
        model: VGLAW cell, `model(images, input_ids, attention_mask) -> (boxes, mask_logits)`.
        loss_fn: GroundingLoss, `loss_fn(boxes, logits, gt_boxes, gt_masks) -> (total, l1, giou, focal, dice)`.
        optimizer: the `GroupAdamW` (an `nn.AdamWeightDecay`) of `build_optimizer`.
        accum_steps: micro-batches per update (batch_sum / (batch_size * world)).
        clip_norm: global-norm clip of the averaged, reduced gradient; <= 0 disables it.
        world: data-parallel ranks (> 1 adds a `nn.DistributedGradReducer`).
        use_jit: compile with `mindspore.jit` (GRAPH) or run op by op (PYNATIVE).
        lean_clip: the clip's CPU-lean spelling (`clip_global_norm`; with `--lean_kernels`).
    Call `step(batch)` with the 5 training tensors (image, input_ids, attention_mask, box, mask):
    it returns {loss, l1, giou, focal, dice} floats and whether the optimiser stepped, and raises
    NonFiniteLossError on a NaN/inf loss (with accumulation, before the update is applied).
    """

    def __init__(self, model: nn.Cell, loss_fn: nn.Cell, optimizer: nn.Optimizer, *,
                 accum_steps: int = 1, clip_norm: float = 0.15, world: int = 1, use_jit: bool = True,
                 lean_clip: bool = False):
        if accum_steps < 1:
            raise ValueError(f"accum_steps must be >= 1, got {accum_steps}")
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.accum_steps = int(accum_steps)
        self.micro_done = 0  # micro-batches accumulated since the last update
        weights = optimizer.parameters
        reducer = nn.DistributedGradReducer(weights, mean=True, degree=world) if world > 1 else None
        clip = float(clip_norm)
        lean_clip = bool(lean_clip)

        def forward(images, input_ids, attention_mask, gt_boxes, gt_masks):
            boxes, logits = model(images, input_ids, attention_mask)  # (B,4) canvas-norm cxcywh, (B,1,S,S)
            return loss_fn(boxes, logits, gt_boxes, gt_masks)          # total, l1, giou, focal, dice

        grad_fn = ms.value_and_grad(forward, None, weights, has_aux=True)

        def finish(grads):
            if reducer is not None:
                grads = reducer(grads)
            if clip > 0:
                grads = clip_global_norm(grads, clip, lean_clip)
            return optimizer(grads)

        def fused(images, input_ids, attention_mask, gt_boxes, gt_masks):
            (loss, l1, giou, focal, dice), grads = grad_fn(images, input_ids, attention_mask, gt_boxes, gt_masks)
            loss = ops.depend(loss, finish(grads))
            return loss, l1, giou, focal, dice

        fns = {"fused": fused}
        if self.accum_steps > 1:
            accum = weights.clone(prefix="accum", init="zeros")
            hyper_map = ops.HyperMap()
            scale = 1.0 / self.accum_steps
            self.accum = accum

            def micro(images, input_ids, attention_mask, gt_boxes, gt_masks):
                (loss, l1, giou, focal, dice), grads = grad_fn(images, input_ids, attention_mask, gt_boxes, gt_masks)
                loss = ops.depend(loss, hyper_map(ops.assign_add, accum, grads))
                return loss, l1, giou, focal, dice

            def scale_grad(g):
                return g * scale

            def zero(a):
                return ops.assign(a, ops.zeros_like(a))

            def apply():
                grads = hyper_map(scale_grad, accum)
                done = finish(grads)
                return ops.depend(done, hyper_map(zero, accum))

            fns.update(micro=micro, apply=apply)
        self._fns = {k: (ms.jit(f) if use_jit else f) for k, f in fns.items()}

    def step(self, batch) -> tuple[dict, bool]:
        """One micro-batch; returns ({loss, l1, giou, focal, dice}: float, stepped)."""
        name = "fused" if self.accum_steps == 1 else "micro"
        parts = {k: float(v.asnumpy()) for k, v in zip(LOSS_NAMES, self._fns[name](*batch))}
        if not all(math.isfinite(v) for v in parts.values()):
            self.discard_partial()
            raise NonFiniteLossError(f"non-finite training loss {parts}")
        if self.accum_steps == 1:
            return parts, True
        self.micro_done += 1
        if self.micro_done == self.accum_steps:
            self._fns["apply"]()
            self.micro_done = 0
            return parts, True
        return parts, False

    def discard_partial(self) -> None:
        """Drop an incomplete accumulation (epoch end, non-finite loss)."""
        if self.accum_steps > 1 and self.micro_done:
            for a in self.accum:
                a.set_data(ops.zeros_like(a))
        self.micro_done = 0
