"""The schedule the optimiser applies equals the reference `lr_factor` at every update of a short
run, for the step drops, the cosine and the `warmup_epochs` path. The schedule is built from a
resolved TrainConfig exactly as `run_training` builds it (`Schedule.from_config`), and the
expected LRs come from `lr_factor` with the step counts worked out by hand here."""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from vglaw.train import TrainConfig, resolve_config
from vglaw.train.optim import Schedule, build_optimizer, effective_lrs
from vglaw.train.schedule import lr_factor

BASE = {"lang": 1e-3, "visual": 2e-3, "base": 5e-3}
UPE = 4  # updates per epoch


class Sum3(nn.Cell):
    """loss = sum of three parameters (one per LR group): every gradient is 1, so with weight
    decay 0 an update moves each weight by lr_t * m_t / sqrt(v_t) (no bias correction)."""

    def __init__(self):
        super().__init__()
        self.lang = ms.Parameter(ms.Tensor(np.zeros((2, 2), np.float32)), name="lang.w")
        self.visual = ms.Parameter(ms.Tensor(np.zeros((2, 2), np.float32)), name="visual.w")
        self.base = ms.Parameter(ms.Tensor(np.zeros((2, 2), np.float32)), name="base.w")

    def construct(self):
        return self.lang.sum() + self.visual.sum() + self.base.sum()

    def param_groups(self):
        return {"lang": [self.lang], "visual": [self.visual], "base": [self.base]}


# (flags, hand-derived lr_factor arguments in updates, updates to run)
CASES = {
    # warmup 3 updates, drops at epochs 1 and 2 -> updates 4 and 8
    "step": (dict(lr_scheduler="step", warmup_steps=3, drop_epochs=(1, 2), drop_rate=0.5, max_epochs=3),
             dict(warmup_steps=3, drop_steps=(4, 8), drop_rate=0.5, scheduler="step", total_steps=12), 12),
    # the drop at epoch 1 = update 4 coincides with the end of a 4-update warmup: 0.1 at update 4
    "step_drop_at_warmup_end": (dict(lr_scheduler="step", warmup_steps=4, drop_epochs=(1,), max_epochs=2),
                                dict(warmup_steps=4, drop_steps=(4,), drop_rate=0.1, scheduler="step",
                                     total_steps=8), 6),
    # warmup 2 updates, cosine over the remaining 12 - 2 = 10 updates
    "cosine": (dict(lr_scheduler="cosine", warmup_steps=2, max_epochs=3),
               dict(warmup_steps=2, scheduler="cosine", total_steps=12), 12),
    # warmup_epochs 0.75 x 4 updates per epoch = 3 updates; drop at epoch 2 -> update 8
    "warmup_epochs": (dict(lr_scheduler="step", warmup_epochs=0.75, drop_epochs=(2,), max_epochs=3),
                      dict(warmup_steps=3, drop_steps=(8,), drop_rate=0.1, scheduler="step", total_steps=12), 10),
    # cosine with warmup in epochs and max_steps cutting the run: period = 9 - 2 updates
    "cosine_max_steps": (dict(lr_scheduler="cosine", warmup_epochs=0.5, max_epochs=5, max_steps=9),
                         dict(warmup_steps=2, scheduler="cosine", total_steps=9), 9),
}


@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_applies_the_reference_schedule(case):
    flags, ref, n = CASES[case]
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = resolve_config(TrainConfig(preset="tiny", lr_lang=BASE["lang"], lr_visual=BASE["visual"],
                                     lr_base=BASE["base"], **flags))
    net = Sum3()
    opt, group_of = build_optimizer(net, Schedule.from_config(cfg, UPE), weight_decay=0.0, eps=1e-12)
    grad_fn = ms.value_and_grad(net, None, opt.parameters)
    m = v = 0.0
    factors = []
    for s in range(n):
        want = {g: BASE[g] * lr_factor(s, **ref) for g in BASE}
        assert effective_lrs(opt, group_of) == pytest.approx(want, rel=1e-5), (case, s)
        m, v = 0.9 * m + 0.1, 0.999 * v + 0.001
        before = {g: getattr(net, g).asnumpy().copy() for g in BASE}
        opt(grad_fn()[1])
        moved = {g: float(np.mean(before[g] - getattr(net, g).asnumpy())) for g in BASE}
        assert moved == pytest.approx({g: want[g] * m / math.sqrt(v) for g in BASE}, rel=1e-3), (case, s)
        factors.append(lr_factor(s, **ref))
    # the reference itself, by hand: warmup from 1 %, then the drops or the half cosine
    if case == "step":
        assert factors[:5] == pytest.approx([0.01, 0.34, 0.67, 1.0, 0.5])
        assert factors[7:9] == pytest.approx([0.5, 0.25])
    if case == "step_drop_at_warmup_end":
        assert factors[3:6] == pytest.approx([0.01 + 0.99 * 3 / 4, 0.1, 0.1])
    if case == "cosine":
        assert factors[2] == pytest.approx(1.0) and factors[7] == pytest.approx(0.5)  # half-way: 2 + 10/2
    if case == "cosine_max_steps":
        assert factors[2] == pytest.approx(1.0)
        assert factors[8] == pytest.approx(0.5 * (1 + math.cos(math.pi * 6 / 7)))
