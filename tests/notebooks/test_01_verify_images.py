"""notebooks/01_preprocess (issue 9): a deleted and a truncated image are both listed in one run,
which fails with a one-line error instead of a mid-epoch traceback later."""

import json
import os
import subprocess
import sys
from pathlib import Path

from vglaw.data import ensure_shapes
from vglaw.utils.paths import repo_root

NOTEBOOK = repo_root() / "notebooks" / "01_preprocess.ipynb"


def _papermill(out: Path, *params: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOG_v="4", MPLBACKEND="Agg", HF_HUB_OFFLINE="1")
    env.pop("VGLAW_DEBUG", None)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK), str(out),
                           "-k", "python3", "--cwd", str(out.parent), *params],
                          env=env, capture_output=True, text=True, timeout=300)


def test_deleted_and_truncated_images_are_listed_together(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    folder = ensure_shapes(data, dataset="shapes", n_images=40, seed=0, min_size=64, max_size=96)  # = smoke
    images = json.loads((folder / "instances.json").read_text())["images"]
    img_dir = data / "images/mscoco/images/train2014"
    deleted, truncated = images[3]["file_name"], images[-1]["file_name"]  # a train and a test image
    (img_dir / deleted).unlink()
    raw = (img_dir / truncated).read_bytes()
    (img_dir / truncated).write_bytes(raw[: len(raw) // 3])

    res = _papermill(tmp_path / "out.ipynb", "-p", "smoke", "True", "-p", "data_root", str(data),
                     "-p", "cache_dir", str(cache))
    assert res.returncode != 0
    assert "ImageCheckError" in res.stderr and deleted in res.stderr and truncated in res.stderr
    assert "2 of 40 images" in res.stderr
    out = json.loads((tmp_path / "out.ipynb").read_text())
    [err] = [o for c in out["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(err["traceback"]) == 1  # the cell's error is the one line, no traceback
    tables = ["".join(o["data"]["text/html"]) for c in out["cells"] for o in c.get("outputs", [])
              if "text/html" in o.get("data", {})]
    assert any(deleted in t and truncated in t and "missing" in t and "truncated" in t for t in tables)  # one table, both rows
    scan = json.loads((cache / "shapes(unc)" / "manifest.json").read_text())["image_scan"]
    assert {b["file"] for b in scan["bad"]} == {deleted, truncated}


def test_missing_dataset_folder_is_one_line(tmp_path):
    res = _papermill(tmp_path / "out.ipynb", "-p", "dataset", "refcoco", "-p", "data_root", str(tmp_path),
                     "-p", "cache_dir", str(tmp_path / "cache"))
    assert res.returncode != 0 and "DataNotFoundError" in res.stderr and "data/README.md" in res.stderr
    out = json.loads((tmp_path / "out.ipynb").read_text())
    [err] = [o for c in out["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert err["traceback"] == [f"DataNotFoundError: {err['evalue']}"]
