"""The `law_type` ablation (and the other LAW knobs of DESIGN §3.3) as a grid of ordinary runs.

Each grid point is one training run through `vglaw.train.run_training`, in its own run directory
named after the point and a fingerprint of everything else in the configuration. A finished run with
the same name is reused, so re-running the ablation trains only what is missing, and changing any
other setting (epochs, image size, ...) makes new runs rather than mixing protocols.

Reading the grid (`ablation_stats`, `reading`): every metric here is a mean over val sentences of a
per-sentence score, and one run is one seed. A difference between law types is only worth reporting
if it exceeds both sources of noise, so each mean and each paired difference against `none` gets a
95% CI from a two-level (hierarchical) bootstrap: seeds with replacement, then sentences with
replacement for the drawn seeds. NumPy/pandas only: no MindSpore import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from vglaw.config import LAW_TYPES
from vglaw.train.config import ADDED_FIELDS
from vglaw.utils.io import read_json
from vglaw.eval.metrics import safe_iou
from vglaw.workbook.reports import load_run, scan_runs

__all__ = ["ABLATION_KNOBS", "STAT_METRICS", "FULL_GRID_SEEDS", "grid", "experiment_name", "run_ablation",
           "ARCHIVE_FILES", "archive_run",
           "grid_label", "sentence_scores", "hierarchical_bootstrap", "ablation_stats", "reading"]

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
    # no paths: the same settings make the same name in any clone (data identity: its content digest,
    # checked when a run is reused)
    skip = {"experiment_name", "save_ckpt_dir", "data_root", "cache_dir", "short_comment", "resume", "overwrite",
            "progress", "num_workers", "log_freq", "seed", "allow_changes", "force", *ABLATION_KNOBS}
    # a field added after runs were named (ADDED_FIELDS) stays out at the value those runs used, or
    # at None (the recipe's, which the settings check compares): adding a field does not rename a grid
    stable = {k: v for k, v in sorted(cfg_dict.items())
              if k not in skip and not (k in ADDED_FIELDS and v in (ADDED_FIELDS[k], None))}
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


# What the archive keeps of a finished run: what `load_run` and `sentence_scores` read. No checkpoints:
# a record is ~140 KB, small enough to commit, so a grid longer than one sitting can be
# completed across machines and sessions (`make ablation` archives into reports/ablation_runs/).
ARCHIVE_FILES = ("config.json", "status.json", "metrics.json")


def archive_run(run_dir: str | Path, archive: str | Path) -> Path:
    """Copy a finished run's record (ARCHIVE_FILES and its predictions_<split>.json) to
    `archive/<run name>`, replacing an older record of that name only once the new one is complete."""
    run_dir, archive = Path(run_dir), Path(archive)
    if load_run(run_dir) is None:
        raise ValueError(f"{run_dir} is not a finished run (status.json state 'finished'): nothing to archive")
    files = [run_dir / f for f in ARCHIVE_FILES] + sorted(run_dir.glob("predictions_*.json"))
    dest = archive / run_dir.name
    tmp = archive / f".{run_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, tmp / f.name)
    old = archive / f".{run_dir.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def _archived(record: Path, cfg, check) -> bool:
    """Whether `record` is an archived finished run of exactly `cfg` (settings and data)."""
    run = load_run(record)
    if run is None:
        return False
    diff = check(cfg, run["config"])
    if diff:
        log.info("%s: archived run made with other settings or data (%s): not reused", record, "; ".join(diff))
    return not diff


def run_ablation(base, law_types: Iterable[str], seeds: Iterable[int], *, prefix: str = "ablation",
                 extra: dict[str, Sequence[Any]] | None = None, train_fn=None,
                 archive: str | Path | None = None, archive_check=None, workers: int = 1) -> pd.DataFrame:
    """Train every missing grid point from the TrainConfig `base`; return the scanned results.

    `train_fn(cfg) -> run_dir` defaults to `vglaw.workbook.runs.train_or_reuse`, which also resumes an
    interrupted point (a parameter for tests). With `archive` (a folder), every finished point's record
    is copied there (`archive_run`), and a point missing from the runs folder whose archived record was
    made with the same settings and data (`archive_check(cfg, record_config) -> differences`, default
    `vglaw.workbook.runs.archived_run_differences`) is read from the archive instead of trained: with the
    tiny recipe's deterministic runs, retraining it would give the same numbers.

    `workers` > 1 trains that many points at a time, each in its own process (`spawn`; `train_fn` must
    then be a module-level function). The first point to train runs alone: it builds what every run
    shares (the data cache, the pretrained backbone), which concurrent runs would otherwise race to
    build. Deterministic runs (the tiny recipe's `--deterministic`) give the same numbers either way.
    A failed point does not stop the others: the first failure is raised once all have ended.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1 (training processes at a time), got {workers!r}")
    if train_fn is None:
        from vglaw.workbook.runs import train_or_reuse as train_fn
    if archive_check is None:
        from vglaw.workbook.runs import archived_run_differences as archive_check
    base_dict = dataclasses.asdict(base)
    runs_dir = Path(base.save_ckpt_dir)
    archive = None if archive is None else Path(archive)
    points = grid(list(law_types), list(seeds), extra)
    sources: dict[str, Path] = {}  # run name -> the folder its record is read from
    to_train: list[tuple[int, str, Any]] = []

    def finished(name: str) -> None:
        if archive is not None and load_run(runs_dir / name) is not None:
            archive_run(runs_dir / name, archive)

    for i, point in enumerate(points, 1):
        name = experiment_name(prefix, point, base_dict)
        cfg = _point_config(base, name, point)
        sources[name] = runs_dir / name
        if load_run(runs_dir / name) is not None:
            log.info("[%d/%d] %s: finished run found, reused", i, len(points), name)
            finished(name)
        elif archive is not None and _archived(archive / name, cfg, archive_check):
            log.info("[%d/%d] %s: archived run found in %s, reused", i, len(points), name, archive)
            sources[name] = archive / name
        elif workers == 1:
            log.info("[%d/%d] %s: training", i, len(points), name)
            train_fn(cfg)
            finished(name)
        else:
            to_train.append((i, name, cfg))
    if to_train:
        _train_in_parallel(to_train, len(points), train_fn, workers, finished)
    roots = {runs_dir} | ({archive} if archive is not None else set())
    scanned = [scan_runs(root) for root in sorted(roots)]
    df = pd.concat([frame.loc[np.array([sources.get(r) == root / r for r in frame["run"]], dtype=bool)]
                    for root, frame in zip(sorted(roots), scanned)], ignore_index=True)
    order = {name: i for i, name in enumerate(sources)}  # grid order, not alphabetical
    df = df.sort_values("run", key=lambda runs: runs.map(order), kind="stable").reset_index(drop=True)
    # where the per-sentence predictions are, and the budget each run actually got
    df["run_dir"] = [str(sources[name]) for name in df["run"]]
    df["updates"] = [_updates(sources[name]) for name in df["run"]]
    return df


def _train_in_parallel(to_train: list, n_points: int, train_fn, workers: int, finished) -> None:
    """The first point alone, then the rest `workers` at a time in spawned processes."""
    import concurrent.futures as cf
    import multiprocessing
    import pickle
    import time

    try:
        pickle.dumps(train_fn)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        raise ValueError(f"workers > 1 runs train_fn in other processes, so it must be a module-level "
                         f"function; {train_fn!r} cannot be sent there ({e})") from None
    (i, name, cfg), rest = to_train[0], to_train[1:]
    log.info("[%d/%d] %s: training (alone: it builds what the others share)", i, n_points, name)
    train_fn(cfg)
    finished(name)
    if not rest:
        return
    failures = []
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold MindSpore's threads
    # One process per point: a worker that trained several points in a row kept what MindSpore held of
    # each (session 16: after 13 of 18 points the resource check refused the next, 1.4 GB free of 24).
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(rest)), mp_context=ctx,
                                max_tasks_per_child=1) as pool:
        started = {}
        for i, name, cfg in rest:
            started[pool.submit(train_fn, cfg)] = (i, name, time.time())
        log.info("training %d more points, %d at a time: %s", len(rest), min(workers, len(rest)),
                 ", ".join(name for _, name, _ in rest))
        for fut in cf.as_completed(started):
            i, name, t0 = started[fut]
            try:
                fut.result()
            except Exception as e:  # noqa: BLE001 - reported below, after the other points have ended
                log.error("[%d/%d] %s: failed: %s", i, n_points, name, e)
                failures.append((name, e))
                continue
            log.info("[%d/%d] %s: finished (%.0f s since it was queued)", i, n_points, name, time.time() - t0)
            finished(name)
    if failures:
        log.error("%d of %d ablation runs failed: %s; the first one's error follows", len(failures),
                  len(rest) + 1, ", ".join(name for name, _ in failures))
        raise failures[0][1]


