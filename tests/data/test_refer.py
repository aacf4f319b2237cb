"""The refer-layout reader and RefDataset on hand-written fixtures of every layout."""

import json
import os
import pickle

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vglaw.data import DataNotFoundError, RefDataset, preprocess
from vglaw.data.refer import read_refer, split_matches, to_rle
from vglaw.utils.pickle_safe import UnsafePickleError, safe_load


def _ds(root, cache, dataset, split_by, split):
    preprocess(root, dataset, split_by, cache)
    return RefDataset(cache, dataset, split_by, split)


def test_refcoco_polygons_and_py2_pickle(refcoco_root, tmp_path):
    refs = safe_load(refcoco_root / "refcoco/refs(unc).p")
    assert refs[0]["sentences"][0]["sent"] == "left box" and isinstance(refs[0]["split"], str)
    ds = _ds(refcoco_root, tmp_path / "cache", "refcoco", "unc", "val")
    assert len(ds) == 1
    s = ds[0]
    assert (s["ref_id"], s["sent_id"], s["image_id"], s["phrase"]) == (1, 10, 1, "right thing")
    assert s["bbox"] == (30.0, 2.0, 28.0, 30.0)
    assert s["image_path"] == str(refcoco_root / "images/mscoco/images/train2014/COCO_train2014_000000000001.jpg")
    # the two overlapping polygon parts: decoded by pycocotools part by part, summed, binarised
    seg = [[30, 2, 50, 2, 50, 22, 30, 22], [40, 12, 58, 12, 58, 32, 40, 32]]
    expected = (mask_utils.decode(mask_utils.frPyObjects(seg, 40, 60)).sum(axis=2) > 0).astype(np.uint8)
    assert s["mask"].dtype == np.uint8 and s["mask"].shape == (40, 60)
    assert set(np.unique(s["mask"])) == {0, 1}
    np.testing.assert_array_equal(s["mask"], expected)
    assert ds.load_image(0).shape == (40, 60, 3)


def test_refclef_rle_and_subfolders(refclef_root, tmp_path):
    cache = tmp_path / "cache"
    train = _ds(refclef_root, cache, "refclef", "unc", "train")
    val = RefDataset(cache, "refclef", "unc", "val")
    s = train[0]
    assert s["image_path"].endswith("images/saiapr_tc-12/00/images/100.jpg")
    m = np.zeros((20, 16), dtype=np.uint8)
    m[2:9, 3:12] = 1
    np.testing.assert_array_equal(s["mask"], m)  # compressed RLE (string counts)
    assert [val[i]["phrase"] for i in range(len(val))] == ["pole", "the pole"]
    expected = mask_utils.decode(mask_utils.frPyObjects({"size": [12, 18], "counts": [48, 36, 132]}, 12, 18))
    np.testing.assert_array_equal(val[0]["mask"], expected)  # uncompressed RLE (list counts)
    assert val[0]["mask"][:, 4:7].all() and val[0]["mask"].sum() == 36
    assert val.load_image(0).shape == (12, 18, 3)


def test_split_semantics(refclef_root, refcoco_root, tmp_path):
    assert split_matches("testA", "testAB") and split_matches("testB", "testAB")
    assert not split_matches("testC", "testAB") and not split_matches("val", "valA")
    assert split_matches("test", "testC") and not split_matches("train", "test")
    cache = tmp_path / "c1"
    preprocess(refclef_root, "refclef", "unc", cache)
    phrases = lambda split: sorted(RefDataset(cache, "refclef", "unc", split).phrases)
    assert phrases("testA") == ["a"]
    assert phrases("testB") == ["b", "bc"]
    assert phrases("testC") == ["bc", "c"]
    assert phrases("test") == ["a", "b", "bc", "c"]
    ds = _ds(refcoco_root, tmp_path / "c2", "refcoco", "unc", "testA")
    assert sorted(ds.phrases) == ["box again"]  # testAB ref; the degenerate testA ref is skipped


