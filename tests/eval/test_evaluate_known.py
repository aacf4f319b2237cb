"""evaluate_split against known outputs: a stub forward returns a chosen box and mask per sample.

Seven expressions of three images of different sizes, batch 3 (the last batch holds one sample
and two padding rows). Sample k's predicted box is its GT box with the width scaled by f_k, so
its IoU is f_k; its mask probability is one constant p_k over the whole canvas, so at the
original resolution the mask is all ones (p_k > 0.5) or empty, and on the canvas all ones
(p_k > 0.35) or empty. Every metric and every prediction row then follows by hand from the GT
pixel counts; p_k sits exactly at each threshold (0.35 on the canvas, 0.5 at the original
resolution) for one sample, where `>` and `>=` part.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vglaw.data.pipeline import RefBatches
from vglaw.eval.evaluate import evaluate_split, sigmoid
from vglaw.utils.io import rle_to_mask

SIZE, MAX_LEN, BATCH = 64, 20, 3
F = [1.0, 0.95, 0.85, 0.75, 0.65, 0.55, 0.45]           # box IoU of sample k (GT width x f_k)
AT_035, AT_05 = "at 0.35", "at 0.5"
P = [0.9, 0.4, AT_035, 0.3505, 0.3495, AT_05, 0.97]      # mask probability of sample k


def _logit_exactly_at(p: float) -> np.float32:
    """A float32 logit whose sigmoid (as vglaw.evaluate computes it) is float32(p) exactly."""
    target = np.float32(p)
    x = np.float32(np.log(p / (1 - p)))
    for _ in range(1000):
        if sigmoid(np.array([x], np.float32))[0] == target:
            return x
        x = np.nextafter(x, np.float32(-10))
    raise AssertionError(f"no float32 logit with sigmoid exactly {p}")


def _logit(p) -> np.float32:
    if p == AT_035:
        return _logit_exactly_at(0.35)
    if p == AT_05:
        return np.float32(0.0)  # sigmoid(0) = 0.5 exactly, and a constant map resizes to 0.5
    return np.float32(np.log(p / (1 - p)))


class _Subset:
    """Samples of several RefDatasets as one dataset (what evaluate_split and RefBatches use)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def record(self, i):
        ds, j = self.items[i]
        return ds.record(j)

    def __getitem__(self, i):
        ds, j = self.items[i]
        return ds[j]


class _NoModel:
    def set_train(self, mode):
        pass


class _MaskBoxModel(_NoModel):
    """A model whose predicted box is its mask's (ModelConfig.box_source "mask")."""
    config = SimpleNamespace(box_source="mask", use_mask=True)


@pytest.fixture(scope="module")
def known(tmp_path_factory, tokenizer):
    from vglaw.data import RefDataset, generate_shapes, preprocess

    root = tmp_path_factory.mktemp("known_data")
    generate_shapes(root / "data", n_images=30, min_size=48, max_size=96, seed=3)
    preprocess(root / "data", "shapes", "unc", root / "cache")
    split = {s: RefDataset(root / "cache", "shapes", "unc", s) for s in ("val", "testA", "testB")}
    ds = _Subset([(split["val"], 0), (split["val"], 2), (split["testA"], 0), (split["testA"], 1),
                  (split["testB"], 0), (split["testB"], 1), (split["testB"], 2)])
    samples = [ds[k] for k in range(len(ds))]
    assert len({s["mask"].shape for s in samples}) == 3  # three images of three sizes
    # The stub recognises a sample by its canvas image and token ids (as the pipeline makes them).
    src = RefBatches(ds, tokenizer, img_size=SIZE, max_len=MAX_LEN, batch_size=1, train=False)
    table, canvas_gt = {}, []
    for k in range(len(ds)):
        img, ids, _attn, _box, mask_c, lb_arr = src.sample(k)
        from vglaw.data.transforms import Letterbox
        lb = Letterbox.from_array(lb_arr)
        x, y, w, h = samples[k]["bbox"]
        box = lb.box_to_canvas([x, y, F[k] * w, h])                     # (cx, cy, w, h) canvas-norm
        logits = np.full((1, SIZE, SIZE), _logit(P[k]), np.float32)
        table[img.tobytes() + np.asarray(ids, np.int32).tobytes()] = (box, logits)
        canvas_gt.append(int(mask_c.sum()))
    assert len(table) == len(ds)
    calls = []

    def forward(images, input_ids, attention_mask):
        calls.append(len(images))
        rows = [table[images[j].tobytes() + input_ids[j].astype(np.int32).tobytes()]
                for j in range(len(images))]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    metrics, preds = evaluate_split(_NoModel(), ds, tokenizer, img_size=SIZE, max_len=MAX_LEN,
                                    batch_size=BATCH, progress=False, forward=forward)
    n_calls = len(calls)
    mask_box = evaluate_split(_MaskBoxModel(), ds, tokenizer, img_size=SIZE, max_len=MAX_LEN,
                              batch_size=BATCH, progress=False, forward=forward)
    del calls[n_calls:]
    return {"ds": ds, "samples": samples, "canvas_gt": canvas_gt, "metrics": metrics,
            "preds": preds, "calls": calls, "mask_box": mask_box}


