"""Fixtures of the training tests: one tiny synthetic dataset per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict:
    """{'data_root', 'cache_dir'} of a 40-image `shapes` set (about 120 train expressions)."""
    from vglaw.data import generate_shapes, preprocess
    root = tmp_path_factory.mktemp("train_data")
    data_root, cache_dir = root / "data", root / "cache"
    generate_shapes(data_root, dataset="shapes", n_images=40, min_size=64, max_size=96, seed=1)
    preprocess(data_root, "shapes", "unc", cache_dir)
    return {"data_root": str(data_root), "cache_dir": str(cache_dir)}
