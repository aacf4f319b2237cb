"""The preprocessed cache: manifest counts, reuse, atomic writes."""

import json
import os

import pytest

from vglaw.data import RefDataset, cache, preprocess, read_manifest


def test_manifest_counts_and_skips(refcoco_root, tmp_path):
    folder = preprocess(refcoco_root, "refcoco", "unc", tmp_path / "cache")
    assert folder == tmp_path / "cache" / "refcoco(unc)"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["splits"] == {
        "train": {"refs": 1, "sentences": 2, "images": 1},
        "val": {"refs": 1, "sentences": 1, "images": 1},
        "testA": {"refs": 1, "sentences": 1, "images": 1},   # the testAB ref; the degenerate one is skipped
        "testB": {"refs": 2, "sentences": 3, "images": 2},   # testB + testAB
    }
    assert m["skipped"]["degenerate_box_anns"] == 1 and m["skipped"]["degenerate_box_sentences"] == 2
    assert set(m["sources"]) == {"refs(unc).p", "instances.json"}
    assert all(len(h) == 64 for h in m["sources"].values())
    for split, counts in m["splits"].items():
        assert len(RefDataset(tmp_path / "cache", "refcoco", "unc", split)) == counts["sentences"]


def test_reuse_and_rebuild_on_change(refcoco_root, tmp_path, monkeypatch):
    cdir = tmp_path / "cache"
    builds = []
    real = cache.read_refer
    monkeypatch.setattr(cache, "read_refer", lambda *a, **k: builds.append(1) or real(*a, **k))
    folder = preprocess(refcoco_root, "refcoco", "unc", cdir)
    mtime = (folder / "manifest.json").stat().st_mtime_ns
    preprocess(refcoco_root, "refcoco", "unc", cdir)
    assert len(builds) == 1 and (folder / "manifest.json").stat().st_mtime_ns == mtime
    inst = refcoco_root / "refcoco/instances.json"
    data = json.loads(inst.read_text())
    data["annotations"][0]["bbox"] = [5.0, 5.0, 21.0, 10.0]
    inst.write_text(json.dumps(data))
    preprocess(refcoco_root, "refcoco", "unc", cdir)
    assert len(builds) == 2
    assert RefDataset(cdir, "refcoco", "unc", "train")[0]["bbox"] == (5.0, 5.0, 21.0, 10.0)
    preprocess(refcoco_root, "refcoco", "unc", cdir, force=True)
    assert len(builds) == 3
    assert sorted(os.listdir(cdir)) == ["refcoco(unc)"]  # no temp or stale folders left


@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_build_leaves_nothing(refcoco_root, tmp_path, monkeypatch, existing):
    cdir = tmp_path / "cache"
    if existing:
        preprocess(refcoco_root, "refcoco", "unc", cdir)
        before = (cdir / "refcoco(unc)" / "items.json").read_bytes()
    written = []

    def failing_write(path, obj):
        written.append(path.name)
        if path.name == "manifest.json":
            raise RuntimeError("disk full")
        cache.json.dump(obj, open(path, "w"))
    monkeypatch.setattr(cache, "_write_json", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        preprocess(refcoco_root, "refcoco", "unc", cdir, force=True)
    assert written == ["items.json", "image_stats.json", "manifest.json"]  # it did fail half-way
    if existing:  # the old, complete cache is untouched
        assert sorted(os.listdir(cdir)) == ["refcoco(unc)"]
        assert (cdir / "refcoco(unc)" / "items.json").read_bytes() == before
        assert read_manifest(cdir / "refcoco(unc)") is not None
    else:
        assert not cdir.exists() or os.listdir(cdir) == []


def test_masks_are_stored_as_rle(refcoco_root, tmp_path):
    cdir = tmp_path / "cache"
    folder = preprocess(refcoco_root, "refcoco", "unc", cdir)
    items = json.loads((folder / "items.json").read_text())
    rle = items["anns"]["12"]["rle"]
    assert rle["size"] == [40, 60] and isinstance(rle["counts"], str)
