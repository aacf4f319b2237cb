"""Re-scoring a record with the box of its predicted masks (vglaw.workbook.rescore, box_source)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vglaw.train import TrainConfig


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from vglaw.data import RefDataset, generate_shapes, preprocess, read_manifest
    root = tmp_path_factory.mktemp("rescore")
    generate_shapes(root / "data", dataset="shapes", n_images=12, min_size=64, max_size=96, seed=5)
    cache = preprocess(root / "data", "shapes", "unc", root / "cache")
    return {"root": root, "val": RefDataset(root / "cache", "shapes", "unc", "val"),
            "content": read_manifest(cache)["content"]}


def _record(shapes, folder, *, preset="tiny", use_mask=True):
    """A finished run's record: even sentences predict their GT mask, odd ones an empty mask; every
    head box is the GT box shifted right by half its width."""
    from vglaw.eval.metrics import box_ious, mask_inter_union
    from vglaw.train import resolve_config
    from vglaw.utils.io import mask_to_rle
    ds, root = shapes["val"], shapes["root"]
    cfg = resolve_config(TrainConfig(preset=preset, dataset="shapes", use_mask=use_mask, vit_model="scratch",
                                     data_root=str(root / "data"), cache_dir=str(root / "cache"),
                                     save_ckpt_dir=str(root / "runs"), experiment_name=folder.name))
    train = json.loads(json.dumps(dataclasses.asdict(cfg)))
    train.pop("box_source")  # a record from before the field
    preds = []
    for i in range(len(ds)):
        s = ds[i]
        gt = np.asarray(s["bbox"], np.float64)
        head = gt + np.array([gt[2] / 2, 0, 0, 0])
        mask = s["mask"] if i % 2 == 0 else np.zeros_like(s["mask"])
        inter, union = mask_inter_union(mask, s["mask"])
        preds.append({"sent_id": int(s["sent_id"]), "pred_box": [round(float(v), 2) for v in head],
                      "box_iou": float(box_ious(head[None], gt[None])[0]), "pred_mask": mask_to_rle(mask),
                      "mask_inter": inter, "mask_union": union})
    ious = np.array([p["box_iou"] for p in preds])
    miou = float(np.mean([p["mask_inter"] / p["mask_union"] for p in preds]))
    val = {"n": len(preds), "prec@0.5": float((ious >= 0.5).mean()), "prec@0.9": float((ious >= 0.9).mean()),
           "box_miou": float(ious.mean()), "miou": miou, "mask_threshold": 0.5}
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": train, "model": {"preset": preset},
                                                    "data": {"content": shapes["content"]}}))
    (folder / "status.json").write_text(json.dumps({"state": "finished", "best_step": 700,
                                                    "best_metric": "box_miou+miou", "best_value": 0.0}))
    (folder / "metrics.json").write_text(json.dumps({"val": val}))
    (folder / "predictions_val.json").write_text(json.dumps(preds))
    return cfg, preds


def test_rescored_record_scores_the_box_of_each_mask_and_matches_the_new_recipe(shapes, tmp_path):
    from vglaw.eval.metrics import box_ious, mask_bbox
    from vglaw.workbook.rescore import needs_rescore, rescore_record
    from vglaw.workbook.runs import archived_run_differences
    record = tmp_path / "arch" / "ablation-svd-s0-x"
    cfg, before = _record(shapes, record)
    config = json.loads((record / "config.json").read_text())
    assert needs_rescore(config) and cfg.box_source == "mask"  # the tiny recipe's
    assert any("box_source" in d for d in archived_run_differences(cfg, config))  # "head" then: not reused
    out = rescore_record(record, shapes["root"] / "cache")
    assert out["record"] == str(record) and out["renamed_from"] is None  # not named by a fingerprint
    rows = json.loads((record / "predictions_val.json").read_text())
    ds = shapes["val"]
    for i, (p, q) in enumerate(zip(before, rows)):
        s = ds[i]
        assert (q["head_box"], q["head_box_iou"]) == (p["pred_box"], p["box_iou"])
        assert (q["pred_mask"], q["mask_inter"], q["mask_union"]) == (p["pred_mask"], p["mask_inter"], p["mask_union"])
        if i % 2 == 0:  # the GT mask: its box, which covers the GT box's object
            mb = mask_bbox(s["mask"])
            assert q["pred_box"] == mb.tolist() and q["box_iou"] > 0.8
            assert q["box_iou"] == pytest.approx(float(box_ious(mb[None], np.asarray(s["bbox"])[None])[0]))
        else:  # an empty mask keeps the head's box
            assert q["pred_box"] == p["pred_box"] and q["box_iou"] == p["box_iou"]
    m = json.loads((record / "metrics.json").read_text())["val"]
    ious = np.array([q["box_iou"] for q in rows])
    assert m["box_miou"] == pytest.approx(ious.mean()) and m["prec@0.5"] == pytest.approx((ious >= 0.5).mean())
    assert m["prec@0.9"] == pytest.approx((ious >= 0.9).mean())
    assert m["head_box_miou"] == pytest.approx(np.mean([p["box_iou"] for p in before]))
    assert out["after"]["box_miou"] > out["before"]["box_miou"]
    status = json.loads((record / "status.json").read_text())
    assert status["best_value"] == pytest.approx((m["box_miou"] + m["miou"]) / 2)
    assert "update 700" in status["rescored"]["selection"]
    config = json.loads((record / "config.json").read_text())
    assert config["train"]["box_source"] == config["model"]["box_source"] == "mask"
    assert archived_run_differences(cfg, config) == []  # now the same run as the recipe asks for
    assert not needs_rescore(config)
    with pytest.raises(ValueError, match="already scored"):
        rescore_record(record, shapes["root"] / "cache")
    assert sorted(p.name for p in record.parent.iterdir()) == [record.name]  # no temporary copy left


def test_rescore_folder_leaves_other_records_and_refuses_other_data(shapes, tmp_path):
    from vglaw.workbook.rescore import main, rescore_record
    arch = tmp_path / "arch"
    _record(shapes, arch / "a-tiny")
    _record(shapes, arch / "b-rec-only", use_mask=False)
    _record(shapes, arch / "c-paper", preset="paper")
    untouched = {n: (arch / n / "predictions_val.json").read_text() for n in ("b-rec-only", "c-paper")}
    assert main([str(arch), "--cache_dir", str(shapes["root"] / "cache")]) == 0
    assert "box_source" in json.loads((arch / "a-tiny" / "config.json").read_text())["train"]
    for n, text in untouched.items():
        assert (arch / n / "predictions_val.json").read_text() == text
    other = tmp_path / "other" / "d"
    _record(shapes, other)
    config = json.loads((other / "config.json").read_text())
    config["data"]["content"] = "0" * 16
    (other / "config.json").write_text(json.dumps(config))
    before = {f.name: f.read_text() for f in other.iterdir()}
    with pytest.raises(ValueError, match="data content"):
        rescore_record(other, shapes["root"] / "cache")
    assert {f.name: f.read_text() for f in other.iterdir()} == before  # nothing lost or half-written


def test_a_grid_point_record_takes_the_name_of_its_new_settings(shapes, tmp_path):
    from vglaw.workbook.ablation import _fingerprint
    from vglaw.workbook.rescore import rescore_folder
    probe = tmp_path / "probe" / "x"
    _record(shapes, probe)
    train = json.loads((probe / "config.json").read_text())["train"]
    old, new = _fingerprint(train), _fingerprint(dict(train, box_source="mask"))
    assert old != new
    arch = tmp_path / "arch"
    _record(shapes, arch / f"ablation-svd-s0-{old}")
    (done,) = rescore_folder(arch, shapes["root"] / "cache")
    assert done["renamed_from"] == f"ablation-svd-s0-{old}"
    assert sorted(p.name for p in arch.iterdir()) == [f"ablation-svd-s0-{new}"]
    assert json.loads((arch / f"ablation-svd-s0-{new}" / "config.json").read_text())["train"]["box_source"] == "mask"
