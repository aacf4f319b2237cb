"""vglaw.runs.train_or_reuse: a finished equal run is reused, other settings are refused, an
interrupted run is resumed (real training in a subprocess, tiny model)."""

from __future__ import annotations

import json
import subprocess
import sys

from _train_helpers import REPO, TINY_MODEL, env

SNIPPET = """
import json, logging, sys
logging.basicConfig(level=logging.INFO)
from vglaw.workbook.runs import train_or_reuse
from vglaw.train import TrainConfig
a = json.loads(sys.argv[1])
print("RUN_DIR", train_or_reuse(TrainConfig(**a)))
"""


def _call(args: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SNIPPET, json.dumps(args)], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=300)


def test_reuse_refuse_resume(tiny_data, tmp_path):
    args = dict(preset="tiny", dataset="shapes", vit_model="scratch", use_mask=True, batch_size=4, batch_sum=4, max_epochs=1,
                max_steps=3, warmup_steps=1, eval_splits=["val"], progress=False, experiment_name="r",
                save_ckpt_dir=str(tmp_path), model_overrides=TINY_MODEL, **tiny_data)
    first = _call(args)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "r"
    stamp = (run / "metrics.json").stat().st_mtime_ns
    again = _call(args)
    assert again.returncode == 0 and "reused" in again.stderr
    assert (run / "metrics.json").stat().st_mtime_ns == stamp  # nothing retrained or rewritten

    other = _call(dict(args, lr_base=5e-4))
    assert other.returncode != 0 and "lr_base: 0.001 -> 0.0005" in other.stderr

    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(dict(status, state="running")))  # as if killed
    resumed = _call(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from last.ckpt" in resumed.stderr
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
