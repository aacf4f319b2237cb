"""`import vglaw` sets MindSpore's MS_DEV_HOST_BLOCKING_RUN before MindSpore loads (graphs run in the
calling thread instead of beside a busy-waiting one; benchmarks/bench_train.py --host_blocking both),
and an explicit setting wins."""

import os
import subprocess
import sys

import pytest

PROBE = ("import os, sys; import vglaw; print(os.environ.get('MS_DEV_HOST_BLOCKING_RUN')); "
         "print('mindspore' in sys.modules)")


@pytest.mark.parametrize("given, expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_import_vglaw_sets_host_blocking_run_unless_given(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "MS_DEV_HOST_BLOCKING_RUN"}
    if given is not None:
        env["MS_DEV_HOST_BLOCKING_RUN"] = given
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    value, loaded = out.stdout.split()
    assert value == expected
    assert loaded == "False"  # set before MindSpore is imported: it reads the variable once, at load


# --- jemalloc under what `make` starts (vglaw/utils/malloc.py, the Makefile's JEMALLOC_CANDIDATES) ---

def test_makefile_and_find_jemalloc_search_the_same_places():
    import re
    from pathlib import Path

    from vglaw.utils.malloc import CANDIDATES
    text = Path(__file__).resolve().parents[1].joinpath("Makefile").read_text()
    block = re.search(r"^JEMALLOC_CANDIDATES := (.*?[^\\])$", text, re.S | re.M).group(1)
    makefile = re.sub(r"\$\(if \$\(CONDA_PREFIX\),\$\(CONDA_PREFIX\)(\S+)\)", r"{conda}\1",
                      block.replace("\\\n", " ")).split()
    assert makefile == list(CANDIDATES)


def test_find_jemalloc_order_override_and_off(tmp_path):
    from vglaw.utils.malloc import find_jemalloc
    lib = tmp_path / "lib" / "libjemalloc.so.2"
    lib.parent.mkdir()
    lib.write_bytes(b"\x7fELF")
    assert find_jemalloc({"CONDA_PREFIX": str(tmp_path)}) == str(lib)  # a conda env's comes first
    assert find_jemalloc({"VGLAW_JEMALLOC": str(lib)}) == str(lib)
    assert find_jemalloc({"VGLAW_JEMALLOC": "", "CONDA_PREFIX": str(tmp_path)}) is None  # off
    with pytest.raises(FileNotFoundError, match="VGLAW_JEMALLOC='/no/such.so' is not a file"):
        find_jemalloc({"VGLAW_JEMALLOC": "/no/such.so"})


def test_make_preloads_jemalloc_where_found_and_not_when_turned_off(tmp_path):
    import shutil
    from pathlib import Path
    if shutil.which("make") is None:
        pytest.skip("no make")
    repo = Path(__file__).resolve().parents[1]
    lib = tmp_path / "libjemalloc.so.2"
    lib.write_bytes(b"")

    def preload(*args):  # what a recipe's environment holds (make -p: the variable database)
        out = subprocess.run(["make", "-s", "-p", "-q", "help", *args], cwd=repo, capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "VGLAW_JEMALLOC")}).stdout
        line = [x for x in out.splitlines() if x.startswith("LD_PRELOAD :=")]
        return line[0].split(":=", 1)[1].strip() if line else ""
    assert preload(f"VGLAW_JEMALLOC={lib}") == str(lib)
    assert preload("VGLAW_JEMALLOC=") == ""


def test_release_freed_pages_sets_jemallocs_decay_and_is_a_no_op_without_it():
    """`--lean_kernels` runs hand freed pages back at once (the paper train step's peak at batch 2:
    7.25 -> 5.18 GB, RESULTS_model.md); with jemalloc preloaded the arenas' decay reads 0 afterwards,
    without it nothing is done and False comes back."""
    from vglaw.utils.malloc import find_jemalloc
    probe = ("import ctypes\nfrom vglaw.utils.malloc import release_freed_pages\n"
             "done = release_freed_pages()\n"
             "try:\n    m = ctypes.CDLL(None).mallctl\nexcept AttributeError:\n    print(done, None)\n"
             "else:\n    v, n = ctypes.c_ssize_t(-1), ctypes.c_size_t(8)\n"
             "    assert m(b'arena.0.dirty_decay_ms', ctypes.byref(v), ctypes.byref(n), None, ctypes.c_size_t(0)) == 0\n"
             "    print(done, v.value)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    plain = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.split() == ["False", "None"]
    lib = find_jemalloc()
    if lib is None:
        pytest.skip("no jemalloc installed (apt install libjemalloc2)")
    pre = subprocess.run([sys.executable, "-c", probe], env={**env, "LD_PRELOAD": lib}, capture_output=True,
                         text=True, check=True)
    assert pre.stdout.split() == ["True", "0"]
