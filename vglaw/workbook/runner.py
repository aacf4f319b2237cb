"""Run the workbook headless: `python -m vglaw.workbook reproduce` (what `make reproduce` calls),
or one notebook with parameters: `python -m vglaw.workbook run 03_ablations -p seeds "[0, 1, 2]"`.

Executes the numbered notebooks in order with papermill, keeps each executed copy under
`reports/_work/` (ignored by git) and writes an HTML export of each to `reports/html/` with an index
page `reports/index.html`. Notebooks resolve their paths from the repository root, so the same run
works from any working directory, and interactively in JupyterLab.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vglaw.utils.paths import repo_root, reports_dir

__all__ = ["NOTEBOOKS", "REPRODUCE_PARAMETERS", "run_notebook", "export_html", "reproduce", "main"]

log = logging.getLogger("vglaw")

# The workbook, in order. Each runs on the synthetic default with its own defaults.
NOTEBOOKS = ("01_preprocess", "02_train", "03_ablations", "04_results", "05_inspect")
# `make reproduce` also keeps each notebook's figures and tables under reports/ (relative paths
# resolve against the repository root).
REPRODUCE_PARAMETERS = {name: {"report_dir": "reports"} for name in NOTEBOOKS}
REPRODUCE_PARAMETERS["05_inspect"]["panel"] = False  # headless: the static figure, no widget


def notebook_path(name: str) -> Path:
    path = repo_root() / "notebooks" / f"{name}.ipynb"
    if not path.is_file():
        allowed = ", ".join(p.stem for p in sorted((repo_root() / "notebooks").glob("*.ipynb")))
        raise FileNotFoundError(f"No notebook {path}; the workbook has: {allowed}")
    return path


def run_notebook(name: str, parameters: dict[str, Any] | None = None, out_dir: str | Path | None = None,
                 *, progress: bool = True, log_output: bool = False) -> Path:
    """Execute `notebooks/<name>.ipynb` with papermill; returns the executed notebook's path."""
    import papermill as pm

    os.environ.setdefault("GLOG_v", "4")
    # The kernel (and msrun's workers) start as plain `python`: this interpreter's bin comes first.
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    out_dir = Path(out_dir) if out_dir else reports_dir() / "_work"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    pm.execute_notebook(str(notebook_path(name)), str(out), parameters=parameters or {},
                        kernel_name="python3", cwd=str(repo_root() / "notebooks"),
                        progress_bar=progress, log_output=log_output)
    return out


def export_html(executed: Path, html_dir: Path) -> Path:
    """An HTML copy of an executed notebook (code and outputs) for the reports folder."""
    import nbformat
    from nbconvert import HTMLExporter

    html_dir.mkdir(parents=True, exist_ok=True)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(executed), as_version=4))
    target = html_dir / f"{executed.stem}.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, target)
    return target


def _write_index(rows: list[tuple[str, float, str]], path: Path, screenshot: bool = False) -> None:
    """The results page (vglaw.workbook.results_page) with these notebook rows; optionally its screenshot."""
    from vglaw.utils.paths import default_runs_dir
    from vglaw.workbook.results_page import BrowserNotFound, render_in_browser, write_results_page

    page = write_results_page(path.parent, default_runs_dir(), notebooks=rows)
    if screenshot:
        try:
            render_in_browser(page, path.parent / "results_page.png")
        except BrowserNotFound as e:
            print(f"results page: no screenshot ({e})")
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            print(f"results page: screenshot failed: {e}")


def reproduce(notebooks: tuple[str, ...] = NOTEBOOKS,
              parameters: dict[str, dict[str, Any]] | None = REPRODUCE_PARAMETERS) -> Path:
    """Run the notebooks in order, export HTML and write `reports/index.html`; returns the index."""
    rows: list[tuple[str, float, str]] = []
    work, html_dir = reports_dir() / "_work", reports_dir() / "html"
    total = time.perf_counter()
    for i, name in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            executed = run_notebook(name, (parameters or {}).get(name), work)
        except Exception:
            rows.append((name, time.perf_counter() - start, "failed"))
            _write_index(rows, reports_dir() / "index.html")
            raise
        export_html(executed, html_dir)
        rows.append((name, time.perf_counter() - start, "ok"))
        print(f"[{i}/{len(notebooks)}] {name} done in {rows[-1][1]:.0f} s", flush=True)
    index = reports_dir() / "index.html"
    _write_index(rows, index, screenshot=True)
    print(f"workbook finished in {time.perf_counter() - total:.0f} s; open {index}")
    return index


def _literal(text: str) -> Any:
    """A `-p` value: a Python literal (`[0, 1, 2]`, `None`, `80`, `True`), anything else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vglaw.workbook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run every notebook in order on the synthetic default")
    rep.add_argument("--only", nargs="+", choices=NOTEBOOKS, help="run only these notebooks (in workbook order)")
    one = sub.add_parser("run", help="run one notebook with parameters; executed copy in reports/_work, "
                                     "HTML in reports/html")
    one.add_argument("notebook", choices=NOTEBOOKS)
    one.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="override a parameter; VALUE is read as a Python literal, else as a string")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error (also VGLAW_DEBUG=1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from vglaw.utils.errors import run_main

    def body() -> int:
        if args.command == "run":
            params = {name: _literal(value) for name, value in args.parameter}
            executed = run_notebook(args.notebook, params, reports_dir() / "_work")
            print(f"{args.notebook} done; open {export_html(executed, reports_dir() / 'html')}")
            return 0
        reproduce(tuple(n for n in NOTEBOOKS if not args.only or n in args.only))
        return 0
    # a failed notebook is one line: its cell's exception (exit 2 for a known user error, else 1)
    return run_main(parser.prog, body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
