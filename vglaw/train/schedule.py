"""Learning-rate schedule: linear warmup, then step drops (or cosine), counted in optimiser updates.

The seed built a per-step LR list and never handed it to the optimiser; here each LR group gets a
`WarmupDropLR` cell as its `lr`, so `nn.AdamWeightDecay` evaluates it at its own `global_step`
(saved in the checkpoint, hence resumed) on every update. `lr_factor` is the same formula in
Python, used for logging and tests. Warmup starts at 1% of the LR, as the seed's
`generate_steps_lr(0.01 * lr, lr, ...)`.
"""

from __future__ import annotations

import math

from mindspore import nn, ops
import mindspore.common.dtype as mstype

__all__ = ["lr_factor", "WarmupDropLR", "WARMUP_START"]

WARMUP_START = 0.01  # warmup begins at this fraction of the LR


def lr_factor(step: int, *, warmup_steps: int, drop_steps=(), drop_rate: float = 0.1,
              scheduler: str = "step", total_steps: int = 1) -> float:
    """Multiplier of the base LR at optimiser update `step` (0-based)."""
    if step < warmup_steps:
        return WARMUP_START + (1.0 - WARMUP_START) * step / warmup_steps
    if scheduler == "cosine":
        span = max(total_steps - warmup_steps, 1)
        t = min(max(step - warmup_steps, 0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return drop_rate ** sum(step >= d for d in drop_steps)


class WarmupDropLR(nn.learning_rate_schedule.LearningRateSchedule):
    """`base_lr * lr_factor(global_step)` as a graph cell (see `lr_factor`)."""

    def __init__(self, base_lr: float, *, warmup_steps: int, drop_steps=(), drop_rate: float = 0.1,
                 scheduler: str = "step", total_steps: int = 1):
        super().__init__()
        self.base_lr = float(base_lr)
        self.warmup_steps = float(warmup_steps)
        self.drop_steps = tuple(float(d) for d in drop_steps)
        self.drop_rate = float(drop_rate)
        self.cosine = scheduler == "cosine"
        self.span = float(max(total_steps - warmup_steps, 1))

    def construct(self, global_step):
        s = ops.cast(global_step, mstype.float32).reshape(())
        if self.cosine:
            t = ops.clip_by_value((s - self.warmup_steps) / self.span, 0.0, 1.0)
            factor = 0.5 * (1.0 + ops.cos(t * math.pi))
        else:
            factor = ops.ones((), mstype.float32)
            for d in self.drop_steps:
                factor = ops.select(s >= d, factor * self.drop_rate, factor)
        if self.warmup_steps > 0:
            warm = WARMUP_START + (1.0 - WARMUP_START) * s / self.warmup_steps
            factor = ops.select(s < self.warmup_steps, warm, factor)
        return factor * self.base_lr
