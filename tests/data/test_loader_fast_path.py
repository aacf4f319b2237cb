"""The loader's fast path (PIL image kept through flip and resize, normalisation by table lookup)
gives the same arrays, bit for bit, as the plain path it replaced, on COCO-sized JPEGs."""

import numpy as np
import pytest
from PIL import Image

from vglaw.data import RefDataset
from vglaw.data.cache import load_rgb, open_rgb
from vglaw.data.pipeline import RefBatches
from vglaw.data.refer import decode_rle
from vglaw.data.tokenizer import load_tokenizer
from vglaw.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, letterbox_mask, make_letterbox,
                                   prepare_image, transform_sample)


def plain_image(image_hwc: np.ndarray, lb) -> np.ndarray:
    """The letterboxed image as the loader computed it before the fast path (float maths)."""
    w, h = lb.resized_wh
    resized = np.asarray(Image.fromarray(image_hwc).resize((w, h), Image.BILINEAR), dtype=np.float32)
    norm = (resized * (1 / 255.0) - IMAGENET_MEAN) / IMAGENET_STD
    canvas = np.zeros((3, lb.size, lb.size), dtype=np.float32)
    x0, y0 = int(lb.pad_x), int(lb.pad_y)
    canvas[:, y0:y0 + h, x0:x0 + w] = norm.transpose(2, 0, 1)
    return canvas


def plain_sample(rec: dict, size: int, train: bool, rng) -> tuple:
    """One sample the plain way: NumPy image, NumPy flip, float normalisation; + flipped?"""
    with Image.open(rec["image_path"]) as im:
        image = np.asarray(im.convert("RGB"))
    mask = decode_rle(rec["rle"])
    h, w = image.shape[:2]
    bbox = np.asarray(rec["bbox"], dtype=np.float64)
    flipped = train and rng.random() < 0.5
    if flipped:
        image, mask = image[:, ::-1], mask[:, ::-1]
        bbox = np.array([w - bbox[0] - bbox[2], bbox[1], bbox[2], bbox[3]])
    lb = make_letterbox(h, w, size, rng=rng if train else None)
    return (plain_image(np.ascontiguousarray(image), lb), lb.box_to_canvas(bbox),
            letterbox_mask(np.ascontiguousarray(mask), lb), lb.to_array(), flipped)


@pytest.fixture(scope="module")
def coco_sized(tmp_path_factory):
    """Six synthetic JPEGs with a 600-640 px long side (COCO's size), train + eval splits."""
    from vglaw.data import generate_shapes, preprocess
    root = tmp_path_factory.mktemp("coco_sized") / "data"
    generate_shapes(root, n_images=6, seed=5, min_size=600, max_size=640)
    preprocess(root, "shapes", "unc", root.parent / "cache")
    return root.parent / "cache"


@pytest.mark.parametrize("split, train", [("train", True), ("val", False)])
def test_batches_equal_the_plain_path(coco_sized, split, train):
    ds = RefDataset(coco_sized, "shapes", "unc", split)
    size = 448
    flips = []
    for seed in (0, 1):
        src = RefBatches(ds, load_tokenizer(), img_size=size, max_len=40, batch_size=1, train=train,
                         seed=seed)
        for i in range(len(ds)):
            rng = np.random.default_rng([seed, 0, i]) if train else None
            img, box, mask, lb, flipped = plain_sample(src.records[i], size, train, rng)
            fast = src.sample(i)
            np.testing.assert_array_equal(fast[0], img)
            np.testing.assert_array_equal(fast[3], box)
            np.testing.assert_array_equal(fast[4], mask)
            np.testing.assert_array_equal(fast[5], lb)
            flips.append(flipped)
        if not train:
            break
    assert set(flips) == ({False, True} if train else {False})  # both paths ran


def test_pil_and_array_inputs_agree(coco_sized):
    ds = RefDataset(coco_sized, "shapes", "unc", "train")
    rec = ds.record(0)
    pil, arr = open_rgb(rec["image_path"]), load_rgb(rec["image_path"])
    assert pil.mode == "RGB" and arr.shape == (pil.height, pil.width, 3)
    np.testing.assert_array_equal(np.asarray(pil), arr)
    mask = decode_rle(rec["rle"])
    for seed in range(6):  # flipped and not
        a = transform_sample(arr, rec["bbox"], mask, rec["phrase"], 448, train=True,
                             rng=np.random.default_rng(seed))
        b = transform_sample(pil, rec["bbox"], mask, rec["phrase"], 448, train=True,
                             rng=np.random.default_rng(seed))
        for k in (0, 1, 2):  # image, box, mask
            np.testing.assert_array_equal(a[k], b[k])
        assert a[3:] == b[3:]  # phrase, Letterbox
    img, lb = prepare_image(arr, 448)
    np.testing.assert_array_equal(img, plain_image(arr, lb))
