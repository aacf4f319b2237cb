"""notebooks/01_preprocess.ipynb runs headless through papermill (smoke) and writes the cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

from vglaw.utils.paths import repo_root

NOTEBOOK = repo_root() / "notebooks" / "01_preprocess.ipynb"


def _papermill(out: Path, *params: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOG_v="4", MPLBACKEND="Agg", HF_HUB_OFFLINE="1")
    # the kernelspec runs `python`: make that the venv's interpreter
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK), str(out),
                           "-k", "python3", "--cwd", str(out.parent), *params],
                          env=env, capture_output=True, text=True, timeout=300)


def test_source_notebook_has_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert code[0]["metadata"].get("tags") == ["parameters"]
    assert "".join(code[1]["source"]) == ("from vglaw.workbook.params import resolve_parameters\n\n"
                                          "P = resolve_parameters(globals())")


def test_smoke_run_writes_cache(tmp_path):
    data, cache, reports = tmp_path / "data", tmp_path / "cache", tmp_path / "reports"
    res = _papermill(tmp_path / "out.ipynb", "-p", "dataset", "shapes", "-p", "smoke", "True",
                     "-p", "data_root", str(data), "-p", "cache_dir", str(cache),
                     "-p", "report_dir", str(reports))
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((cache / "shapes(unc)" / "manifest.json").read_text())
    assert set(manifest["splits"]) == {"train", "val", "testA", "testB"}
    assert all(v["sentences"] > 0 for v in manifest["splits"].values())
    gen = json.loads((data / "shapes" / "generator.json").read_text())
    assert gen["params"]["n_images"] == 40  # the smoke variant
    counts = json.loads((reports / "data" / "shapes(unc)_counts.json").read_text())
    assert counts["splits"] == manifest["splits"]
    out = json.loads((tmp_path / "out.ipynb").read_text())
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in out["cells"] for o in c.get("outputs", []))  # the sample grid was drawn


def test_misspelt_parameter_fails(tmp_path):
    res = _papermill(tmp_path / "out.ipynb", "-p", "datset", "refcoco", "-p", "smoke", "True",
                     "-p", "data_root", str(tmp_path / "data"), "-p", "cache_dir", str(tmp_path / "c"))
    assert res.returncode != 0 and "datset" in res.stderr
    assert not (tmp_path / "data").exists()  # failed before generating anything
