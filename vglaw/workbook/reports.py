"""Results from run directories: scan, tabulate beside the paper, write Markdown/CSV, plot.

A run directory (written by `vglaw.train`) holds `config.json`, `metrics.json` and `status.json`.
Every number in a table comes from one of those files, and each row carries a protocol card that
says how the run was made, so a table never mixes protocols silently.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from vglaw.workbook.paper import paper_number

__all__ = ["SYNTHETIC_DATASETS", "val_evaluations", "load_run", "scan_runs", "rec_table", "res_table", "runs_table", "ablation_summary",
           "ablation_table", "write_ablation_table", "to_markdown", "write_table", "plot_ablation", "protocol_card"]

SYNTHETIC_DATASETS = ("shapes", "shapes_rle")
METRIC_KEYS = ("n", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9", "box_miou", "miou", "oiou",
               "miou_canvas")


def _find(tree: Any, key: str, default: Any = None) -> Any:
    """First value stored under `key` anywhere in nested dicts (config.json nests its sections)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find(value, key, None)
            if found is not None:
                return found
    return default


def val_evaluations(run_dir: str | Path) -> list[dict]:
    """The val evaluation rows of a run's train_log.jsonl, by update (a step evaluated twice keeps
    its last row; a torn last line of a killed run is skipped); [] without a log."""
    log = Path(run_dir) / "train_log.jsonl"
    if not log.is_file():
        return []
    rows: dict[int, dict] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("eval") == "val":
            rows[rec["step"]] = rec
    return [rows[s] for s in sorted(rows)]


def load_run(run_dir: str | Path) -> dict | None:
    """config, metrics and status of one run directory; None unless the run finished."""
    run_dir = Path(run_dir)
    try:
        status = json.loads((run_dir / "status.json").read_text())
        if status.get("state") != "finished":
            return None
        return {"dir": run_dir, "status": status,
                "config": json.loads((run_dir / "config.json").read_text()),
                "metrics": json.loads((run_dir / "metrics.json").read_text())}
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _init_label(loaded: dict, key: str, what: str) -> str:
    """Where a part's weights came from (config.json's derived.loaded_weights), else random init."""
    value = loaded.get(key) or loaded.get("model")  # a full pretrained checkpoint covers every part
    if not value:
        return f"{what}: random init"
    return f"{what}: {'/'.join(Path(str(value)).parts[-2:])}"


def scan_runs(root: str | Path, *, experiment_prefix: str | None = None) -> pd.DataFrame:
    """One row per (finished run, evaluated split) under `root`, with metrics and protocol fields."""
    rows: list[dict] = []
    root = Path(root)
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if experiment_prefix and not run_dir.name.startswith(experiment_prefix):
            continue
        run = load_run(run_dir)
        if run is None:
            continue
        cfg = run["config"]
        dataset = _find(cfg, "dataset")
        base = {
            "run": run_dir.name, "dataset": dataset, "synthetic": dataset in SYNTHETIC_DATASETS,
            "split_by": _find(cfg, "split_by", _find(cfg, "splitBy")), "preset": _find(cfg, "preset"),
            "law_type": _find(cfg, "law_type"), "law_rank": _find(cfg, "law_rank"),
            "law_shared": _find(cfg, "law_shared"), "law_blocks": _find(cfg, "law_blocks"),
            "seed": _find(cfg, "seed"), "epochs": _find(cfg, "max_epochs"), "img_size": _find(cfg, "img_size"),
            "backbone_init": _init_label(_find(cfg, "loaded_weights", {}), "backbone", "backbone"),
            "text_init": _init_label(_find(cfg, "loaded_weights", {}), "text_encoder", "text"),
            "mode": _find(cfg, "mode_name"),
            "device": _find(cfg, "device") or _find(cfg, "device_target") or "default device",
            "code_version": (_find(cfg, "git_commit") or _find(cfg, "vglaw") or "unknown")[:10],
            "mindspore": _find(cfg, "mindspore"),
            # the cache's data fingerprint (issue 9): runs on other data are other runs
            "data_fingerprint": (cfg.get("data") or {}).get("fingerprint") or "not recorded",
            "wall_s": run["status"].get("wall_s"),
        }
        for split, metrics in sorted(run["metrics"].items()):
            if not isinstance(metrics, dict):
                continue
            rows.append({**base, "split": split, **{k: metrics.get(k) for k in METRIC_KEYS}})
    columns = ["run", "dataset", "split", *METRIC_KEYS]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def protocol_card(row: pd.Series | dict) -> str:
    """How a number was made, in one line (dataset kind, model, init, size, law_type, schedule, code,
    data fingerprint)."""
    r = dict(row)
    kind = "synthetic" if r.get("synthetic") else "real"
    return (f"{r.get('dataset')} ({kind}); preset {r.get('preset')}, {r.get('backbone_init')}, {r.get('text_init')}; "
            f"img {r.get('img_size')}; law {r.get('law_type')}; {r.get('epochs')} ep; seed {r.get('seed')}; "
            f"code {r.get('code_version')}; MindSpore {r.get('mindspore')}; {r.get('mode')} on {r.get('device')}; "
            f"data {r.get('data_fingerprint', 'not recorded')}")


