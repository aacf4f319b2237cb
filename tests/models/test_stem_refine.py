"""Tiny-preset options of issue 8: the hierarchical MLP stem (`stem="hmlp"`), the RES head's per-cell
refinement (`res_refine`), the cell pooling (`rec_cell_pool`), the box select (`res_select`), embed_norm and
the sin-cos position table:
patches stay independent, the refinement is local to its cell and reads the sentence, GRAPH ==
PYNATIVE, every new parameter gets a gradient, bad settings are refused (issue 8)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "4")
ms = pytest.importorskip("mindspore")
from mindspore import Tensor  # noqa: E402

from vglaw.models import build_model  # noqa: E402
from vglaw.models.heads import PixelRefine  # noqa: E402
from vglaw.models.vit import HMLPStem, PatchEmbed  # noqa: E402

from _model_helpers import SMALL, make_inputs, perturb_generator  # noqa: E402

HMLP = dict(SMALL, stem="hmlp", stem_dim=8, res_refine=8, rec_cell_pool=True)  # as the tiny preset, small (no select)


@pytest.fixture(autouse=True)
def _pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _assert_graph_equals_pynative(model, inputs):
    eager = [o.asnumpy() for o in model(*inputs)]
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = [o.asnumpy() for o in model(*inputs)]
    for e, g in zip(eager, graph):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_hmlp_stem_keeps_patches_independent_and_cells_local():
    stem = HMLPStem(16, 32, 8)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    tok, cells = (t.asnumpy() for t in stem(Tensor(x)))
    assert tok.shape == (1, 4, 4, 32) and cells.shape == (1, 16, 16, 8)
    y = x.copy()
    y[:, :, 20:24, 36:40] += 1.0  # one 4x4 cell, inside patch (1, 2), cell (5, 9)
    tok2, cells2 = (t.asnumpy() for t in stem(Tensor(y)))
    changed_tokens = np.argwhere(np.abs(tok2 - tok).max(-1)[0] > 1e-6)
    changed_cells = np.argwhere(np.abs(cells2 - cells).max(-1)[0] > 1e-6)
    assert changed_tokens.tolist() == [[1, 2]]
    assert changed_cells.tolist() == [[5, 9]]
    # a non-linear read of the patch: unlike the linear projection, doubling the input does not double the token
    tok3 = stem(Tensor(2 * x))[0].asnumpy()
    assert not np.allclose(tok3 - stem.stage3.bias.asnumpy(), 2 * (tok - stem.stage3.bias.asnumpy()), atol=1e-3)
    lin = PatchEmbed(16, 32)
    a, b = lin(Tensor(x)).asnumpy(), lin(Tensor(2 * x)).asnumpy()
    bias = lin.proj.bias.asnumpy()
    np.testing.assert_allclose(b - bias, 2 * (a - bias), rtol=1e-4, atol=1e-4)


def test_refine_is_local_to_its_cell_and_reads_the_sentence():
    ref = PixelRefine(stem_dim=8, text_dim=16, hidden=8)
    rng = np.random.default_rng(1)
    low = rng.standard_normal((2, 8, 8)).astype(np.float32)
    cells = rng.standard_normal((2, 8, 8, 8)).astype(np.float32)
    cls = rng.standard_normal((2, 16)).astype(np.float32)
    out = ref(Tensor(low), Tensor(cells), Tensor(cls)).asnumpy()
    assert out.shape == (2, 8, 8) and not np.allclose(out, low)  # it corrects the token logits
    cells2 = cells.copy()
    cells2[0, 3, 4] += 2.0
    out2 = ref(Tensor(low), Tensor(cells2), Tensor(cls)).asnumpy()
    assert np.argwhere(np.abs(out2 - out) > 1e-6).tolist() == [[0, 3, 4]]
    cls2 = cls.copy()
    cls2[1] = -cls2[1]
    out3 = ref(Tensor(low), Tensor(cells), Tensor(cls2)).asnumpy()
    np.testing.assert_array_equal(out3[0], out[0])
    assert np.abs(out3[1] - out[1]).max() > 1e-4


def test_graph_and_pynative_agree_with_stem_and_refine():
    model = build_model("tiny", law_type="svd", **HMLP)
    model.set_train(False)
    perturb_generator(model, scale=0.05)
    _assert_graph_equals_pynative(model, make_inputs(2, cfg=HMLP))
    # the refinement changes the mask: the same weights without it give other logits
    names = {n for n, _ in model.parameters_and_names()}
    assert {"head.refine.fc1.weight", "backbone.patch_embed.stage1.weight"} <= names


@pytest.mark.parametrize("law_type", ["svd", "none"])
def test_gradients_reach_the_stem_and_the_refinement(law_type):
    from vglaw.models.losses import GroundingLoss
    model = build_model("tiny", law_type=law_type, **HMLP)
    model.set_train(False)
    if law_type != "none":
        perturb_generator(model, scale=0.1)
    images, ids, mask = make_inputs(cfg=HMLP)
    rng = np.random.default_rng(0)
    gt_box = Tensor(rng.uniform(0.3, 0.6, (2, 4)).astype(np.float32))
    gt_mask = Tensor((rng.random((2, 64, 64)) > 0.5).astype(np.float32))
    loss = GroundingLoss()
    params = model.trainable_params()

    def fwd(a, b, c):
        boxes, logits = model(a, b, c)
        return loss(boxes, logits, gt_box, gt_mask)[0]

    _, grads = ms.value_and_grad(fwd, None, params)(images, ids, mask)
    dead = [p.name for p, g in zip(params, grads) if not np.abs(g.asnumpy()).max() > 0]
    assert not dead, f"no gradient for {dead}"
    new = [p.name for p in params if ".patch_embed.stage" in p.name or ".refine." in p.name]
    assert len(new) == 6 + 6  # stem: 3 linear layers (w, b); refine: fc1, text, fc2 (w, b)


@pytest.mark.parametrize("kwargs,match", [
    (dict(stem="conv"), r"unknown stem 'conv'.*hmlp"),
    (dict(res_refine=8), r"res_refine=8 reads the hmlp stem.*stem='hmlp'"),
    (dict(stem="hmlp", stem_dim=0), r"stem_dim must be > 0"),
])
def test_bad_stem_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("tiny", **{**SMALL, "stem": "patch", "res_refine": 0, **kwargs})


def test_cell_pool_box_starts_at_the_pooling_moments_and_trains_no_mask_weight():
    """rec_cell_pool: the REC pooling runs over the 4g x 4g cells with the detached cell logits as
    guide; the box adds the pooling weights' moment box in logit space (learnt weight, set to 1
    here) to the MLP's output. A guide marking a rectangle gives that rectangle back (MLP's last layer at 0); two
    equally marked rectangles are told apart by the learnt query (the softmax picks one); the box
    loss trains no mask weight."""
    from vglaw.config import make_model_config
    from vglaw.models.heads import MultiTaskHead
    cfg = make_model_config("tiny", **{**HMLP, "rec_pos_dim": 8, "rec_cell_pool": True, "rec_mask_guide": True})
    mt = MultiTaskHead(cfg)
    rec = mt.rec
    last = rec.mlp[4]
    last.weight.set_data(Tensor(np.zeros(last.weight.shape, np.float32)))
    last.bias.set_data(Tensor(np.zeros(last.bias.shape, np.float32)))
    assert float(rec.prior_weight.asnumpy()[0]) == 0.0  # the moment prior starts switched off
    rec.prior_weight.set_data(Tensor(np.ones((1,), np.float32)))
    rec.guide_scale.set_data(Tensor(np.full((1,), 50.0, np.float32)))  # the guide dominates q.k
    pk = rec.pos_key.weight.asnumpy().copy()
    rec.pos_key.weight.set_data(Tensor(np.zeros_like(pk)))  # and no cell's position code is preferred
    g, g4 = cfg.grid, 4 * cfg.grid  # 4 tokens, 16 cells a side
    rng = np.random.default_rng(4)
    same = rng.standard_normal((1, 1, cfg.vit_dim)).astype(np.float32)
    tokens = Tensor(np.repeat(same, g * g, axis=1))  # equal keys: the guide alone decides
    c = Tensor(rng.standard_normal((1, cfg.text_hidden)).astype(np.float32))
    fine = np.full((1, g4, g4), -1.0, np.float32)
    fine[0, 4:8, 2:14] = 1.0  # rows 4..7, columns 2..13
    box = rec(tokens, c, Tensor(fine.reshape(1, -1))).asnumpy()
    np.testing.assert_allclose(box[0], [8 / 16, 6 / 16, 12 / 16, 4 / 16], atol=2e-3)
    rec.pos_key.weight.set_data(Tensor(pk))
    # two marked objects, the same guide: the learnt query/key term picks one (here: boost one token's key)
    two = np.full((1, g4, g4), -1.0, np.float32)
    two[0, 0:4, 0:4] = 1.0   # token (0, 0)
    two[0, 12:16, 12:16] = 1.0  # token (3, 3)
    rec.guide_scale.set_data(Tensor(np.full((1,), 5.0, np.float32)))
    t = tokens.asnumpy().copy()
    q = rec.query(c).asnumpy()[0]
    kw = rec.key.weight.asnumpy()  # (a, C)
    t[0, 0] = 0.0
    t[0, g * g - 1] = 0.0
    t[0, g * g - 1] += np.linalg.lstsq(kw, 40.0 * q / np.linalg.norm(q), rcond=None)[0]  # token (3,3) answers the query
    rec_nonorm = rec.token_norm
    rec.token_norm = False
    box = rec(Tensor(t), c, Tensor(two.reshape(1, -1))).asnumpy()[0]
    rec.token_norm = rec_nonorm
    np.testing.assert_allclose(box, [14 / 16, 14 / 16, 4 / 16, 4 / 16], atol=0.02)  # not the average of the two

    fmap = Tensor(rng.standard_normal((2, cfg.vit_dim, g, g)).astype(np.float32))
    cells = Tensor(rng.standard_normal((2, g4, g4, cfg.stem_dim)).astype(np.float32))
    c2 = Tensor(rng.standard_normal((2, cfg.text_hidden)).astype(np.float32))
    mask_params = mt.res.trainable_params() + mt.refine.trainable_params()
    grads = ms.grad(lambda f, s, k: mt(f, s, k)[0].sum(), grad_position=None, weights=mask_params)(fmap, c2, cells)
    assert all(float(np.abs(gr.asnumpy()).max()) == 0.0 for gr in grads)
    grads = ms.grad(lambda f, s, k: mt(f, s, k)[1].sum(), grad_position=None, weights=mask_params)(fmap, c2, cells)
    assert all(float(np.abs(gr.asnumpy()).max()) > 0.0 for gr in grads)  # the mask loss reaches all of them
    with pytest.raises(ValueError, match="rec_cell_pool needs the REC position code"):
        make_model_config("tiny", rec_cell_pool=True, rec_pos_dim=0)


def test_embed_norm_and_sincos_position_table():
    """embed_norm: the tokens no longer depend on the patch projection's scale (so the position
    table is not drowned as the projection grows); pos_init='sincos' starts the table as the code."""
    from vglaw.models.heads import sincos_2d
    cfg = dict(SMALL, law_type="none", embed_norm=True, pos_init="sincos", drop_path=0.0)
    model = build_model("tiny", **cfg)
    model.set_train(False)
    bb = model.backbone
    np.testing.assert_allclose(bb.pos_embed.asnumpy()[0].reshape(-1, SMALL["vit_dim"]),
                               sincos_2d(SMALL["img_size"] // 16, SMALL["vit_dim"]), atol=1e-6)
    x = make_inputs(cfg=SMALL)[0]
    before = bb(x).asnumpy()
    for p in (bb.patch_embed.proj.weight, bb.patch_embed.proj.bias):
        p.set_data(Tensor(p.asnumpy() * 10.0))
    np.testing.assert_allclose(bb(x).asnumpy(), before, rtol=1e-4, atol=1e-4)
    plain = build_model("tiny", **dict(SMALL, law_type="none", drop_path=0.0)).backbone
    plain.set_train(False)
    a = plain(x).asnumpy()
    for p in (plain.patch_embed.proj.weight, plain.patch_embed.proj.bias):
        p.set_data(Tensor(p.asnumpy() * 10.0))
    assert np.abs(plain(x).asnumpy() - a).max() > 1e-2  # without it, the scale matters
    with pytest.raises(ValueError, match=r"unknown pos_init 'learnt'.*sincos"):
        build_model("tiny", **dict(SMALL, pos_init="learnt"))


SELECT = dict(HMLP, res_select=8)


def test_box_select_starts_as_identity_reads_the_box_and_trains_no_box_weight():
    """res_select: at initialisation (last layer 0) the mask is the RES head's alone; with a
    trained last layer the correction depends on where a cell lies relative to the predicted box;
    the mask loss reaches BoxSelect but no REC-head weight (the box is detached)."""
    from vglaw.models.heads import BoxSelect
    from vglaw.models.losses import GroundingLoss
    sel = BoxSelect(cells=8, hidden=4)
    rng = np.random.default_rng(0)
    low = Tensor(rng.standard_normal((2, 8, 8)).astype(np.float32))
    box = Tensor(np.array([[0.25, 0.25, 0.3, 0.3], [0.75, 0.5, 0.2, 0.6]], np.float32))
    np.testing.assert_array_equal(sel(low, box).asnumpy(), low.asnumpy())  # identity at init
    sel.fc2.weight.set_data(Tensor(rng.standard_normal((1, 4)).astype(np.float32)))
    a = sel(low, box).asnumpy()
    b = sel(low, Tensor(np.array([[0.75, 0.75, 0.3, 0.3], [0.75, 0.5, 0.2, 0.6]], np.float32))).asnumpy()
    assert np.abs(a[0] - b[0]).max() > 1e-3 and np.array_equal(a[1], b[1])  # sample 0's box moved, only its mask

    model = build_model("tiny", law_type="svd", **SELECT)
    model.set_train(False)
    perturb_generator(model, scale=0.1)
    model.head.select.fc2.weight.set_data(Tensor(rng.standard_normal((1, 8)).astype(np.float32)))
    images, ids, mask = make_inputs(cfg=SELECT)
    gt_mask = Tensor((rng.random((2, 64, 64)) > 0.5).astype(np.float32))
    loss = GroundingLoss(l1=0.0, giou=0.0)  # the mask losses only
    params = model.trainable_params()

    def fwd(x, y, z):
        boxes, logits = model(x, y, z)
        return loss(boxes, logits, Tensor(np.full((2, 4), 0.5, np.float32)), gt_mask)[0]

    _, grads = ms.value_and_grad(fwd, None, params)(images, ids, mask)
    g = {p.name: np.abs(gr.asnumpy()).max() for p, gr in zip(params, grads)}
    assert all(g[n] > 0 for n in ("head.select.fc1.weight", "head.select.fc2.weight", "head.res.up1.weight"))
    rec = [n for n in g if n.startswith("head.rec.")]
    assert rec and all(g[n] == 0 for n in rec), [n for n in rec if g[n] != 0]


def test_graph_and_pynative_agree_with_box_select():
    model = build_model("tiny", law_type="svd", **SELECT)
    model.set_train(False)
    perturb_generator(model, scale=0.05)
    model.head.select.fc2.weight.set_data(Tensor(np.full((1, 8), 0.3, np.float32)))
    _assert_graph_equals_pynative(model, make_inputs(2, cfg=SELECT))


@pytest.mark.parametrize("value", [-1, True, 2.5])
def test_bad_res_select_is_refused(value):
    with pytest.raises(ValueError, match="res_select must be an int >= 0"):
        build_model("tiny", **{**SMALL, "res_select": value})
