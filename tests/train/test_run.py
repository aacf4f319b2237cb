"""End to end through the CLI on a tiny synthetic set: every run-dir file, bit-exact resume after
SIGKILL (during a val evaluation) with the killed run's bookkeeping (lock, "interrupted", refusal
without --resume), then a clean --max_steps stop and its resume, refusal to clobber a run, and
non-finite loss handling. (msrun data parallel: test_multinode.py,
whose one-node launch is the 2-worker msrun run.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _train_helpers import DETERMINISTIC, NO_ACCUM, REPO, TINY_MODEL, cli_args, env, run_cli

# A resume is bit-exact only with --deterministic and without dropout/drop-path: MindSpore's CPU
# random kernels (Dropout, UniformReal) keep their generator inside the kernel, not in the global
# state last.ckpt stores, so their masks restart after a resume. Val every 3 updates: mid-epoch
# evaluations (and their resume bookkeeping) run too.
EXACT = ("--deterministic", "--ckpt_every", "2", "--eval_every_steps", "3", "--model_overrides",
         *[f"{k}={json.dumps(v)}" for k, v in {**TINY_MODEL, **DETERMINISTIC}.items()])


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _train_state(path: Path) -> tuple[dict, dict]:
    from vglaw.models.checkpoint import read_checkpoint
    return read_checkpoint(path)


@pytest.fixture(scope="module")
def run_data(tmp_path_factory) -> dict:
    """{'data_root', 'cache_dir'} of a 24-image `shapes` set: 85 train expressions, so 10 updates
    per epoch of batch 4 x 2 (the session's 40-image set has 16): every run here is shorter, and an
    epoch still holds the stop at update 5 and the kill at the first evaluation (update 3)."""
    from vglaw.data import generate_shapes, preprocess
    root = tmp_path_factory.mktemp("run_data")
    data_root, cache_dir = root / "data", root / "cache"
    generate_shapes(data_root, dataset="shapes", n_images=24, min_size=64, max_size=96, seed=1)
    preprocess(data_root, "shapes", "unc", cache_dir)
    return {"data_root": str(data_root), "cache_dir": str(cache_dir)}


@pytest.fixture(scope="module")
def full_run(run_data, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    r = run_cli(cli_args(run_data, runs, "full", *EXACT))
    assert r.returncode == 0, r.stderr[-4000:]
    return runs / "full"


def test_run_dir_files_are_complete_and_valid(full_run):
    names = {p.name for p in full_run.iterdir()}
    assert {"config.json", "train_log.jsonl", "metrics.json", "status.json", "last.ckpt", "best.ckpt",
            "predictions_val.json", "predictions_testA.json", "predictions_testB.json"} <= names
    assert not [n for n in names if ".tmp" in n]  # no leftovers of atomic writes
    cfg = json.loads((full_run / "config.json").read_text())
    assert cfg["train"]["law_type"] == "svd" and cfg["model"]["law_type"] == "svd"
    assert cfg["model"]["vit_dim"] == 32 and cfg["versions"]["mindspore"].startswith("2.")
    derived = cfg["derived"]
    assert derived["accum_steps"] == 2 and derived["world_size"] == 1
    total = derived["total_updates"]
    assert total == 2 * derived["updates_per_epoch"] > 0

    status = json.loads((full_run / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == total
    arrays, meta = _train_state(full_run / "last.ckpt")
    assert int(arrays["global_step"].reshape(-1)[0]) == total == meta["update_step"]
    assert any(k.startswith("adam_m.") for k in arrays) and any(k.startswith("adam_v.") for k in arrays)

    log = _read_jsonl(full_run / "train_log.jsonl")
    train = [r for r in log if "eval" not in r]
    steps = [r["step"] for r in train]
    assert steps == sorted(set(steps)) and steps[-1] == total
    for r in train:
        assert {"epoch", "loss", "l1", "giou", "focal", "dice", "samples_per_s"} <= set(r)
        assert set(r["lr"]) == {"lang", "visual", "base"}
    # drop_epochs 1: every epoch-1 LR is a tenth of the epoch-0 peak (warmup 3 updates)
    upe = derived["updates_per_epoch"]
    e0 = [r for r in train if 3 <= r["step"] - 1 < upe]
    e1 = [r for r in train if r["step"] - 1 >= upe]
    assert e0 and e1
    for g in ("lang", "visual", "base"):
        assert e1[-1]["lr"][g] == pytest.approx(0.1 * e0[-1]["lr"][g])
    # val every 3 updates and at both epoch ends, each update once
    assert [r["step"] for r in log if r.get("eval") == "val"] == sorted(set(range(3, total, 3)) | {upe, total})

    metrics = json.loads((full_run / "metrics.json").read_text())
    assert set(metrics) == {"val", "testA", "testB"}
    for split, m in metrics.items():
        assert {"n", "prec@0.5", "box_miou", "miou", "oiou", "miou_canvas"} <= set(m)
        preds = json.loads((full_run / f"predictions_{split}.json").read_text())
        assert len(preds) == m["n"] > 0
        assert {"sent_id", "pred_box", "box_iou", "pred_mask"} <= set(preds[0])
    # best.ckpt is selected on val (never a test split), on the mean of box and mask mIoU by
    # default, and is what metrics.json scored
    vals = [r for r in log if r.get("eval") == "val"]
    best = max(vals, key=lambda r: (r["box_miou"] + r["miou"]) / 2)
    assert status["best_metric"] == "box_miou+miou" and status["best_step"] == best["step"]
    assert status["best_val_prec50"] == pytest.approx(best["prec@0.5"])
    assert metrics["val"]["prec@0.5"] == pytest.approx(status["best_val_prec50"])
    assert metrics["val"]["box_miou"] == pytest.approx(best["box_miou"], abs=1e-6)

    from vglaw.eval.evaluate import load_model_from_checkpoint
    model = load_model_from_checkpoint(full_run / "best.ckpt")
    assert model.config.law_type == "svd"


def test_existing_run_is_not_clobbered(full_run, run_data):
    r = run_cli(cli_args(run_data, full_run.parent, "full"), timeout=120)
    assert r.returncode == 2
    assert "already holds a run (state finished)" in r.stderr and "--resume" in r.stderr


def test_sigkill_then_a_stop_then_resumes_match_the_uninterrupted_run(full_run, run_data, tmp_path):
    """One run through a kill and a clean stop (issues 9 and 14; one chain instead of a killed and a
    stopped run: ~100 s less of the suite). Killed as its first val row lands (update 3, before the
    checkpoint that clears the pending evaluation): the live writer is named by its lock; once
    killed the run reads "interrupted", and a restart without --resume is refused (and records that
    state). Resumed with --max_steps 5: it stops cleanly mid-epoch (update 5 of epoch 0, val at the
    stop). Resumed again to the end: weights, AdamW moments, the update counter (hence the LR),
    every logged loss (the data order) and val metric equal the uninterrupted run's, with one val
    row more, at the stop; time-to-accuracy rows and best.ckpt (issue 8) are checked on the chain."""
    from vglaw.train.state import lock_holder, read_status
    args = cli_args(run_data, tmp_path, "killed", *EXACT)
    proc = subprocess.Popen([sys.executable, "-m", "vglaw.train", *args], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "killed"
    last = run / "last.ckpt"
    log = run / "train_log.jsonl"
    deadline = time.time() + 1200  # a guard against a hung run (a shared CPU makes it slow)
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its first checkpoint: " + proc.stderr.read()[-3000:]
    assert lock_holder(run)["pid"] == proc.pid  # the live writer is named
    assert read_status(run)["state"] == "running"
    # killed as the first val row lands, before the checkpoint that clears the pending evaluation
    while not (log.exists() and '"eval"' in log.read_text()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its first evaluation: " + proc.stderr.read()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "running"  # the file as the kill left it
    st = read_status(run)
    assert st["state"] == "interrupted" and st["stale_pid"] == proc.pid
    assert lock_holder(run) is None
    _, meta = _train_state(last)  # still readable
    killed_at = meta["update_step"]
    assert killed_at < 5

    r = run_cli(args, timeout=120)  # without --resume: refused, and the status is recorded
    assert r.returncode == 2 and "(state interrupted)" in r.stderr and "--resume" in r.stderr
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"

    r = run_cli(args + ["--resume", "--max_steps", "5"])  # a clean stop, mid-epoch
    assert r.returncode == 0, r.stderr[-4000:]
    assert f"resumed {last}" in r.stderr
    _, meta = _train_state(last)
    assert (meta["update_step"], meta["epoch"], meta["batches_done"]) == (5, 0, 10)
    assert json.loads((run / "status.json").read_text())["state"] == "finished"

    r = run_cli(args + ["--resume"])  # to the end of the schedule: an extension needs no flag
    assert r.returncode == 0, r.stderr[-4000:]
    resumes = json.loads((run / "config.json").read_text())["resumes"]
    assert [e["step"] for e in resumes] == [killed_at, 5]
    assert [e["changes"] for e in resumes] == [{"max_steps": [None, 5]}, {"max_steps": [5, None]}]
    assert not any(e["allowed_changes"] for e in resumes)
    full_arrays, full_meta = _train_state(full_run / "last.ckpt")
    arrays, meta = _train_state(last)
    total = json.loads((full_run / "config.json").read_text())["derived"]["total_updates"]
    assert int(arrays["global_step"].reshape(-1)[0]) == int(full_arrays["global_step"].reshape(-1)[0]) == total
    assert (meta["epoch"], meta["batches_done"]) == (full_meta["epoch"], full_meta["batches_done"])
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    # bit-exact: the weights and the optimiser state (both AdamW moments of every weight)
    moments = [k for k in full_arrays if k.startswith(("adam_m.", "adam_v."))]
    assert len(moments) == 2 * len([k for k in full_arrays if k.startswith("adam_m.")]) > 0
    assert set(arrays) == set(full_arrays)
    assert all(np.array_equal(arrays[k], full_arrays[k]) for k in arrays), \
        [k for k in arrays if not np.array_equal(arrays[k], full_arrays[k])][:5]
    clocks = {"time", "train_time", "eval_s", "samples_per_s"}

    def no_clocks(path):
        return [{k: v for k, v in r.items() if k not in clocks} for r in _read_jsonl(path)]
    mine, full = no_clocks(log), no_clocks(full_run / "train_log.jsonl")
    train = [r for r in mine if "eval" not in r]
    full_train = [r for r in full if "eval" not in r]
    assert [r["step"] for r in train] == sorted({r["step"] for r in full_train} | {5})
    # every loss row equals the full run's (the data order; a row averages the updates since the
    # previous row of its epoch); the stop's row (5) splits the full run's row 6 in two
    by_step = {r["step"]: r for r in train}
    for want in full_train:
        got = by_step[want["step"]]
        if want["step"] == 6:
            assert (by_step[5]["loss"] + got["loss"]) / 2 == pytest.approx(want["loss"], rel=1e-6)
            assert got["lr"] == want["lr"]
        else:
            assert got == want, want["step"]
    evals = [r for r in mine if "eval" in r]
    assert [r for r in evals if r["step"] != 5] == [r for r in full if "eval" in r]  # same metrics
    upe = json.loads((full_run / "config.json").read_text())["derived"]["updates_per_epoch"]
    _check_time_to_accuracy_rows(run, upe, [3, 5, 6, 9, 10, 12, 15, 18, 20])
    full_best = _train_state(full_run / "best.ckpt")[1]["step"]
    if _train_state(run / "best.ckpt")[1]["step"] != 5:  # unless the stop's evaluation is the best
        assert _train_state(run / "best.ckpt")[1]["step"] == full_best
        assert (json.loads((run / "metrics.json").read_text())
                == json.loads((full_run / "metrics.json").read_text()))


def _check_time_to_accuracy_rows(run: Path, upe: int, steps: list[int]) -> None:
    """val rows at `steps` (every 3 updates, at the stop and at both epoch ends); clocks; selection."""
    status = json.loads((run / "status.json").read_text())  # config.json keeps the first run's values
    assert status["state"] == "finished" and status["step"] == status["total_updates"] == 2 * upe == 20
    log = _read_jsonl(run / "train_log.jsonl")
    evals = [r for r in log if r.get("eval") == "val"]
    assert [r["step"] for r in evals] == steps
    for r in evals:
        assert {"prec@0.5", "prec@0.9", "box_miou", "miou", "oiou", "epoch", "eval_s"} <= set(r)
        assert r["select_metric"] == "box_miou+miou"
        assert r["select_value"] == pytest.approx((r["box_miou"] + r["miou"]) / 2)
    # the clocks run on across the resume; train_time leaves out the evaluations before each row
    times = [r["time"] for r in log]
    assert times == sorted(times) and times[0] > 0
    spent = 0.0
    for r in evals:
        assert r["train_time"] == pytest.approx(r["time"] - spent, abs=0.02)
        spent += r["eval_s"]
    # best.ckpt: the first argmax of the mean of box and mask mIoU, computed here from the rows
    scores = [(r["box_miou"] + r["miou"]) / 2 for r in evals]
    want = evals[int(np.argmax(scores))]
    _, meta = _train_state(run / "best.ckpt")
    assert (meta["step"], meta["select_metric"]) == (want["step"], "box_miou+miou")
    assert meta["val"]["box_miou"] == pytest.approx(want["box_miou"])
    assert status["best_step"] == want["step"]
    assert status["best_metric"] == "box_miou+miou" and status["best_value"] == pytest.approx(max(scores))
    assert status["best_val_prec50"] == pytest.approx(want["prec@0.5"])  # older readers' field
    metrics = json.loads((run / "metrics.json").read_text())["val"]
    assert metrics["box_miou"] == pytest.approx(want["box_miou"], abs=1e-6)  # scored best.ckpt


def test_non_finite_loss_stops_with_status_failed(run_data, tmp_path):
    huge = ["--lr_lang", "1e30", "--lr_visual", "1e30", "--lr_base", "1e30", "--warmup_steps", "0",
            "--ckpt_every", "1", "--clip_norm", "0", *NO_ACCUM]  # one train graph to compile
    r = run_cli(cli_args(run_data, tmp_path, "nan") + huge)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "non-finite training loss" in r.stderr
    status = json.loads((tmp_path / "nan" / "status.json").read_text())
    assert status["state"] == "failed" and "non-finite" in status["error"]
    if status["last_good_checkpoint"]:
        _, meta = _train_state(Path(status["last_good_checkpoint"]))
        assert meta["update_step"] < status["step"] + 1
    assert not (tmp_path / "nan" / "metrics.json").exists()