def _pct(x: Any) -> float | None:
    """A fraction as a percentage with one decimal, as every table prints it (None stays None)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(100.0 * float(x), 1)


def _table(df: pd.DataFrame, task: str, ours: list[tuple[str, str]]) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        row = {"dataset": r["dataset"], "split": r["split"], "run": r["run"]}
        row.update({label: _pct(r.get(key)) for label, key in ours})
        row["paper (multi-task)"] = paper_number(task, r["dataset"], r["split"], "multi")
        row["paper (single-task)"] = paper_number(task, r["dataset"], r["split"], "single")
        row["protocol"] = protocol_card(r)
        rows.append(row)
    return pd.DataFrame(rows)


def rec_table(df: pd.DataFrame) -> pd.DataFrame:
    """REC: Prec@0.5 (%) per run and split, beside the paper's number where one exists."""
    return _table(df, "rec", [("Prec@0.5", "prec@0.5"), ("Prec@0.7", "prec@0.7"), ("box mIoU", "box_miou")])


def res_table(df: pd.DataFrame) -> pd.DataFrame:
    """RES: mIoU and oIoU (%) at original resolution (+ the official canvas protocol)."""
    return _table(df, "res", [("mIoU", "miou"), ("oIoU", "oiou"), ("mIoU (canvas, thr 0.35)", "miou_canvas")])


def ablation_summary(df: pd.DataFrame, split: str = "val", by: Iterable[str] = ("law_type",)) -> pd.DataFrame:
    """Mean and spread over seeds of Prec@0.5 and mIoU (%) per `by` group, on `split`."""
    by = list(by)
    sel = df[df["split"] == split].copy()
    for key in ("prec@0.5", "miou"):
        sel[key] = 100.0 * sel[key].astype(float)
    out = sel.groupby(by, dropna=False, sort=False).agg(  # groups in the order the runs come
        runs=("run", "count"), seeds=("seed", lambda s: ",".join(str(x) for x in sorted(s))),
        prec_mean=("prec@0.5", "mean"), prec_std=("prec@0.5", "std"),
        miou_mean=("miou", "mean"), miou_std=("miou", "std")).reset_index()
    return out.round(1)


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per finished run and split: Prec@0.5 and mIoU in %, one decimal; wall time in seconds."""
    out = df[["run", "dataset", "split", "law_type", "seed", "epochs", "n"]].copy()
    out["Prec@0.5 (%)"] = [_pct(v) for v in df["prec@0.5"]]
    out["mIoU (%)"] = [_pct(v) for v in df["miou"]]
    out["wall_s"] = [None if v is None or v != v else round(float(v), 1) for v in df["wall_s"]]
    return out


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' own needs the `tabulate` package)."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        return str(v).replace("|", "\\|")
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_table(df: pd.DataFrame, name: str, out_dir: str | Path, title: str | None = None) -> tuple[Path, Path]:
    """`<out_dir>/<name>.md` and `.csv`, each written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv = out_dir / f"{name}.md", out_dir / f"{name}.csv"
    _atomic_write(md, (f"## {title}\n\n" if title else "") + to_markdown(df))
    _atomic_write(csv, df.to_csv(index=False))
    return md, csv


def _stat_metrics(stats: pd.DataFrame) -> dict[str, str]:
    """The metrics of `vglaw.workbook.ablation.ablation_stats` present in `stats` (mask ones absent without masks)."""
    from vglaw.workbook.ablation import STAT_METRICS
    return {m: label for m, label in STAT_METRICS.items() if m in stats and not stats[m].isna().all()}


def _setting(stats: pd.DataFrame) -> list[str]:
    by = stats.attrs.get("by", ["law_type"])
    return ["/".join(str(v) for v in row) for row in stats[by].itertuples(index=False)]


