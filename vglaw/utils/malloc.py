"""Where jemalloc is, for `LD_PRELOAD` (the Makefile's recipes and `benchmarks/bench_compile.py`).

MindSpore's graph compile allocates and frees millions of small IR nodes; with glibc's malloc that
is ~17 % of a compile's CPU samples (`perf`, the tests' model). Preloaded jemalloc compiles the same
graphs in 0.77-0.83x the time and computes the same numbers (`python benchmarks/bench_compile.py --malloc
both`; README, "Faster graph compiles"). It must be preloaded: a process cannot change its
allocator once it runs, so the Makefile exports `LD_PRELOAD` for what it starts.

The places searched are the Makefile's `JEMALLOC_CANDIDATES`, in the same order
(`tests/test_runtime_env.py` checks that the two lists agree).
"""

from __future__ import annotations

import os
from pathlib import Path

# Debian/Ubuntu (`apt install libjemalloc2`, x86-64 and arm64), Fedora/RHEL (`dnf install
# jemalloc`), and a conda environment (`conda install -c conda-forge jemalloc`; environment.yml).
CANDIDATES = (
    "{conda}/lib/libjemalloc.so.2",
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)


def find_jemalloc(environ: dict | None = None) -> str | None:
    """Path of libjemalloc.so.2, or None. `VGLAW_JEMALLOC` (a path) wins; set empty, it turns
    jemalloc off (None); a path that is not a file is an error, not a silent fallback."""
    env = os.environ if environ is None else environ
    if "VGLAW_JEMALLOC" in env:
        path = env["VGLAW_JEMALLOC"]
        if not path:
            return None
        if not Path(path).is_file():
            raise FileNotFoundError(f"VGLAW_JEMALLOC={path!r} is not a file; give the path of "
                                    "libjemalloc.so.2, or set it empty to use the default allocator")
        return path
    conda = env.get("CONDA_PREFIX", "")
    for pattern in CANDIDATES:
        if "{conda}" in pattern and not conda:
            continue
        path = pattern.format(conda=conda)
        if Path(path).is_file():
            return path
    return None


def require_jemalloc() -> str:
    """`find_jemalloc()`, or SystemExit saying how to install one (the benchmarks' `--malloc`)."""
    lib = find_jemalloc()
    if lib is None:
        raise SystemExit("no jemalloc found: apt install libjemalloc2, conda install -c conda-forge jemalloc, "
                         "or set VGLAW_JEMALLOC=/path/to/libjemalloc.so.2")
    return lib
