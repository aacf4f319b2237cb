"""Suite-wide settings: quiet MindSpore's C++ log and keep every test off the network."""

import os

import vglaw  # noqa: E402,F401  sets GLOG_v and MS_DEV_HOST_BLOCKING_RUN before any test imports mindspore
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tokenizer/encoder load from local folders only
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# `make test` runs two pytest-xdist workers, one test file at a time each (`--dist loadfile
# --no-loadscope-reorder`): a worker takes the next file in collection order when it is nearly
# done. Longest files first (seconds on one worker of a 2-worker run, 2026-12-01), so that the
# short ones fill in at the end and both workers finish together; xdist's own order (most tests
# first) left the 1-test heavy files (overfit, multinode, reuse) for last and one worker idle for
# ~3 minutes. Files not listed keep their order, after these.
LONGEST_FIRST = [
    "train/test_run.py",               # 261
    "notebooks/test_workbook.py",      # 140
    "train/test_multinode.py",         # 116
    "train/test_overfit.py",           # 107
    "train/test_time_to_accuracy.py",  # 103
    "train/test_step.py",              # 102
    "train/test_bookkeeping.py",       # 87
    "train/test_pretrain.py",          # 83
    "eval/test_lab.py",                # 66
    "train/test_reuse.py",             # ~60
    "notebooks/test_01_verify_images.py",  # 56
    "models/test_vglaw.py",            # 55
    "models/test_law.py",              # 35
    "models/test_convert.py",          # 31
    "eval/test_evaluate.py",           # 31
    "models/test_stem_refine.py",      # 29
    "notebooks/test_01_preprocess.py",  # 29
    "train/test_selection.py",         # 20
]


def pytest_collection_modifyitems(config, items):
    rank = {f"tests/{name}": i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: files stay whole
