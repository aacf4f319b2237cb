"""Metrics against hand-computed cases (DESIGN §6)."""

import numpy as np
import pytest

from vglaw.eval.metrics import (GroundingMeter, box_ious, canvas_inter_union, mask_inter_union,
                                precision_at, safe_iou)


def test_box_iou_hand_computed():
    # half overlap: inter 50, union 100 -> 0.5; shifted by half: inter 50, union 150 -> 1/3
    pred = [[0, 0, 5, 10], [5, 0, 10, 10], [20, 20, 1, 1]]
    gt = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]
    np.testing.assert_allclose(box_ious(pred, gt), [0.5, 1 / 3, 0.0])


def test_prec_boundary_exactly_half_is_a_hit():
    ious = box_ious([[0, 0, 5, 10]], [[0, 0, 10, 10]])
    assert ious[0] == 0.5
    p = precision_at(ious)
    assert p["prec@0.5"] == 1.0 and p["prec@0.6"] == 0.0


def test_prec_shares_and_custom_thresholds():
    p = precision_at([0.95, 0.75, 0.55, 0.1], thresholds=(0.5, 0.7, 0.9, 0.25))
    assert p == {"prec@0.5": 0.75, "prec@0.7": 0.5, "prec@0.9": 0.25, "prec@0.25": 0.75}
    with pytest.raises(ValueError, match="thresholds"):
        precision_at([0.5], thresholds=(1.5,))


def test_miou_differs_from_oiou():
    # A: 2x2 GT, prediction covers 1 of its pixels and nothing else -> I=1, U=4, IoU 0.25
    # B: 10x10 GT, prediction = 9 of 10 rows -> I=90, U=100, IoU 0.9
    ga = np.zeros((4, 4), np.uint8); ga[:2, :2] = 1
    pa = np.zeros((4, 4), np.uint8); pa[0, 0] = 1
    gb = np.ones((10, 10), np.uint8)
    pb = gb.copy(); pb[9] = 0
    assert mask_inter_union(pa, ga) == (1, 4)
    assert mask_inter_union(pb, gb) == (90, 100)
    m = GroundingMeter()
    m.update(mask_inter=[1], mask_union=[4], box_iou=[0.5])
    m.update(mask_inter=[90], mask_union=[100], box_iou=[0.49])
    r = m.compute()
    assert r["n"] == 2
    assert r["miou"] == pytest.approx((0.25 + 0.9) / 2)   # 0.575
    assert r["oiou"] == pytest.approx(91 / 104)           # 0.875
    assert r["prec@0.5"] == 0.5 and r["box_miou"] == pytest.approx(0.495)
    assert r["miou_canvas"] is None


def test_meter_streams_like_one_batch():
    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 50, (7, 4)) + [0, 0, 1, 1]
    gt = rng.uniform(0, 50, (7, 4)) + [0, 0, 1, 1]
    a, b = GroundingMeter(), GroundingMeter()
    a.update(pred_boxes=pred, gt_boxes=gt)
    b.update(pred_boxes=pred[:3], gt_boxes=gt[:3])
    b.update(pred_boxes=pred[3:], gt_boxes=gt[3:])
    assert a.compute() == b.compute()
    assert a.compute()["miou"] is None


def test_empty_union_counts_zero():
    np.testing.assert_array_equal(safe_iou([0, 3], [0, 4]), [0.0, 0.75])
    m = GroundingMeter()
    m.update(mask_inter=[0, 3], mask_union=[0, 4])
    assert m.compute()["miou"] == pytest.approx(0.375)
    assert m.compute()["oiou"] == pytest.approx(0.75)


def test_canvas_protocol_threshold_035():
    gt = np.zeros((4, 4), np.float32); gt[:, :2] = 1          # 8 GT pixels
    prob = np.full((4, 4), 0.1, np.float32)
    prob[:, 0] = 0.36                                         # above 0.35 -> predicted
    prob[:, 1] = 0.34                                         # below 0.35 -> not predicted (0.5 would drop both)
    prob[0, 3] = 0.9                                          # a false positive
    assert canvas_inter_union(prob, gt) == (4, 9)
    assert canvas_inter_union(prob, gt, threshold=0.5) == (0, 9)
    # exactly at the threshold is background (`prob > 0.35`, not >=), as float32 or float64
    for dtype in (np.float32, np.float64):
        at = prob.astype(dtype)
        at[:, 0] = 0.35
        assert canvas_inter_union(at, gt) == (0, 9), dtype
    prob[:, 0] = np.nextafter(np.float32(0.35), np.float32(1))  # the next float32 above counts
    assert canvas_inter_union(prob, gt) == (4, 9)
    m = GroundingMeter()
    m.update(canvas_inter=[4], canvas_union=[9])
    assert m.compute()["miou_canvas"] == pytest.approx(4 / 9)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="differ in shape"):
        mask_inter_union(np.zeros((2, 3)), np.zeros((3, 2)))
    m = GroundingMeter()
    with pytest.raises(ValueError, match="both"):
        m.update(mask_inter=[1])
    with pytest.raises(ValueError, match="inter"):
        m.update(mask_inter=[5], mask_union=[4])


def test_mask_bbox_is_pycocotools_to_bbox():
    from pycocotools import mask as mask_utils
    from vglaw.eval.metrics import mask_bbox
    assert mask_bbox(np.zeros((5, 7), np.uint8)) is None
    one = np.zeros((5, 7), np.uint8)
    one[2, 3] = 1
    assert mask_bbox(one).tolist() == [3.0, 2.0, 1.0, 1.0]
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = np.zeros((40, 60), np.uint8)
        y0, x0 = rng.integers(0, 30), rng.integers(0, 50)
        m[y0:y0 + rng.integers(1, 10), x0:x0 + rng.integers(1, 10)] = 1
        m[rng.integers(0, 40), rng.integers(0, 60)] = 1  # a stray pixel widens the box
        rle = mask_utils.encode(np.asfortranarray(m))
        assert mask_bbox(m).tolist() == mask_utils.toBbox(rle).tolist()
