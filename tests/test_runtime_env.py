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