def _updates(run_dir: Path) -> int | None:
    status = (load_run(run_dir) or {}).get("status", {})
    return status.get("step", status.get("total_updates"))


# --- statistics over the grid ---

# metric key (as in metrics.json) -> label; each is a mean of a per-sentence score (see sentence_scores)
STAT_METRICS = {"prec@0.5": "box Prec@0.5", "box_miou": "box mIoU", "miou": "mask mIoU"}
# The documented full ablation: every law type, at least this many seeds (`make ablation`).
FULL_GRID_SEEDS = 3
# Sentence counts held per chunk of resamples (resamples x sentences): bounds memory on large splits.
_CHUNK_CELLS = 1_000_000


def grid_label(law_types: Sequence[str], seeds: Sequence[int], updates: Sequence[int | None]) -> str:
    """`full grid: 6 law types x 3 seeds, 700 updates each`, or `reduced grid: ...` when a law
    type is missing or fewer than FULL_GRID_SEEDS seeds were run. `updates`: one entry per run."""
    law_types, seeds = list(dict.fromkeys(law_types)), sorted(set(seeds))
    full = set(LAW_TYPES) <= set(law_types) and len(seeds) >= FULL_GRID_SEEDS
    known = sorted({int(u) for u in updates if u is not None})
    budget = "unknown" if not known else str(known[0]) if len(known) == 1 else f"{known[0]}-{known[-1]}"
    plural = lambda n, word: f"{n} {word}" + ("" if n == 1 else "s")  # noqa: E731
    return (f"{'full' if full else 'reduced'} grid: {plural(len(law_types), 'law type')} x "
            f"{plural(len(seeds), 'seed')}, {budget} updates each")


