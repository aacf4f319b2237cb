import json

import numpy as np
import pytest

from vglaw.utils.io import read_json, write_json_atomic


def test_write_json_atomic_roundtrip_and_no_tmp_left(tmp_path):
    p = write_json_atomic(tmp_path / "sub" / "m.json", {"a": np.float32(0.5), "b": np.arange(3), "c": (1, 2)})
    assert json.loads(p.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": [1, 2]}
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]


def test_failed_write_keeps_old_file(tmp_path):
    p = write_json_atomic(tmp_path / "m.json", {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"bad": object()})
    assert read_json(p) == {"ok": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_json(tmp_path / "nope.json")


def test_rle_roundtrip_non_square():
    from vglaw.utils.io import mask_to_rle, rle_to_mask

    m = np.zeros((7, 13), np.uint8)
    m[2:5, 3:11] = 1
    m[6, 12] = 1
    rle = mask_to_rle(m)
    assert rle["size"] == [7, 13] and isinstance(rle["counts"], str)
    json.dumps(rle)
    np.testing.assert_array_equal(rle_to_mask(json.loads(json.dumps(rle))), m)
