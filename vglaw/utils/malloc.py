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


def release_freed_pages() -> bool:
    """With jemalloc preloaded, hand freed pages back to the OS at once (dirty and muzzy decay 0,
    for the existing arenas and the ones made later); without it, do nothing. Returns whether it did.

    jemalloc keeps freed pages for 10 s by default. A GRAPH compile frees gigabytes of IR just before
    the first step allocates its kernels, so the two add up in the peak: the paper preset's train step
    with `--lean_kernels --recompute` at batch 2 peaked at 7.25 GB RSS with the default and 5.18 GB
    with decay 0, same step times (`benchmarks/bench_memory.py`, RESULTS_model.md, session 18).
    The same as `MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0`, set from inside the process.
    """
    import ctypes
    try:
        mallctl = ctypes.CDLL(None).mallctl  # the preloaded jemalloc's, found among the process's symbols
    except (OSError, AttributeError):
        return False
    mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    zero = ctypes.c_ssize_t(0)
    narenas, size = ctypes.c_uint(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_uint))
    if mallctl(b"arenas.narenas", ctypes.byref(narenas), ctypes.byref(size), None, 0) != 0:
        return False
    ok = all(mallctl(f"arenas.{kind}_decay_ms".encode(), None, None, ctypes.byref(zero), ctypes.sizeof(zero)) == 0
             for kind in ("dirty", "muzzy"))  # the default for arenas made from now on
    for i in range(narenas.value):  # arenas not yet initialised refuse (EFAULT) and get the new default
        for kind in ("dirty", "muzzy"):
            mallctl(f"arena.{i}.{kind}_decay_ms".encode(), None, None, ctypes.byref(zero), ctypes.sizeof(zero))
    return ok
