"""`reports/index.html`: the workbook's results page, built from run directories and reports/.

    python -m vglaw.workbook.results_page [--reports reports] [--runs runs] [--main_run train-shapes-tiny-svd]
                                 [--screenshot reports/results_page.png]

One self-contained HTML file (inline style, no network; figures and notebook exports are
relative links inside `reports/`, so it opens from `file://`), rendered with Jinja2 from
`vglaw/workbook/templates/results_page.html.j2`: the main run's headline metrics on val/testA/testB with
its protocol card and time to accuracy, the REC/RES tables beside the paper, the law_type
ablation with its CIs and one-sentence reading, the figures with captions that say what to look
at, and links to each executed notebook. `python -m vglaw.workbook reproduce` calls `write_results_page`
at the end. `render_in_browser` drives headless Chromium (Debian's `chromium`) to check the page
(every image loads) and to save a screenshot; it raises `BrowserNotFound` where none is installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["MAIN_RUN", "HEADLINE", "METRICS", "FIGURE_CAPTIONS", "page_data", "render_page", "write_results_page",
           "write_notebook_times", "BrowserNotFound", "find_browser", "render_in_browser", "page_values", "main"]

MAIN_RUN = "train-shapes-tiny-svd"  # 02_train's default run of the synthetic default
HEADLINE = (("prec@0.5", "box Prec@0.5"), ("box_miou", "box mIoU"), ("miou", "mask mIoU"))
METRICS = (("prec@0.5", "Prec@0.5"), ("prec@0.7", "Prec@0.7"), ("prec@0.9", "Prec@0.9"), ("box_miou", "box mIoU"),
           ("miou", "mask mIoU"), ("oiou", "mask oIoU"))
SPLIT_ORDER = ("val", "testA", "testB", "test")
TTA_THRESHOLDS = (0.5, 0.8, 0.9)
NOTEBOOK_TIMES = "data/notebooks.json"  # under reports/: written by `python -m vglaw.workbook reproduce`

# What to look at in each figure the workbook writes (file name -> caption); others get a generic one.
FIGURE_CAPTIONS = {
    "02_train_curves.png": "Training of the main run: losses per update (left) and val box Prec@0.5 / mask mIoU "
                           "against updates and seconds. Look for the box curve leaving zero and whether it has levelled off.",
    "ablation_law_type.png": "Ablation over law_type: top, each variant's mean with its 95% CI; bottom, the paired "
                             "difference against none (red: the CI excludes 0). Grey bars are differences within noise.",
    "05_grounding.png": "Predictions on val: green the true box and mask, red the predicted ones, per expression.",
    "05_successes.png": "Highest-IoU val predictions: what the model already grounds.",
    "05_failures.png": "Lowest-IoU val predictions: look at which object it picks instead (same colour? same shape?).",
    "05_law.png": "What LAW generates: left, how much each adaptive block's qkv weight changes with the expression; "
                  "right, how far apart two expressions' generated weights are (0 = identical; the scale is set by the values).",
    "05_compare.png": "Two expressions in one image: each one's box and mask, then per adaptive block the first one's "
                      "generated weights and their difference from the second's. Look for different objects and non-zero differences.",
}
FIGURE_WIDTH = {"02_train_curves.png": 1100, "ablation_law_type.png": 1000}


def _pct(x: Any, digits: int = 1) -> str:
    """A fraction as a percentage with one decimal; '' for a missing value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{100.0 * float(x):.{digits}f}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _time_to_accuracy(evals: list[dict]) -> list[dict]:
    out = []
    best = max((r.get("prec@0.5", 0.0) for r in evals), default=0.0)
    for t in TTA_THRESHOLDS:
        hit = next((r for r in evals if r.get("prec@0.5", -1.0) >= t), None)
        out.append({"threshold": f"{t:.1f}", "reached": hit is not None, "best": f"{best:.3f}",
                    "step": hit["step"] if hit else None,
                    "seconds": f"{hit.get('train_time', hit.get('time', 0.0)):.0f}" if hit else None})
    return out