def sentence_scores(run_dir: str | Path, split: str = "val") -> pd.DataFrame:
    """Per-sentence scores of one run, indexed by sent_id, from `predictions_<split>.json`.

    Columns (fractions): prec@0.5 (1.0 if box IoU >= 0.5, the hit of vglaw.eval.metrics.precision_at),
    box_miou (the box IoU), miou (mask IoU = inter / union, NaN when the run has no masks).
    Their means over sentences are the run's metrics.json values.
    """
    path = Path(run_dir) / f"predictions_{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run was not evaluated on {split!r} "
                                "(its eval_splits) or did not finish")
    preds = read_json(path)
    if not preds:
        raise ValueError(f"{path} holds no predictions")
    box_iou = np.array([p["box_iou"] for p in preds], dtype=np.float64)
    if all("mask_union" in p for p in preds):
        miou = safe_iou([p["mask_inter"] for p in preds], [p["mask_union"] for p in preds])
    else:
        miou = np.full(len(preds), np.nan)
    df = pd.DataFrame({"prec@0.5": (box_iou >= 0.5).astype(np.float64), "box_miou": box_iou, "miou": miou},
                      index=pd.Index([int(p["sent_id"]) for p in preds], name="sent_id"))
    if df.index.has_duplicates:
        raise ValueError(f"{path} scores some sent_id more than once")
    return df.sort_index()


