"""ViTDet backbone: windows, attention with decomposed rel-pos vs NumPy, host resizes vs torch,
detectron2 name mapping, RES head vs a torch ConvTranspose2d reference."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "4")
ms = pytest.importorskip("mindspore")
from mindspore import Tensor  # noqa: E402

from vglaw.config import make_model_config  # noqa: E402
from vglaw.models.heads import RESHead, align_corners_matrix  # noqa: E402
from vglaw.models.resize import (bicubic_resize_matrix, crop_rel_pos, resize_abs_pos_embed,  # noqa: E402
                                 resize_rel_pos)
from vglaw.models.vit import (Attention, ViTDet, detectron2_to_vglaw_name, rel_pos_index,  # noqa: E402
                              window_partition, window_unpartition)


@pytest.fixture(autouse=True)
def _pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _np_partition(x, ws):
    b, h, w, c = x.shape
    ph, pw = (-h) % ws, (-w) % ws
    x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
    out = []
    for i in range(b):
        for y in range(0, h + ph, ws):
            for xx in range(0, w + pw, ws):
                out.append(x[i, y:y + ws, xx:xx + ws])
    return np.stack(out)


@pytest.mark.parametrize("hw,ws", [((8, 8), 4), ((6, 7), 4), ((5, 5), 5)])
def test_window_partition_round_trip(hw, ws):
    x = np.random.default_rng(0).standard_normal((2, *hw, 3)).astype(np.float32)
    win, pad_hw = window_partition(Tensor(x), ws)
    np.testing.assert_array_equal(win.asnumpy(), _np_partition(x, ws))
    assert pad_hw == (-(-hw[0] // ws) * ws, -(-hw[1] // ws) * ws)
    back = window_unpartition(win, ws, pad_hw, hw).asnumpy()
    np.testing.assert_array_equal(back, x)


def _np_get_rel_pos(q, k, table):
    # detectron2 get_rel_pos (no resize needed: table has 2*max-1 rows)
    qc = np.arange(q)[:, None] * max(k / q, 1.0)
    kc = np.arange(k)[None, :] * max(q / k, 1.0)
    return table[((qc - kc) + (k - 1) * max(q / k, 1.0)).astype(np.int64)]


def _np_attention(x, wqkv, bqkv, wproj, bproj, rph, rpw, heads, delta=None):
    """Naive detectron2 Attention.forward on (B, H, W, C); `delta` (B, H*W, 3C) added to qkv."""
    b, h, w, c = x.shape
    d = c // heads
    qkv = x.reshape(b, h * w, c) @ wqkv.T + bqkv
    if delta is not None:
        qkv = qkv + delta
    qkv = qkv.reshape(b, h * w, 3, heads, d).transpose(2, 0, 3, 1, 4).reshape(3, b * heads, h * w, d)
    q, k, v = qkv
    attn = (q * d ** -0.5) @ k.transpose(0, 2, 1)
    rh, rw = _np_get_rel_pos(h, h, rph), _np_get_rel_pos(w, w, rpw)
    r_q = q.reshape(b * heads, h, w, d)
    rel_h = np.einsum("bhwc,hkc->bhwk", r_q, rh)
    rel_w = np.einsum("bhwc,wkc->bhwk", r_q, rw)
    attn = (attn.reshape(-1, h, w, h, w) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(-1, h * w, h * w)
    attn = np.exp(attn - attn.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    out = (attn @ v).reshape(b, heads, h, w, d).transpose(0, 2, 3, 1, 4).reshape(b, h, w, c)
    return out @ wproj.T + bproj


def _randomise(attn, rng):
    for p in (attn.rel_pos_h, attn.rel_pos_w, attn.qkv.bias, attn.proj.bias):
        p.set_data(Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.3))


@pytest.mark.parametrize("size", [(4, 4), (3, 5)])
def test_attention_matches_numpy_with_rel_pos(size):
    rng = np.random.default_rng(1)
    attn = Attention(16, 2, size)
    _randomise(attn, rng)
    x = rng.standard_normal((3, *size, 16)).astype(np.float32)
    got = attn(Tensor(x)).asnumpy()
    ref = _np_attention(x, attn.qkv.weight.asnumpy(), attn.qkv.bias.asnumpy(), attn.proj.weight.asnumpy(),
                        attn.proj.bias.asnumpy(), attn.rel_pos_h.asnumpy(), attn.rel_pos_w.asnumpy(), 2)
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_svd_attention_windows_share_their_image_phi():
    """LAW branch on windows: window j of image b uses image b's Phi (naive per-window weight)."""
    rng = np.random.default_rng(2)
    c, k, ws, n_img, n_win = 16, 4, 2, 2, 4
    attn = Attention(c, 2, (ws, ws), law_type="svd", law_rank=k)
    _randomise(attn, rng)
    x = rng.standard_normal((n_img * n_win, ws, ws, c)).astype(np.float32)
    phi = rng.standard_normal((n_img, k * k)).astype(np.float32)
    p = rng.standard_normal((3 * c, k)).astype(np.float32) * 0.3
    q = rng.standard_normal((k, c)).astype(np.float32) * 0.3
    got = attn(Tensor(x), Tensor(phi), Tensor(p), Tensor(q), n_img).asnumpy()
    delta = []
    for i in range(n_img * n_win):
        w_i = p @ phi[i // n_win].reshape(k, k) @ q  # per-sample weight, only in the test
        delta.append(x[i].reshape(-1, c) @ w_i.T)
    ref = _np_attention(x, attn.qkv.weight.asnumpy(), attn.qkv.bias.asnumpy(), attn.proj.weight.asnumpy(),
                        attn.proj.bias.asnumpy(), attn.rel_pos_h.asnumpy(), attn.rel_pos_w.asnumpy(), 2,
                        delta=np.stack(delta))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_rel_pos_index_and_resizes_match_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    np.testing.assert_array_equal(rel_pos_index(3, 3), [[2, 1, 0], [3, 2, 1], [4, 3, 2]])
    rng = np.random.default_rng(3)
    table = rng.standard_normal((127, 8)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(table).T[None], size=55, mode="linear")[0].T.numpy()
    np.testing.assert_allclose(resize_rel_pos(table, 55), ref, rtol=1e-4, atol=1e-4)
    pos = rng.standard_normal((1, 1 + 14 * 14, 8)).astype(np.float32)
    for grid in (28, 8, 14):
        t = torch.from_numpy(pos[:, 1:]).reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
        ref = F.interpolate(t, size=(grid, grid), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(resize_abs_pos_embed(pos, grid), ref, rtol=1e-4, atol=1e-5)
    assert bicubic_resize_matrix(5, 5) == pytest.approx(np.eye(5))
    crop = crop_rel_pos(table, 55)  # offset 0 stays in the middle row
    assert crop.shape == (55, 8) and np.array_equal(crop[27], table[63])
    with pytest.raises(ValueError):
        crop_rel_pos(table, 54)


def test_detectron2_names_map_onto_backbone_parameters():
    cfg = make_model_config("tiny", law_type="none", stem="patch", res_refine=0)  # detectron2 has the linear stem
    backbone = ViTDet(cfg)
    ours = {p.name for p in backbone.get_parameters()}
    d2 = {"backbone.net.patch_embed.proj.weight", "backbone.net.patch_embed.proj.bias", "backbone.net.pos_embed"}
    for i in range(cfg.vit_depth):
        for leaf in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                     "attn.proj.bias", "attn.rel_pos_h", "attn.rel_pos_w", "norm2.weight", "norm2.bias",
                     "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
            d2.add(f"backbone.net.blocks.{i}.{leaf}")
    mapped = {detectron2_to_vglaw_name(n, prefix="") for n in d2}
    assert mapped == ours
    assert detectron2_to_vglaw_name("roi_heads.box_predictor.bbox_pred.weight") is None
    # rel-pos table sizes: window blocks (2*ws-1), global blocks (2*grid-1)
    assert backbone.blocks[0].attn.rel_pos_h.shape == (2 * cfg.window_size - 1, cfg.vit_dim // cfg.vit_heads)
    g = cfg.global_blocks[0]
    assert backbone.blocks[g].attn.rel_pos_w.shape == (2 * cfg.grid - 1, cfg.vit_dim // cfg.vit_heads)


def test_res_head_matches_convtranspose_reference():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    rng = np.random.default_rng(4)
    c, d, hid, g, s = 12, 10, 6, 4, 40
    head = RESHead(c, d, hid, img_size=s, grid=g)
    head.norm.gamma.set_data(Tensor(rng.uniform(0.5, 1.5, hid).astype(np.float32)))
    head.norm.beta.set_data(Tensor(rng.standard_normal(hid).astype(np.float32) * 0.1))
    fmap = rng.standard_normal((2, c, g, g)).astype(np.float32)
    cls = rng.standard_normal((2, d)).astype(np.float32)
    got = head(Tensor(fmap), Tensor(cls)).asnumpy()
    t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    x = F.conv_transpose2d(t(fmap), t(head.up1.weight.asnumpy()), t(head.up1.bias.asnumpy()), stride=2)
    x = F.layer_norm(x.permute(0, 2, 3, 1), (hid,), t(head.norm.gamma.asnumpy()), t(head.norm.beta.asnumpy()), 1e-6)
    x = F.gelu(x.permute(0, 3, 1, 2))
    x = F.conv_transpose2d(x, t(head.up2.weight.asnumpy()), t(head.up2.bias.asnumpy()), stride=2)
    logit = (x * t(cls)[:, :, None, None]).sum(1, keepdim=True)
    ref = F.interpolate(logit, size=(s, s), mode="bilinear", align_corners=True).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert align_corners_matrix(4, 4) == pytest.approx(np.eye(4))


def test_patch_embed_equals_strided_conv():
    torch = pytest.importorskip("torch")
    from vglaw.models.vit import PatchEmbed
    pe = PatchEmbed(8, 6)
    x = np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(pe.proj.weight.asnumpy()),
                                     torch.from_numpy(pe.proj.bias.asnumpy()), stride=8)
    np.testing.assert_allclose(pe(Tensor(x)).asnumpy(), ref.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-5)
