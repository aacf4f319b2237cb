"""Time-to-accuracy and selection: val rows every `eval_every_steps` updates with both clocks,
continued across a resume; best.ckpt is the argmax of `select_metric` over those rows; bad
`select_metric` values are refused; `--deterministic` reruns are bit-identical (GRAPH, PYNATIVE)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vglaw.train import TrainConfig, resolve_config
from vglaw.train.config import SELECT_METRICS, ConfigError

from _train_helpers import cli_args, run_cli


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


def test_eval_every_steps_rows_clocks_resume_and_selection(tiny_data, tmp_path):
    """16 updates per epoch (about 130 train expressions, batch 4 x 2): a run stopped at update 7,
    then resumed to the end of epoch 0, evaluates val at 5, 7 (the stop), 10, 15 and 16 (epoch end,
    once although eval_every covers it too)."""
    args = cli_args(tiny_data, tmp_path, "tta", "--max_epochs", "1", "--eval_every_steps", "5",
                    "--eval_splits", "val")
    r = run_cli(args + ["--max_steps", "7"])
    assert r.returncode == 0, r.stderr[-4000:]
    r = run_cli(args + ["--resume"])
    assert r.returncode == 0, r.stderr[-4000:]
    run = tmp_path / "tta"
    status = json.loads((run / "status.json").read_text())  # config.json keeps the first run's values
    assert status["state"] == "finished" and status["step"] == status["total_updates"] == 16
    rows = _rows(run)
    evals = [r for r in rows if r.get("eval") == "val"]
    assert [r["step"] for r in evals] == [5, 7, 10, 15, 16]
    for r in evals:
        assert {"prec@0.5", "prec@0.9", "box_miou", "miou", "oiou", "epoch", "eval_s"} <= set(r)
        assert r["select_metric"] == "box_miou+miou"
        assert r["select_value"] == pytest.approx((r["box_miou"] + r["miou"]) / 2)
    # the clocks run on across the resume; train_time leaves out the evaluations before each row
    times = [r["time"] for r in rows]
    assert times == sorted(times) and times[0] > 0
    spent = 0.0
    for r in evals:
        assert r["train_time"] == pytest.approx(r["time"] - spent, abs=0.02)
        spent += r["eval_s"]

    # best.ckpt: the first argmax of the mean of box and mask mIoU, computed here from the rows
    scores = [(r["box_miou"] + r["miou"]) / 2 for r in evals]
    want = evals[int(np.argmax(scores))]
    from vglaw.models.checkpoint import read_checkpoint
    _, meta = read_checkpoint(run / "best.ckpt")
    assert (meta["step"], meta["select_metric"]) == (want["step"], "box_miou+miou")
    assert meta["val"]["box_miou"] == pytest.approx(want["box_miou"])
    assert status["best_step"] == want["step"]
    assert status["best_metric"] == "box_miou+miou" and status["best_value"] == pytest.approx(max(scores))
    assert status["best_val_prec50"] == pytest.approx(want["prec@0.5"])  # older readers' field
    metrics = json.loads((run / "metrics.json").read_text())["val"]
    assert metrics["box_miou"] == pytest.approx(want["box_miou"], abs=1e-6)  # scored best.ckpt


def _losses_and_weights(run: Path) -> tuple[list, dict]:
    from vglaw.models.checkpoint import read_checkpoint
    arrays, _ = read_checkpoint(run / "last.ckpt")
    return [(r["step"], r["loss"]) for r in _rows(run) if "eval" not in r], arrays


@pytest.mark.parametrize("mode, steps", [("GRAPH", 12), ("PYNATIVE", 4)])
def test_deterministic_reruns_are_bit_identical(tiny_data, tmp_path, mode, steps):
    """Dropout stays on (the tiny preset's 0.1): MindSpore's multi-threaded CPU Dropout kernel made
    two runs of this size part after 6-10 updates; `--deterministic` runs it on one thread."""
    runs = []
    for name in ("a", "b"):
        r = run_cli(cli_args(tiny_data, tmp_path, name, "--deterministic", "--mode_name", mode,
                             "--max_steps", str(steps), "--log_freq", "1", "--eval_splits", "val"))
        assert r.returncode == 0, r.stderr[-4000:]
        runs.append(_losses_and_weights(tmp_path / name))
    (loss_a, w_a), (loss_b, w_b) = runs
    assert len(loss_a) == steps and loss_a == loss_b
    assert set(w_a) == set(w_b)
    assert all(np.array_equal(w_a[k], w_b[k]) for k in w_a), [k for k in w_a if not np.array_equal(w_a[k], w_b[k])][:5]
    derived = json.loads((tmp_path / "a" / "config.json").read_text())["derived"]
    assert derived["determinism"] == {"deterministic": "ON", "cpu_op_threads": 1}


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
