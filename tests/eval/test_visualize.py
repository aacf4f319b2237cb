"""Panels from precomputed predictions (no model) and the visualize CLI."""

import json

import numpy as np

import pytest
from PIL import Image

from vglaw.eval.evaluate import evaluate_split
from vglaw.eval.visualize import draw_panels, main, pick_indices


@pytest.fixture(scope="module")
def preds(tiny_model, val_ds, tokenizer):
    return evaluate_split(tiny_model, val_ds, tokenizer, img_size=128, max_len=20, batch_size=3,
                          progress=False, use_jit=False)[1]


def test_draw_panels_from_predictions(val_ds, preds, tmp_path):
    fig, written = draw_panels(val_ds, json.loads(json.dumps(preds)), [0, 2], out_dir=tmp_path)
    assert [p.name for p in written] == ["sample_00000.png", "sample_00002.png", "grid.png"]
    for p in written:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100
    with pytest.raises(IndexError, match="out of range"):
        draw_panels(val_ds, preds, [7])


def test_each_panel_draws_its_own_prediction(val_ds, tmp_path):
    """Known predictions given in reverse order: every panel shows the GT box of its sample and the
    prediction with that sample's sent_id (box and IoUs in the title), nothing else."""
    from matplotlib.patches import Rectangle

    from vglaw.utils.io import mask_to_rle
    from vglaw.eval.visualize import GT_COLOR, PRED_COLOR
    import matplotlib.colors as mcolors

    preds = []
    for i in range(len(val_ds)):
        s = val_ds[i]
        h, w = s["mask"].shape
        preds.append({"sent_id": int(s["sent_id"]), "pred_box": [1.0 + i, 2.0 + i, 10.0 + i, 5.0 + i],
                      "box_iou": 0.11 * (i + 1), "pred_mask": mask_to_rle(np.zeros((h, w), np.uint8)),
                      "mask_inter": i + 1, "mask_union": 10})
    fig, _ = draw_panels(val_ds, preds[::-1], [2, 0, 1])
    for ax, i in zip(fig.axes, [2, 0, 1]):
        s = val_ds[i]
        assert ax.get_title() == f"{s['phrase']}\nbox IoU {0.11 * (i + 1):.2f}  mask IoU {(i + 1) / 10:.2f}"
        boxes = {mcolors.to_hex(r.get_edgecolor()): [*r.get_xy(), r.get_width(), r.get_height()]
                 for r in ax.patches if isinstance(r, Rectangle)}
        assert boxes == {mcolors.to_hex(GT_COLOR): pytest.approx(list(s["bbox"])),
                         mcolors.to_hex(PRED_COLOR): pytest.approx([1.0 + i, 2.0 + i, 10.0 + i, 5.0 + i])}


def test_pick_indices():
    assert pick_indices(10, indices="0,5,9") == [0, 5, 9]
    assert pick_indices(10, num=4, seed=1) == pick_indices(10, num=4, seed=1)
    assert len(set(pick_indices(10, num=4))) == 4 and pick_indices(3, num=8) == [0, 1, 2]
    with pytest.raises(ValueError, match="out of range"):
        pick_indices(3, indices="0,3")


def test_cli_with_checkpoint_and_with_predictions(tiny_ckpt, shapes_data, preds, tmp_path, capsys):
    data_root, cache_dir = shapes_data
    common = ["--dataset", "shapes", "--split_by", "unc", "--split", "val",
              "--data_root", str(data_root), "--cache_dir", str(cache_dir)]
    assert main(["--checkpoint", str(tiny_ckpt), "--indices", "0,1", "--out_dir", str(tmp_path / "a"),
                 *common]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["grid.png", "sample_00000.png",
                                                                  "sample_00001.png"]
    pj = tmp_path / "predictions_val.json"
    pj.write_text(json.dumps(preds))
    assert main(["--predictions", str(pj), "--num", "2", "--out_dir", str(tmp_path / "b"), *common]) == 0
    assert len(list((tmp_path / "b").glob("*.png"))) == 3
    with pytest.raises(SystemExit, match="exactly one"):
        main(["--out_dir", str(tmp_path / "c"), *common])
