"""Time to accuracy of a training run: the first update and second at which val Prec@0.5 reached
0.5 / 0.8 / 0.9, read from the val rows (`eval: "val"`) of its train_log.jsonl.

    # read a run (finished or still running)
    python benchmarks/bench_convergence.py --run_dir runs/tiny_svd
    # also count the backbone pretraining: a pretraining folder (its status.json `wall_s`), or
    # "auto": the pretraining the run's config.json records (derived.loaded_weights.backbone_pretrain)
    python benchmarks/bench_convergence.py --run_dir runs/tiny_svd --pretrain_dir auto
    # train the default recipe's main run first, then read it (extra training flags after --)
    GLOG_v=4 python benchmarks/bench_convergence.py --train --experiment_name convergence -- --eval_every_steps 350

`time` is wall-clock seconds of the run (evaluations included), `train time` the same without the
val evaluations; both continue across a resume. A row is only as fine as the evaluation grid:
set `--eval_every_steps` on the run for points between epochs. Note the machine load next to
any number you quote.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

# The README's main run of the default (tiny, synthetic) recipe.
MAIN_RUN = ["--preset", "tiny", "--dataset", "shapes", "--law_type", "svd", "--use_mask", "--translate"]


def eval_rows(run_dir: Path) -> list[dict]:
    """The val evaluations of a run, by update (vglaw.reports.val_evaluations); the log must exist."""
    from vglaw.workbook.reports import val_evaluations

    log = run_dir / "train_log.jsonl"
    if not log.is_file():
        raise FileNotFoundError(f"{log} does not exist: --run_dir must be a vglaw.train run directory")
    return val_evaluations(run_dir)


def first_reached(rows: list[dict], metric: str, threshold: float) -> dict | None:
    """The first row whose `metric` is >= threshold, else None."""
    return next((r for r in rows if r.get(metric, -math.inf) >= threshold), None)


def pretrain_seconds(spec: str | None, run_dir: Path) -> float | None:
    """Seconds of the backbone pretraining: `spec` is a folder or status.json with `wall_s`, or
    "auto" (the run's config.json record); None when not asked for."""
    if not spec:
        return None
    if spec == "auto":
        cfg = json.loads((run_dir / "config.json").read_text())
        wall = (cfg.get("derived", {}).get("loaded_weights", {}).get("backbone_pretrain") or {}).get("wall_s")
        if wall is None:
            raise SystemExit(f"{run_dir}/config.json records no backbone pretraining time "
                             "(not a --vit_model shapes_pretrained run); give --pretrain_dir PATH")
        return float(wall)
    path = Path(spec)
    status = path / "status.json" if path.is_dir() else path
    if not status.is_file():
        raise SystemExit(f"--pretrain_dir {spec}: no status.json there")
    wall = json.loads(status.read_text()).get("wall_s")
    if wall is None:
        raise SystemExit(f"{status} has no wall_s")
    return float(wall)


def table(rows: list[dict], metric: str, thresholds: list[float], pretrain_s: float | None) -> str:
    """Markdown: one line per threshold (first update/epoch/seconds, or the best value seen)."""
    def sec(v):
        return "-" if v is None else f"{v:.0f}"

    head = ["val " + metric + " >=", "update", "epoch", "time s", "train time s"]
    if pretrain_s is not None:
        head.append("time s incl. pretraining")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = max(rows, key=lambda r: r.get(metric, -math.inf)) if rows else None
    for t in thresholds:
        r = first_reached(rows, metric, t)
        if r is None:
            seen = f"not reached, best {best[metric]:.3f} (update {best['step']})" if best else "no evaluation"
            cells = [f"{t:g}", seen, "-", "-", "-"] + (["-"] if pretrain_s is not None else [])
        else:
            cells = [f"{t:g}", str(r["step"]), str(r.get("epoch", "-")), sec(r.get("time")),
                     sec(r.get("train_time"))]
            if pretrain_s is not None:
                cells.append(sec(None if r.get("time") is None else r["time"] + pretrain_s))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def train_main_run(experiment_name: str, extra: list[str]) -> Path:
    """`python -m vglaw.train` with the main run's flags; returns its run directory."""
    from vglaw.utils.paths import default_runs_dir
    from vglaw.train.cli import parse_config
    argv = MAIN_RUN + ["--experiment_name", experiment_name, *extra]
    cfg = parse_config(argv)  # exits 2 on a bad flag before any training
    r = subprocess.run([sys.executable, "-m", "vglaw.train", *argv])
    if r.returncode != 0:
        raise SystemExit(f"training failed (exit {r.returncode})")
    return Path(cfg.save_ckpt_dir or default_runs_dir()) / cfg.experiment_name


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run_dir", help="run directory to read (written by vglaw.train)")
    p.add_argument("--train", action="store_true", help="train the main run first (flags after -- are added)")
    p.add_argument("--experiment_name", default="convergence", help="with --train: the run's name")
    p.add_argument("--metric", default="prec@0.5", help="val metric of the eval rows (default prec@0.5)")
    p.add_argument("--thresholds", nargs="+", type=float, default=[0.5, 0.8, 0.9])
    p.add_argument("--pretrain_dir", help='pretraining folder or status.json with wall_s, or "auto"')
    a = p.parse_args(argv)
    if a.train == bool(a.run_dir):
        p.error("give exactly one of --run_dir (read a run) and --train (train the main run, then read it)")
    if extra and not a.train:
        p.error("flags after -- are training flags: only with --train")
    run_dir = train_main_run(a.experiment_name, extra) if a.train else Path(a.run_dir)
    try:
        rows = eval_rows(run_dir)
    except FileNotFoundError as exc:
        p.error(str(exc))
    if rows and a.metric not in rows[-1]:
        p.error(f"--metric {a.metric!r} is not in the eval rows; they hold "
                f"{sorted(k for k in rows[-1] if k.startswith(('prec@', 'miou', 'box_miou', 'oiou')))}")
    pre = pretrain_seconds(a.pretrain_dir, run_dir)
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").is_file() else {}
    print(f"run {run_dir}: {status.get('state', 'unknown')}, update {status.get('step')} of "
          f"{status.get('total_updates')}, {len(rows)} val evaluations"
          + (f", pretraining {pre:.0f} s" if pre is not None else ""))
    print(table(rows, a.metric, a.thresholds, pre))
    if pre is None and (run_dir / "config.json").is_file():
        rec = json.loads((run_dir / "config.json").read_text()).get("derived", {}).get("loaded_weights", {})
        wall = (rec.get("backbone_pretrain") or {}).get("wall_s")
        if wall is not None:
            print(f"(the backbone was pretrained in {wall:.0f} s, not counted above: --pretrain_dir auto)")


if __name__ == "__main__":
    main()