def test_to_rle_forms_agree():
    m = np.zeros((7, 9), dtype=np.uint8)
    m[1:4, 2:6] = 1
    enc = mask_utils.encode(np.asfortranarray(m))
    poly = [[2, 1, 6, 1, 6, 4, 2, 4]]
    from vglaw.data.synthetic import _uncompressed_rle
    for seg in (enc, {"size": enc["size"], "counts": enc["counts"].decode()}, _uncompressed_rle(m)):
        np.testing.assert_array_equal(mask_utils.decode(to_rle(seg, 7, 9)), m)
    assert mask_utils.decode(to_rle(poly, 7, 9)).sum() > 0
    with pytest.raises(ValueError):
        to_rle(42, 7, 9)


@pytest.mark.parametrize("remove, needle", [
    ("", "data root"), ("refcoco", "dataset folder"), ("refcoco/refs(unc).p", "refs file"),
    ("refcoco/instances.json", "instances file"),
    ("images/mscoco/images/train2014/COCO_train2014_000000000002.jpg", "COCO_train2014_000000000002.jpg"),
])
def test_missing_paths_are_named(refcoco_root, tmp_path, remove, needle):
    import shutil
    target = refcoco_root / remove if remove else refcoco_root
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError) as err:
        preprocess(refcoco_root, "refcoco", "unc", tmp_path / "cache")
    assert isinstance(err.value, DataNotFoundError)
    assert needle in str(err.value) and "data/README.md" in str(err.value)
    assert not (tmp_path / "cache" / "refcoco(unc)").exists()


def test_unknown_names_list_allowed(refcoco_root, tmp_path):
    with pytest.raises(ValueError, match="refcoco\\+.*refcocog"):
        preprocess(refcoco_root, "refcocoplus", "unc", tmp_path)
    with pytest.raises(ValueError, match="umd, google"):
        preprocess(refcoco_root, "refcocog", "unc", tmp_path)
    preprocess(refcoco_root, "refcoco", "unc", tmp_path)
    with pytest.raises(ValueError, match="train, val, testA, testB"):
        RefDataset(tmp_path, "refcoco", "unc", "testC")
    with pytest.raises(FileNotFoundError, match="preprocess"):
        RefDataset(tmp_path / "nothing", "refcoco", "unc", "val")


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))  # would create a file when unpickled


def test_code_carrying_pickle_refused_not_run(refcoco_root, tmp_path):
    marker = tmp_path / "pwned.txt"
    (refcoco_root / "refcoco/refs(unc).p").write_bytes(pickle.dumps([_Evil(str(marker))], protocol=2))
    with pytest.raises(UnsafePickleError, match="refused"):
        preprocess(refcoco_root, "refcoco", "unc", tmp_path / "cache")
    assert not marker.exists()
    assert not (tmp_path / "cache" / "refcoco(unc)").exists()


def test_corrupt_pickle_and_image(refcoco_root, tmp_path):
    refs = refcoco_root / "refcoco/refs(unc).p"
    good = refs.read_bytes()
    refs.write_bytes(good[: len(good) // 2])
    with pytest.raises(pickle.UnpicklingError, match="refs\\(unc\\).p"):
        preprocess(refcoco_root, "refcoco", "unc", tmp_path / "cache")
    refs.write_bytes(good)
    ds = _ds(refcoco_root, tmp_path / "cache", "refcoco", "unc", "testB")
    bad = refcoco_root / "images/mscoco/images/train2014/COCO_train2014_000000000002.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="COCO_train2014_000000000002.jpg"):
        ds.load_image(0)


def test_read_refer_counts_degenerate(refcoco_root):
    samples, images, anns, stats, _ = read_refer(refcoco_root, "refcoco", "unc")
    assert stats["degenerate_box_anns"] == 1 and stats["degenerate_box_sentences"] == 2
    assert len(samples) == 2 + 1 + 2 + 1 and 13 not in anns
    assert sorted(images) == [1, 2]


def test_import_data_does_not_load_mindspore():
    import subprocess
    import sys
    code = "import sys, vglaw.data, vglaw.data.transforms, vglaw.boxes; assert 'mindspore' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
