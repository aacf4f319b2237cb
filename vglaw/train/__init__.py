"""Training: `TrainConfig` + `run_training(cfg) -> run_dir`, and `python -m vglaw.train` (DESIGN §5).

    from vglaw.train import TrainConfig, run_training
    run_dir = run_training(TrainConfig(preset="tiny", dataset="shapes", use_mask=True, translate=True))

Files: config.py (fields, presets' recipes), cli.py (flags), schedule.py (warmup + drops),
optim.py (AdamW LR groups), step.py (jit train step, accumulation), state.py (run directory, its
lock, resumable checkpoints), bookkeeping.py (what a resume may change, config.json's `resumes`),
resources.py (memory / time estimate before the model is built), distributed.py (msrun data
parallel), loop.py (run_training, in phases), pretrain.py (backbone pretraining on train-split
instances, `python -m vglaw.train.pretrain`).
Importing this package does not import MindSpore.
"""

from __future__ import annotations

from vglaw.train.config import RECIPES, ConfigError, TrainConfig, resolve_config

__all__ = ["TrainConfig", "RECIPES", "ConfigError", "resolve_config", "run_training"]


def __getattr__(name: str):
    if name == "run_training":
        from vglaw.train.loop import run_training
        return run_training
    raise AttributeError(f"module 'vglaw.train' has no attribute {name!r}")
