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

from vglaw.paper import paper_number

__all__ = ["SYNTHETIC_DATASETS", "load_run", "scan_runs", "rec_table", "res_table", "ablation_summary",
           "to_markdown", "write_table", "plot_ablation", "protocol_card"]

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
            "split_by": _find(cfg, "splitBy", _find(cfg, "split_by")), "preset": _find(cfg, "preset"),
            "law_type": _find(cfg, "law_type"), "law_rank": _find(cfg, "law_rank"),
            "law_shared": _find(cfg, "law_shared"), "law_blocks": _find(cfg, "law_blocks"),
            "seed": _find(cfg, "seed"), "epochs": _find(cfg, "max_epochs"), "img_size": _find(cfg, "img_size"),
            "backbone_init": _init_label(_find(cfg, "loaded_weights", {}), "backbone", "backbone"),
            "text_init": _init_label(_find(cfg, "loaded_weights", {}), "text_encoder", "text"),
            "mode": _find(cfg, "mode_name"),
            "device": _find(cfg, "device") or _find(cfg, "device_target") or "default device",
            "code_version": (_find(cfg, "git_commit") or _find(cfg, "vglaw") or "unknown")[:10],
            "mindspore": _find(cfg, "mindspore"),
            "wall_s": run["status"].get("wall_s"),
        }
        for split, metrics in sorted(run["metrics"].items()):
            if not isinstance(metrics, dict):
                continue
            rows.append({**base, "split": split, **{k: metrics.get(k) for k in METRIC_KEYS}})
    columns = ["run", "dataset", "split", *METRIC_KEYS]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def protocol_card(row: pd.Series | dict) -> str:
    """How a number was made, in one line (dataset kind, model, init, size, law_type, schedule, code)."""
    r = dict(row)
    kind = "synthetic" if r.get("synthetic") else "real"
    return (f"{r.get('dataset')} ({kind}); preset {r.get('preset')}, {r.get('backbone_init')}, {r.get('text_init')}; "
            f"img {r.get('img_size')}; law {r.get('law_type')}; {r.get('epochs')} ep; seed {r.get('seed')}; "
            f"code {r.get('code_version')}; MindSpore {r.get('mindspore')}; {r.get('mode')} on {r.get('device')}")


def _pct(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(100.0 * float(x), 2)


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
    return out.round(2)


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


def plot_ablation(summary: pd.DataFrame, path: str | Path, by: str = "law_type", title: str = "") -> Path:
    """Bar plot of Prec@0.5 and mIoU per group with the spread over seeds (error bars = std)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = [str(v) for v in summary[by]]
    x = range(len(labels))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (mean, std, name) in zip(axes, [("prec_mean", "prec_std", "REC Prec@0.5 (%)"),
                                            ("miou_mean", "miou_std", "RES mIoU (%)")]):
        ax.bar(x, summary[mean], yerr=summary[std].fillna(0.0), capsize=4, color="#4c72b0")
        ax.set_xticks(list(x), labels)
        ax.set_ylabel(name)
        ax.set_xlabel(by)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or f"Ablation over {by} (val; error bars: std over seeds)")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
