"""Train a run, or reuse it: what notebooks and the ablation call so that re-running the workbook
only trains what is missing.

A finished run directory whose resolved configuration equals the requested one is reused as is;
an interrupted one (status not "finished", a last.ckpt present, no live writer) is resumed; a
finished run made with other settings, or on other data (config.json's data fingerprint differs
from the cache's now), is never reused or overwritten silently.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from vglaw.workbook.reports import load_run

__all__ = ["train_or_reuse", "config_differences", "run_differences", "stored_run_differences",
           "archived_run_differences", "LOCATIONS",
           "notebook_train_config"]

log = logging.getLogger("vglaw")


# `smoke` runs train this model (the tiny preset's code paths at the sizes of the tests' CLI runs):
# each compiles in about two thirds of the tiny preset's time. A notebook's model_overrides win.
SMOKE_MODEL = {"img_size": 64, "window_size": 2, "vit_dim": 32, "vit_depth": 2, "vit_heads": 2,
               "global_blocks": (1,), "text_layers": 1, "law_rank": 4, "law_hidden": 16,
               "rec_hidden": 32, "res_hidden": 16, "rec_dim": 16}


def notebook_train_config(params, *, smoke_overrides: dict | None = None, **fixed):
    """The resolved `TrainConfig` of a notebook's parameters (02_train, 03_ablations).

    Every parameter named as a TrainConfig field is passed on (an empty string means None); data_root / cache_dir / save_ckpt_dir default to the repository's
    data/, .cache/refer/ and runs/, or for `params.smoke` to .cache/smoke/{data,cache,runs} (smoke runs
    never touch the default data or runs), where `smoke_overrides` then apply (and, for the tiny preset,
the small model `SMOKE_MODEL`). `fixed`: values the
    notebook itself sets (they win over the parameters, the smoke overrides over both).
    """
    from vglaw.train import TrainConfig, resolve_config
    from vglaw.utils.paths import default_cache_dir, default_data_root, default_runs_dir, repo_root, resolve_path
    values = dict(vars(params))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: (None if v == "" else v) for k, v in values.items() if k in fields}
    smoke = bool(values.get("smoke"))
    smoke_root = repo_root() / ".cache" / "smoke"
    for name, default, smoke_dir in (("data_root", default_data_root, "data"), ("cache_dir", default_cache_dir, "cache"),
                                     ("save_ckpt_dir", default_runs_dir, "runs")):
        kw[name] = str(resolve_path(values.get(name, ""), smoke_root / smoke_dir if smoke else default()))
    kw.update(fixed)
    if smoke:
        kw.update(smoke_overrides or {})
        if kw.get("preset", "paper") == "tiny":
            kw["model_overrides"] = {**SMOKE_MODEL, **(kw.get("model_overrides") or {})}
    return resolve_config(TrainConfig(**kw))


def config_differences(stored: dict, requested: dict) -> list[str]:
    """`field: stored -> requested` for each field (but bookkeeping) that differs."""
    from vglaw.train.bookkeeping import BOOKKEEPING, changed_fields
    return [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed_fields(stored, requested).items()
            if k not in BOOKKEEPING]


def run_differences(config: dict, requested: dict, fingerprint: str | None,
                    content: str | None = None) -> list[str]:
    """Why a stored run (its config.json) is not the requested one: changed settings, other data
    (the cache's fingerprint; with `content`, the data's content digest when the run records one),
    or settings changed at a resume with --allow_changes."""
    from vglaw.train.bookkeeping import computation_changes
    diff = config_differences(config.get("train", {}), requested)
    stored_fp = (config.get("data") or {}).get("fingerprint")
    stored_content = (config.get("data") or {}).get("content")
    if content is not None and stored_content is not None:
        if stored_content != content:
            diff.append(f"data content: {stored_content!r} -> {content!r} (other data)")
    elif stored_fp is None:
        diff.append("data fingerprint: none recorded -> "
                    f"{fingerprint!r} (a run from before data fingerprints: its data cannot be confirmed)")
    elif stored_fp != fingerprint:
        diff.append(f"data fingerprint: {stored_fp!r} -> {fingerprint!r} (the data changed since the run)")
    diff += computation_changes(config.get("resumes", []), requested.get("lr_scheduler", "step"))
    return diff


# Where a run and its data live, not what it computes (the data's identity is its fingerprint): a run
# archived on another machine or clone is the same run.
LOCATIONS = frozenset({"experiment_name", "save_ckpt_dir", "data_root", "cache_dir"})


def stored_run_differences(cfg, config: dict, *, ignore: frozenset | set = frozenset(),
                           by_content: bool = False) -> list[str]:
    """Why a stored run (its config.json, `config`) is not a run of the TrainConfig `cfg`: [] when it
    is (the same settings, bookkeeping and the fields in `ignore` aside, and the same data
    fingerprint as the cache now; with `by_content`, the same data content when the run and the
    cache both record it: the files may be other copies of it)."""
    from vglaw.data import read_manifest
    from vglaw.train import resolve_config
    from vglaw.train.loop import prepare_cache

    cfg = resolve_config(cfg)
    requested = json.loads(json.dumps(dataclasses.asdict(cfg)))
    stored = config.get("train", {})
    requested.update({k: stored[k] for k in ignore if k in stored})
    manifest = read_manifest(prepare_cache(cfg))
    return run_differences(config, requested, manifest.get("fingerprint"),
                           manifest.get("content") if by_content else None)


def archived_run_differences(cfg, config: dict) -> list[str]:
    """`stored_run_differences` for a record archived elsewhere: its paths (LOCATIONS) do not count,
    and its data is matched on content (the same images and annotations, in another copy: a clone
    regenerates the synthetic set, so its files' mtimes, hence the fingerprint, differ)."""
    return stored_run_differences(cfg, config, ignore=LOCATIONS, by_content=True)


def train_or_reuse(cfg) -> Path:
    """`vglaw.train.run_training(cfg)` unless an equal finished run exists; resumes an interrupted one.

    Equal means: the same settings (bookkeeping aside), the same data fingerprint (the cache of
    the files as they are now), no settings changed at a resume. Raises `vglaw.train.ConfigError`
    when the run directory holds a finished run that differs (pass overwrite=True or another
    experiment_name); the data layer's errors when the data changed under its cache.
    """
    from vglaw.train import ConfigError, resolve_config, run_training
    from vglaw.train.state import read_status

    cfg = resolve_config(cfg)
    run_dir = Path(cfg.save_ckpt_dir) / cfg.experiment_name
    run = load_run(run_dir)
    if run is not None and not cfg.overwrite:
        diff = stored_run_differences(cfg, run["config"])
        if not diff:
            log.info("%s: finished run with the same settings and data found, reused", run_dir)
            return run_dir
        raise ConfigError(f"{run_dir} holds a finished run made with other settings or data "
                          f"({'; '.join(diff)}); use another experiment_name, or overwrite=True to replace it")
    state = (read_status(run_dir) or {}).get("state")
    if run is None and (run_dir / "last.ckpt").is_file() and not cfg.overwrite and state != "running":
        log.info("%s: interrupted run found, resuming from last.ckpt", run_dir)
        cfg = dataclasses.replace(cfg, resume=True)
    elif run is None and (run_dir / "config.json").is_file() and not cfg.resume and state != "running":
        # Started but never checkpointed: nothing to keep.
        cfg = dataclasses.replace(cfg, overwrite=True)
    return run_training(cfg)  # a live writer ("running") makes it refuse: RunLockedError
