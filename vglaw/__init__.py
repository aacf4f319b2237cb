"""vglaw: VG-LAW visual grounding (Su et al., CVPR 2023) in MindSpore.

Importing the package is cheap; MindSpore loads only when a model or pipeline is asked for.
"""

from __future__ import annotations

import os

# MindSpore's C++ log writes "Get realpath failed" lines into every notebook output at each jit
# compile unless GLOG_v is set before it loads; an explicit user setting wins.
os.environ.setdefault("GLOG_v", "4")
# MindSpore runs each compiled graph on a "frontend" queue thread while the calling thread waits for
# it in a busy loop (runtime::AsyncRQueue::Wait): on CPU that spin takes ~0.7 of a core for the whole
# step, beside the core that computes. MS_DEV_HOST_BLOCKING_RUN=1 runs the graph in the calling
# thread instead. Measured (tiny GRAPH train step, batch 16, one kernel thread, 2-core EPYC, nothing
# else running): 1.128 -> 0.919 s and 2.06 -> 1.34 CPU-s per step, losses bit-identical
# (benchmarks/bench_train.py --host_blocking both; benchmarks/RESULTS_model.md). Read once, when MindSpore loads, so it must be
# set before `import mindspore`; an explicit setting wins (MS_DEV_HOST_BLOCKING_RUN=0 turns it off;
# not measured on GPU/Ascend).
os.environ.setdefault("MS_DEV_HOST_BLOCKING_RUN", "1")

__version__ = "0.1.0"
__all__ = ["build_model", "RefDataset", "__version__"]


def __getattr__(name: str):
    # Lazy exports: `import vglaw` must not pay MindSpore's 3 s import (data-only tools, notebooks).
    if name == "build_model":
        from vglaw.models import build_model
        return build_model
    if name == "RefDataset":
        from vglaw.data import RefDataset
        return RefDataset
    raise AttributeError(f"module 'vglaw' has no attribute {name!r}")
