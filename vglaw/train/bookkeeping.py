"""Honest resume: which settings a resumed run may change, and config.json's `resumes` history.

A resumed run continues the computation of the run it resumes, so it may change only what does not
alter that computation: logging, evaluation frequency and splits, checkpoint frequency, the worker
count, locations, and an extension of `max_epochs` / `max_steps` (under the step schedule; cosine
spans the whole run). Anything else (a learning rate, the seed, the data) is refused with the list
`field: stored -> requested`, unless `allow_changes`; then it takes effect at the resume's update
and config.json records it:

    config.json  "train": the settings in effect now (after the latest resume)
                 "resumes": [{"step": 2, "changes": {"lr_base": [0.001, 0.005]}, "allowed_changes": true,
                              "command": ..., "time": ...}, ...]  (one entry per resume)

so the settings used before update N are the `changes`' first values. config.json never states a
value that was not used.
"""

from __future__ import annotations

import time

__all__ = ["BOOKKEEPING", "RESUMABLE", "changed_fields", "split_changes", "format_changes",
           "resume_entry", "computation_changes"]

# Fields that never change what a run computes (not compared between runs at all).
BOOKKEEPING = frozenset({"resume", "overwrite", "allow_changes", "force", "progress", "num_workers",
                         "log_freq", "short_comment", "recompute"})
# Fields a resume may change without --allow_changes.
RESUMABLE = BOOKKEEPING | {"eval_every", "eval_every_steps", "eval_splits", "ckpt_every", "experiment_name",
                           "save_ckpt_dir", "data_root", "cache_dir", "max_epochs", "max_steps"}
_SCHEDULE_LENGTH = {"max_epochs", "max_steps"}  # part of the cosine schedule's span


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def changed_fields(stored: dict, requested: dict) -> dict:
    """{field: [stored, requested]} of every field whose value differs (tuples equal lists); a
    field stored under its old name (`RENAMED_FIELDS`, e.g. splitBy) is compared under its new one,
    and a field added since (`ADDED_FIELDS`) that `stored` lacks as the value older runs computed with."""
    from vglaw.train.config import ADDED_FIELDS, RENAMED_FIELDS
    stored = {RENAMED_FIELDS.get(k, k): v for k, v in stored.items()}
    stored = {**{k: v for k, v in ADDED_FIELDS.items() if k not in stored}, **stored}
    keys = sorted(set(stored) | set(requested))
    return {k: [_norm(stored.get(k)), _norm(requested.get(k))] for k in keys
            if _norm(stored.get(k)) != _norm(requested.get(k))}


def split_changes(changes: dict, lr_scheduler: str) -> tuple[dict, dict]:
    """(changes a resume may make, changes that alter the computation)."""
    ok = set(RESUMABLE) - (_SCHEDULE_LENGTH if lr_scheduler == "cosine" else set())
    return ({k: v for k, v in changes.items() if k in ok},
            {k: v for k, v in changes.items() if k not in ok})


def format_changes(changes: dict) -> str:
    return "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())


def resume_entry(step: int, changes: dict, allowed_changes: bool, command: str) -> dict:
    changes = {k: v for k, v in changes.items() if k not in ("resume", "allow_changes")}
    return {"step": int(step), "changes": changes, "allowed_changes": bool(allowed_changes),
            "command": command, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def computation_changes(resumes: list[dict], lr_scheduler: str = "step") -> list[str]:
    """`field changed at update N` for every change of a resume history that altered the computation."""
    out = []
    for r in resumes or ():
        _, refused = split_changes(r.get("changes", {}), lr_scheduler)
        out += [f"{k} changed at update {r.get('step')} ({a!r} -> {b!r})" for k, (a, b) in refused.items()]
    return out
