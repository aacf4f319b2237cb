"""Time-to-accuracy and selection: bad `select_metric` values are refused; `--deterministic`
reruns are bit-identical (GRAPH, PYNATIVE). (Val rows every `eval_every_steps` updates with both
clocks, continued across a resume, and best.ckpt as the argmax of `select_metric` over them:
test_run.py::test_sigkill_then_a_stop_then_resumes_match_the_uninterrupted_run, on its run.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vglaw.train import TrainConfig, resolve_config
from vglaw.train.config import SELECT_METRICS, ConfigError

from _train_helpers import NO_ACCUM, REPO, cli_args, env, run_cli


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_select_metric_default_and_refusals():
    assert resolve_config(TrainConfig(preset="tiny", use_mask=True)).select_metric == "box_miou+miou"
    assert resolve_config(TrainConfig(preset="tiny")).select_metric == "box_miou"  # REC only
    assert resolve_config(TrainConfig(preset="tiny", eval_every_steps=None)).eval_every_steps >= 0
    with pytest.raises(ConfigError) as err:
        resolve_config(TrainConfig(preset="tiny", use_mask=True, select_metric="prec@0.55"))
    assert all(m in str(err.value) for m in SELECT_METRICS)
    with pytest.raises(ConfigError, match="needs --use_mask"):
        resolve_config(TrainConfig(preset="tiny", select_metric="box_miou+miou"))
    with pytest.raises(ConfigError, match="eval_every_steps must be >= 0"):
        resolve_config(TrainConfig(preset="tiny", eval_every_steps=-5))
    r = run_cli(["--preset", "tiny", "--select_metric", "acc"], timeout=60)
    assert r.returncode == 2 and "invalid choice: 'acc'" in r.stderr and "box_miou+miou" in r.stderr


def _losses_and_weights(run: Path) -> tuple[list, dict]:
    from vglaw.models.checkpoint import read_checkpoint
    arrays, _ = read_checkpoint(run / "last.ckpt")
    return [(r["step"], r["loss"]) for r in _rows(run) if "eval" not in r], arrays


@pytest.mark.parametrize("mode, steps", [("GRAPH", 12), ("PYNATIVE", 4)])
def test_deterministic_reruns_are_bit_identical(tiny_data, tmp_path, mode, steps):
    """Dropout stays on (the tiny preset's 0.1): MindSpore's multi-threaded CPU Dropout kernel made
    two runs of this size part after 6-10 updates; `--deterministic` runs it on one thread."""
    # --deterministic runs MindSpore's CPU kernels on one thread: both reruns at once use 2 cores
    procs = [subprocess.Popen([sys.executable, "-m", "vglaw.train", *cli_args(
        tiny_data, tmp_path, name, "--deterministic", "--mode_name", mode, "--max_steps", str(steps),
        "--log_freq", "1", "--eval_splits", "val", *NO_ACCUM)], cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    errs = [p.communicate(timeout=1200)[1] for p in procs]  # a hang guard, not a speed bar
    assert [p.returncode for p in procs] == [0, 0], [e[-3000:] for e in errs]
    runs = [_losses_and_weights(tmp_path / name) for name in ("a", "b")]
    (loss_a, w_a), (loss_b, w_b) = runs
    assert len(loss_a) == steps and loss_a == loss_b
    assert set(w_a) == set(w_b)
    assert all(np.array_equal(w_a[k], w_b[k]) for k in w_a), [k for k in w_a if not np.array_equal(w_a[k], w_b[k])][:5]
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["derived"]["determinism"] == {"deterministic": "ON", "cpu_op_threads": 1}
    # the tiny recipe scores the mask's box (box_source "mask"), and logs the head's beside it
    assert config["train"]["box_source"] == config["model"]["box_source"] == "mask"
    evals = [r for r in _rows(tmp_path / "a") if r.get("eval") == "val"]
    assert evals and all("head_prec@0.5" in r and "head_box_miou" in r for r in evals)
    preds = json.loads((tmp_path / "a" / "predictions_val.json").read_text())
    assert all("head_box" in p and "head_box_iou" in p for p in preds)


def test_resume_bookkeeping_of_evaluations(tmp_path):
    """A kill after an evaluation's row but before the checkpoint that clears `pending_eval`: the
    resume redoes that evaluation, so its old row goes; a best record from an older checkpoint (or
    another select_metric) is re-scored instead of compared across metrics."""
    from vglaw.train.loop import _restore_best
    from vglaw.train.state import RunDir
    run = RunDir(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    for rec in ({"step": 4, "loss": 1.0}, {"step": 4, "eval": "val"}, {"step": 5, "loss": 0.9},
                {"step": 6, "eval": "val"}, {"step": 6, "loss": 0.8}):
        run.append_log(rec)
    run.truncate_log(6, drop_eval_at=6)
    assert _rows(tmp_path) == [{"step": 4, "loss": 1.0}, {"step": 4, "eval": "val"}, {"step": 5, "loss": 0.9},
                               {"step": 6, "loss": 0.8}]
    old = {"val_prec@0.5": 0.5, "epoch": 0, "step": 4, "val": {"prec@0.5": 0.5, "box_miou": 0.4, "miou": 0.6}}
    new = _restore_best(old, "box_miou+miou")
    assert new["metric"] == "box_miou+miou" and new["value"] == pytest.approx(0.5) and new["step"] == 4
    assert _restore_best(new, "box_miou+miou") is new
    assert _restore_best({"val_prec@0.5": -1.0, "epoch": None, "step": None}, "miou")["value"] == -1.0
