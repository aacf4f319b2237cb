"""What the evaluate / predict / visualize CLIs share: the data choices, the device flags, and the
split they open. No MindSpore import until `setup_mindspore`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vglaw.config import DEVICE_TARGETS, MODES
# CLI choices: the data layer's table (dataset -> split_by -> splits); combinations: `check_names`.
from vglaw.data.refer import DATASETS, SPLIT_BYS, SPLITS

__all__ = ["add_device_args", "setup_mindspore", "open_split"]

log = logging.getLogger("vglaw")


def add_device_args(p: argparse.ArgumentParser, mode_help: str | None = None) -> None:
    """`--device_target` and `--mode_name` (shared by the eval/predict/visualize CLIs), for `setup_mindspore`."""
    p.add_argument("--device_target", default="CPU", choices=DEVICE_TARGETS)
    p.add_argument("--mode_name", default="PYNATIVE", choices=MODES, help=mode_help)


def setup_mindspore(device_target: str, mode_name: str) -> None:
    """`mindspore.set_device` + execution mode (shared by the eval/predict/visualize CLIs)."""
    import mindspore

    before = mindspore.get_context("device_target")
    try:
        mindspore.set_device(device_target)
    except RuntimeError:
        # The runtime already runs in this process (kernels executed before, e.g. in a notebook or a
        # test session that ran models first): fine when it is on the requested device.
        if before != device_target:
            raise
    mindspore.set_context(mode=mindspore.GRAPH_MODE if mode_name == "GRAPH" else mindspore.PYNATIVE_MODE)


def open_split(dataset: str, split_by: str, split: str, data_root=None, cache_dir=None):
    """RefDataset of a split; preprocesses `data_root` into `cache_dir` first if not cached yet."""
    from vglaw.data import RefDataset, cache_folder, check_names, read_manifest
    from vglaw.utils import paths

    check_names(dataset, split_by, split)
    data_root = Path(data_root) if data_root is not None else paths.default_data_root()
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.default_cache_dir()
    if read_manifest(cache_folder(cache_dir, dataset, split_by)) is None:
        if not data_root.is_dir():
            raise FileNotFoundError(f"no cache for {dataset}({split_by}) under {cache_dir} and the "
                                    f"data root {data_root} does not exist")
        log.info("no cache yet: preprocessing %s(%s) from %s", dataset, split_by, data_root)
        return RefDataset(cache_dir, dataset, split_by, split, data_root=data_root)
    return RefDataset(cache_dir, dataset, split_by, split)
