"""Data: the refer-layout reader, the preprocessed cache, the synthetic dataset, transforms.

`import vglaw.data` does not import MindSpore; only `vglaw.data.pipeline` does (DESIGN §4).
"""

from vglaw.data.cache import RefDataset, cache_folder, preprocess, read_manifest
from vglaw.data.refer import DATASETS, DataNotFoundError, allowed_splits, check_names
from vglaw.data.synthetic import ensure_shapes, generate_shapes

__all__ = ["RefDataset", "preprocess", "cache_folder", "read_manifest", "DATASETS",
           "DataNotFoundError", "allowed_splits", "check_names", "generate_shapes", "ensure_shapes"]
