"""Train step: gradient accumulation equals one big batch; GRAPH (mindspore.jit) equals PYNATIVE."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from _train_helpers import DETERMINISTIC, TINY_MODEL
from vglaw.train.optim import Schedule, build_optimizer, no_weight_decay
from vglaw.train.step import NonFiniteLossError, TrainStep


def _setup(accum: int, use_jit: bool, clip: float = 0.0, eps: float = 1e-8, lr: float = 1e-3):
    from vglaw import build_model
    from vglaw.models.losses import GroundingLoss
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    over = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_MODEL.items()}
    model = build_model("tiny", "svd", **over, **DETERMINISTIC)
    sched = Schedule(base_lrs={"lang": lr, "visual": lr, "base": lr}, warmup_steps=0)
    opt, _ = build_optimizer(model, sched, weight_decay=1e-4, eps=eps)
    step = TrainStep(model, GroundingLoss.from_config(model.config), opt, accum_steps=accum,
                     clip_norm=clip, use_jit=use_jit)
    model.set_train(True)
    return model, step


def _batch(cfg, b=8, seed=0):
    rng = np.random.default_rng(seed)
    s, l = cfg.img_size, cfg.max_len
    ids = rng.integers(1000, 3000, (b, l)).astype(np.int32)
    attn = (np.arange(l)[None] < rng.integers(4, l, (b, 1))).astype(np.int32)
    box = np.concatenate([rng.uniform(0.3, 0.7, (b, 2)), rng.uniform(0.1, 0.4, (b, 2))], 1)
    return [rng.normal(size=(b, 3, s, s)).astype(np.float32), ids, attn, box.astype(np.float32),
            (rng.uniform(size=(b, s, s)) > 0.7).astype(np.float32)]


def _params(model):
    return {n: p.asnumpy().copy() for n, p in model.parameters_and_names()}


def test_accumulation_equals_one_big_batch():
    # Op by op (PYNATIVE): the accumulate/apply functions are the ones mindspore.jit compiles, and
    # GRAPH == PYNATIVE is test_graph_equals_pynative's; compiling the three graphs here cost ~25 s
    # of the suite (issue 14). The GRAPH micro/apply pair trains every accumulating CLI run
    # (test_run.py: batch 4 x 2, bit-exact resume).
    use_jit = False
    # eps=1 and no clipping make the AdamW step ~linear in the gradient, so an accumulated sum
    # instead of a mean (2x) or a dropped micro-batch would show; Adam's sign-like first step would not.
    big_model, big = _setup(1, use_jit, eps=1.0, lr=1.0)
    acc_model, acc = _setup(2, use_jit, eps=1.0, lr=1.0)
    p0 = _params(big_model)
    assert all(np.array_equal(p0[n], v) for n, v in _params(acc_model).items())
    batch = _batch(big_model.config)
    big_parts, stepped = big.step([ms.Tensor(a) for a in batch])
    assert stepped
    first, s1 = acc.step([ms.Tensor(a[:4]) for a in batch])
    second, s2 = acc.step([ms.Tensor(a[4:]) for a in batch])
    assert (s1, s2) == (False, True)
    assert (first["loss"] + second["loss"]) / 2 == pytest.approx(big_parts["loss"], rel=1e-5)
    pb, pa = _params(big_model), _params(acc_model)
    moved = max(float(np.abs(pb[n] - p0[n]).max()) for n in pb)
    assert moved > 1e-4  # the update is not trivially zero
    for n in pb:
        np.testing.assert_allclose(pa[n], pb[n], rtol=1e-4, atol=2e-6, err_msg=n)
    assert all(float(np.abs(a.asnumpy()).max()) == 0.0 for a in acc.accum)  # buffers zeroed


def test_graph_equals_pynative():
    g_model, g = _setup(1, True, clip=0.15)
    p_model, p = _setup(1, False, clip=0.15)
    for seed in (0, 1):
        batch = _batch(g_model.config, seed=seed)
        gl, _ = g.step([ms.Tensor(a) for a in batch])
        pl, _ = p.step([ms.Tensor(a) for a in batch])
        for k in gl:
            assert gl[k] == pytest.approx(pl[k], abs=1e-5, rel=1e-5), (seed, k)
    pg, pp = _params(g_model), _params(p_model)
    for n in pg:
        np.testing.assert_allclose(pg[n], pp[n], atol=1e-5, err_msg=n)


def test_non_finite_loss_raises_before_the_update():
    model, acc = _setup(2, False)
    batch = _batch(model.config, b=4)
    batch[3][0, 0] = np.nan  # a NaN target
    p0 = _params(model)
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        acc.step([ms.Tensor(a) for a in batch])
    assert acc.micro_done == 0
    assert all(np.array_equal(v, _params(model)[n]) for n, v in p0.items())


def test_clip_norm_scales_the_gradient_to_the_clip():
    """The update of a step with clip_norm c is AdamW's on the gradient scaled to global norm c
    (eps=1 makes the step depend on the gradient's size; AdamWeightDecay: no bias correction,
    decoupled decay on matrices only)."""
    model, _ = _setup(1, False)
    batch = [ms.Tensor(a) for a in _batch(model.config)]
    weights = [p for p in model.trainable_params()]

    def loss(*b):
        boxes, logits = model(*b[:3])
        return _loss_fn(model)(boxes, logits, b[3], b[4])[0]

    model.set_train(True)
    grads = [g.asnumpy().astype(np.float64) for g in ms.grad(loss, None, weights)(*batch)]
    norm = float(np.sqrt(sum((g ** 2).sum() for g in grads)))
    clip = norm / 4
    model, step = _setup(1, False, clip=clip, eps=1.0, lr=1.0)  # same seed: the same weights
    p0 = _params(model)
    step.step(batch)
    p1 = _params(model)
    for p, g in zip(weights, grads):
        gc = g * clip / norm
        want = p0[p.name] - (0.1 * gc / (np.sqrt(0.001 * gc ** 2) + 1.0)
                             + (0.0 if no_weight_decay(p.name, p.shape) else 1e-4 * p0[p.name]))
        np.testing.assert_allclose(p1[p.name], want, rtol=1e-3, atol=1e-7, err_msg=p.name)


def _loss_fn(model):
    from vglaw.models.losses import GroundingLoss
    return GroundingLoss.from_config(model.config)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE])
def test_lean_clip_is_mindspores_clip(mode):
    """`clip_global_norm(..., lean=True)` (one explicitly broadcast factor per gradient; the
    `--lean_kernels` step) equals `ops.clip_by_global_norm` to rounding, above the clip (scaled to
    global norm c) and within it (the gradients unchanged, exactly)."""
    from vglaw.train.step import clip_global_norm
    ms.set_context(mode=mode)
    rng = np.random.default_rng(3)
    grads = tuple(ms.Tensor(rng.standard_normal(s).astype(np.float32)) for s in ((7, 5), (5,), (3, 4, 2)))
    norm = float(np.sqrt(sum((g.asnumpy().astype(np.float64) ** 2).sum() for g in grads)))

    def clipped(c, lean):
        fn = ms.jit(clip_global_norm, static_args=(1, 2)) if mode == ms.GRAPH_MODE else clip_global_norm
        return [g.asnumpy() for g in fn(grads, c, lean)]

    for c in (norm / 3, norm * 2):
        want = [g.asnumpy().astype(np.float64) * min(1.0, c / norm) for g in grads]
        plain, lean = clipped(c, False), clipped(c, True)
        for w, p, q in zip(want, plain, lean):
            np.testing.assert_allclose(q, p, rtol=2e-6, atol=1e-7)
            np.testing.assert_allclose(q, w, rtol=2e-6, atol=1e-7)
        if c > norm:
            assert all(np.array_equal(q, g.asnumpy()) for q, g in zip(lean, grads))
    scaled = clipped(norm / 3, True)
    assert abs(np.sqrt(sum((q.astype(np.float64) ** 2).sum() for q in scaled)) - norm / 3) < 1e-5 * norm
