"""Helpers of the training tests (imported as `_train_helpers`: tests/ has no packages)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A model small enough that a CLI run (compile + a few dozen steps + eval) takes seconds, with the
# tiny preset's code paths (windowed + global blocks, svd LAW, both heads).
TINY_MODEL = {"img_size": 64, "window_size": 2, "vit_dim": 32, "vit_depth": 2, "vit_heads": 2,
              "global_blocks": [1], "text_layers": 1, "law_rank": 4, "law_hidden": 16,
              "rec_hidden": 32, "res_hidden": 16, "rec_dim": 16, "max_len": 20}
DETERMINISTIC = {"hidden_dropout": 0.0, "drop_path": 0.0}
# Appended to cli_args: the same 8 samples per update in one micro-batch, so a run compiles one train
# graph instead of two (accumulate + apply: ~5 s of each short run). For tests that are not about
# accumulation (test_run.py and test_config_routing.py keep batch 4 x 2).
NO_ACCUM = ("--batch_size", "8")


def cli_args(tiny_data: dict, runs: Path, name: str, *extra: str) -> list[str]:
    """Flags of a fast CLI run on the tiny set (2 epochs of batch 4, accumulation 2)."""
    over = [f"{k}={json.dumps(v)}" for k, v in TINY_MODEL.items()]
    return ["--preset", "tiny", "--dataset", "shapes", "--law_type", "svd", "--use_mask", "--translate", "--vit_model", "scratch",
            "--data_root", tiny_data["data_root"], "--cache_dir", tiny_data["cache_dir"],
            "--save_ckpt_dir", str(runs), "--experiment_name", name, "--batch_size", "4",
            "--batch_sum", "8", "--max_epochs", "2", "--warmup_steps", "3", "--drop_epochs", "1",
            "--log_freq", "2", "--eval_batch_size", "8", "--no-progress", "--model_overrides", *over, *extra]


def env() -> dict:
    e = dict(os.environ, GLOG_v="4", PYTHONUNBUFFERED="1")
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")  # msrun workers: `python`
    return e


def run_cli(args: list[str], timeout: float = 1200) -> subprocess.CompletedProcess:
    # timeout: a guard against a hung run, not a speed bar (a CPU shared with other jobs makes a run
    # of seconds take minutes)
    return subprocess.run([sys.executable, "-m", "vglaw.train", *args], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=timeout)
