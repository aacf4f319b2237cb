"""vglaw.convert: the authors' checkpoints <-> ours (issue 12).

The full-size checks use a synthetic official checkpoint: every name and shape of
tests/models/data/official_params.json (a copy of ../shared/official_params.json, the authors'
model as a MindSpore checkpoint stores it) filled with random values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from vglaw.config import AUTHORS_FIDELITY, make_model_config
from vglaw.models.convert import (UNUSED_OFFICIAL, ConversionError, _our_shape, convert_official, convert_to_official,
                                  load_official_backbone, main, official_layout, official_shapes)
from vglaw.models import build_model
from vglaw.models.checkpoint import CARRIED_PREFIX, load_model, load_ms_checkpoint, read_checkpoint, save_checkpoint, save_model

from _model_helpers import SMALL, make_inputs

OFFICIAL = json.loads((Path(__file__).parent / "data" / "official_params.json").read_text())["parameters"]
PAPER_AUTHORS = make_model_config("paper", **AUTHORS_FIDELITY)


def _random_official(shapes: dict, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s, dtype=np.float32) * np.float32(scale) for n, s in shapes.items()}


def _write_plain(path: Path, arrays: dict) -> Path:
    ms.save_checkpoint([{"name": n, "data": Tensor(a)} for n, a in arrays.items()], str(path))
    return path


def _read_plain(path: Path) -> dict[str, np.ndarray]:
    return {n: p.asnumpy() for n, p in load_ms_checkpoint(path).items()}


# --------------------------------------------------------------------------- coverage

def test_layout_covers_the_official_parameter_list():
    """Every official name is placed (or declared unused), in their order, with their shape."""
    theirs = {p["name"]: tuple(p["shape"]) for p in OFFICIAL}
    assert len(theirs) == 365
    assert official_shapes(PAPER_AUTHORS) == theirs
    assert list(official_shapes(PAPER_AUTHORS)) == list(theirs)
    layout = official_layout(PAPER_AUTHORS)
    assert sorted(e.official for e in layout if e.ours is None) == sorted(UNUSED_OFFICIAL)
    # our side: every parameter of the paper model receives exactly its shape, none twice
    ours = {}
    for e in layout:
        if e.ours is not None:
            ours.setdefault(e.ours, set()).add(_our_shape(e, PAPER_AUTHORS))
    assert all(len(s) == 1 for s in ours.values())
    assert len(ours) == 365 - 2 - 6 * 12 + 6  # pooler unused; 12 blocks' generator MLPs batched in 6 tensors
    backbone = official_shapes(PAPER_AUTHORS, "backbone")
    assert backbone == {n: s for n, s in theirs.items() if n.startswith("visual_encoder.")}


# --------------------------------------------------------------------------- paper: convert, load, back

@pytest.fixture(scope="module")
def paper_round_trip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper")
    rng = np.random.default_rng(0)  # uniform: 156 M values drawn in a fraction of normal's time
    official = {p["name"]: rng.random(p["shape"], dtype=np.float32) - np.float32(0.5) for p in OFFICIAL}
    src = _write_plain(tmp / "official.ckpt", official)
    report = convert_official(src, tmp / "ours.ckpt", preset="paper")
    model = build_model("paper", "svd", **AUTHORS_FIDELITY)
    load = load_model(model, tmp / "ours.ckpt", strict=True)
    yield dict(tmp=tmp, src=src, official=official, report=report, model=model, load=load)


def test_official_checkpoint_converts_and_loads_strictly(paper_round_trip):
    r = paper_round_trip
    assert r["load"].ok and r["report"].mapped == 363  # + the 2 unused pooler tensors
    assert r["report"].unused == list(UNUSED_OFFICIAL)
    official = r["official"]
    params = {n: p.asnumpy() for n, p in r["model"].parameters_and_names()}
    # the layouts that are not a copy
    np.testing.assert_array_equal(params["law.P"][0], official["weight_generator.S"][:, :, 0])
    np.testing.assert_array_equal(params["law.Q"][0], official["weight_generator.D"][:, :, 0])
    np.testing.assert_array_equal(params["law.layer_embed"], official["weight_generator.layer_embedding"][:, 0])
    np.testing.assert_array_equal(params["law.fc1_weight"][7], official["weight_generator.proj.7.0.weight"].T)
    np.testing.assert_array_equal(params["law.fc2_weight"][11], official["weight_generator.proj.11.3.weight"].T)
    np.testing.assert_array_equal(params["law.ln_beta"][4, 0], official["weight_generator.proj.4.1.beta"])
    np.testing.assert_array_equal(params["backbone.pos_embed"], official["visual_encoder.pos_embed"])
    np.testing.assert_array_equal(params["head.rec.mlp.4.weight"], official["bbox_pred.layers.2.weight"])
    np.testing.assert_array_equal(params["text_encoder.encoder.layer.5.attention.self.key.bias"],
                                  official["text_encoder.encoder.layer.5.attention.self_attn.key.bias"])
    # the stored config records the conversion
    meta = r["load"].meta
    conv = meta["conversion"]
    assert conv["source_sha256"] == hashlib.sha256(r["src"].read_bytes()).hexdigest()
    assert conv["options"] == AUTHORS_FIDELITY and conv["fidelity"] == "authors"
    assert {k: meta["config"][k] for k in AUTHORS_FIDELITY} == AUTHORS_FIDELITY
    assert r["model"].law.ln_eps == 1e-7 and r["model"].backbone.blocks[0].norm1.epsilon == 1e-5


def test_there_and_back_is_bit_identical(paper_round_trip):
    r = paper_round_trip
    back = r["tmp"] / "back.ckpt"
    assert main(["--to_official", str(r["tmp"] / "ours.ckpt"), "--out", str(back)]) == 0
    official, again = r["official"], _read_plain(back)
    assert list(again) == list(official)
    for name, arr in official.items():
        assert again[name].dtype == arr.dtype and np.array_equal(again[name], arr), name


# --------------------------------------------------------------------------- small configs: forward, options

SMALL_AUTHORS = dict(SMALL, pretrain_grid=2, **AUTHORS_FIDELITY)


def test_converted_model_computes_with_mindspores_resize(tmp_path):
    """A converted model adds ops.interpolate(bicubic) of the 2x2 table in every forward: equal to a
    model holding that resized table as its (token-grid) parameter, with the same eps values."""
    cfg = make_model_config("paper", **SMALL_AUTHORS)
    src = _write_plain(tmp_path / "o.ckpt", _random_official(official_shapes(cfg), seed=1, scale=0.1))
    convert_official(src, tmp_path / "ours.ckpt", **SMALL_AUTHORS)
    from vglaw.eval.evaluate import load_model_from_checkpoint
    a = load_model_from_checkpoint(tmp_path / "ours.ckpt")  # as evaluate / predict build it
    assert a.config == make_model_config("paper", **SMALL_AUTHORS)
    b = build_model("paper", "svd", **dict(SMALL_AUTHORS, pos_table="token"))
    arrays, _ = read_checkpoint(tmp_path / "ours.ckpt")
    table = arrays["backbone.pos_embed"][0, 1:].reshape(2, 2, -1).transpose(2, 0, 1)[None]
    resized = ms.ops.interpolate(Tensor(table), size=(4, 4), mode="bicubic", align_corners=False).asnumpy()
    for name, p in b.parameters_and_names():
        p.set_data(Tensor(resized.transpose(0, 2, 3, 1)) if name == "backbone.pos_embed" else Tensor(arrays[name]))
    a.set_train(False)
    b.set_train(False)
    inputs = make_inputs(cfg=SMALL)
    for x, y in zip(a(*inputs), b(*inputs)):  # measured 1.5e-8; the torch rule's table gives 6.5e-5
        np.testing.assert_allclose(x.asnumpy(), y.asnumpy(), rtol=0, atol=1e-6)
    # a model saved by vglaw itself (no carried pooler) goes back too; the pooler is written as zeros
    save_model(a, tmp_path / "saved.ckpt")
    rep = convert_to_official(tmp_path / "saved.ckpt", tmp_path / "saved_official.ckpt")
    official, again = _read_plain(src), _read_plain(tmp_path / "saved_official.ckpt")
    assert list(again) == list(official) and not again[UNUSED_OFFICIAL[0]].any()
    assert all(np.array_equal(again[n], a) for n, a in official.items() if n not in UNUSED_OFFICIAL)
    assert any("written as zeros" in a for a in rep.adapted)


def test_fidelity_ours_keeps_the_preset_and_approximates_the_table_back(tmp_path):
    cfg = make_model_config("paper", **dict(SMALL, pretrain_grid=2))
    official = _random_official(official_shapes(cfg), seed=2)
    src = _write_plain(tmp_path / "o.ckpt", official)
    rep = convert_official(src, tmp_path / "ours.ckpt", fidelity="ours", **dict(SMALL, pretrain_grid=2))
    assert any("bicubic (torch rule) 2x2 -> 4x4" in a for a in rep.adapted)
    _, meta = read_checkpoint(tmp_path / "ours.ckpt")
    assert meta["config"]["vit_ln_eps"] == 1e-6 and meta["config"]["pos_table"] == "token"
    back = convert_to_official(tmp_path / "ours.ckpt", tmp_path / "back.ckpt")
    assert any("least-squares" in a for a in back.adapted)
    again = _read_plain(tmp_path / "back.ckpt")
    assert all(np.array_equal(again[n], a) for n, a in official.items() if n != "visual_encoder.pos_embed")


# --------------------------------------------------------------------------- the backbone-only file

@pytest.mark.parametrize("prefix", ["", "visual_encoder."])
def test_backbone_only_loads_like_the_pkl(tmp_path, prefix):
    cfg = make_model_config("paper", **SMALL)
    vit = _random_official(official_shapes(cfg, "backbone"), seed=3)
    arrays = {prefix + n[len("visual_encoder."):]: a for n, a in vit.items()}
    # a global block's tables trained at a larger resolution are centre-cropped, as for the .pkl
    big = np.random.default_rng(4).standard_normal((11, 16), dtype=np.float32)
    arrays[prefix + "blocks.1.attn.rel_pos_h"] = big
    arrays["neck.conv.weight"] = np.zeros((2, 2), np.float32)  # not the ViT: ignored, listed
    src = _write_plain(tmp_path / "ms_model_final.ckpt", arrays)
    for law_type in ("svd", "none"):
        model = build_model("paper", law_type, **SMALL)
        rep = load_official_backbone(model, src)
        got = {n: p.asnumpy() for n, p in model.backbone.parameters_and_names()}
        np.testing.assert_array_equal(got["blocks.0.mlp.fc1.weight"], vit["visual_encoder.blocks.0.mlp.fc1.weight"])
        np.testing.assert_array_equal(got["blocks.1.attn.rel_pos_h"], big[2:9])
        assert rep.ignored == ["neck.conv.weight"]
        assert any(a.startswith("visual_encoder.blocks.1.attn.rel_pos_h: (11, 16) -> (7, 16) centre-cropped")
                   for a in rep.adapted)
    rep = convert_official(src, tmp_path / "bb.ckpt", **SMALL)
    arrays_out, meta = read_checkpoint(tmp_path / "bb.ckpt")
    assert meta["kind"] == "vglaw-backbone" and all(n.startswith("backbone.") for n in arrays_out)
    del arrays[prefix + "blocks.0.norm2.beta"]
    _write_plain(tmp_path / "short.ckpt", arrays)
    with pytest.raises(ConversionError, match=r"1 name\(s\) missing: visual_encoder.blocks.0.norm2.beta"):
        load_official_backbone(build_model("paper", "svd", **SMALL), tmp_path / "short.ckpt")
    rep = load_official_backbone(build_model("paper", "svd", **SMALL), tmp_path / "short.ckpt", strict=False)
    assert "blocks.0.norm2.beta" not in rep.loaded and "blocks.0.norm2.gamma" in rep.loaded


# --------------------------------------------------------------------------- bad input

def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_checkpoint_of_another_model_is_refused(tmp_path):
    src = _write_plain(tmp_path / "resnet.ckpt", {"conv1.weight": np.zeros((4, 3, 3, 3), np.float32),
                                                  "fc.bias": np.zeros(4, np.float32)})
    with pytest.raises(ConversionError) as e:
        convert_official(src, tmp_path / "x.ckpt")
    assert "not a checkpoint of the authors' release" in _one_line(e)
    # official names with a stranger and a wrong shape: every problem named on one line
    cfg = make_model_config("paper", **SMALL_AUTHORS)
    arrays = _random_official(official_shapes(cfg))
    arrays["weight_generator.extra"] = np.zeros(3, np.float32)
    arrays["ada_gap.k_proj.bias"] = np.zeros(5, np.float32)
    _write_plain(tmp_path / "odd.ckpt", arrays)
    with pytest.raises(ConversionError) as e:
        convert_official(tmp_path / "odd.ckpt", tmp_path / "x.ckpt", **SMALL_AUTHORS)
    msg = _one_line(e)
    assert "no place in the model: weight_generator.extra" in msg and "ada_gap.k_proj.bias (5,) vs (8,)" in msg
    # a vglaw checkpoint is not an official one (and the other way round)
    save_model(build_model("tiny", "svd", **SMALL), tmp_path / "tiny.ckpt")
    with pytest.raises(ConversionError, match="vglaw checkpoint already"):
        convert_official(tmp_path / "tiny.ckpt", tmp_path / "x.ckpt")
    with pytest.raises(ConversionError, match="no counterpart in the authors' release: rec_token_norm"):
        convert_to_official(tmp_path / "tiny.ckpt", tmp_path / "x.ckpt")
    with pytest.raises(ConversionError, match="not a vglaw checkpoint"):
        convert_to_official(tmp_path / "resnet.ckpt", tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()


def test_truncated_file_is_refused(tmp_path, capsys):
    cfg = make_model_config("paper", **SMALL_AUTHORS)
    src = _write_plain(tmp_path / "o.ckpt", _random_official(official_shapes(cfg)))
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError) as e:
        convert_official(src, tmp_path / "x.ckpt", **SMALL_AUTHORS)
    assert "is truncated or not a MindSpore checkpoint" in _one_line(e)
    assert main(["--official", str(src), "--out", str(tmp_path / "x.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vglaw.models.convert: error:") and "\n" not in err


def test_backbone_only_passed_as_full_is_refused(tmp_path):
    cfg = make_model_config("paper", **SMALL)
    src = _write_plain(tmp_path / "bb.ckpt", _random_official(official_shapes(cfg, "backbone")))
    with pytest.raises(ConversionError) as e:
        convert_official(src, tmp_path / "x.ckpt", kind="full", **SMALL)
    assert "backbone-only checkpoint" in _one_line(e) and "--vit_model vitdet_b_ms" in str(e.value)
    full = _write_plain(tmp_path / "full.ckpt", _random_official(official_shapes(make_model_config("paper", **SMALL))))
    with pytest.raises(ConversionError, match="is a full VG-LAW checkpoint"):
        load_official_backbone(build_model("paper", "svd", **SMALL), full)


def test_stored_config_without_the_new_fields_still_loads(tmp_path):
    """Checkpoints saved before issue 12 lack law_ln_eps / pos_resize / pos_table: they load with
    the defaults, which are what they computed."""
    model = build_model("tiny", "svd", **SMALL)
    params = {n: p for n, p in model.parameters_and_names()}
    old = {k: v for k, v in json.loads(json.dumps(model.config.__dict__)).items()
           if k not in ("law_ln_eps", "pos_resize", "pos_table")}
    save_checkpoint(tmp_path / "old.ckpt", dict(params, **{CARRIED_PREFIX + "x": np.zeros(2, np.float32)}),
                    {"config": old})
    assert load_model(build_model("tiny", "svd", **SMALL), tmp_path / "old.ckpt", strict=True).ok


def test_training_starts_from_the_authors_backbone(tmp_path):
    """--vit_model vitdet_b_ms --vit_model_path <the authors' backbone .ckpt>."""
    from vglaw.train import ConfigError
    from vglaw.train.config import TrainConfig, resolve_config
    from vglaw.train.loop import _init_weights
    with pytest.raises(ConfigError, match="vitdet_b_ms' needs --vit_model_path"):
        resolve_config(TrainConfig(preset="tiny", vit_model="vitdet_b_ms"))
    model = build_model("paper", "svd", **SMALL)
    vit = _random_official(official_shapes(model.config, "backbone"), seed=5)
    src = _write_plain(tmp_path / "ms_model_final_61ccd1.ckpt", vit)
    cfg = TrainConfig(preset="paper", vit_model="vitdet_b_ms", vit_model_path=str(src), text_encoder_path="none")
    assert _init_weights(model, cfg) == {"backbone": str(src)}
    np.testing.assert_array_equal(model.backbone.blocks[1].attn.qkv.weight.asnumpy(),
                                  vit["visual_encoder.blocks.1.attn.qkv.weight"])
