"""The `law_type` ablation (and the other LAW knobs of DESIGN §3.3) as a grid of ordinary runs.

Each grid point is one training run through `vglaw.train.run_training`, in its own run directory
named after the point and a fingerprint of everything else in the configuration. A finished run with
the same name is reused, so re-running the ablation trains only what is missing, and changing any
other setting (epochs, image size, ...) makes new runs rather than mixing protocols.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from vglaw.reports import load_run, scan_runs

__all__ = ["ABLATION_KNOBS", "grid", "experiment_name", "run_ablation"]

log = logging.getLogger("vglaw")

# TrainConfig fields an ablation may vary besides seed (law_type, rank K, shared vs per-block P/Q,
# which blocks are adaptive).
ABLATION_KNOBS = ("law_type", "law_rank", "law_shared", "law_blocks")


def grid(law_types: Sequence[str], seeds: Sequence[int], extra: dict[str, Sequence[Any]] | None = None) -> list[dict]:
    """Every combination of law_type x extra knobs x seed, as override dicts."""
    extra = dict(extra or {})
    unknown = sorted(set(extra) - set(ABLATION_KNOBS))
    if unknown:
        raise ValueError(f"unknown ablation knob(s) {unknown}; allowed: {list(ABLATION_KNOBS)} and seeds")
    if not law_types or not seeds:
        raise ValueError("an ablation needs at least one law_type and one seed")
    names = ["law_type", *extra, "seed"]
    values = [list(law_types), *[list(v) for v in extra.values()], list(seeds)]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def _fingerprint(cfg_dict: dict) -> str:
    skip = {"experiment_name", "save_ckpt_dir", "short_comment", "resume", "overwrite", "progress",
            "num_workers", "log_freq", "seed", *ABLATION_KNOBS}
    stable = {k: v for k, v in sorted(cfg_dict.items()) if k not in skip}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:8]


def experiment_name(prefix: str, point: dict, base_dict: dict) -> str:
    """`<prefix>-<law_type>[-K16][-perblock][-b0_1]-s<seed>-<fingerprint of the rest>`."""
    parts = [prefix, str(point["law_type"])]
    if "law_rank" in point:
        parts.append(f"K{point['law_rank']}")
    if "law_shared" in point:
        parts.append("shared" if point["law_shared"] else "perblock")
    if "law_blocks" in point:
        blocks = point["law_blocks"]
        parts.append("ball" if blocks is None else "b" + "_".join(str(b) for b in blocks))
    parts += [f"s{point['seed']}", _fingerprint(base_dict)]
    return "-".join(parts)


def _point_config(base, name: str, point: dict):
    """The TrainConfig of one grid point: P/Q sharing and adaptive blocks are model overrides."""
    model_keys = {"law_shared", "law_blocks"}
    overrides = dict(base.model_overrides or {}, **{k: v for k, v in point.items() if k in model_keys})
    fields = {k: v for k, v in point.items() if k not in model_keys}
    return dataclasses.replace(base, experiment_name=name, model_overrides=overrides, **fields)


def run_ablation(base, law_types: Iterable[str], seeds: Iterable[int], *, prefix: str = "ablation",
                 extra: dict[str, Sequence[Any]] | None = None, train_fn=None) -> pd.DataFrame:
    """Train every missing grid point from the TrainConfig `base`; return the scanned results.

    `train_fn(cfg) -> run_dir` defaults to `vglaw.runs.train_or_reuse`, which also resumes an
    interrupted point (a parameter for tests).
    """
    if train_fn is None:
        from vglaw.runs import train_or_reuse as train_fn
    base_dict = dataclasses.asdict(base)
    runs_dir = Path(base.save_ckpt_dir)
    points = grid(list(law_types), list(seeds), extra)
    names = []
    for i, point in enumerate(points, 1):
        name = experiment_name(prefix, point, base_dict)
        names.append(name)
        if load_run(runs_dir / name) is not None:
            log.info("[%d/%d] %s: finished run found, reused", i, len(points), name)
            continue
        log.info("[%d/%d] %s: training", i, len(points), name)
        train_fn(_point_config(base, name, point))
    df = scan_runs(runs_dir)
    order = {name: i for i, name in enumerate(names)}  # grid order, not alphabetical
    df = df[df["run"].isin(names)]
    return df.sort_values("run", key=lambda runs: runs.map(order), kind="stable").reset_index(drop=True)