def _protocol(run_dir: Path, config: dict, status: dict) -> list[tuple[str, str]]:
    from vglaw.workbook.reports import _find, _init_label

    loaded = _find(config, "loaded_weights", {}) or {}
    updates = status.get("total_updates") or status.get("step")
    fp = _find(config, "data_fingerprint") or _find(config, "fingerprint")
    rows = [
        ("run", run_dir.name),
        ("dataset", f"{_find(config, 'dataset')} (split by {_find(config, 'split_by', _find(config, 'splitBy'))})"),
        ("preset", f"{_find(config, 'preset')}, canvas {_find(config, 'img_size')} px"),
        ("backbone init", _init_label(loaded, "backbone", "backbone")),
        ("text encoder", _init_label(loaded, "text_encoder", "text")),
        ("law_type", str(_find(config, "law_type"))),
        ("schedule", f"{status.get('epochs')} epochs, {updates} updates, batch {_find(config, 'batch_size')}, "
                     f"LR visual/base/lang {_find(config, 'lr_visual')}/{_find(config, 'lr_base')}/{_find(config, 'lr_lang')}, "
                     f"{_find(config, 'lr_scheduler') or 'step'} schedule"),
        ("seed", str(_find(config, "seed"))),
        ("best.ckpt selected on", f"val {status.get('best_metric', 'prec@0.5')} (update {status.get('best_step')})"),
        ("wall time", f"{status.get('wall_s', float('nan')):.0f} s" if status.get("wall_s") is not None else "?"),
        ("code", f"{(_find(config, 'git_commit') or _find(config, 'vglaw') or 'unknown')[:10]}, MindSpore "
                 f"{_find(config, 'mindspore')}, {_find(config, 'mode_name')} on {_find(config, 'device') or _find(config, 'device_target') or 'CPU'}"),
        ("data fingerprint", str(fp) if fp else "not recorded by this run"),
    ]
    return rows


def _main_run(runs_dir: Path, name: str) -> dict | None:
    run_dir = runs_dir / name
    status = _read_json(run_dir / "status.json")
    metrics = _read_json(run_dir / "metrics.json")
    config = _read_json(run_dir / "config.json")
    if not status or status.get("state") != "finished" or not metrics or not config:
        return None
    splits = [s for s in SPLIT_ORDER if isinstance(metrics.get(s), dict)]
    splits += sorted(s for s, v in metrics.items() if isinstance(v, dict) and s not in splits)
    from vglaw.workbook.reports import val_evaluations

    evals = val_evaluations(run_dir)
    return {"name": name, "dir": run_dir, "metrics": metrics, "splits": splits,
            "protocol": _protocol(run_dir, config, status), "tta": _time_to_accuracy(evals) if evals else [],
            "n_evals": len(evals), "last_step": evals[-1]["step"] if evals else None}


def _styled(df: pd.DataFrame, table_id: str, tooltips: pd.DataFrame | None = None) -> str:
    """A DataFrame as an HTML table: floats with one decimal, text columns left-aligned."""
    numeric = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    styler = (df.style.format("{:.1f}", subset=numeric, na_rep="–").hide(axis="index")
              .set_table_attributes(f'id="{table_id}"'))
    text_cols = [c for c in df.columns if c not in numeric]
    if text_cols:
        styler = styler.set_properties(subset=text_cols, **{"text-align": "left"})
    if tooltips is not None:
        styler = styler.set_tooltips(tooltips, props="visibility: hidden; position: absolute; z-index: 1; "
                                     "background: #1d2330; color: #fff; padding: 4px 8px; font-size: 0.85em;")
    return styler.to_html()


