"""Data fingerprints (issue 9): the cache names its sources down to every image's size and mtime,
a changed image is refused or rebuilt, and verify_images lists every bad image at once."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from vglaw.data import preprocess, read_manifest
from vglaw.data.cache import DataChangedError, ImageCheckError, verify_images

IMG = "images/mscoco/images/train2014"
ONE, TWO = "COCO_train2014_000000000001.jpg", "COCO_train2014_000000000002.jpg"


def _rewrite(path, size, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0], 3),
                                                          dtype=np.uint8)).save(path)


def test_fingerprint_is_recorded_and_stable(refcoco_root, tmp_path):
    folder = preprocess(refcoco_root, "refcoco", "unc", tmp_path / "cache")
    m = read_manifest(folder)
    assert len(m["fingerprint"]) == 16 and m["image_scan"] is None
    stats = json.loads((folder / "image_stats.json").read_text())
    assert set(stats) == {ONE, TWO}
    assert stats[ONE][0] == os.path.getsize(refcoco_root / IMG / ONE)
    preprocess(refcoco_root, "refcoco", "unc", tmp_path / "cache", on_change="refuse")  # unchanged: reused
    assert read_manifest(folder)["fingerprint"] == m["fingerprint"]


def test_changed_image_is_refused_naming_it_then_rebuilt_with_a_new_fingerprint(refcoco_root, tmp_path):
    cdir = tmp_path / "cache"
    before = read_manifest(preprocess(refcoco_root, "refcoco", "unc", cdir))["fingerprint"]
    _rewrite(refcoco_root / IMG / ONE, (60, 40), seed=99)  # same size in pixels, other bytes
    with pytest.raises(DataChangedError, match=f"1 modified image\\(s\\): {ONE}") as err:
        preprocess(refcoco_root, "refcoco", "unc", cdir, on_change="refuse")
    assert "01_preprocess" in str(err.value)
    after = read_manifest(preprocess(refcoco_root, "refcoco", "unc", cdir))["fingerprint"]  # rebuilds
    assert after != before
    (refcoco_root / IMG / TWO).unlink()
    with pytest.raises(DataChangedError, match=f"1 missing image\\(s\\): {TWO}"):
        preprocess(refcoco_root, "refcoco", "unc", cdir, on_change="refuse")


def test_verify_images_lists_a_deleted_a_truncated_and_a_resized_image_at_once(refcoco_root, tmp_path):
    folder = preprocess(refcoco_root, "refcoco", "unc", tmp_path / "cache")
    assert verify_images(folder) == []
    scan = read_manifest(folder)["image_scan"]
    assert scan["checked"] == 2 and scan["bad"] == [] and scan["fingerprint"] == read_manifest(folder)["fingerprint"]

    one = refcoco_root / IMG / ONE
    one.write_bytes(one.read_bytes()[: one.stat().st_size // 2])  # truncated
    (refcoco_root / IMG / TWO).unlink()                             # deleted
    with pytest.raises(ImageCheckError) as err:
        verify_images(folder)
    bad = {b["file"]: b["problem"] for b in err.value.bad}
    assert bad[TWO] == "missing" and bad[ONE].startswith("does not decode")
    assert ONE in str(err.value) and TWO in str(err.value) and "2 of 2 images" in str(err.value)
    assert len(read_manifest(folder)["image_scan"]["bad"]) == 2

    _rewrite(refcoco_root / IMG / TWO, (31, 50), seed=1)  # back, one pixel wider than instances.json says
    with pytest.raises(ImageCheckError) as err:
        verify_images(folder, ["testB"])  # only testB's images (image 2 and the testAB image 1)
    bad = {b["file"]: b["problem"] for b in err.value.bad}
    assert bad[TWO] == "size 31x50, instances.json says 30x50"
    assert read_manifest(folder)["image_scan"]["splits"] == ["testB"]
