"""The assembled model: GRAPH == PYNATIVE, gradients everywhere, parameter groups, paper size,
bad-input errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "4")
ms = pytest.importorskip("mindspore")
from mindspore import Tensor  # noqa: E402

from vglaw.config import make_model_config  # noqa: E402
from vglaw.models.losses import GroundingLoss  # noqa: E402
from vglaw.models import VGLAW, build_model  # noqa: E402

from _model_helpers import SMALL, make_inputs as _inputs, perturb_generator  # noqa: E402


@pytest.fixture(autouse=True)
def _pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def test_graph_and_pynative_agree_tiny_svd():
    model = build_model("tiny", law_type="svd")
    model.set_train(False)  # dropout / drop-path off
    perturb_generator(model, scale=0.05)
    cfg = model.config
    images, ids, mask = _inputs(2, cfg=dict(img_size=cfg.img_size, max_len=cfg.max_len, vocab_size=1000))
    eager = [o.asnumpy() for o in model(images, ids, mask)] + [model.generated_weights(ids, mask).asnumpy()]
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = [o.asnumpy() for o in model(images, ids, mask)] + [model.generated_weights(ids, mask).asnumpy()]
    assert np.abs(eager[2]).max() > 1e-3  # the perturbed generator is not a no-op
    assert eager[0].shape == (2, 4) and eager[1].shape == (2, 1, cfg.img_size, cfg.img_size)
    for e, g in zip(eager, graph):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def _loss_grads(model, images, ids, mask):
    loss = GroundingLoss()
    rng = np.random.default_rng(0)
    s = images.shape[-1]
    gt_box = Tensor(rng.uniform(0.3, 0.6, (images.shape[0], 4)).astype(np.float32))
    gt_mask = Tensor((rng.random((images.shape[0], s, s)) > 0.5).astype(np.float32))
    params = model.trainable_params()

    def fwd(a, b, c):
        boxes, logits = model(a, b, c)
        return loss(boxes, logits, gt_box, gt_mask)[0]

    _, grads = ms.value_and_grad(fwd, None, params)(images, ids, mask)
    return params, grads


@pytest.mark.parametrize("lean", [False, True])
def test_recompute_keeps_loss_and_gradients(lean):
    """`--recompute` (VGLAW.set_recompute, issue 10) marks every ViT block and BERT layer and, in a
    GRAPH train step, leaves the loss and every gradient equal to the plain step's; also with
    `--lean_kernels`, whose softmax has its own bprop (`LastAxisSoftmax`) inside the recomputed blocks."""
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = dict(SMALL, drop_path=0.0, hidden_dropout=0.0)  # no randomness between the two forwards
    images, ids, mask = _inputs(2, cfg=cfg)
    out = []
    for recompute in (False, True):
        ms.set_seed(0)
        model = build_model("tiny", law_type="svd", **cfg)
        perturb_generator(model)
        model.set_train(True)
        if lean:
            model.set_lean_kernels()
        if recompute:
            assert model.set_recompute() == cfg["vit_depth"] + cfg["text_layers"]
        params = model.trainable_params()
        loss = GroundingLoss()
        rng = np.random.default_rng(0)
        gt_box = Tensor(rng.uniform(0.3, 0.6, (2, 4)).astype(np.float32))
        gt_mask = Tensor((rng.random((2, cfg["img_size"], cfg["img_size"])) > 0.5).astype(np.float32))

        def fwd(a, b, c):
            boxes, logits = model(a, b, c)
            return loss(boxes, logits, gt_box, gt_mask)[0]

        value, grads = ms.jit(ms.value_and_grad(fwd, None, params))(images, ids, mask)
        out.append((float(value.asnumpy()), [g.asnumpy() for g in grads]))
    (l0, g0), (l1, g1) = out
    assert l0 == pytest.approx(l1, rel=1e-6)
    assert len(g0) == len(g1) and sum(float(np.abs(g).sum()) > 0 for g in g0) > len(g0) // 2
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("law_type", ["svd", "od3"])
def test_gradients_reach_every_trainable_parameter(law_type):
    model = build_model("tiny", law_type=law_type, **SMALL)
    model.set_train(False)
    perturb_generator(model, scale=0.1)
    params, grads = _loss_grads(model, *_inputs())
    dead = [p.name for p, g in zip(params, grads) if not np.abs(g.asnumpy()).max() > 0]
    assert not dead, f"no gradient for {dead}"
    assert len(params) > 50


def test_param_groups_partition_trainable_parameters():
    model = build_model("tiny", law_type="svd", **SMALL)
    groups = model.param_groups()
    assert sorted(groups) == ["base", "lang", "visual"]
    names = {k: {p.name for p in v} for k, v in groups.items()}
    all_names = [p.name for v in groups.values() for p in v]
    assert len(all_names) == len(set(all_names)) == len(model.trainable_params())
    assert all(n.startswith("text_encoder.") for n in names["lang"])
    assert all(n.startswith("backbone.") for n in names["visual"])
    assert {"backbone.blocks.0.attn.qkv.weight", "backbone.blocks.0.attn.qkv.bias"} <= names["visual"]
    assert {"law.P", "law.Q", "law.layer_embed", "head.rec.query.weight"} <= names["base"]
    none = build_model("tiny", law_type="none", **SMALL)
    assert not any(n.startswith("law.") for n in (p.name for p in none.trainable_params()))


def _paper_arithmetic() -> int:
    """DESIGN §3 parameter count, written out."""
    c, d, k, hid = 768, 768, 32, 48  # ViT dim, BERT hidden, LAW rank, generator hidden
    # BERT-base truncated to 6 layers (+ embeddings: word 30522, position 512, type 2, LayerNorm)
    bert_emb = 30522 * d + 512 * d + 2 * d + 2 * d
    bert_layer = 4 * (d * d + d) + 2 * 2 * d + (d * 3072 + 3072) + (3072 * d + d)
    bert = bert_emb + 6 * bert_layer  # 66,364,416
    # ViTDet-B/16: patch conv, pos-embed resized to the 28x28 grid, 12 blocks, rel-pos tables
    block = 2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c)
    rel_window, rel_global = 2 * 27 * 64, 2 * 55 * 64
    vit = (3 * 16 * 16 * c + c) + 28 * 28 * c + 12 * block + 8 * rel_window + 4 * rel_global
    # LAW: layer embedding, 12 generator MLPs, one shared P/Q pair
    law = 12 * d + 12 * ((d * hid + hid) + 2 * hid + (hid * k * k + k * k)) + 3 * c * k + k * c
    # head: REC pooling q/k + MLP 768-256-256-4; RES ConvT(768->256) LN ConvT(256->768)
    rec = (d * 64 + 64) + (c * 64 + 64) + (c * 256 + 256) + (256 * 256 + 256) + (256 * 4 + 4)
    res = (c * 256 * 4 + 256) + 2 * 256 + (256 * d * 4 + d)
    return bert + vit + law + rec + res


def test_paper_parameter_count():
    expected = _paper_arithmetic()
    assert abs(expected - 156e6) / 156e6 < 0.01  # "about 156 M" (DESIGN §3.6)
    model = build_model("paper", law_type="svd")  # no forward: counting only
    n = sum(int(np.prod(p.shape)) for p in model.trainable_params())
    assert n == expected, (n, expected)
    cfg = model.config
    assert (cfg.img_size, cfg.max_len, cfg.law_rank, cfg.text_layers, cfg.vit_depth) == (448, 40, 32, 6, 12)


def test_bad_inputs_raise_clear_errors():
    model = build_model("tiny", law_type="svd", **SMALL)
    images, ids, mask = _inputs()
    with pytest.raises(ValueError, match="img_size"):
        model(Tensor(np.zeros((2, 3, 32, 32), np.float32)), ids, mask)
    long_ids = Tensor(np.ones((2, SMALL["max_len"] + 1), np.int32))
    with pytest.raises(ValueError, match="max_len"):
        model(images, long_ids, long_ids)
    with pytest.raises(ValueError, match="max_len"):
        model.check_inputs(images, long_ids)
    with pytest.raises(ValueError, match="attention_mask"):
        model.check_inputs(images, ids, Tensor(np.ones((2, 3), np.int32)))
    model.check_inputs(images, ids, mask)  # fine
    ms.set_context(mode=ms.GRAPH_MODE)  # static-shape checks also hold when compiled
    with pytest.raises(ValueError, match="img_size"):
        model(Tensor(np.zeros((2, 3, 32, 32), np.float32)), ids, mask)


@pytest.mark.parametrize("kwargs,match", [
    (dict(preset="huge"), r"unknown preset 'huge'.*paper"),
    (dict(law_type="lora"), r"unknown law_type 'lora'.*svd"),
    (dict(window=3), r"unknown model config field.*'window'.*window_size"),
    (dict(img_size=100), r"divisible by patch_size\*window_size"),
    (dict(global_blocks=(7,)), r"global_blocks"),
    (dict(law_blocks=(0, 0)), r"duplicate"),
    (dict(vit_heads=5), r"divisible by vit_heads"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)


def test_config_round_trips_through_json():
    import dataclasses
    import json

    from vglaw.config import config_from_dict
    cfg = make_model_config("tiny", law_blocks=(1, 3), law_type="od2")
    assert config_from_dict(json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg
    assert isinstance(VGLAW(cfg).config, type(cfg))
    # a config stored before a field existed gets the field's old behaviour, not the preset's new value
    old = dataclasses.asdict(make_model_config("tiny"))
    for later in ("text_pool", "rec_pos_dim", "rec_cell_pool", "stem", "stem_dim", "res_refine", "embed_norm",
                  "pos_init", "res_select"):
        del old[later]
    back = config_from_dict(old)
    assert back.text_pool == "cls" and back.rec_pos_dim == 0 and back.rec_token_norm
    assert back.stem == "patch" and back.res_refine == 0 and not back.rec_cell_pool and back.res_select == 0
    assert make_model_config("tiny").text_pool == "mean"