def ablation_table(stats: pd.DataFrame) -> pd.DataFrame:
    """`ablation_stats` for reading: per metric `mean [lo, hi]` and `diff [lo, hi]` (* = significant)."""
    by = stats.attrs.get("by", ["law_type"])
    reference = stats.attrs.get("reference", "none")
    out = stats[by].copy()
    out["runs"], out["seeds"] = stats["n_seeds"], stats["seeds"]
    for m, label in _stat_metrics(stats).items():
        out[f"{label} (%)"] = [f"{r[m]:.1f} [{r[m + '_lo']:.1f}, {r[m + '_hi']:.1f}]" for _, r in stats.iterrows()]
        out[f"Δ {label} vs {reference}"] = [
            "reference" if r["law_type"] == reference else
            f"{r[m + '_diff']:+.1f} [{r[m + '_diff_lo']:+.1f}, {r[m + '_diff_hi']:+.1f}]"
            + (" *" if r[m + "_significant"] else "") for _, r in stats.iterrows()]
    return out


def write_ablation_table(stats: pd.DataFrame, name: str, out_dir: str | Path, title: str) -> tuple[Path, Path]:
    """`<name>.md`: `ablation_table` with a legend; `<name>.csv`: the numbers of `stats` (percent);
    `<name>_reading.txt`: `vglaw.workbook.ablation.reading` (which differences are significant), one sentence."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    level = stats.attrs.get("level", 0.95)
    legend = (f"Mean over seeds of each run's val metric [{level:.0%} CI]; Δ: paired difference vs "
              f"{stats.attrs.get('reference', 'none')} (same seed, same sentences) in points [{level:.0%} CI], "
              f"* = the CI excludes 0. CIs: two-level bootstrap ({stats.attrs.get('n_boot', '?')} resamples "
              "of the seeds, then of the val sentences, which every run shares).\n")
    md, csv = out_dir / f"{name}.md", out_dir / f"{name}.csv"
    _atomic_write(md, f"## {title}\n\n" + to_markdown(ablation_table(stats)) + "\n" + legend)
    # "runs" keeps the column name of the earlier ablation table (one run per seed and setting)
    _atomic_write(csv, stats.rename(columns={"n_seeds": "runs"}).round(3).to_csv(index=False))
    from vglaw.workbook.ablation import reading  # the one-sentence reading 03 prints, for the results page

    _atomic_write(out_dir / f"{name}_reading.txt", reading(stats) + "\n")
    return md, csv


def plot_ablation(stats: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Top: each metric's mean per setting with its CI; bottom: the paired difference vs the
    reference with its CI (red bars: the CI excludes 0). Input: `vglaw.workbook.ablation.ablation_stats`."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = _stat_metrics(stats)
    labels = _setting(stats)
    x = np.arange(len(labels))
    reference = stats.attrs.get("reference", "none")
    fig, axes = plt.subplots(2, len(metrics), figsize=(3.6 * len(metrics), 5.6), squeeze=False)
    for col, (m, label) in enumerate(metrics.items()):
        mean, lo, hi = (stats[k].to_numpy(float) for k in (m, f"{m}_lo", f"{m}_hi"))
        top = axes[0, col]
        # a percentile CI need not straddle the mean exactly (skew, rounding): clip for matplotlib
        top.bar(x, mean, yerr=np.clip([mean - lo, hi - mean], 0, None), capsize=4, color="#4c72b0")
        top.set_ylabel(f"{label} (%)")
        top.set_ylim(0, max(1.0, float(np.nanmax(hi)) * 1.15))
        d, dlo, dhi = (stats[k].to_numpy(float) for k in (f"{m}_diff", f"{m}_diff_lo", f"{m}_diff_hi"))
        colors = ["#c44e52" if s else "#bbbbbb" for s in stats[f"{m}_significant"]]
        bottom = axes[1, col]
        bottom.bar(x, d, yerr=np.clip([d - dlo, dhi - d], 0, None), capsize=4, color=colors)
        bottom.axhline(0.0, color="black", lw=0.8)
        bottom.set_ylabel(f"Δ vs {reference} (points)")
        for ax in (top, bottom):
            ax.set_xticks(list(x), labels, rotation=30 if len(labels) > 6 else 0)
            ax.grid(axis="y", alpha=0.3)
    level = stats.attrs.get("level", 0.95)
    fig.suptitle(title or f"Ablation ({stats.attrs.get('split', 'val')}; error bars: {level:.0%} CI)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
