"""benchmarks/box_source_gain.py: mask-minus-head differences per law type and over all runs."""

import json
from pathlib import Path

import numpy as np
import pytest

from _eval_helpers import load_benchmark


@pytest.fixture(scope="module")
def gain():
    return load_benchmark("box_source_gain")


def _run(folder: Path, law: str, mask_ious, head_ious) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": {"law_type": law}}))
    rows = [{"sent_id": 10 - i, "box_iou": m, "head_box_iou": h} for i, (m, h) in enumerate(zip(mask_ious, head_ious))]
    (folder / "predictions_val.json").write_text(json.dumps(rows))
    return folder


def test_differences_and_table_by_hand(gain, tmp_path):
    a = _run(tmp_path / "a", "svd", [0.9, 0.6, 0.2, 0.5], [0.4, 0.7, 0.1, 0.49])  # hits 1,1,0,1 vs 0,1,0,0
    b = _run(tmp_path / "b", "none", [0.3, 0.3, 0.3, 0.3], [0.5, 0.3, 0.3, 0.3])  # hits 0 vs 1,0,0,0
    hit, iou = gain.differences(a / "predictions_val.json")
    # ordered by sent_id (the rows were written in reverse)
    assert hit.tolist() == [1.0, 0.0, 0.0, 1.0][::-1] and iou == pytest.approx([0.01, 0.1, -0.1, 0.5])
    text = gain.table([a, b], n_boot=200)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert set(rows) == {"svd", "none", "all runs"}
    assert rows["svd"].split(" | ")[2].startswith("+50.0") and rows["none"].split(" | ")[2].startswith("-25.0")
    assert rows["all runs"].split(" | ")[2].startswith("+12.5")  # (2/4 - 1/4) / 2
    assert rows["all runs"].split(" | ")[3].startswith(f"{100 * np.mean([0.01, 0.1, -0.1, 0.5, -0.2, 0, 0, 0]):+.1f}")
    assert rows["all runs"].endswith("| 1 / 1 of 2 |")


def test_runs_without_the_head_box_or_other_sentences_are_refused(gain, tmp_path):
    a = _run(tmp_path / "a", "svd", [0.9], [0.4])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({"train": {"law_type": "svd"}}))
    (tmp_path / "b" / "predictions_val.json").write_text(json.dumps([{"sent_id": 10, "box_iou": 0.9}]))
    with pytest.raises(SystemExit, match="head_box_iou"):
        gain.table([a, tmp_path / "b"], n_boot=10)
    c = _run(tmp_path / "c", "svd", [0.9, 0.1], [0.4, 0.2])
    with pytest.raises(SystemExit, match="other sentences"):
        gain.table([a, c], n_boot=10)