def _tables(runs: Path) -> list[dict]:
    """REC and RES of every finished run beside the paper, from the runs' own metrics (unrounded)."""
    from vglaw.workbook.paper import paper_number
    from vglaw.workbook.reports import protocol_card, scan_runs

    df = scan_runs(runs)
    if df.empty:
        return []
    specs = [("rec", "REC: box Prec@0.5 (%)", [("Prec@0.5", "prec@0.5"), ("Prec@0.7", "prec@0.7"), ("box mIoU", "box_miou")],
              "Paper columns: VG-LAW (ViT-Base) as published; synthetic rows have none. Hover a run for its protocol."),
             ("res", "RES: mask IoU (%)", [("mIoU", "miou"), ("oIoU", "oiou"), ("mIoU (canvas, thr 0.35)", "miou_canvas")],
              "mIoU/oIoU at the images' original resolution; the canvas column is the official code's protocol "
              "(448 canvas, threshold 0.35). Hover a run for its protocol.")]
    out = []
    for task, title, cols, note in specs:
        rows, tips = [], []
        for _, r in df.iterrows():
            row = {"dataset": r["dataset"], "split": r["split"], "run": r["run"]}
            for label, key in cols:
                v = r.get(key)
                row[label] = float("nan") if v is None or pd.isna(v) else 100.0 * float(v)
            for setting in ("multi", "single"):
                v = paper_number(task, r["dataset"], r["split"], setting)
                row[f"paper ({setting}-task)"] = float("nan") if v is None else float(v)
            rows.append(row)
            tips.append(protocol_card(r))
        table = pd.DataFrame(rows)
        tooltips = pd.DataFrame({"run": tips}, index=table.index)
        out.append({"title": title, "html": _styled(table, f"table-{task}", tooltips), "note": note})
    return out


FULL_ABLATION_DIR = "ablation"  # under reports/: `make ablation` writes its tables/ and figures/ there


def _ablation(tables_dir: Path, figure: str | None = None, table_id: str = "table-ablation") -> dict | None:
    """The law_type table in `tables_dir` (its title, HTML with the element id `table_id`, reading), or
    None; `figure`: the grid's plot as a link relative to reports/ (the caller checks that it exists)."""
    path = tables_dir / "ablation_law_type.csv"
    if not path.is_file():
        return None
    stats = pd.read_csv(path)
    metrics = [(m, label) for m, label in (("prec@0.5", "box Prec@0.5"), ("box_miou", "box mIoU"), ("miou", "mask mIoU"))
               if m in stats.columns and not stats[m].isna().all()]
    rows = []
    for _, r in stats.iterrows():
        row = {"law_type": r["law_type"], "runs": int(r["runs"]), "sentences": int(r.get("n_sentences", 0))}
        for m, label in metrics:
            row[f"{label} (%)"] = f"{r[m]:.1f} [{r[m + '_lo']:.1f}, {r[m + '_hi']:.1f}]"
            row[f"Δ {label}"] = ("reference" if r["law_type"] == "none" else
                                 f"{r[m + '_diff']:+.1f} [{r[m + '_diff_lo']:+.1f}, {r[m + '_diff_hi']:+.1f}]"
                                 + (" *" if bool(r[m + "_significant"]) else ""))
        rows.append(row)
    md = tables_dir / "ablation_law_type.md"
    title = "Ablation over law_type"
    if md.is_file():
        first = md.read_text(encoding="utf-8").splitlines()[0]
        title = first.lstrip("# ").strip() or title
    reading_path = tables_dir / "ablation_law_type_reading.txt"
    reading = reading_path.read_text(encoding="utf-8").strip() if reading_path.is_file() else ""
    return {"title": title, "html": _styled(pd.DataFrame(rows), table_id), "reading": reading, "figure": figure}


