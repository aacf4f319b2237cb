"""Canvas -> original mask mapping (data layer's Letterbox) scored with vglaw.metrics, by hand."""

import numpy as np
import pytest

from vglaw.data.transforms import Letterbox, make_letterbox
from vglaw.eval.metrics import GroundingMeter, binarize, mask_inter_union


def test_mask_back_to_original_non_square():
    # original H=100, W=200 on a 100 canvas: scale 0.5, resized 100 x 50, centred -> pad_y 25
    lb = make_letterbox(100, 200, 100)
    assert lb == Letterbox(0.5, 0.0, 25.0, 100, 200, 100)
    canvas = np.zeros((100, 100), np.float32)
    canvas[30:40, 10:30] = 0.9          # canvas rows 30..39 -> original (30-25)/0.5 = 10..29
    canvas[0:20, :] = 0.9               # inside the top padding: must vanish
    orig = lb.mask_to_original(canvas)
    assert orig.shape == (100, 200)
    pred = binarize(orig, 0.5)
    # bilinear x2 of a step edge crosses 0.5 exactly at the doubled coordinate: rows 10..29, cols 20..59
    expected = np.zeros((100, 200), np.uint8)
    expected[10:30, 20:60] = 1
    np.testing.assert_array_equal(pred, expected)
    gt = np.zeros((100, 200), np.uint8)
    gt[10:30, 20:64] = 1                # 4 columns wider: I = 20*40 = 800, U = 20*44 = 880
    assert mask_inter_union(pred, gt) == (800, 880)
    m = GroundingMeter()
    m.update(mask_inter=[800], mask_union=[880])
    assert m.compute()["miou"] == pytest.approx(10 / 11)
