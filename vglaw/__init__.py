"""vglaw: VG-LAW visual grounding (Su et al., CVPR 2023) in MindSpore.

Importing the package is cheap; MindSpore loads only when a model or pipeline is asked for.
"""

from __future__ import annotations

import os

# MindSpore's C++ log writes "Get realpath failed" lines into every notebook output at each jit
# compile unless GLOG_v is set before it loads; an explicit user setting wins.
os.environ.setdefault("GLOG_v", "4")

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
