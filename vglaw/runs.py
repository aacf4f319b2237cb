"""Train a run, or reuse it: what notebooks and the ablation call so that re-running the workbook
only trains what is missing.

A finished run directory whose resolved configuration equals the requested one is reused as is;
an interrupted one (status not "finished", a last.ckpt present) is resumed; a finished run made
with other settings is never overwritten silently.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from vglaw.reports import load_run

__all__ = ["train_or_reuse", "config_differences"]

log = logging.getLogger("vglaw")

# Fields that do not change what a run computes.
_BOOKKEEPING = {"resume", "overwrite", "progress", "num_workers", "log_freq", "short_comment"}


def config_differences(stored: dict, requested: dict) -> list[str]:
    """`field: stored -> requested` for each field (but bookkeeping) that differs."""
    keys = (set(stored) | set(requested)) - _BOOKKEEPING
    return [f"{k}: {stored.get(k)!r} -> {requested.get(k)!r}" for k in sorted(keys)
            if stored.get(k) != requested.get(k)]


def train_or_reuse(cfg) -> Path:
    """`vglaw.train.run_training(cfg)` unless an equal finished run exists; resumes an interrupted one.

    Raises `vglaw.train.ConfigError` when the run directory holds a finished run made with other
    settings (pass overwrite=True or another experiment_name).
    """
    from vglaw.train import ConfigError, resolve_config, run_training

    cfg = resolve_config(cfg)
    run_dir = Path(cfg.save_ckpt_dir) / cfg.experiment_name
    requested = json.loads(json.dumps(dataclasses.asdict(cfg)))
    run = load_run(run_dir)
    if run is not None and not cfg.overwrite:
        diff = config_differences(run["config"].get("train", {}), requested)
        if not diff:
            log.info("%s: finished run with the same settings found, reused", run_dir)
            return run_dir
        raise ConfigError(f"{run_dir} holds a finished run made with other settings ({'; '.join(diff)}); "
                          "use another experiment_name, or overwrite=True to replace it")
    if run is None and (run_dir / "last.ckpt").is_file() and not cfg.overwrite:
        log.info("%s: interrupted run found, resuming from last.ckpt", run_dir)
        cfg = dataclasses.replace(cfg, resume=True)
    elif run is None and (run_dir / "config.json").is_file() and not cfg.resume:
        # Started but never checkpointed: nothing to keep.
        cfg = dataclasses.replace(cfg, overwrite=True)
    return run_training(cfg)
