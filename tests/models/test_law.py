"""LAW: adaptive qkv equals the naive per-sample weight; zero-init invariance for every law_type."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "4")
ms = pytest.importorskip("mindspore")
from mindspore import Tensor  # noqa: E402

from vglaw.config import LAW_TYPES  # noqa: E402
from vglaw.models import build_model  # noqa: E402
from vglaw.models.law import adaptive_qkv, generator_out_dim  # noqa: E402

from _model_helpers import SMALL, make_inputs as _inputs, perturb_generator  # noqa: E402


@pytest.fixture(autouse=True)
def _pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _copy_shared(dst, src):
    srcp = {p.name: p for p in src.get_parameters()}
    n = 0
    for p in dst.get_parameters():
        if p.name in srcp:
            p.set_data(Tensor(srcp[p.name].asnumpy()))
            n += 1
    return n


def _backbone_out(model, images, ids, mask):
    if model.law_type == "none":
        return model.backbone(images).asnumpy()
    feats = model.text_encoder(ids, mask)
    return model.backbone(images, model.law(feats, mask), model.law.P, model.law.Q).asnumpy()


def _np_qkv(law_type, x, w0, b0, g, p, q, k):
    c = x.shape[-1]
    out = []
    for i in range(x.shape[0]):
        if law_type == "svd":
            w = w0 + p @ g[i].reshape(k, k) @ q
            out.append(x[i] @ w.T + b0)
            continue
        s_in = {"la": np.tile(g[i, :c], 3), "od1": np.tile(g[i, :c], 3),
                "od2": np.concatenate([g[i, :c], g[i, :c], g[i, c:2 * c]]),
                "od3": g[i, :3 * c]}[law_type].reshape(3, c)
        s_out = np.ones(3 * c) if law_type == "la" else g[i, -3 * c:]
        w = w0 * np.repeat(s_in, c, axis=0) * s_out[:, None]  # diag(s_out) W0 diag(s_in) per q/k/v
        out.append(x[i] @ w.T + b0)
    return np.stack(out)


@pytest.mark.parametrize("law_type", ["svd", "la", "od1", "od2", "od3"])
def test_adaptive_qkv_equals_per_sample_weight(law_type):
    rng = np.random.default_rng(0)
    b, n, c, k = 3, 5, 6, 2
    x = rng.standard_normal((b, n, c)).astype(np.float32)
    w0 = rng.standard_normal((3 * c, c)).astype(np.float32)
    b0 = rng.standard_normal(3 * c).astype(np.float32)
    g = rng.standard_normal((b, generator_out_dim(law_type, c, k))).astype(np.float32)
    p = rng.standard_normal((3 * c, k)).astype(np.float32)
    q = rng.standard_normal((k, c)).astype(np.float32)
    got = adaptive_qkv(law_type, *map(Tensor, (x, w0, b0, g, p, q)), k).asnumpy()
    np.testing.assert_allclose(got, _np_qkv(law_type, x, w0, b0, g, p, q, k), rtol=1e-4, atol=1e-4)


CASES = [(lt, {}) for lt in LAW_TYPES if lt != "none"] + [
    ("svd", dict(law_shared=False)), ("svd", dict(law_blocks=(1,))), ("od2", dict(law_blocks=(0,)))]


@pytest.mark.parametrize("law_type,extra", CASES, ids=[f"{c[0]}-{'-'.join(c[1]) or 'all'}" for c in CASES])
def test_zero_init_equals_static_backbone_then_adapts(law_type, extra):
    ref = build_model("tiny", law_type="none", **SMALL)
    model = build_model("tiny", law_type=law_type, **SMALL, **extra)
    ref.set_train(False)
    model.set_train(False)
    n_copied = _copy_shared(model, ref)
    assert n_copied == len(list(ref.get_parameters()))  # every static parameter shared
    images, ids, mask = _inputs()
    base = _backbone_out(ref, images, ids, mask)
    np.testing.assert_allclose(_backbone_out(model, images, ids, mask), base, rtol=1e-5, atol=1e-5)
    for a, b in zip(model(images, ids, mask), ref(images, ids, mask)):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-5)

    perturb_generator(model)
    out = _backbone_out(model, images, ids, mask)
    assert np.abs(out - base).max() > 1e-3
    # same image, two different expressions -> different visual features (only through LAW)
    same_img = Tensor(np.repeat(images.asnumpy()[:1], 2, axis=0))
    feats = _backbone_out(model, same_img, ids, mask)
    assert np.abs(feats[0] - feats[1]).max() > 1e-3
    static = _backbone_out(ref, same_img, ids, mask)
    np.testing.assert_allclose(static[0], static[1], rtol=1e-6, atol=1e-6)


def test_generator_shapes_and_padding_mask():
    model = build_model("tiny", law_type="svd", **SMALL)
    model.set_train(False)
    perturb_generator(model)
    _, ids, mask = _inputs()
    phi = model.generated_weights(ids, mask).asnumpy()
    assert phi.shape == (2, SMALL["vit_depth"], SMALL["law_rank"], SMALL["law_rank"])
    # padded tokens of sample 0 do not change its aggregated language feature
    feats = model.text_encoder(ids, mask)
    agg = model.law.aggregate(feats, mask).asnumpy()
    f2 = feats.asnumpy().copy()
    f2[:, SMALL["max_len"] // 2:] += 100.0  # padding in sample 0 only
    agg2 = model.law.aggregate(Tensor(f2), mask).asnumpy()
    np.testing.assert_allclose(agg2[0], agg[0], rtol=1e-5, atol=1e-5)
    assert np.abs(agg2[1] - agg[1]).max() > 1.0
    none = build_model("tiny", law_type="none", **SMALL)
    with pytest.raises(ValueError, match="none"):
        none.generated_weights(ids, mask)
