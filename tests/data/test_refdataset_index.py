"""RefDataset's lookups that notebook 05 uses (issue 11): sent_id -> index, refs per image."""

import pytest

from vglaw.data import RefDataset, preprocess


def test_index_of_and_refs_by_image(refcoco_root, tmp_path):
    # refcoco(unc) testA of the fixture: ref 2 (sentences 20, 21) and ref 4 (stored "testAB",
    # sentence 40), both on image 1
    preprocess(refcoco_root, "refcoco", "unc", tmp_path / "cache")
    ds = RefDataset(tmp_path / "cache", "refcoco", "unc", "testA")
    assert sorted(ds.sent_ids.tolist()) == [20, 21, 40]
    for sent_id in (20, 21, 40):
        assert ds.record(ds.index_of(sent_id))["sent_id"] == sent_id
    assert ds.refs_by_image() == {1: {2: ds.index_of(20), 4: ds.index_of(40)}}
    with pytest.raises(KeyError):
        ds.index_of(10)  # a val sentence