def _ablations(reports: Path) -> list[dict]:
    """The full grid of `make ablation` (reports/ablation/) first, then the workbook's own (reports/tables/,
    the reduced grid of `make reproduce` or whatever 03 last ran with report_dir=reports)."""
    figure = f"{FULL_ABLATION_DIR}/figures/ablation_law_type.png"
    full = _ablation(reports / FULL_ABLATION_DIR / "tables", figure if (reports / figure).is_file() else None)
    own = _ablation(reports / "tables", table_id="table-ablation-workbook")  # ids are unique on the page
    return [a for a in (full, own) if a is not None]


def _figures(reports: Path) -> list[dict]:
    figs = sorted((reports / "figures").glob("*.png")) if (reports / "figures").is_dir() else []
    order = {name: i for i, name in enumerate(FIGURE_CAPTIONS)}
    figs.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    return [{"src": f"figures/{p.name}", "name": p.name, "width": FIGURE_WIDTH.get(p.name, 900),
             "caption": FIGURE_CAPTIONS.get(p.name, "A figure written by the workbook's notebooks.")} for p in figs]


def _notebooks(reports: Path, rows: list[tuple[str, float, str]] | None) -> list[dict]:
    if rows is None:
        saved = _read_json(reports / NOTEBOOK_TIMES) or []
        rows = [(r["name"], r["seconds"], r["status"]) for r in saved]
    out = []
    for name, seconds, status in rows:
        href = f"html/{name}.html"
        out.append({"name": name, "seconds": f"{seconds:.0f} s", "status": status,
                    "href": href if (reports / href).is_file() else None})
    return out


