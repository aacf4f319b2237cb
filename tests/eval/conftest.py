"""Fixtures of the eval tests: a tiny synthetic dataset (cached) and an untrained tiny checkpoint."""

import os

import pytest

os.environ.setdefault("GLOG_v", "4")


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    """(data_root, cache_dir) of a 12-image `shapes` dataset (val: 3 expressions)."""
    from vglaw.data import generate_shapes, preprocess

    root = tmp_path_factory.mktemp("eval_data")
    data_root, cache_dir = root / "data", root / "cache"
    generate_shapes(data_root, n_images=12, min_size=64, max_size=96)
    preprocess(data_root, "shapes", "unc", cache_dir)
    return data_root, cache_dir


@pytest.fixture(scope="session")
def val_ds(shapes_data):
    from vglaw.data import RefDataset

    return RefDataset(shapes_data[1], "shapes", "unc", "val")


@pytest.fixture(scope="session")
def tiny_model():
    import mindspore

    from vglaw.eval.cli import setup_mindspore
    from vglaw.models import build_model

    setup_mindspore("CPU", "PYNATIVE")
    mindspore.set_seed(0)
    return build_model(preset="tiny")


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_model, tmp_path_factory):
    from vglaw.models.checkpoint import save_model

    return save_model(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="session")
def tokenizer():
    from vglaw.data.tokenizer import load_tokenizer

    return load_tokenizer()
