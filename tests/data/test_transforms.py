"""Letterbox, flip and round trips back to original pixels."""

import numpy as np
import pytest

from vglaw import boxes
from vglaw.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, Letterbox, flip_phrase,
                                   letterbox_mask, make_letterbox, prepare_image, transform_sample)


@pytest.mark.parametrize("phrase, flipped", [
    ("the left red circle", "the right red circle"),
    ("bright light on the right", "bright light on the left"),
    ("Leftmost one", "Rightmost one"),
    ("the RIGHT-hand side, left.", "the LEFT-hand side, right."),
    ("leftover copyright", "leftover copyright"),
    ("rightmost", "leftmost"),
])
def test_flip_whole_words(phrase, flipped):
    assert flip_phrase(phrase) == flipped
    assert flip_phrase(flip_phrase(phrase)) == phrase


def test_letterbox_array_round_trip():
    lb = Letterbox(0.5, 3.0, 7.0, 100, 80, 64)
    a = lb.to_array()
    assert a.dtype == np.float32 and a.shape == (6,)
    assert Letterbox.from_array(a) == lb


def test_eval_letterbox_hand_values():
    img = np.full((50, 100, 3), 255, dtype=np.uint8)
    x, lb = prepare_image(img, 64)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert (lb.scale, lb.pad_x, lb.pad_y, lb.orig_h, lb.orig_w) == (0.64, 0.0, 16.0, 50, 100)
    np.testing.assert_allclose(x[:, 32, 10], (1 - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-5)
    assert (x[:, :16] == 0).all() and (x[:, 48:] == 0).all()  # zero padding in normalised space
    # box (x, y, w, h) = (25, 10, 50, 20) -> canvas xyxy (16, 22.4, 48, 35.2) -> / 64
    np.testing.assert_allclose(lb.box_to_canvas([25, 10, 50, 20]), [0.5, 0.45, 0.5, 0.2], rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_box_through_letterbox_and_back(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 300, size=2)
    box = np.array([w * 0.1, h * 0.2, w * 0.5, h * 0.3])
    for lb in (make_letterbox(h, w, 96), make_letterbox(h, w, 96, rng=rng)):
        lb2 = Letterbox.from_array(lb.to_array())
        np.testing.assert_allclose(lb2.box_to_original(lb.box_to_canvas(box)), box, atol=1e-3)
    # boxes predicted in the padding are clipped to the image
    lb = make_letterbox(h, w, 96)
    back = lb.box_to_original([0.5, 0.5, 2.0, 2.0])
    np.testing.assert_allclose(back, [0, 0, w, h], atol=1e-3)


def test_train_sample_box_and_mask_agree():
    rng = np.random.default_rng(0)
    img = np.zeros((60, 120, 3), dtype=np.uint8)
    mask = np.zeros((60, 120), dtype=np.uint8)
    mask[10:30, 20:50] = 1
    img[mask > 0] = 255
    seen = set()
    for k in range(12):
        x, box, m, phrase, lb = transform_sample(img, [20, 10, 30, 20], mask, "the left box", 64,
                                                 train=True, rng=np.random.default_rng(k))
        flipped = phrase == "the right box"
        seen.add(flipped)
        assert x.shape == (3, 64, 64) and m.shape == (64, 64) and set(np.unique(m)) <= {0.0, 1.0}
        ys, xs = np.nonzero(m)
        mb = boxes.xyxy_to_cxcywh([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / 64
        np.testing.assert_allclose(mb, box, atol=1.5 / 64)
        # the mask sits where the bright pixels are (flip applied consistently)
        assert x[0][m > 0].mean() > 1.2  # white is 1.9, black -2.1
        orig_box = lb.box_to_original(box)
        expected = [120 - 50, 10, 30, 20] if flipped else [20, 10, 30, 20]
        np.testing.assert_allclose(orig_box, expected, atol=1e-3)
    assert seen == {True, False}
    with pytest.raises(ValueError, match="rng"):
        transform_sample(img, [0, 0, 1, 1], None, "x", 32, train=True)


@pytest.mark.parametrize("translate", [False, True])
def test_mask_letterbox_round_trip(translate):
    rng = np.random.default_rng(1)
    mask = np.zeros((90, 140), dtype=np.uint8)
    mask[20:70, 30:100] = 1
    lb = make_letterbox(90, 140, 128, rng=rng if translate else None)
    canvas = letterbox_mask(mask, lb)
    back = lb.mask_to_original(canvas) >= 0.5
    assert back.shape == mask.shape
    inter, union = (back & (mask > 0)).sum(), (back | (mask > 0)).sum()
    assert inter / union > 0.97
    assert canvas.sum() == pytest.approx(mask.sum() * lb.scale ** 2, rel=0.05)
