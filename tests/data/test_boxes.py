"""Box formats and IoU/GIoU against hand-computed values."""

import numpy as np
import pytest

from vglaw import boxes


def test_conversions_hand_values():
    xywh = np.array([10.0, 20.0, 30.0, 40.0])
    np.testing.assert_allclose(boxes.xywh_to_xyxy(xywh), [10, 20, 40, 60])
    np.testing.assert_allclose(boxes.xywh_to_cxcywh(xywh), [25, 40, 30, 40])
    np.testing.assert_allclose(boxes.cxcywh_to_xyxy([25, 40, 30, 40]), [10, 20, 40, 60])
    np.testing.assert_allclose(boxes.xyxy_to_cxcywh([10, 20, 40, 60]), [25, 40, 30, 40])
    np.testing.assert_allclose(boxes.cxcywh_to_xywh([25, 40, 30, 40]), xywh)
    np.testing.assert_allclose(boxes.xyxy_to_xywh([10, 20, 40, 60]), xywh)
    np.testing.assert_allclose(boxes.normalize([25, 40, 30, 40], 100, 200), [0.25, 0.2, 0.3, 0.2])
    np.testing.assert_allclose(boxes.denormalize([0.25, 0.2, 0.3, 0.2], 100, 200), [25, 40, 30, 40])
    np.testing.assert_allclose(boxes.clip_xyxy([-5, 10, 120, 250], 100, 200), [0, 10, 100, 200])


def test_convert_round_trips_batches():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 50, size=(5, 3, 4))
    for src in boxes.FORMATS:
        for dst in boxes.FORMATS:
            np.testing.assert_allclose(boxes.convert(boxes.convert(b, src, dst), dst, src), b, atol=1e-9)
    assert boxes.convert(b, "xywh", "xyxy").shape == (5, 3, 4)
    with pytest.raises(ValueError, match="xywh, xyxy, cxcywh"):
        boxes.convert(b, "xywh", "yxyx")
    with pytest.raises(ValueError, match="size 4"):
        boxes.xywh_to_xyxy([1, 2, 3])


def test_iou_giou_hand_cases():
    a = [0, 0, 2, 2]
    # half overlap: inter 2, union 6; hull = union -> GIoU = IoU
    assert boxes.iou(a, [1, 0, 3, 2]) == pytest.approx(1 / 3)
    assert boxes.giou(a, [1, 0, 3, 2]) == pytest.approx(1 / 3)
    assert boxes.iou(a, a) == pytest.approx(1) and boxes.giou(a, a) == pytest.approx(1)
    # touching: IoU 0, hull = union -> GIoU 0; disjoint: hull [0,0,5,2] = 10, union 8 -> -0.2
    assert boxes.iou(a, [2, 0, 4, 2]) == 0 and boxes.giou(a, [2, 0, 4, 2]) == pytest.approx(0)
    assert boxes.giou(a, [3, 0, 5, 2]) == pytest.approx(-0.2)
    # contained: inter 1, union 4
    assert boxes.iou(a, [0.5, 0.5, 1.5, 1.5]) == pytest.approx(0.25)
    # in xywh / cxcywh
    assert boxes.iou([0, 0, 2, 2], [1, 0, 2, 2], fmt="xywh") == pytest.approx(1 / 3)
    assert boxes.iou([1, 1, 2, 2], [2, 1, 2, 2], fmt="cxcywh") == pytest.approx(1 / 3)
    # far apart: GIoU tends to -1
    assert boxes.giou([0, 0, 1, 1], [99, 99, 100, 100]) == pytest.approx(-1, abs=1e-3)
    # empty boxes: no division by zero
    assert boxes.iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0
    assert boxes.giou([0, 0, 0, 0], [0, 0, 0, 0]) == 0


def test_pairwise_matches_elementwise():
    a = np.array([[0, 0, 2, 2], [1, 1, 3, 3], [5, 5, 6, 7]], dtype=float)
    b = np.array([[0, 0, 2, 2], [2, 0, 4, 2]], dtype=float)
    p = boxes.pairwise_iou(a, b)
    g = boxes.pairwise_giou(a, b)
    assert p.shape == (3, 2) and g.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert p[i, j] == pytest.approx(boxes.iou(a[i], b[j]))
            assert g[i, j] == pytest.approx(boxes.giou(a[i], b[j]))
    assert p[1, 0] == pytest.approx(1 / 7)  # inter 1, union 4 + 4 - 1
    np.testing.assert_allclose(boxes.iou(a[:2], b), [1.0, 1 / 7])
