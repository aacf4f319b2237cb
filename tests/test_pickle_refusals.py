"""Every loader that reads a pickle refuses a code-carrying one before it runs, and
`allow_numpy=False` refuses NumPy globals. The pickle readers of the package are the refer layout's
`refs(<splitBy>).p` (read_refer, hence preprocess and RefDataset(data_root=...)) and detectron2's
ViTDet `.pkl` (load_vitdet), both through `vglaw.pickle_safe`."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from vglaw.utils.pickle_safe import UnsafePickleError, safe_load, safe_loads


class _Evil:
    """Unpickling this calls open(path, "w"): a pickle that runs code leaves the file behind."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture()
def shapes_root(tmp_path):
    from vglaw.data import generate_shapes
    root = tmp_path / "data"
    generate_shapes(root, n_images=4, min_size=48, max_size=64)
    return root


def _refs(root):
    return root / "shapes" / "refs(unc).p"


@pytest.mark.parametrize("reader", ["read_refer", "preprocess", "RefDataset"])
def test_refs_loaders_refuse_a_code_carrying_pickle(shapes_root, tmp_path, reader):
    from vglaw.data import RefDataset, preprocess
    from vglaw.data.refer import read_refer
    marker = tmp_path / "ran.txt"
    refs = safe_load(_refs(shapes_root))
    refs[0]["sentences"][0]["sent"] = _Evil(marker)  # deep inside an otherwise valid file
    _refs(shapes_root).write_bytes(pickle.dumps(refs, protocol=2))
    call = {"read_refer": lambda: read_refer(shapes_root, "shapes", "unc"),
            "preprocess": lambda: preprocess(shapes_root, "shapes", "unc", tmp_path / "cache"),
            "RefDataset": lambda: RefDataset(tmp_path / "cache", "shapes", "unc", "val", data_root=shapes_root)}
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle global (io|builtins)\.open"):
        call[reader]()
    assert not marker.exists()


def test_refs_loader_refuses_numpy_globals(shapes_root):
    from vglaw.data.refer import read_refer
    refs = safe_load(_refs(shapes_root))
    refs[0]["image_id"] = np.int64(refs[0]["image_id"])  # a NumPy scalar: numpy.core.multiarray.scalar
    _refs(shapes_root).write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(UnsafePickleError, match="numpy"):
        read_refer(shapes_root, "shapes", "unc")


def test_vitdet_pkl_loader_refuses_a_code_carrying_pickle(tmp_path):
    from vglaw.models.weights import load_vitdet
    marker = tmp_path / "ran.txt"
    pkl = tmp_path / "model_final.pkl"
    state = {"backbone.net.pos_embed": np.zeros((1, 5, 8), np.float32), "backbone.net.x": _Evil(marker)}
    pkl.write_bytes(pickle.dumps({"model": state, "__author__": "Detectron2 Model Zoo"}, protocol=2))
    # refused before any model is touched, NumPy arrays allowed or not
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle global (io|builtins)\.open"):
        load_vitdet(object(), pkl)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_allow_numpy_false_refuses_numpy_globals(protocol):
    data = pickle.dumps({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, protocol=protocol)
    with pytest.raises(UnsafePickleError, match="numpy"):
        safe_loads(data)
    with pytest.raises(UnsafePickleError, match="numpy"):
        safe_loads(data, allow_numpy=False)
    np.testing.assert_array_equal(safe_loads(data, allow_numpy=True)["w"], np.arange(6).reshape(2, 3))
    assert safe_loads(pickle.dumps([1, "a", {"b": (2.0, None)}], protocol=protocol)) == [1, "a", {"b": (2.0, None)}]


def test_numpy_allowance_does_not_admit_code(tmp_path):
    marker = tmp_path / "ran.txt"
    with pytest.raises(UnsafePickleError):
        safe_loads(pickle.dumps([np.zeros(2), _Evil(marker)], protocol=2), allow_numpy=True)
    assert not marker.exists()