def _expected_rows(known):
    """Per sample: (mask_inter, mask_union, full) at the original resolution and on the canvas."""
    rows = []
    for k, s in enumerate(known["samples"]):
        h, w = s["mask"].shape
        g = int(s["mask"].sum())
        full = P[k] not in (AT_035, AT_05) and P[k] > 0.5            # prob > 0.5, not >=
        canvas = P[k] == AT_05 or (P[k] != AT_035 and P[k] > 0.35)   # prob > 0.35, not >=
        gc = known["canvas_gt"][k]
        rows.append({"inter": g if full else 0, "union": h * w if full else g, "full": full,
                     "c_inter": gc if canvas else 0, "c_union": SIZE * SIZE if canvas else gc})
    return rows


def test_every_batch_is_padded_to_the_compiled_size(known):
    assert known["calls"] == [BATCH, BATCH, BATCH]  # 7 samples: 3 + 3 + (1 + 2 padding rows)


def test_every_prediction_row_is_the_hand_computed_one(known):
    preds, samples = known["preds"], known["samples"]
    assert [p["sent_id"] for p in preds] == [s["sent_id"] for s in samples]  # dataset order
    for k, (p, s, e) in enumerate(zip(preds, samples, _expected_rows(known))):
        x, y, w, h = s["bbox"]
        np.testing.assert_allclose(p["pred_box"], [x, y, F[k] * w, h], atol=0.011, err_msg=f"row {k}")
        assert p["box_iou"] == pytest.approx(F[k], abs=1e-4), k
        assert (p["mask_inter"], p["mask_union"]) == (e["inter"], e["union"]), k
        mask = rle_to_mask(p["pred_mask"])
        assert mask.shape == s["mask"].shape
        assert mask.all() if e["full"] else not mask.any(), k


def test_every_metric_is_the_hand_computed_one(known):
    m, rows, samples = known["metrics"], _expected_rows(known), known["samples"]
    assert m["n"] == 7
    # IoUs 1, .95, .85, .75, .65, .55, .45: six reach 0.5, five 0.6, four 0.7, three 0.8, two 0.9
    assert [m[f"prec@{t}"] for t in ("0.5", "0.6", "0.7", "0.8", "0.9")] == pytest.approx(
        [6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7])
    assert m["box_miou"] == pytest.approx(5.2 / 7, abs=1e-5)
    # masks: only samples 0 (p 0.9) and 6 (p 0.97) predict anything at 0.5: the whole image
    area = [s["mask"].shape[0] * s["mask"].shape[1] for s in samples]
    gt = [int(s["mask"].sum()) for s in samples]
    assert [r["full"] for r in rows] == [True, False, False, False, False, False, True]
    assert m["miou"] == pytest.approx((gt[0] / area[0] + gt[6] / area[6]) / 7)
    assert m["oiou"] == pytest.approx((gt[0] + gt[6]) / (area[0] + sum(gt[1:6]) + area[6]))
    # canvas protocol at 0.35: samples 0, 1 (0.4), 3 (0.3505), 5 (0.5), 6 predict the whole canvas;
    # 2 (exactly 0.35) and 4 (0.3495) predict nothing
    gc, s2 = known["canvas_gt"], SIZE * SIZE
    assert m["miou_canvas"] == pytest.approx((gc[0] + gc[1] + gc[3] + gc[5] + gc[6]) / s2 / 7)
    assert (m["mask_threshold"], m["canvas_threshold"]) == (0.5, 0.35)


def test_box_source_mask_scores_the_box_of_the_mask(known):
    """box_source "mask": a full mask's box is the whole image, an empty mask keeps the head's box;
    the head's own box and metrics are kept beside it; masks and mask metrics are unchanged."""
    from vglaw.eval.metrics import box_ious
    m, preds = known["mask_box"]
    rows, samples = _expected_rows(known), known["samples"]
    ious = []
    for k, (p, q, s, e) in enumerate(zip(preds, known["preds"], samples, rows)):
        h, w = s["mask"].shape
        assert p["head_box"] == q["pred_box"] and p["head_box_iou"] == pytest.approx(F[k], abs=1e-4), k
        if e["full"]:  # samples 0 and 6: the mask is the whole image
            assert p["pred_box"] == [0.0, 0.0, float(w), float(h)], k
            iou = float(box_ious(np.array([[0, 0, w, h]], float), np.array([s["bbox"]], float))[0])
        else:
            assert p["pred_box"] == q["pred_box"], k
            iou = q["box_iou"]
        assert p["box_iou"] == pytest.approx(iou, abs=1e-9), k
        assert (p["mask_inter"], p["mask_union"], p["pred_mask"]) == (q["mask_inter"], q["mask_union"], q["pred_mask"])
        ious.append(iou)
    assert ious[0] < 0.5 and ious[6] < 0.5  # a whole-image box misses the object
    assert m["prec@0.5"] == pytest.approx(np.mean(np.array(ious) >= 0.5))
    assert m["box_miou"] == pytest.approx(np.mean(ious))
    assert m["head_prec@0.5"] == pytest.approx(6 / 7) and m["head_box_miou"] == pytest.approx(5.2 / 7, abs=1e-5)
    assert m["miou"] == known["metrics"]["miou"] and "head_box_miou" not in known["metrics"]