def hierarchical_bootstrap(scores, n_boot: int = 2000, rng_seed: int = 0) -> np.ndarray:
    """Bootstrap means of `scores` (K, R seeds, N sentences) -> (K, n_boot).

    One resample draws R seeds with replacement, then N sentences with replacement, and takes the
    mean over the drawn (seed, sentence) cells: the spread covers seed-to-seed and sentence-to-
    sentence variation (with R = 1 only the latter). The sentence draw is shared by the drawn seeds
    because every run is scored on the same sentences (seeds and sentences are crossed): separate
    draws per seed would average away what is common to all seeds (hard expressions, a law type's
    consistent gain on some) and shrink that part of the CI by up to sqrt(R). All K rows share the
    draws, so paired rows (a law type, the reference, their difference) stay paired. Deterministic
    for a given `rng_seed` and shape. Like any bootstrap it understates the seed-level variance by
    (R - 1) / R: three seeds are a floor, not a comfort.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3 or 0 in scores.shape:
        raise ValueError(f"scores must be (K, seeds, sentences) with no empty axis, got shape {scores.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    k_rows, n_seeds, n_sent = scores.shape
    rng = np.random.default_rng(rng_seed)
    out = np.empty((k_rows, n_boot))
    flat = scores.reshape(k_rows * n_seeds, n_sent)
    # A resample's mean is sum_r,n (times seed r drawn)(times sentence n drawn) x[r, n] / (R N): two
    # count matrices and one matmul instead of gathering R N cells per resample. Integer counts keep
    # sums of 0/1 hits exact.
    chunk = max(1, _CHUNK_CELLS // n_sent)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        seed_counts = _counts(rng.integers(0, n_seeds, size=(b, n_seeds)), n_seeds)  # (b, R)
        sent_counts = _counts(rng.integers(0, n_sent, size=(b, n_sent)), n_sent)     # (b, N)
        per_seed = (flat @ sent_counts.T).reshape(k_rows, n_seeds, b)                # (K, R, b)
        out[:, start:start + b] = np.einsum("krb,br->kb", per_seed, seed_counts) / (n_seeds * n_sent)
    return out


def _counts(draws: np.ndarray, n: int) -> np.ndarray:
    """(b, m) indices in [0, n) -> (b, n) how often each index was drawn, per row (float)."""
    offsets = np.arange(len(draws))[:, None] * n
    return np.bincount((draws + offsets).ravel(), minlength=len(draws) * n).reshape(len(draws), n).astype(np.float64)


def _score_cube(runs: pd.DataFrame, groups: list[tuple], split: str):
    """(metrics, groups, seeds, sentences) array of per-sentence scores, the seeds and sent_ids."""
    seeds_of = {g: sorted(runs.loc[runs["_group"] == g, "seed"].astype(int)) for g in groups}
    seeds = seeds_of[groups[0]]
    for g, s in seeds_of.items():
        if len(set(s)) != len(s):
            raise ValueError(f"{_label(g)} has several runs with the same seed {s}: one run per seed expected")
        if s != seeds:
            raise ValueError(f"{_label(g)} has seeds {s} but {_label(groups[0])} has {seeds}; the paired "
                             "comparison needs the same seeds for every setting (finish the missing runs)")
    cube, sent_ids = None, None
    for gi, g in enumerate(groups):
        for si, seed in enumerate(seeds):
            row = runs[(runs["_group"] == g) & (runs["seed"].astype(int) == seed)].iloc[0]
            df = sentence_scores(row["run_dir"], split)
            if sent_ids is None:
                sent_ids = df.index
                cube = np.empty((len(STAT_METRICS), len(groups), len(seeds), len(sent_ids)))
            elif not df.index.equals(sent_ids):
                raise ValueError(f"{row['run_dir']} scored other {split} sentences ({len(df)}) than the first "
                                 f"run ({len(sent_ids)}): runs of one ablation must share the split")
            cube[:, gi, si] = df[list(STAT_METRICS)].to_numpy().T
    return cube, seeds, sent_ids


def _label(group: tuple) -> str:
    return "/".join(str(v) for v in group)


def ablation_stats(runs: pd.DataFrame, split: str = "val", *, by: Sequence[str] = ("law_type",),
                   reference: str = "none", n_boot: int = 2000, rng_seed: int = 0,
                   level: float = 0.95) -> pd.DataFrame:
    """Mean over seeds and paired difference vs `reference`, with bootstrap CIs, per setting.

    Args:
        runs: one row per run (extra rows per split are fine: `run_ablation`'s frame), with
            columns `run_dir`, `seed` and the `by` columns.
        split: the evaluated split whose `predictions_<split>.json` is scored.
        by: the columns defining a setting; the first must be `law_type`. With extra knobs a
            setting is compared with the reference law type at the same knob values.
        reference: the law type every other one is compared with (the passive backbone).
        n_boot, rng_seed: resamples and seed of `hierarchical_bootstrap`.
        level: CI coverage (percentile interval).

    Returns:
        One row per setting in the order of `runs`: the `by` columns, n_seeds, seeds,
        n_sentences, then per metric m of STAT_METRICS, in percent (points for differences):
        m, m_lo, m_hi (mean over seeds of the run's metric and its CI), m_diff, m_diff_lo,
        m_diff_hi (paired difference vs the reference, by seed and sentence) and m_significant
        (the difference's CI excludes 0). `attrs` holds split, by, reference, n_boot, level.
    """
    by = list(by)
    if not by or by[0] != "law_type":
        raise ValueError(f"by must start with 'law_type', got {by}")
    missing = sorted({"run_dir", "seed", *by} - set(runs.columns))
    if missing:
        raise ValueError(f"runs lacks column(s) {missing} (use run_ablation's frame)")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    runs = runs.drop_duplicates("run_dir").copy()
    if runs.empty:
        raise ValueError("no runs to compare")
    runs["_group"] = list(runs[by].astype(object).itertuples(index=False, name=None))
    groups = list(dict.fromkeys(runs["_group"]))
    ref_index = []
    for g in groups:
        ref = (reference, *g[1:])
        if ref not in groups:
            have = sorted({str(g[0]) for g in groups})
            raise ValueError(f"no run has law_type {reference!r}" + (f" with {dict(zip(by[1:], g[1:]))}" if
                             len(by) > 1 else "") + f" to compare {_label(g)} with; law types found: {have}")
        ref_index.append(groups.index(ref))

    cube, seeds, sent_ids = _score_cube(runs, groups, split)        # (M, G, R, N)
    diffs = cube - cube[:, ref_index]                                   # paired by seed and sentence
    n_m, n_g = cube.shape[:2]
    stacked = np.concatenate([cube, diffs], axis=1).reshape(2 * n_m * n_g, *cube.shape[2:])
    boot = hierarchical_bootstrap(stacked, n_boot, rng_seed)            # (2 M G, n_boot)
    tail = 100.0 * (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):  # a metric the runs lack (no masks) stays NaN
        lo, hi = np.percentile(boot, [tail, 100.0 - tail], axis=1)
    est = stacked.mean(axis=(1, 2))
    est, lo, hi = (100.0 * a.reshape(n_m, 2, n_g) for a in (est, lo, hi))

    table = pd.DataFrame(groups, columns=by)
    table["n_seeds"] = len(seeds)
    table["seeds"] = ",".join(str(s) for s in seeds)
    table["n_sentences"] = len(sent_ids)
    for mi, m in enumerate(STAT_METRICS):
        table[m], table[f"{m}_lo"], table[f"{m}_hi"] = est[mi, 0], lo[mi, 0], hi[mi, 0]
        table[f"{m}_diff"], table[f"{m}_diff_lo"], table[f"{m}_diff_hi"] = est[mi, 1], lo[mi, 1], hi[mi, 1]
        table[f"{m}_significant"] = (lo[mi, 1] > 0.0) | (hi[mi, 1] < 0.0)
    table.attrs.update(split=split, by=by, reference=reference, n_boot=n_boot, level=level)
    return table


def _signed(x: float) -> str:
    return f"{x:+.1f}"


def reading(stats: pd.DataFrame) -> str:
    """One sentence: each setting's difference vs the reference per metric, significant or noise."""
    by = stats.attrs.get("by", ["law_type"])
    reference = stats.attrs.get("reference", "none")
    level = stats.attrs.get("level", 0.95)
    metrics = [m for m in STAT_METRICS if not stats[f"{m}_diff"].isna().all()]
    others = stats[stats["law_type"] != reference]
    if others.empty:
        return f"Only {reference} was run: there is no difference to read."
    n_seeds, n_sent = int(stats["n_seeds"].iloc[0]), int(stats["n_sentences"].iloc[0])
    head = (f"Paired with {reference} on {stats.attrs.get('split', 'val')} ({n_seeds} seed"
            f"{'' if n_seeds == 1 else 's'} x {n_sent} sentences, {level:.0%} CIs from "
            f"{stats.attrs.get('n_boot', 2000)} bootstrap resamples of seeds and sentences"
            + ("; one seed, so the CIs cover sentence sampling only, not seed-to-seed variation" if n_seeds == 1
               else f"; only {n_seeds} seeds, so the seed-to-seed spread is poorly estimated"
               if n_seeds < FULL_GRID_SEEDS else "") + ")")
    clauses, significant = [], []
    for _, row in others.iterrows():
        name = "/".join(str(row[c]) for c in by)
        parts = []
        for i, m in enumerate(metrics):
            sig = bool(row[f"{m}_significant"])
            points = " points" if i == 0 else ""
            parts.append(f"{_signed(row[f'{m}_diff'])}{points} {STAT_METRICS[m]} [{_signed(row[f'{m}_diff_lo'])}, "
                         f"{_signed(row[f'{m}_diff_hi'])}] {'significant' if sig else 'within noise'}")
            if sig:
                significant.append(f"{name} on {STAT_METRICS[m]}")
        ref_name = "/".join([reference, *(str(row[c]) for c in by[1:])])
        clauses.append(f"{name} vs {ref_name}: " + ", ".join(parts))
    verdict = ("so only " + ", ".join(significant) + " differ" + ("s" if len(significant) == 1 else "")
               + f" from {reference} beyond noise" if significant else
               f"so no difference from {reference} is beyond noise")
    n_tests = len(others) * len(metrics)
    if significant and n_tests > 1:  # many CIs at 95 %: some cross 0 with no real difference at all
        verdict += (f"; but of these {n_tests} comparisons about {n_tests * (1 - level):.1f} would exclude 0 "
                    f"by chance alone at {level:.0%} with no real difference, so "
                    + ("one such result" if len(significant) == 1 else f"{len(significant)} such results")
                    + (" is not evidence on its own" if len(significant) <= n_tests * (1 - level) + 1
                       else " are more than chance would give"))
    return f"{head}: " + "; ".join(clauses) + f"; {verdict}."
