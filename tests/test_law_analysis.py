"""vglaw.law_analysis on a small real model: generated weights, update sizes, similarities."""

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from vglaw import build_model  # noqa: E402
from vglaw.data.tokenizer import load_tokenizer  # noqa: E402
from vglaw.workbook.law_analysis import generated_weights, pairwise_cosine, relative_update  # noqa: E402

SMALL = dict(vit_dim=32, vit_depth=2, vit_heads=2, window_size=4, global_blocks=(1,), text_layers=1,
             law_rank=4, img_size=64)
PHRASES = ["the red circle", "the small blue square on the left"]


def _perturb_generator(model, seed=0):
    rng = np.random.default_rng(seed)
    w = model.law.fc2_weight
    w.set_data(ms.Tensor(rng.normal(0, 0.5, w.shape).astype(np.float32)))


def test_svd_update_matches_direct_computation():
    model = build_model("tiny", "svd", **SMALL)
    tok = load_tokenizer()
    gen0 = generated_weights(model, tok, PHRASES)
    assert gen0.shape == (2, 2, 4, 4) and np.all(gen0 == 0)  # zero-init generator: no change
    assert np.all(relative_update(model, gen0) == 0)
    _perturb_generator(model)
    gen = generated_weights(model, tok, PHRASES)
    rel = relative_update(model, gen)
    p, q = model.law.P.asnumpy()[0], model.law.Q.asnumpy()[0]
    w0 = model.backbone.blocks[1].attn.qkv.weight.asnumpy()
    assert rel[1, 1] == pytest.approx(np.linalg.norm(p @ gen[1, 1] @ q) / np.linalg.norm(w0), rel=1e-5)
    cos = pairwise_cosine(gen)
    assert cos.shape == (2, 2, 2) and np.allclose(np.diagonal(cos, axis1=1, axis2=2), 1.0, atol=1e-5)
    assert cos[0, 0, 1] < 0.999  # two expressions, two different Phi


def test_scalings_measure_change_from_one():
    model = build_model("tiny", "la", **SMALL)
    gen = generated_weights(model, load_tokenizer(), PHRASES)
    assert np.allclose(gen, 1.0) and np.allclose(relative_update(model, gen), 0.0)
    with pytest.raises(ValueError, match="phrases is empty"):
        generated_weights(model, load_tokenizer(), [])


def test_pairwise_distance_by_hand():
    from vglaw.workbook.law_analysis import pairwise_distance

    # 2 expressions, 1 block, Phi 1x2: [3, 4] and [3, 4.5] -> distance 0.5, mean norm (5 + 5.41) / 2
    gen = np.array([[[[3.0, 4.0]]], [[[3.0, 4.5]]]])
    d = pairwise_distance(gen, "svd")
    mean_norm = (5.0 + np.hypot(3.0, 4.5)) / 2
    assert d.shape == (1, 2, 2) and d[0, 0, 0] == 0 and d[0, 1, 1] == 0
    assert d[0, 0, 1] == pytest.approx(0.5 / mean_norm) and d[0, 1, 0] == d[0, 0, 1]
    # the cosine of the same pair is 0.9985: "saturated", while the distance shows the 10% change
    assert pairwise_cosine(gen)[0, 0, 1] > 0.998 and d[0, 0, 1] > 0.09
    # scalings are compared by their change from 1
    s = pairwise_distance(np.array([[[1.0, 1.2]], [[1.0, 0.8]]]), "la")
    assert s[0, 0, 1] == pytest.approx(0.4 / 0.2)