def write_notebook_times(reports: Path, rows: list[tuple[str, float, str]]) -> Path:
    """Keep the notebooks' wall times and status next to the page (reports/data/notebooks.json)."""
    path = Path(reports) / NOTEBOOK_TIMES
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps([{"name": n, "seconds": round(float(s), 1), "status": st} for n, s, st in rows],
                              indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def page_data(reports: str | Path, runs: str | Path, main_run: str = MAIN_RUN,
              notebooks: list[tuple[str, float, str]] | None = None) -> dict:
    """Everything the page shows, read from `runs/<main_run>/` and `reports/` (tables, figures)."""
    reports, runs = Path(reports), Path(runs)
    main = _main_run(runs, main_run)
    headline_split = "val" if main and "val" in main["splits"] else (main["splits"][0] if main and main["splits"] else "val")
    return {"main": main, "main_run_name": main_run, "runs_dir": str(runs), "headline_split": headline_split,
            "headline_keys": [{"key": k, "label": v} for k, v in HEADLINE],
            "metric_keys": [{"key": k, "label": v} for k, v in METRICS],
            "tables": _tables(runs), "ablations": _ablations(reports),
            "figures": _figures(reports), "notebooks": _notebooks(reports, notebooks),
            "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def render_page(data: dict) -> str:
    """The page's HTML for `page_data(...)`."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("vglaw.workbook", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    env.globals["pct"] = _pct
    return env.get_template("results_page.html.j2").render(**data)


def write_results_page(reports: str | Path, runs: str | Path, main_run: str = MAIN_RUN,
                       notebooks: list[tuple[str, float, str]] | None = None) -> Path:
    """Write `<reports>/index.html` atomically; returns its path."""
    reports = Path(reports)
    reports.mkdir(parents=True, exist_ok=True)
    if notebooks is not None:
        write_notebook_times(reports, notebooks)
    text = render_page(page_data(reports, runs, main_run, notebooks))
    path = reports / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- the browser
class BrowserNotFound(RuntimeError):
    """No headless Chromium on this machine."""


def find_browser() -> str:
    """Path of a Chromium/Chrome executable ($VGLAW_BROWSER first); BrowserNotFound if none."""
    candidates = [os.environ.get("VGLAW_BROWSER", ""), "chromium", "chromium-browser", "google-chrome",
                  "google-chrome-stable", "chrome"]
    for c in candidates:
        found = c and shutil.which(c)
        if found:
            _check_starts(found)
            return found
    raise BrowserNotFound("no Chromium found (install Debian's `chromium` package, or set VGLAW_BROWSER)")


_STARTS: dict = {}


def _check_starts(exe: str) -> None:
    """BrowserNotFound if `exe` cannot render a blank page here (e.g. a container without what it
    needs), so that a browser that cannot start reads as "no browser", not as a broken page."""
    if exe not in _STARTS:
        with tempfile.TemporaryDirectory(prefix="vglaw-chromium-") as profile:
            try:
                proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                       f"--user-data-dir={profile}", "--dump-dom", "about:blank"],
                                      capture_output=True, text=True, timeout=60)
                _STARTS[exe] = "" if proc.returncode == 0 and "<html" in proc.stdout else \
                    f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1][:200]}"
            except (OSError, subprocess.SubprocessError) as e:
                _STARTS[exe] = str(e)[:200]
    if _STARTS[exe]:
        raise BrowserNotFound(f"{exe} does not start here ({_STARTS[exe]})")


def _browser(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_browser()
    with tempfile.TemporaryDirectory(prefix="vglaw-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
               "--no-first-run", "--allow-file-access-from-files", f"--user-data-dir={profile}",
               "--virtual-time-budget=8000", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] or ''}")
    return proc


def render_in_browser(page: str | Path, screenshot: str | Path | None = None, *, width: int = 1280,
                      height: int = 2600, timeout: float = 120.0) -> str:
    """Load `page` from file:// in headless Chromium; returns the DOM after the page's load event
    (which marks missing images in `data-broken-images`); optionally saves a PNG screenshot."""
    url = Path(page).resolve().as_uri()
    dom = _browser(["--dump-dom", url], timeout).stdout
    if screenshot is not None:
        screenshot = Path(screenshot).resolve()
        tmp = screenshot.with_name(screenshot.stem + ".tmp.png")
        _browser([f"--screenshot={tmp}", f"--window-size={width},{height}", url], timeout)
        if not tmp.is_file():
            raise RuntimeError(f"the browser wrote no screenshot for {url}")
        os.replace(tmp, screenshot)
    return dom


class _Values(HTMLParser):
    """Collects body attributes, (split, metric) -> text of `data-metric` cells, links and images."""

    def __init__(self):
        super().__init__()
        self.body: dict = {}
        self.values: dict = {}
        self.links: list[str] = []
        self.images: list[str] = []
        self._cell: tuple | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if "data-metric" in a:
            self._cell, self._text = (a.get("data-split"), a["data-metric"]), []

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if self._cell is not None and tag in ("td", "div"):
            self.values.setdefault(self._cell, []).append("".join(self._text).strip())
            self._cell = None


def page_values(dom: str) -> dict:
    """Parse a page (file text or a browser's DOM): {"body": attrs, "values": {(split, metric): [texts]},
    "links": [...], "images": [...]}."""
    p = _Values()
    p.feed(dom)
    return {"body": p.body, "values": p.values, "links": p.links, "images": p.images}


def main(argv: list[str] | None = None) -> int:
    from vglaw.utils.paths import default_runs_dir, reports_dir

    ap = argparse.ArgumentParser(prog="python -m vglaw.workbook.results_page", description=__doc__.splitlines()[0])
    ap.add_argument("--reports", default=None, help="reports folder (default: reports/ in the repository)")
    ap.add_argument("--runs", default=None, help="folder of run directories (default: runs/ in the repository)")
    ap.add_argument("--main_run", default=MAIN_RUN, help=f"run directory of the main run (default {MAIN_RUN})")
    ap.add_argument("--screenshot", default=None, help="also save a headless-Chromium screenshot here")
    a = ap.parse_args(argv)
    page = write_results_page(a.reports or reports_dir(), a.runs or default_runs_dir(), a.main_run)
    print(f"wrote {page}")
    if a.screenshot:
        try:
            render_in_browser(page, a.screenshot)
            print(f"wrote {a.screenshot}")
        except BrowserNotFound as e:
            print(f"no screenshot: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
