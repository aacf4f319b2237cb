"""REC head options of issue 8 (token norm, position code) and seed-dependent initial weights."""

import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor

import vglaw
from vglaw.models.heads import RECHead, sincos_2d
from _model_helpers import SMALL


def _head(pos_dim, token_norm, grid=4, seed=0):
    np.random.seed(seed)
    ms.set_seed(seed)
    return RECHead(16, 8, attn_dim=8, hidden=16, token_norm=token_norm, pos_dim=pos_dim, grid=grid)


def _tokens(seed=0, n=16):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, n, 16)).astype(np.float32), rng.standard_normal((2, 8)).astype(np.float32)


def test_sincos_code_is_unique_per_position():
    code = sincos_2d(5, 16)
    assert code.shape == (25, 16)
    d = np.linalg.norm(code[:, None] - code[None], axis=-1)
    assert np.all(d[~np.eye(25, dtype=bool)] > 1e-3)  # no two grid cells share a code
    np.testing.assert_allclose(code[0], [0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4, atol=1e-7)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(4, 10)


@pytest.mark.parametrize("pos_dim,changes", [(0, False), (8, True)])
def test_permuting_tokens_changes_the_box_only_with_the_position_code(pos_dim, changes):
    head = _head(pos_dim, token_norm=True)
    tokens, cls = _tokens()
    perm = np.random.default_rng(1).permutation(tokens.shape[1])
    a = head(Tensor(tokens), Tensor(cls)).asnumpy()
    b = head(Tensor(tokens[:, perm]), Tensor(cls)).asnumpy()
    # without a position code the pooling is permutation invariant: the same box, so no way to
    # read where the pooled object is (the mean-box collapse of issue 8)
    assert (np.abs(a - b).max() > 1e-4) == changes, np.abs(a - b).max()


def test_token_norm_makes_the_head_scale_invariant():
    tokens, cls = _tokens()
    normed, plain = _head(8, True), _head(8, False)
    np.testing.assert_allclose(normed(Tensor(tokens * 10), Tensor(cls)).asnumpy(),
                               normed(Tensor(tokens), Tensor(cls)).asnumpy(), atol=1e-4)
    assert np.abs(plain(Tensor(tokens * 10), Tensor(cls)).asnumpy()
                  - plain(Tensor(tokens), Tensor(cls)).asnumpy()).max() > 1e-3


def test_presets_head_options():
    from vglaw.config import make_model_config
    tiny = make_model_config("tiny")
    assert tiny.rec_token_norm and tiny.rec_pos_dim == 64 and tiny.text_pool == "mean"
    paper = make_model_config("paper")
    assert not paper.rec_token_norm and paper.rec_pos_dim == 0  # the paper's head, DESIGN §3.4
    with pytest.raises(ValueError, match="rec_pos_dim"):
        make_model_config("tiny", rec_pos_dim=6)


def test_graph_and_pynative_agree_with_the_position_code():
    head = _head(8, True)
    tokens, cls = _tokens()
    eager = head(Tensor(tokens), Tensor(cls)).asnumpy()
    fwd = ms.jit(head.construct)
    np.testing.assert_allclose(fwd(Tensor(tokens), Tensor(cls)).asnumpy(), eager, atol=1e-5)


def _weights(seed):
    np.random.seed(seed)
    ms.set_seed(seed)
    model = vglaw.build_model("tiny", "svd", **SMALL)
    return {p.name: p.asnumpy().copy() for p in model.get_parameters()}


def test_seeds_change_the_initial_weights_and_one_seed_repeats():
    a, a2, b = _weights(0), _weights(0), _weights(1)
    random = [n for n in a if a[n].std() > 0]  # zero/one inits (biases, norms, generator fc2) excluded
    assert len(random) > 20
    for n in random:
        np.testing.assert_array_equal(a[n], a2[n], err_msg=n)
    same = [n for n in random if np.array_equal(a[n], b[n])]
    assert not same, f"seed does not reach: {same}"


def test_p_and_q_are_not_correlated_copies():
    w = _weights(0)
    p, q = w["law.P"].reshape(-1), w["law.Q"].reshape(-1)
    n = min(p.size, q.size)
    # same kaiming-uniform stream would make P/bound_p and Q/bound_q equal element by element
    bp, bq = np.abs(p).max(), np.abs(q).max()
    r = np.corrcoef(p[:n] / bp, q[:n] / bq)[0, 1]
    assert abs(r) < 0.2, r


def test_text_pool_mean_feeds_the_heads_the_masked_token_mean():
    """text_pool="mean": the heads' sentence vector is the mean of the real tokens' outputs (padding
    excluded), so padding never changes the prediction; "cls" (the paper's) reads token 0."""
    from vglaw.config import make_model_config

    assert make_model_config("paper").text_pool == "cls"
    with pytest.raises(ValueError, match="text_pool"):
        make_model_config("tiny", text_pool="max")
    np.random.seed(0)
    ms.set_seed(0)
    model = vglaw.build_model("tiny", "svd", text_pool="mean", **SMALL)
    model.set_train(False)
    rng = np.random.default_rng(0)
    s, n = model.config.img_size, model.config.max_len
    img = Tensor(rng.standard_normal((2, 3, s, s)).astype(np.float32))
    ids = rng.integers(1, model.config.vocab_size, (2, n)).astype(np.int32)
    mask = np.zeros((2, n), np.int32)
    mask[0, :5], mask[1, :9] = 1, 1
    boxes, logits = model(img, Tensor(ids), Tensor(mask))
    ids2 = ids.copy()
    ids2[0, 5:], ids2[1, 9:] = 0, 7  # other padding ids: same prediction
    boxes2, logits2 = model(img, Tensor(ids2), Tensor(mask))
    np.testing.assert_allclose(boxes2.asnumpy(), boxes.asnumpy(), atol=1e-6)
    np.testing.assert_allclose(logits2.asnumpy(), logits.asnumpy(), atol=1e-5)
    # the head receives exactly the masked mean: rebuild it by hand and call the head directly
    feats = model.text_encoder(Tensor(ids), Tensor(mask)).asnumpy()
    mean = np.stack([feats[0, :5].mean(0), feats[1, :9].mean(0)])
    fmap, cells = model.backbone.features(img, model.law(Tensor(feats), Tensor(mask)), model.law.P, model.law.Q)
    ref_boxes, _ = model.head(fmap, Tensor(mean), cells)
    np.testing.assert_allclose(boxes.asnumpy(), ref_boxes.asnumpy(), atol=1e-6)
    cls_boxes, _ = model.head(fmap, Tensor(feats[:, 0]), cells)
    assert np.abs(cls_boxes.asnumpy() - boxes.asnumpy()).max() > 1e-4  # not the [CLS] path


def test_mask_guide_steers_the_pooling_and_passes_no_gradient_to_the_mask_head():
    """rec_mask_guide: the RES head's detached per-token mask logits are added to the REC pooling
    logits. A guide that marks one token pulls the pooling there (so the box moves with the mask);
    the box loss never trains the RES head through it (stop-gradient)."""
    np.random.seed(0)
    ms.set_seed(0)
    head = RECHead(16, 8, attn_dim=8, hidden=16, token_norm=True, pos_dim=8, grid=4, mask_guide=True)
    tokens, cls = _tokens()
    flat = np.zeros((2, 16), np.float32)
    a = head.attention(Tensor(tokens), Tensor(cls), Tensor(flat)).asnumpy()
    marked = flat.copy()
    marked[:, 5] = 20.0  # a confident mask on token 5 only
    attn = head.attention(Tensor(tokens), Tensor(cls), Tensor(marked)).asnumpy()
    assert attn[:, 0, 5].min() > 0.99 and a[:, 0, 5].max() < 0.5
    box_flat = head(Tensor(tokens), Tensor(cls), Tensor(flat)).asnumpy()
    box_marked = head(Tensor(tokens), Tensor(cls), Tensor(marked)).asnumpy()
    assert np.abs(box_flat - box_marked).max() > 1e-3

    from vglaw.config import make_model_config
    from vglaw.models.heads import MultiTaskHead
    cfg = make_model_config("tiny", img_size=64, window_size=2, pretrain_grid=4, rec_pos_dim=8,
                            rec_mask_guide=True, stem="patch", res_refine=0, rec_cell_pool=False)
    mt = MultiTaskHead(cfg)
    g = cfg.grid
    fmap = Tensor(np.random.default_rng(2).standard_normal((2, cfg.vit_dim, g, g)).astype(np.float32))
    c = Tensor(np.random.default_rng(3).standard_normal((2, cfg.text_hidden)).astype(np.float32))

    def box_sum(f, s):
        return mt(f, s)[0].sum()

    res_params = mt.res.trainable_params()
    grads = ms.grad(box_sum, grad_position=None, weights=res_params)(fmap, c)
    assert all(float(np.abs(gr.asnumpy()).max()) == 0.0 for gr in grads)

    def mask_sum(f, s):
        return mt(f, s)[1].sum()
    grads = ms.grad(mask_sum, grad_position=None, weights=res_params)(fmap, c)
    assert any(float(np.abs(gr.asnumpy()).max()) > 0.0 for gr in grads)  # the probe can see gradients
    # the guide is the mean logit of each token's 4x4 cells of the pre-resize mask
    low = mt.res.low_res(fmap, c).asnumpy()
    want = low.reshape(2, g, 4, g, 4).mean(axis=(2, 4)).reshape(2, g * g)
    tokens = Tensor(fmap.asnumpy().reshape(2, cfg.vit_dim, g * g).transpose(0, 2, 1))
    box, mask = mt(fmap, c)
    np.testing.assert_allclose(box.asnumpy(), mt.rec(tokens, c, Tensor(want)).asnumpy(), atol=1e-5)
    np.testing.assert_allclose(mask.asnumpy(), mt.res.to_canvas(Tensor(low)).asnumpy(), atol=1e-5)
    off = Tensor((want + 5.0 * (np.arange(g * g) == 0)).astype(np.float32))  # another guide: another box
    assert np.abs(mt.rec(tokens, c, off).asnumpy() - box.asnumpy()).max() > 1e-4


def test_mask_guide_is_on_in_tiny_only_and_only_with_the_mask_loss():
    from vglaw.config import make_model_config
    from vglaw.models.heads import MultiTaskHead
    tiny = make_model_config("tiny", img_size=64, window_size=2, pretrain_grid=4)
    assert tiny.rec_mask_guide and not make_model_config("paper").rec_mask_guide
    assert MultiTaskHead(tiny).mask_guide
    names = [p.name for p in MultiTaskHead(tiny).trainable_params()]
    assert "rec.guide_scale" in names
    rec_only = MultiTaskHead(make_model_config("tiny", img_size=64, window_size=2, pretrain_grid=4, use_mask=False))
    assert not rec_only.mask_guide and "rec.guide_scale" not in [p.name for p in rec_only.trainable_params()]
