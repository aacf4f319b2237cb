"""vglaw.runs.train_or_reuse: a finished equal run is reused, other settings are refused, an
interrupted run is resumed, and a changed image invalidates the cache and the reuse of the run
(issue 9; real training in a subprocess, tiny model). One test: each call is a fresh process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

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


def test_reuse_refuse_resume_and_changed_image(tiny_data, tmp_path):
    from vglaw.data import preprocess, read_manifest

    data, cache = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(tiny_data["data_root"], data)  # the session's data stays untouched; the first call builds the cache
    args = dict(preset="tiny", dataset="shapes", vit_model="scratch", use_mask=True, batch_size=4, batch_sum=4, max_epochs=1,
                max_steps=3, warmup_steps=1, eval_splits=["val"], progress=False, experiment_name="r",
                save_ckpt_dir=str(tmp_path / "runs"), model_overrides=TINY_MODEL, data_root=str(data),
                cache_dir=str(cache))
    first = _call(args)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "runs" / "r"
    cfg = json.loads((run / "config.json").read_text())
    fp = read_manifest(cache / "shapes(unc)")["fingerprint"]
    assert cfg["data"]["fingerprint"] == fp and cfg["data"]["cache"] == str(cache / "shapes(unc)")
    stamp = (run / "metrics.json").stat().st_mtime_ns
    again = _call(args)
    assert again.returncode == 0 and "reused" in again.stderr  # same settings, same data: reused
    assert (run / "metrics.json").stat().st_mtime_ns == stamp  # nothing retrained or rewritten

    other = _call(dict(args, lr_base=5e-4))
    assert other.returncode != 0 and "lr_base: 0.004 -> 0.0005" in other.stderr

    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(dict(status, state="running")))  # as if killed
    resumed = _call(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from last.ckpt" in resumed.stderr
    assert json.loads((run / "status.json").read_text())["state"] == "finished"

    # a changed image: the cache refuses, naming the file; once rebuilt, the run is refused
    name = json.loads((data / "shapes" / "instances.json").read_text())["images"][0]["file_name"]
    path = data / "images/mscoco/images/train2014" / name
    w, h = Image.open(path).size
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)  # same size, other pixels
    changed = _call(args)
    assert changed.returncode != 0 and "DataChangedError" in changed.stderr
    assert f"1 modified image(s): {name}" in changed.stderr
    preprocess(data, "shapes", "unc", cache)  # what 01_preprocess does: rebuild
    refused = _call(args)
    assert refused.returncode != 0 and "data fingerprint" in refused.stderr and fp in refused.stderr
