"""Losses against hand-computed values and against vglaw.boxes (the NumPy authority)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "4")
ms = pytest.importorskip("mindspore")
from mindspore import Tensor  # noqa: E402

from vglaw import boxes  # noqa: E402
from vglaw.models.losses import (GroundingLoss, box_cxcywh_to_xyxy, box_giou, dice_loss, giou_loss,  # noqa: E402
                                 l1_loss, sigmoid_focal_loss)


@pytest.fixture(autouse=True)
def _pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def T(a):
    return Tensor(np.asarray(a, np.float32))


def test_l1_sums_coordinates_and_averages_batch():
    pred = [[0.5, 0.5, 0.2, 0.2], [0.1, 0.2, 0.3, 0.4]]
    gt = [[0.4, 0.5, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]
    # sample 0: 0.1 + 0 + 0 + 0.1 = 0.2; sample 1: 0 -> mean 0.1
    assert float(l1_loss(T(pred), T(gt)).asnumpy()) == pytest.approx(0.1, abs=1e-6)


def test_giou_hand_computed():
    # xyxy: a = [0,0,2,2], b = [1,1,3,3]: inter 1, union 7, hull 9 -> giou = 1/7 - 2/9
    a, b = [0, 0, 2, 2], [1, 1, 3, 3]
    assert float(box_giou(T(a), T(b)).asnumpy()) == pytest.approx(1 / 7 - 2 / 9, abs=1e-6)
    # disjoint: [0,0,1,1] vs [2,0,3,1]: iou 0, hull 3, union 2 -> -1/3
    assert float(box_giou(T([0, 0, 1, 1]), T([2, 0, 3, 1])).asnumpy()) == pytest.approx(-1 / 3, abs=1e-6)
    # identical cxcywh boxes -> loss 0; the pair above as cxcywh -> 1 - giou
    pred = [[1, 1, 2, 2], [0.5, 0.5, 1, 1]]
    gt = [[2, 2, 2, 2], [0.5, 0.5, 1, 1]]
    want = ((1 - (1 / 7 - 2 / 9)) + 0.0) / 2
    assert float(giou_loss(T(pred), T(gt)).asnumpy()) == pytest.approx(want, abs=1e-6)


def test_box_ops_match_numpy_authority():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0.1, 0.9, (64, 2)), rng.uniform(0.01, 0.6, (64, 2))], 1)
    b = np.concatenate([rng.uniform(0.1, 0.9, (64, 2)), rng.uniform(0.01, 0.6, (64, 2))], 1)
    np.testing.assert_allclose(box_cxcywh_to_xyxy(T(a)).asnumpy(), boxes.cxcywh_to_xyxy(a), atol=1e-6)
    got = box_giou(box_cxcywh_to_xyxy(T(a)), box_cxcywh_to_xyxy(T(b))).asnumpy()
    np.testing.assert_allclose(got, boxes.giou(a, b, fmt="cxcywh"), atol=1e-5)
    assert (got < 0).any() and (got > 0).any()


def _focal(x, t, alpha=0.25, gamma=2.0):
    p = 1 / (1 + math.exp(-x))
    ce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    return (alpha * t + (1 - alpha) * (1 - t)) * ce * (1 - p_t) ** gamma


def test_focal_hand_computed():
    logits = [[2.0, -1.0], [0.0, 3.0]]
    target = [[1.0, 1.0], [0.0, 0.0]]
    want = np.mean([_focal(x, t) for x, t in zip(np.ravel(logits), np.ravel(target))])
    # spot value: x = 0, t = 0 -> 0.75 * ln 2 * 0.25
    assert _focal(0.0, 0.0) == pytest.approx(0.75 * math.log(2) * 0.25)
    assert float(sigmoid_focal_loss(T(logits), T(target)).asnumpy()) == pytest.approx(want, rel=1e-5)
    got = float(sigmoid_focal_loss(T(logits), T(target), alpha=0.5, gamma=0.0).asnumpy())
    assert got == pytest.approx(np.mean([_focal(x, t, 0.5, 0.0) for x, t in zip(np.ravel(logits), np.ravel(target))]), rel=1e-5)


def test_dice_hand_computed():
    # logits 0 -> p = 0.5 everywhere; sample 0: target sum 2 of 4 px: 1 - (2*1 + 1)/(2 + 2 + 1) = 0.4
    # sample 1: empty target: 1 - 1/(2 + 0 + 1) = 2/3
    logits = np.zeros((2, 2, 2), np.float32)
    target = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], np.float32)
    assert float(dice_loss(T(logits), T(target)).asnumpy()) == pytest.approx((0.4 + 2 / 3) / 2, rel=1e-5)


def test_grounding_loss_weights_and_use_mask():
    rng = np.random.default_rng(1)
    pb, gb = T(rng.uniform(0.2, 0.6, (2, 4))), T(rng.uniform(0.2, 0.6, (2, 4)))
    ml, gm = T(rng.standard_normal((2, 1, 8, 8))), T(rng.random((2, 8, 8)) > 0.5)
    total, l1, giou, focal, dice = [float(v.asnumpy()) for v in GroundingLoss()(pb, ml, gb, gm)]
    assert total == pytest.approx(l1 + giou + focal + dice, rel=1e-5)
    assert min(l1, giou, focal, dice) > 0
    total2, *parts = [float(v.asnumpy()) for v in GroundingLoss(2.0, 0.5, 3.0, 0.0)(pb, ml, gb, gm)]
    assert total2 == pytest.approx(2 * l1 + 0.5 * giou + 3 * focal, rel=1e-5)
    total3, _, _, f3, d3 = [float(v.asnumpy()) for v in GroundingLoss(use_mask=False)(pb, ml, gb, gm)]
    assert total3 == pytest.approx(l1 + giou, rel=1e-5) and f3 == 0 and d3 == 0
