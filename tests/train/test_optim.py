"""LR groups and schedule: the optimiser really uses the scheduled LR of each group, drop included."""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from vglaw.train.optim import Schedule, build_optimizer, effective_lrs, no_weight_decay, optimizer_state
from vglaw.train.schedule import lr_factor


def test_lr_factor_warmup_step_cosine():
    kw = dict(warmup_steps=4, drop_steps=(10, 20), drop_rate=0.1)
    assert lr_factor(0, **kw) == pytest.approx(0.01)       # warmup starts at 1 % (seed's lr_init)
    assert lr_factor(2, **kw) == pytest.approx(0.01 + 0.99 * 0.5)
    assert [lr_factor(s, **kw) for s in (4, 9, 10, 19, 20)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    cos = dict(warmup_steps=0, scheduler="cosine", total_steps=10)
    assert [lr_factor(s, **cos) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-9)


class Linear3(nn.Cell):
    """loss = sum(w) over three groups: the gradient is 1 everywhere, so with weight decay 0 an
    update moves every weight by lr_t * m_t / sqrt(v_t) (MindSpore's AdamWeightDecay, like the
    seed's optimiser and BERT's AdamW, has no bias correction)."""

    def __init__(self):
        super().__init__()
        self.lang = ms.Parameter(ms.Tensor(np.zeros((2, 3), np.float32)), name="lang.w")
        self.visual = ms.Parameter(ms.Tensor(np.zeros((2, 3), np.float32)), name="visual.w")
        self.base = ms.Parameter(ms.Tensor(np.zeros((3,), np.float32)), name="base.b")

    def construct(self):
        return self.lang.sum() + self.visual.sum() + self.base.sum()

    def param_groups(self):
        return {"lang": [self.lang], "visual": [self.visual], "base": [self.base]}


def test_optimizer_applies_scheduled_lr_per_group_across_the_drop():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = Linear3()
    sched = Schedule(base_lrs={"lang": 1e-3, "visual": 2e-3, "base": 1e-2}, warmup_steps=2,
                     drop_steps=(4,), drop_rate=0.1)
    opt, group_of = build_optimizer(net, sched, weight_decay=0.0, eps=1e-12)
    grad_fn = ms.value_and_grad(net, None, opt.parameters)

    def step():
        _, grads = grad_fn()
        opt(grads)

    seen, m, v = [], 0.0, 0.0
    for s in range(6):
        m, v = 0.9 * m + 0.1, 0.999 * v + 0.001
        adam = m / math.sqrt(v)
        assert effective_lrs(opt, group_of) == pytest.approx({g: sched.lr(g, s) for g in sched.base_lrs},
                                                             rel=1e-5)
        before = {g: getattr(net, g).asnumpy().copy() for g in ("lang", "visual", "base")}
        step()
        moved = {g: float(np.mean(before[g] - getattr(net, g).asnumpy())) for g in before}
        assert moved == pytest.approx({g: sched.lr(g, s) * adam for g in moved}, rel=1e-3), s
        seen.append(moved["lang"] / adam)
    # warmup 1e-5 -> 1e-3, then the drop at update 4 really reaches the weights: 1e-3 -> 1e-4
    assert seen == pytest.approx([1e-5, 5.05e-4, 1e-3, 1e-3, 1e-4, 1e-4], rel=1e-3)
    assert int(opt.global_step.asnumpy().reshape(-1)[0]) == 6
    assert {"adam_m.lang.w", "adam_v.base.b", "global_step"} <= set(optimizer_state(opt))


def test_real_model_groups_and_decay():
    from vglaw import build_model
    ms.set_context(mode=ms.PYNATIVE_MODE)
    model = build_model("tiny", "svd", vit_dim=32, vit_depth=2, vit_heads=2, global_blocks=(1,),
                        text_layers=1, img_size=64, window_size=2)
    sched = Schedule(base_lrs={"lang": 1e-5, "visual": 2e-5, "base": 1e-4}, warmup_steps=0)
    opt, group_of = build_optimizer(model, sched, weight_decay=1e-4)
    names = {p.name for p in model.trainable_params()}
    assert set(group_of) == names
    assert {n for n, g in group_of.items() if g == "lang"} == {p.name for p in model.text_encoder.trainable_params()}
    assert {n for n, g in group_of.items() if g == "visual"} == {p.name for p in model.backbone.trainable_params()}
    assert any(g == "base" and n.startswith("law.") for n, g in group_of.items())
    assert effective_lrs(opt, group_of) == pytest.approx({"lang": 1e-5, "visual": 2e-5, "base": 1e-4})
    decay = dict(zip([p.name for p in opt._parameters], opt.decay_flags))
    assert all(decay[p.name] != no_weight_decay(p.name, p.shape) for p in model.trainable_params())
    # timm's rule (issue 11): vectors, and by name the position tables and the LAW generator's
    # batched LayerNorm/bias tensors; matrices such as qkv, P and the embeddings decay
    assert not any(decay[n] for n in ("backbone.pos_embed", "backbone.blocks.0.attn.rel_pos_h",
                                      "law.ln_gamma", "law.ln_beta", "law.fc1_bias", "law.fc2_bias"))
    assert all(decay[n] for n in ("backbone.blocks.0.attn.qkv.weight", "law.P", "law.fc1_weight"))
    # weight decay is decoupled and only on matrices
    wd = dict(zip([p.name for p in opt._parameters], [float(w) for w in opt.weight_decay]))
    assert wd[next(p.name for p in model.trainable_params() if len(p.shape) >= 2)] == pytest.approx(1e-4)


def test_group_adamw_updates_as_mindspores_adamw_bit_for_bit():
    """GroupAdamW (one fused-kernel map per group, each group's LR cell evaluated once) against
    nn.AdamWeightDecay on the same groups: 5 updates across the warmup and the drop, random
    gradients, two weight decays: every parameter, both moments and global_step equal. Both
    optimisers' `construct` is a compiled graph (`jit`) in PYNATIVE mode too, as in a GRAPH train step."""
    from vglaw import build_model
    from vglaw.train import optim
    ms.set_context(mode=ms.PYNATIVE_MODE)
    sched = Schedule(base_lrs={"lang": 1e-4, "visual": 1e-3, "base": 2e-3}, warmup_steps=2, drop_steps=(3,),
                     total_steps=6)
    out = {}
    for kind in ("mindspore", "group"):
        ms.set_seed(0)
        model = build_model("tiny", "svd", vit_dim=32, vit_depth=2, vit_heads=2, global_blocks=(1,),
                            text_layers=1, img_size=64, window_size=2)
        real = optim.GroupAdamW
        try:
            if kind == "mindspore":
                optim.GroupAdamW = nn.AdamWeightDecay
            opt, _ = build_optimizer(model, sched, weight_decay=0.05)
        finally:
            optim.GroupAdamW = real
        assert isinstance(opt, real) == (kind == "group")
        if kind == "group":
            assert len(opt.spans) == 6 and opt.spans[-1][1] == len(opt.parameters)  # 3 groups x decay/no decay
        rng = np.random.default_rng(1)
        for _ in range(5):
            opt(tuple(ms.Tensor(rng.standard_normal(p.shape).astype(np.float32)) for p in opt.parameters))
        state = [*opt.parameters, *opt.moments1, *opt.moments2, opt.global_step]
        out[kind] = {p.name: p.asnumpy().copy() for p in state}
    a, b = out["mindspore"], out["group"]
    assert a.keys() == b.keys() and int(a["global_step"].reshape(-1)[0]) == 5
    assert not [k for k in a if not np.array_equal(a[k], b[k])]
    assert any(not np.array_equal(a[k], 0) for k in a if k.startswith("adam_v."))
