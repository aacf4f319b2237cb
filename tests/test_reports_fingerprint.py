"""Issue 9: notebook 04's rows and protocol cards name the data fingerprint each run recorded, so
runs on different data are different rows with different cards."""

import json

from vglaw.workbook.reports import protocol_card, rec_table, scan_runs


def _run(root, name, fingerprint):
    d = root / name
    d.mkdir()
    (d / "status.json").write_text(json.dumps({"state": "finished"}))
    cfg = {"train": {"dataset": "shapes", "preset": "tiny", "law_type": "svd", "seed": 0},
           "versions": {"mindspore": "2.10.0"}}
    if fingerprint:
        cfg["data"] = {"fingerprint": fingerprint, "cache": "/c/shapes(unc)"}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "metrics.json").write_text(json.dumps({"val": {"n": 1, "prec@0.5": 0.5}}))


def test_rows_and_cards_carry_the_data_fingerprint(tmp_path):
    _run(tmp_path, "old_data", "aaaa1111")
    _run(tmp_path, "new_data", "bbbb2222")
    _run(tmp_path, "legacy", None)
    df = scan_runs(tmp_path).set_index("run")
    assert df.loc["old_data", "data_fingerprint"] == "aaaa1111"
    assert df.loc["legacy", "data_fingerprint"] == "not recorded"
    cards = rec_table(scan_runs(tmp_path)).set_index("run")["protocol"]
    assert cards["old_data"].endswith("data aaaa1111") and cards["new_data"].endswith("data bbbb2222")
    assert protocol_card({"dataset": "shapes"}).endswith("data not recorded")
