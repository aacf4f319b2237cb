"""evaluate_split on a tiny synthetic split with an untrained tiny model (real run)."""

import json

import numpy as np
import pytest

from vglaw.eval.evaluate import evaluate_split, format_table, main, sigmoid
from vglaw.utils.io import rle_to_mask
from vglaw.eval.metrics import box_ious, mask_inter_union

KEYS = ["n", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9", "box_miou", "miou", "oiou",
        "miou_canvas"]


@pytest.fixture(scope="module")
def evaluated(tiny_model, val_ds, tokenizer):
    # 3 expressions with batch_size 2: one full batch + one padded partial batch
    return evaluate_split(tiny_model, val_ds, tokenizer, img_size=128, max_len=20, batch_size=2,
                          progress=False)


def test_metrics_structure_and_ranges(evaluated, val_ds):
    metrics, preds = evaluated
    assert len(val_ds) == 3
    assert all(k in metrics for k in KEYS)
    assert metrics["n"] == len(val_ds) == len(preds)
    for k in KEYS[1:]:
        assert 0.0 <= metrics[k] <= 1.0, (k, metrics[k])
    assert metrics["prec@0.5"] >= metrics["prec@0.9"]
    json.dumps(metrics), json.dumps(preds)
    assert "prec@0.5" in format_table(metrics)


def test_predictions_are_consistent_with_dataset(evaluated, val_ds):
    metrics, preds = evaluated
    assert [p["sent_id"] for p in preds] == [int(val_ds[i]["sent_id"]) for i in range(len(val_ds))]
    ious, inters, unions = [], [], []
    for i, p in enumerate(preds):
        s = val_ds[i]
        h, w = s["mask"].shape
        x, y, bw, bh = p["pred_box"]
        assert -1e-3 <= x and -1e-3 <= y and x + bw <= w + 0.01 and y + bh <= h + 0.01
        assert p["box_iou"] == pytest.approx(box_ious([p["pred_box"]], [s["bbox"]])[0], abs=1e-3)
        assert isinstance(p["pred_mask"]["counts"], str)
        mask = rle_to_mask(p["pred_mask"])
        assert mask.shape == (h, w)
        assert mask_inter_union(mask, s["mask"]) == (p["mask_inter"], p["mask_union"])
        ious.append(p["box_iou"]), inters.append(p["mask_inter"]), unions.append(p["mask_union"])
    assert metrics["box_miou"] == pytest.approx(np.mean(ious))
    assert metrics["oiou"] == pytest.approx(sum(inters) / sum(unions))


def test_padding_and_jit_do_not_change_results(evaluated, tiny_model, val_ds, tokenizer):
    # one batch of 3, eager: the padded/compiled run above must give the same per-sample results
    _, ref = evaluated
    _, preds = evaluate_split(tiny_model, val_ds, tokenizer, img_size=128, max_len=20, batch_size=3,
                              progress=False, use_jit=False, with_masks=False)
    for a, b in zip(ref, preds):
        np.testing.assert_allclose(a["pred_box"], b["pred_box"], atol=0.05)
        assert "pred_mask" not in b


def test_rec_only_has_no_mask_metrics(tiny_model, val_ds, tokenizer):
    metrics, preds = evaluate_split(tiny_model, val_ds, tokenizer, img_size=128, max_len=20,
                                    batch_size=3, with_masks=False, progress=False, use_jit=False)
    assert metrics["miou"] is None and metrics["miou_canvas"] is None
    assert metrics["n"] == 3 and 0 <= metrics["box_miou"] <= 1


def test_sigmoid_stable():
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])


def test_cli_writes_metrics_and_predictions(tiny_ckpt, shapes_data, val_ds, tmp_path, capsys):
    data_root, cache_dir = shapes_data
    out = tmp_path / "eval"
    rc = main(["--checkpoint", str(tiny_ckpt), "--dataset", "shapes", "--split_by", "unc",
               "--split", "val", "--data_root", str(data_root), "--cache_dir", str(cache_dir),
               "--out_dir", str(out), "--batch_size", "2", "--no_progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val"]["n"] == 3 and metrics["dataset"] == "shapes"
    preds = json.loads((out / "predictions_val.json").read_text())
    assert len(preds) == len(val_ds)
    assert "prec@0.5" in capsys.readouterr().out


def test_cli_bad_values_list_allowed(tiny_ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tiny_ckpt), "--dataset", "refcocoX", "--split_by", "unc"])
    assert "refcoco+" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--checkpoint", str(tmp_path / "nope.ckpt"), "--dataset", "shapes", "--split_by", "unc"])
    with pytest.raises(SystemExit, match="allowed"):   # split_by valid in general, not for shapes
        main(["--checkpoint", str(tiny_ckpt), "--dataset", "shapes", "--split_by", "umd",
              "--cache_dir", str(tmp_path), "--data_root", str(tmp_path)])


def test_cli_graph_mode_matches_pynative(evaluated, tiny_ckpt, shapes_data, tmp_path):
    # the same checkpoint in GRAPH mode (separate process: the mode is global) gives the same boxes
    import os
    import subprocess
    import sys

    data_root, cache_dir = shapes_data
    p = subprocess.run([sys.executable, "-m", "vglaw.evaluate", "--checkpoint", str(tiny_ckpt),
                        "--dataset", "shapes", "--split_by", "unc", "--split", "val",
                        "--data_root", str(data_root), "--cache_dir", str(cache_dir),
                        "--out_dir", str(tmp_path), "--batch_size", "2", "--mode_name", "GRAPH",
                        "--no_progress"], capture_output=True, text=True,
                       env=dict(os.environ, GLOG_v="4"), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    graph = json.loads((tmp_path / "predictions_val.json").read_text())
    for a, b in zip(evaluated[1], graph):
        assert a["sent_id"] == b["sent_id"]
        np.testing.assert_allclose(a["pred_box"], b["pred_box"], atol=0.05)
        assert abs(a["mask_inter"] - b["mask_inter"]) <= 0.01 * max(1, a["mask_union"])
