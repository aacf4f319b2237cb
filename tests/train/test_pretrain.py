"""Backbone pretraining on train-split instances (vglaw.pretrain, issue 8 / DESIGN §4.2b)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _train_helpers import NO_ACCUM, TINY_MODEL, cli_args, run_cli

BACKBONE = {k: v for k, v in TINY_MODEL.items() if k in ("img_size", "window_size", "vit_dim", "vit_depth",
                                                           "vit_heads", "global_blocks")}


def _cfg(**kw):
    from vglaw.train.pretrain import PretrainConfig
    return PretrainConfig(**{**dict(updates=3, batch_size=4, warmup=1, model_overrides=dict(BACKBONE)), **kw})


def test_reads_train_split_images_only(tiny_data, monkeypatch):
    import vglaw.data.cache as cache
    from vglaw.data import RefDataset
    from vglaw.train.pretrain import PretrainData
    read = []
    real = cache.load_rgb
    monkeypatch.setattr(cache, "load_rgb", lambda p: read.append(Path(p).name) or real(p))
    data = PretrainData(tiny_data["data_root"], "shapes", "unc", tiny_data["cache_dir"], 64)
    split_ids = {s: set(RefDataset(tiny_data["cache_dir"], "shapes", "unc", s).image_ids.tolist())
                 for s in ("train", "val", "testA", "testB")}
    held_out = split_ids["val"] | split_ids["testA"] | split_ids["testB"]
    assert held_out and set(data.image_ids) == split_ids["train"]
    assert not set(data.image_ids) & held_out
    names = {f"COCO_train2014_{i:012d}.jpg" for i in held_out}
    assert len(read) == len(data) and not set(read) & names  # no val/test image file was even opened


def test_targets_match_the_instances(tiny_data):
    from vglaw.train.pretrain import PretrainData
    data = PretrainData(tiny_data["data_root"], "shapes", "unc", tiny_data["cache_dir"], 64)
    images, cls, ltrb = data.batch([0, 1, 2], None, translate=False, flip=False)
    assert images.shape == (3, 3, 64, 64) and cls.shape == (3, 16, 16) and ltrb.shape == (3, 16, 16, 4)
    assert set(np.unique(cls)) <= set(range(data.n_classes)) and (cls > 0).any()
    fg = cls > 0
    assert np.all(ltrb[~fg] == 0) and np.all(ltrb[fg].sum(-1) > 0)
    # left + right distance = the box width at every pixel of one instance: constant per instance
    widths = (ltrb[..., 0] + ltrb[..., 2])[fg]
    assert widths.max() <= 1.0 and widths.min() > 0.02
    # a flip keeps the categories and the box sizes, and moves the objects
    _, cls_f, ltrb_f = data.batch([0], np.random.default_rng(3), translate=False, flip=True)
    _, cls_n, _ = data.batch([0], None, translate=False, flip=False)
    assert sorted(np.unique(cls_f)) == sorted(np.unique(cls_n))


def test_pretrain_saves_a_backbone_that_loads_strictly_and_is_reused(tiny_data, tmp_path):
    import mindspore as ms
    import vglaw
    from vglaw.models.checkpoint import save_model
    from vglaw.train.pretrain import PretrainedBackboneError, ensure_pretrained, load_pretrained_backbone
    ms.set_context(mode=ms.GRAPH_MODE)
    kw = dict(data_root=tiny_data["data_root"], cache_dir=tiny_data["cache_dir"], runs_dir=tmp_path,
              progress=False)
    ckpt = ensure_pretrained(_cfg(), **kw)
    folder = ckpt.parent
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "finished" and status["wall_s"] > 0
    assert json.loads((folder / "config.json").read_text())["data"]["split"] == "train"
    assert len((folder / "log.jsonl").read_text().splitlines()) == 1
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folder left
    stamp = ckpt.stat().st_mtime_ns
    assert ensure_pretrained(_cfg(), **kw) == ckpt and ckpt.stat().st_mtime_ns == stamp  # reused
    assert ensure_pretrained(_cfg(seed=1), **kw) != ckpt  # other settings: another folder

    model = vglaw.build_model("tiny", "svd", **{**TINY_MODEL, "global_blocks": tuple(TINY_MODEL["global_blocks"])})
    before = model.head.rec.key.weight.asnumpy().copy()
    meta = load_pretrained_backbone(model, ckpt)
    from vglaw.models.checkpoint import read_checkpoint
    arrays, _ = read_checkpoint(ckpt)
    for name, p in model.backbone.parameters_and_names():
        np.testing.assert_array_equal(p.asnumpy(), arrays[name], err_msg=name)
    np.testing.assert_array_equal(model.head.rec.key.weight.asnumpy(), before)  # only the backbone
    assert meta["data"]["images"] > 0

    other = vglaw.build_model("tiny", "svd", **{**TINY_MODEL, "global_blocks": (1,), "vit_dim": 64})
    with pytest.raises(PretrainedBackboneError, match="vit_dim: checkpoint 32 vs model 64"):
        load_pretrained_backbone(other, ckpt)
    full = tmp_path / "full.ckpt"
    save_model(model, full)
    with pytest.raises(PretrainedBackboneError, match="is not a pretrained backbone"):
        load_pretrained_backbone(model, full)


def test_training_cli_uses_the_pretrained_backbone(tiny_data, tmp_path):
    args = [a for a in cli_args(tiny_data, tmp_path, "pt", "--max_steps", "2", *NO_ACCUM)]
    i = args.index("scratch")
    args[i] = "shapes_pretrained"
    proc = run_cli(args + ["--pretrain_updates", "2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads((tmp_path / "pt" / "config.json").read_text())["derived"]["loaded_weights"]
    assert loaded["backbone"].endswith("backbone.ckpt") and Path(loaded["backbone"]).is_file()
    assert loaded["backbone_pretrain"]["updates"] == 2 and loaded["backbone_pretrain"]["wall_s"] > 0
    assert Path(loaded["backbone"]).parent.parent == tmp_path / "pretrain"
