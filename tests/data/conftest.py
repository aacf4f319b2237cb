"""Tiny refer-layout fixtures, written by the tests themselves (no real data needed)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def py2_pickle(obj) -> bytes:
    """Serialise plain data the way Python 2's cPickle (protocol 2) does: `str` values become
    byte strings (SHORT_BINSTRING/BINSTRING), as in the refer project's refs(<splitBy>).p.
    Values wrapped in `Unicode` become BINUNICODE (py2 `unicode`)."""
    out = bytearray(b"\x80\x02")

    def emit(o):
        if isinstance(o, Unicode):
            b = str(o).encode("utf-8")
            out.extend(b"X" + struct.pack("<I", len(b)) + b)
        elif isinstance(o, str):
            b = o.encode("latin1")
            out.extend((b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b)
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, float):
            out.extend(b"G" + struct.pack(">d", o))
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        else:
            raise TypeError(type(o))
    emit(obj)
    out.extend(b".")
    return bytes(out)


class Unicode(str):
    """Marks a string to be pickled as py2 `unicode`."""


def _image(path: Path, h: int, w: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)).save(path)


def _ref(ref_id, ann_id, image_id, split, file_stem, sents):
    sentences = [{"tokens": s.split(), "raw": Unicode(s.capitalize()), "sent": s,
                  "sent_id": ref_id * 10 + k} for k, s in enumerate(sents)]
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split,
            "category_id": 1, "sent_ids": [s["sent_id"] for s in sentences],
            "file_name": f"{file_stem}_{ann_id}.jpg", "sentences": sentences}


@pytest.fixture
def refcoco_root(tmp_path):
    """refcoco(unc): 2 images; polygon masks incl. a two-part one; one degenerate box;
    splits train / val / testA / testB / testAB."""
    root = tmp_path / "data"
    img_dir = root / "images/mscoco/images/train2014"
    images = [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 40, "width": 60},
              {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 50, "width": 30}]
    for k, im in enumerate(images):
        _image(img_dir / im["file_name"], im["height"], im["width"], k)
    anns = [
        {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 200.0,
         "bbox": [5.0, 5.0, 20.0, 10.0], "segmentation": [[5, 5, 25, 5, 25, 15, 5, 15]]},
        {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 150.0,
         "bbox": [30.0, 2.0, 28.0, 30.0],  # two parts, overlapping: the union, binarised
         "segmentation": [[30, 2, 50, 2, 50, 22, 30, 22], [40, 12, 58, 12, 58, 32, 40, 32]]},
        {"id": 13, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 0.0,
         "bbox": [10.0, 30.0, 0.0, 5.0], "segmentation": [[10, 30, 10, 30, 10, 35]]},
        {"id": 21, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 300.0,
         "bbox": [3.0, 4.0, 20.0, 30.0], "segmentation": [[3, 4, 23, 4, 13, 34]]},
    ]
    refs = [_ref(0, 11, 1, "train", "COCO_train2014_000000000001", ["left box", "the small box"]),
            _ref(1, 12, 1, "val", "COCO_train2014_000000000001", ["right thing"]),
            _ref(2, 13, 1, "testA", "COCO_train2014_000000000001", ["a line", "thin line"]),
            _ref(3, 21, 2, "testB", "COCO_train2014_000000000002", ["triangle", "bright triangle"]),
            _ref(4, 11, 1, "testAB", "COCO_train2014_000000000001", ["box again"])]
    folder = root / "refcoco"
    folder.mkdir(parents=True)
    (folder / "instances.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                       "categories": [{"id": 1, "name": "x"}]}))
    (folder / "refs(unc).p").write_bytes(py2_pickle(refs))
    return root


@pytest.fixture
def refclef_root(tmp_path):
    """refclef(unc): images in saiapr sub-folders, compressed (string) and uncompressed (list)
    RLE masks; splits train / val / testA / testB / testC / testBC."""
    from pycocotools import mask as mask_utils
    root = tmp_path / "data"
    img_dir = root / "images/saiapr_tc-12"
    images = [{"id": 100, "file_name": "00/images/100.jpg", "height": 20, "width": 16},
              {"id": 2501, "file_name": "25/images/2501.jpg", "height": 12, "width": 18}]
    for k, im in enumerate(images):
        _image(img_dir / im["file_name"], im["height"], im["width"], k)
    m = np.zeros((20, 16), dtype=np.uint8)
    m[2:9, 3:12] = 1
    compressed = mask_utils.encode(np.asfortranarray(m))
    compressed = {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")}
    # uncompressed RLE (column-major runs, first run = zeros): a 12x18 image with 3 columns set
    uncompressed = {"size": [12, 18], "counts": [12 * 4, 12 * 3, 12 * 11]}
    anns = [{"id": 1, "image_id": 100, "category_id": 1, "bbox": [3.0, 2.0, 9.0, 7.0],
             "segmentation": compressed, "area": 63.0, "iscrowd": 0},
            {"id": 2, "image_id": 2501, "category_id": 1, "bbox": [4.0, 0.0, 3.0, 12.0],
             "segmentation": uncompressed, "area": 36.0, "iscrowd": 0}]
    refs = [_ref(0, 1, 100, "train", "100", ["sky"]),
            _ref(1, 2, 2501, "val", "2501", ["pole", "the pole"]),
            _ref(2, 1, 100, "testA", "100", ["a"]),
            _ref(3, 2, 2501, "testB", "2501", ["b"]),
            _ref(4, 1, 100, "testC", "100", ["c"]),
            _ref(5, 2, 2501, "testBC", "2501", ["bc"])]
    folder = root / "refclef"
    folder.mkdir(parents=True)
    (folder / "instances.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                       "categories": [{"id": 1, "name": "x"}]}))
    (folder / "refs(unc).p").write_bytes(py2_pickle(refs))
    return root


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A small synthetic `shapes` dataset (generated once per test session) and its cache."""
    from vglaw.data import generate_shapes, preprocess
    root = tmp_path_factory.mktemp("shapes") / "data"
    generate_shapes(root, n_images=40, seed=3, min_size=64, max_size=96)
    preprocess(root, "shapes", "unc", root.parent / "cache")
    return root
