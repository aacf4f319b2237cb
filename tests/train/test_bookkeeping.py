"""Run bookkeeping (issue 9): one writer per run directory, honest resume, a failed start leaves no
empty folder; real CLI runs on the tiny set. A killed run reading as interrupted is checked on the
killed run of tests/train/test_run.py (test_sigkill_then_a_stop_then_resumes_match_the_uninterrupted_run); a changed
image refusing the reuse of a run, in tests/train/test_reuse.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from _train_helpers import NO_ACCUM, REPO, cli_args, env, run_cli

SHORT = ("--max_epochs", "1", "--eval_splits", "val", "--eval_every", "0", *NO_ACCUM)


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vglaw.train", *args], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while not pred() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended too early: " + proc.stderr.read()[-3000:]
    assert pred(), "timed out"


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line or line.startswith("Traceback")]


def test_second_writer_exits_2_then_resume_refuses_changed_settings_and_allow_changes_records_them(
        tiny_data, tmp_path):
    """One run directory through its life (one training run less than a test per part): a second
    writer is refused at start-up while the first trains; the finished run is the first's; a resume
    with changed settings is refused unless --allow_changes, which is recorded with the extension."""
    base = cli_args(tiny_data, tmp_path, "same", *SHORT, "--lr_base", "1e-3", "--seed", "1")
    first = _start(base + ["--max_steps", "2"])
    run = tmp_path / "same"
    _wait_for(lambda: (run / "status.json").is_file(), first)
    t0 = time.time()
    second = run_cli(cli_args(tiny_data, tmp_path, "same", *SHORT, "--lr_base", "1e-3", "--max_steps", "2",
                              "--seed", "2"), timeout=120)
    waited = time.time() - t0
    assert first.poll() is None, "the first run must still be writing for this test to mean anything"
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"run same is being written by pid {first.pid}" in second.stderr
    assert len(_error_lines(second.stderr)) == 1 and "Traceback" not in second.stderr
    assert waited < 60  # refused at start-up, not after a training run
    assert first.wait(timeout=300) == 0, first.stderr.read()[-3000:]
    first.stderr.close()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["seed"] == 1
    steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()
             if "eval" not in json.loads(line)]
    assert steps == [2]  # one row per logged step: one writer
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert not (run / ".lock").exists() or json.loads((run / ".lock").read_text())["pid"] == first.pid
    before = (run / "config.json").read_text()

    r = run_cli(cli_args(tiny_data, tmp_path, "same", *SHORT, "--lr_base", "5e-3", "--seed", "1",
                         "--max_steps", "4", "--resume"))
    assert r.returncode == 2, r.stderr[-3000:]
    assert "lr_base: 0.001 -> 0.005" in r.stderr and "--allow_changes" in r.stderr
    assert "max_steps" not in _error_lines(r.stderr)[0]  # extending the run is not a change of what it computes
    assert len(_error_lines(r.stderr)) == 1
    assert (run / "config.json").read_text() == before  # nothing trained, nothing rewritten

    changed = cli_args(tiny_data, tmp_path, "same", *SHORT, "--lr_base", "5e-3", "--seed", "1")
    r = run_cli(changed + ["--max_steps", "4", "--resume", "--allow_changes"])
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["lr_base"] == 5e-3 and cfg["train"]["max_steps"] == 4  # what ran from update 2
    [entry] = cfg["resumes"]
    assert entry["step"] == 2 and entry["allowed_changes"] is True
    assert entry["changes"]["lr_base"] == [1e-3, 5e-3] and entry["changes"]["max_steps"] == [2, 4]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "eval" not in row] == [2, 4]
    assert json.loads((run / "status.json").read_text())["step"] == 4
    # A resume that only extends max_steps needs no flag: test_run.py's kill-stop-resume chain
    # (--resume --max_steps 5, then --resume without it) and the refusal above, whose error leaves
    # max_steps out.


def test_failed_start_leaves_no_run_folder(tiny_data, tmp_path):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    r = run_cli(["--preset", "tiny", "--dataset", "refcoco", "--vit_model", "scratch", "--data_root", str(empty),
                 "--cache_dir", str(tmp_path / "cache"), "--save_ckpt_dir", str(tmp_path / "runs"),
                 "--experiment_name", "nodata", "--no-progress"], timeout=120)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and "not found" in lines[0] and "data/README.md" in lines[0]
    assert not (tmp_path / "runs" / "nodata").exists()


def test_mistyped_data_root_of_the_synthetic_set_is_refused(tmp_path):
    typo = tmp_path / "dta"
    r = run_cli(["--preset", "tiny", "--dataset", "shapes", "--data_root", str(typo), "--save_ckpt_dir",
                 str(tmp_path / "runs"), "--experiment_name", "t", "--no-progress"], timeout=120)
    assert r.returncode == 2 and f"--data_root {typo} does not exist" in r.stderr
    assert not typo.exists() and not (tmp_path / "runs" / "t").exists()


def test_refused_pickle_and_foreign_checkpoint_are_one_line_exit_2(tiny_data, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": Evil()}))
    r = run_cli(cli_args(tiny_data, tmp_path, "p", *SHORT, "--vit_model", "vitdet_b_mrcnn", "--vit_model_path",
                         str(evil)), timeout=180)
    assert r.returncode == 2, r.stderr[-3000:]
    [line] = _error_lines(r.stderr)
    assert "refused" in line.lower() or "not allowed" in line.lower(), line
    assert "Traceback" not in r.stderr and "pwned" not in r.stdout

    from vglaw.models import build_model
    from vglaw.models.checkpoint import save_model
    other = save_model(build_model(preset="tiny"), tmp_path / "other.ckpt")  # the tiny preset's sizes
    r = run_cli(cli_args(tiny_data, tmp_path, "q", *SHORT, "--pretrained_path", str(other)), timeout=180)
    assert r.returncode == 2, r.stderr[-3000:]
    [line] = _error_lines(r.stderr)
    assert str(other) in line and "Traceback" not in r.stderr
