"""RefDataset's lookups that notebook 05 uses (issue 11): sent_id -> index, refs per image."""

import pytest

from vglaw.data import RefDataset, preprocess


def test_index_of_and_refs_by_image(refcoco_root, tmp_path):
    # refcoco(unc) testB of the fixture: ref 3 (sentences 30, 31) on image 2 and ref 4 (stored
    # "testAB", sentence 40) on image 1
    preprocess(refcoco_root, "refcoco", "unc", tmp_path / "cache")
    ds = RefDataset(tmp_path / "cache", "refcoco", "unc", "testB")
    assert sorted(ds.sent_ids.tolist()) == [30, 31, 40]
    for sent_id in (30, 31, 40):
        assert ds.record(ds.index_of(sent_id))["sent_id"] == sent_id
    assert ds.refs_by_image() == {2: {3: min(ds.index_of(30), ds.index_of(31))}, 1: {4: ds.index_of(40)}}
    with pytest.raises(KeyError):
        ds.index_of(10)  # a val sentence
