"""detectron2 ViTDet .pkl loading: resampling helpers vs torch, name/shape checks, report."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "4")

from vglaw.models.resize import (bicubic_resize, crop_or_resize_rel_pos, linear_resize,  # noqa: E402
                                 resize_abs_pos)
from vglaw.models.weights import WeightsError, load_vitdet  # noqa: E402

torch = pytest.importorskip("torch")
F = torch.nn.functional


# ----------------------------------------------------------------------------- NumPy helpers vs torch
@pytest.mark.parametrize("src,dst", [((4, 4), (8, 8)), ((14, 14), (28, 28)), ((14, 14), (10, 6)), ((5, 3), (7, 9))])
def test_bicubic_matches_torch(src, dst):
    rng = np.random.default_rng(1)
    grid = rng.normal(size=(*src, 5)).astype(np.float32)  # (H, W, C)
    want = F.interpolate(torch.from_numpy(grid).permute(2, 0, 1)[None], size=dst, mode="bicubic",
                         align_corners=False)[0].permute(1, 2, 0).numpy()
    got = bicubic_resize(grid, dst)
    assert got.shape == (*dst, 5) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-5


@pytest.mark.parametrize("n_in,n_out", [(7, 15), (27, 55), (15, 7), (3, 3)])
def test_linear_matches_torch(n_in, n_out):
    table = np.random.default_rng(2).normal(size=(n_in, 4)).astype(np.float32)
    # ViTDet get_rel_pos: (L, C) -> (1, C, L) -> interpolate(size, "linear") -> (size, C)
    want = F.interpolate(torch.from_numpy(table).T[None], size=n_out, mode="linear")[0].T.numpy()
    assert np.abs(linear_resize(table, n_out) - want).max() < 1e-5  # torch: float32 source coords


def test_rel_pos_crop_keeps_the_centre():
    table = np.arange(127 * 2, dtype=np.float32).reshape(127, 2)
    out, how = crop_or_resize_rel_pos(table, 55)
    assert how == "centre-cropped" and out.shape == (55, 2)
    assert np.array_equal(out[27], table[63])  # offset 0 stays at the middle row
    assert np.array_equal(out, table[36:91])
    small, how = crop_or_resize_rel_pos(table[:7], 13)
    assert how == "linearly interpolated" and small.shape == (13, 2)
    with pytest.raises(WeightsError, match="centre-crop"):
        crop_or_resize_rel_pos(table[:8], 5)


def test_abs_pos_drops_cls_and_resizes():
    rng = np.random.default_rng(3)
    pos = rng.normal(size=(1, 1 + 14 * 14, 6)).astype(np.float32)
    out, how = resize_abs_pos(pos, (1, 28, 28, 6))
    grid = torch.from_numpy(pos[0, 1:].reshape(14, 14, 6)).permute(2, 0, 1)[None]
    want = F.interpolate(grid, size=(28, 28), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert out.shape == (1, 28, 28, 6) and "dropped cls" in how
    assert np.abs(out[0] - want).max() < 1e-5
    flat, _ = resize_abs_pos(pos, (1, 28 * 28, 6))
    assert np.array_equal(flat.reshape(1, 28, 28, 6), out)
    with_cls, _ = resize_abs_pos(pos, (1, 1 + 28 * 28, 6))
    assert np.array_equal(with_cls[:, 0], pos[:, 0])
    with pytest.raises(WeightsError, match="width 6 in the file, 8 in the model"):
        resize_abs_pos(pos, (1, 28, 28, 8))


# ----------------------------------------------------------------------------- loading a .pkl
DIM, DEPTH, HEADS, WIN = 32, 2, 2, 4   # tiny preset grid 8 (128 px / 16): window block 7 rows, global 15


@pytest.fixture(scope="module")
def backbone():
    from vglaw.config import make_model_config
    from vglaw.models.vit import ViTDet
    cfg = make_model_config("tiny", vit_dim=DIM, vit_depth=DEPTH, vit_heads=HEADS, window_size=WIN,
                            global_blocks=(1,), law_type="none", stem="patch", res_refine=0)
    return ViTDet(cfg)


def _detectron2_state(global_rows=19, seed=0):
    """detectron2 ViTDet key names at small sizes: 4x4+cls pos-embed, larger global rel-pos tables."""
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    hd = DIM // HEADS
    s = {"backbone.net.pos_embed": r(1, 1 + 4 * 4, DIM),
         "backbone.net.patch_embed.proj.weight": r(DIM, 3, 16, 16),
         "backbone.net.patch_embed.proj.bias": r(DIM)}
    for i in range(DEPTH):
        p = f"backbone.net.blocks.{i}."
        rows = global_rows if i == 1 else 2 * WIN - 1
        s.update({p + "norm1.weight": r(DIM), p + "norm1.bias": r(DIM),
                  p + "attn.qkv.weight": r(3 * DIM, DIM), p + "attn.qkv.bias": r(3 * DIM),
                  p + "attn.rel_pos_h": r(rows, hd), p + "attn.rel_pos_w": r(rows, hd),
                  p + "attn.proj.weight": r(DIM, DIM), p + "attn.proj.bias": r(DIM),
                  p + "norm2.weight": r(DIM), p + "norm2.bias": r(DIM),
                  p + "mlp.fc1.weight": r(4 * DIM, DIM), p + "mlp.fc1.bias": r(4 * DIM),
                  p + "mlp.fc2.weight": r(DIM, 4 * DIM), p + "mlp.fc2.bias": r(DIM)})
    # neck and detector heads: present in the real file, not ours
    s["backbone.simfp_2.0.weight"] = r(DIM, DIM // 2, 2, 2)
    s["proposal_generator.rpn_head.conv.conv0.weight"] = r(4, 4, 3, 3)
    s["roi_heads.box_predictor.cls_score.weight"] = r(81, 8)
    return s


def _write(tmp_path, state, name="model_final.pkl"):
    path = tmp_path / name
    with open(path, "wb") as f:  # protocol 2, as detectron2's model-zoo pickles
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f, protocol=2)
    return path


def _params(cell):
    return {n: p.asnumpy() for n, p in cell.parameters_and_names()}


@pytest.mark.parametrize("global_rows,how", [(19, "centre-cropped"), (11, "linearly interpolated")])
def test_load_vitdet_maps_crops_and_resizes(tmp_path, backbone, global_rows, how):
    state = _detectron2_state(global_rows)
    report = load_vitdet(backbone, _write(tmp_path, state))
    got = _params(backbone)
    assert len(report.loaded) == len(got)  # every backbone parameter received a value
    assert sorted(report.ignored) == ["backbone.simfp_2.0.weight", "proposal_generator.rpn_head.conv.conv0.weight",
                                      "roi_heads.box_predictor.cls_score.weight"]
    assert np.array_equal(got["blocks.0.norm1.gamma"], state["backbone.net.blocks.0.norm1.weight"])
    assert np.array_equal(got["blocks.1.norm2.beta"], state["backbone.net.blocks.1.norm2.bias"])
    assert np.array_equal(got["blocks.1.attn.qkv.weight"], state["backbone.net.blocks.1.attn.qkv.weight"])
    assert np.array_equal(got["blocks.0.attn.rel_pos_h"], state["backbone.net.blocks.0.attn.rel_pos_h"])
    # global block: 15 rows needed
    src = torch.from_numpy(state["backbone.net.blocks.1.attn.rel_pos_w"])
    if global_rows > 15:
        want = src[2:17].numpy()
    else:
        want = F.interpolate(src.T[None], size=15, mode="linear")[0].T.numpy()
    assert np.abs(got["blocks.1.attn.rel_pos_w"] - want).max() < 1e-5
    assert any(a.startswith("blocks.1.attn.rel_pos_w") and how in a for a in report.adapted)
    # pos-embed: cls dropped, 4x4 -> 8x8 bicubic, as detectron2's get_abs_pos
    grid = torch.from_numpy(state["backbone.net.pos_embed"][0, 1:].reshape(4, 4, DIM)).permute(2, 0, 1)[None]
    want = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert np.abs(got["pos_embed"][0] - want).max() < 1e-5


def test_load_vitdet_into_full_model(tmp_path):
    import vglaw
    model = vglaw.build_model(preset="tiny", law_type="svd", vit_dim=DIM, vit_depth=DEPTH, vit_heads=HEADS,
                              window_size=WIN, global_blocks=(1,), text_layers=1, stem="patch", res_refine=0)
    state = _detectron2_state(seed=5)
    load_vitdet(model, _write(tmp_path, state))
    assert np.array_equal(model.backbone.blocks[0].mlp.fc2.weight.asnumpy(),
                          state["backbone.net.blocks.0.mlp.fc2.weight"])


def test_load_vitdet_errors_name_the_parameter(tmp_path, backbone):
    before = _params(backbone)

    bad = _detectron2_state()
    bad["backbone.net.blocks.0.attn.qkv.weight"] = np.zeros((3 * DIM, DIM + 1), np.float32)
    with pytest.raises(WeightsError, match=r"backbone\.net\.blocks\.0\.attn\.qkv\.weight.*\(96, 33\)"):
        load_vitdet(backbone, _write(tmp_path, bad))

    missing = _detectron2_state()
    del missing["backbone.net.blocks.1.mlp.fc1.bias"]
    with pytest.raises(WeightsError, match=r"no value in the file: \['blocks\.1\.mlp\.fc1\.bias'\]"):
        load_vitdet(backbone, _write(tmp_path, missing))

    extra = _detectron2_state()
    extra["backbone.net.blocks.2.norm1.weight"] = np.zeros(DIM, np.float32)  # a deeper backbone
    with pytest.raises(WeightsError, match=r"no backbone parameter: \['backbone\.net\.blocks\.2\.norm1\.weight"):
        load_vitdet(backbone, _write(tmp_path, extra))

    # nothing was written by the failed loads
    after = _params(backbone)
    assert all(np.array_equal(before[n], after[n]) for n in before)

    # strict=False loads what fits and lists the rest
    report = load_vitdet(backbone, _write(tmp_path, missing), strict=False)
    assert "blocks.1.mlp.fc1.bias" not in report.loaded and "blocks.1.mlp.fc1.weight" in report.loaded

    with open(tmp_path / "weird.pkl", "wb") as f:
        pickle.dump({"state_dict": {}}, f, protocol=2)
    with pytest.raises(WeightsError, match="expected a dict with key 'model'"):
        load_vitdet(backbone, tmp_path / "weird.pkl")
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_vitdet(backbone, tmp_path / "nope.pkl")
