"""The workbook end to end (smoke): 02_train -> 03_ablations -> 04_results -> 05_inspect.

Each notebook runs headless through papermill on a tiny synthetic set in a temporary folder and the
test asserts on the files it wrote. Also: every source notebook is output-free, has the fixed
skeleton and a py:percent twin with the same cells.
"""

import json
from pathlib import Path

import jupytext
import pytest

from vglaw.utils.paths import repo_root
from vglaw.workbook.runner import NOTEBOOKS, run_notebook

NB_DIR = repo_root() / "notebooks"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_notebook_skeleton_and_twin(name):
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert nb["cells"][0]["cell_type"] == "markdown" and "".join(nb["cells"][0]["source"]).startswith("# ")
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert code[0]["metadata"].get("tags") == ["parameters"]
    assert "resolve_parameters(globals())" in "".join(code[1]["source"])
    assert "smoke" in "".join(code[0]["source"])
    twin = jupytext.read(NB_DIR / f"{name}.py")
    ipynb = jupytext.read(NB_DIR / f"{name}.ipynb")
    assert [c.source for c in twin.cells] == [c.source for c in ipynb.cells], f"{name}.py and .ipynb differ"


@pytest.fixture(scope="module")
def workbook(tmp_path_factory):
    root = tmp_path_factory.mktemp("workbook")
    common = {"data_root": str(root / "data"), "cache_dir": str(root / "cache"),
              "save_ckpt_dir": str(root / "runs")}
    return root, common


def _outputs(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [o for c in nb["cells"] for o in c.get("outputs", [])]


def test_02_train_smoke(workbook):
    root, common = workbook
    out = run_notebook("02_train", {**common, "smoke": True, "experiment_name": "nb-train",
                                    "report_dir": str(root / "reports")}, root / "out", progress=False)
    run = root / "runs" / "nb-train"
    for f in ("config.json", "train_log.jsonl", "metrics.json", "predictions_val.json", "best.ckpt", "last.ckpt"):
        assert (run / f).is_file(), f
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    metrics = json.loads((run / "metrics.json").read_text())["val"]
    assert metrics["n"] > 0 and 0.0 <= metrics["prec@0.5"] <= 1.0 and 0.0 <= metrics["miou"] <= 1.0
    assert (root / "reports" / "figures" / "02_train_curves.png").stat().st_size > 1000
    assert sum("image/png" in o.get("data", {}) for o in _outputs(out)) >= 2  # curves + predictions
    assert not any(o.get("output_type") == "error" for o in _outputs(out))


def test_03_ablations_smoke_reuses_runs(workbook):
    root, common = workbook
    params = {**common, "smoke": True, "law_types": ["none", "svd"], "report_dir": str(root / "reports")}
    run_notebook("03_ablations", params, root / "out", progress=False)
    runs = sorted(p.name for p in (root / "runs").glob("ablation-*"))
    assert len(runs) == 2 and runs[0].startswith("ablation-none-s0-")
    table = (root / "reports" / "tables" / "ablation_law_type.csv").read_text().splitlines()
    assert table[0].startswith("law_type,runs") and len(table) == 3
    assert (root / "reports" / "figures" / "ablation_law_type.png").is_file()
    mtimes = {p: (root / "runs" / p / "metrics.json").stat().st_mtime for p in runs}
    run_notebook("03_ablations", params, root / "out", progress=False)  # nothing left to train
    assert mtimes == {p: (root / "runs" / p / "metrics.json").stat().st_mtime for p in runs}


def test_04_results_tables(workbook):
    root, common = workbook
    run_notebook("04_results", {"runs_dir": common["save_ckpt_dir"], "report_dir": str(root / "reports"),
                                "smoke": True}, root / "out", progress=False)
    rec = (root / "reports" / "tables" / "rec.md").read_text()
    assert "nb-train" in rec and "shapes (synthetic)" in rec and "Prec@0.5" in rec
    res = (root / "reports" / "tables" / "res.csv").read_text().splitlines()
    assert res[0].startswith("dataset,split,run,mIoU,oIoU") and len(res) >= 4  # 3 runs on val


def test_05_inspect(workbook):
    root, common = workbook
    out = run_notebook("05_inspect", {"save_ckpt_dir": common["save_ckpt_dir"], "run_name": "nb-train",
                                      "n_gallery": 2, "report_dir": str(root / "reports"), "smoke": True},
                       root / "out", progress=False)
    figures = root / "reports" / "figures"
    for f in ("05_grounding.png", "05_successes.png", "05_failures.png", "05_law.png"):
        assert (figures / f).stat().st_size > 1000, f
    assert not any(o.get("output_type") == "error" for o in _outputs(out))
    shown = " ".join(str(o.get("data", {}).get("text/plain", "")) for o in _outputs(out))
    assert "another object %" in shown and "needs" in shown  # section 3's two miss tables (shapes data)
