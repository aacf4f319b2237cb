"""vglaw.eval.misses (and its CLI, benchmarks/miss_analysis.py): each class of miss counted where it
belongs, mask boxes read back, the base sentences split by the words they need."""

import json

import numpy as np
import pytest

from _eval_helpers import load_benchmark


@pytest.fixture(scope="module")
def miss():
    import vglaw.eval.misses

    return vglaw.eval.misses


def test_classify(miss):
    objects = {1: [0, 0, 10, 10], 2: [20, 0, 10, 10]}
    assert miss.classify([0, 0, 10, 10], 1, objects) == ("hit", 1.0)
    cls, iou = miss.classify([0, 0, 4, 10], 1, objects)  # a third of the referred object
    assert cls == "loose" and iou == pytest.approx(0.4)
    assert miss.classify([20, 0, 10, 10], 1, objects) == ("other", 0.0)
    assert miss.classify([50, 50, 5, 5], 1, objects) == ("none", 0.0)
    # a box between the two, closer to the other one: another object, not a loose box
    assert miss.classify([14, 0, 12, 10], 1, objects)[0] == "other"


def test_analyse_counts_each_sentence_once_per_row(miss, shapes_data, tmp_path):
    from pycocotools import mask as mask_utils

    from vglaw.data.refer import read_refer
    from vglaw.data.synthetic import expression_kind

    data_root = shapes_data[0]
    samples = [s for s in read_refer(data_root, "shapes", "unc", check_images=False)[0]
               if s.split == "train"][:9]
    inst = json.loads((data_root / "shapes" / "instances.json").read_text())
    boxes = {a["id"]: a["bbox"] for a in inst["annotations"]}
    others = {}
    for a in inst["annotations"]:
        others.setdefault(a["image_id"], []).append(a["id"])
    preds, expected = [], {"hit": 0, "loose": 0, "other": 0}
    for k, s in enumerate(samples):
        x, y, w, h = boxes[s.ann_id]
        if k % 3 == 0:
            box, cls = [x, y, w, h], "hit"
        elif k % 3 == 1:
            box, cls = [x, y, w / 3, h], "loose"
        else:  # the box of another object of the same image (they never overlap: placed apart)
            box, cls = boxes[next(i for i in others[s.image_id] if i != s.ann_id)], "other"
        expected[cls] += 1
        m = np.zeros((200, 300), np.uint8)
        m[int(y) + 1:int(y + h) - 1, int(x) + 1:int(x + w) - 1] = 1  # the referred object's box, inset
        rle = mask_utils.encode(np.asfortranarray(m))
        preds.append({"sent_id": s.sent_id, "pred_box": box, "box_iou": miss.box_iou(box, boxes[s.ann_id]),
                      "pred_mask": {"size": rle["size"], "counts": rle["counts"].decode()}})
    res = miss.analyse(preds, "shapes", "unc", data_root)
    total = res["kinds"]["all"]
    assert {c: total[c] for c in ("hit", "loose", "other")} == expected and total["none"] == 0
    assert total["n"] == len(samples) == sum(r["n"] for k, r in res["kinds"].items() if k != "all")
    kinds = {expression_kind(s.phrase) for s in samples}
    assert set(res["kinds"]) == kinds | {"all"}
    assert total["iou_on_target"] == pytest.approx(np.mean([1.0] * 3 + [1 / 3] * 3))
    # the masks are the referred objects' boxes, 1 px inset: every mask box hits, the REC boxes 3 of 9
    assert res["mask_box"]["prec@0.5"] == 1.0 and res["mask_box"]["head_prec@0.5"] == pytest.approx(3 / 9)
    assert 0.6 < res["mask_box"]["box_miou"] < 1.0


def test_unknown_sentence_is_a_clear_error(miss, shapes_data):
    with pytest.raises(SystemExit, match="not in shapes"):
        miss.analyse([{"sent_id": 10 ** 9, "pred_box": [0, 0, 1, 1], "box_iou": 0.0}], "shapes", "unc",
                     shapes_data[0])


def test_needed_words(miss):
    red_circle = {"colour": "red", "category_id": 1}
    assert miss.needed_words(red_circle, []) == "either"
    assert miss.needed_words(red_circle, [{"colour": "blue", "category_id": 2}]) == "either"
    assert miss.needed_words(red_circle, [{"colour": "red", "category_id": 2}]) == "shape"
    assert miss.needed_words(red_circle, [{"colour": "blue", "category_id": 1}]) == "colour"
    assert miss.needed_words(red_circle, [{"colour": "red", "category_id": 3},
                                          {"colour": "green", "category_id": 1}]) == "both"


def test_needs_rows_split_the_base_sentences(miss, tmp_path, capsys):
    """Every "base" sentence lands in exactly one group, with its own class; no other kind does."""
    from vglaw.data import generate_shapes
    from vglaw.data.refer import read_refer
    from vglaw.data.synthetic import expression_kind

    data_root = tmp_path / "data"
    generate_shapes(data_root, n_images=60, min_size=64, max_size=96)  # enough images for all four groups
    samples = read_refer(data_root, "shapes", "unc", check_images=False)[0]
    inst = json.loads((data_root / "shapes" / "instances.json").read_text())
    anns = {a["id"]: a for a in inst["annotations"]}
    by_image = {}
    for a in inst["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    preds, expected = [], {}
    for s in samples:  # a hit on every sentence of an even sent_id, the box of another object else
        others = [a for a in by_image[s.image_id] if a["id"] != s.ann_id]
        hit = s.sent_id % 2 == 0 or not others
        box = anns[s.ann_id]["bbox"] if hit else others[0]["bbox"]
        preds.append({"sent_id": s.sent_id, "pred_box": box, "box_iou": miss.box_iou(box, anns[s.ann_id]["bbox"])})
        if expression_kind(s.phrase) == "base":
            g = miss.needed_words(anns[s.ann_id], others)
            e = expected.setdefault(g, {"n": 0, "hit": 0})
            e["n"] += 1
            e["hit"] += hit
    res = miss.analyse(preds, "shapes", "unc", data_root)
    assert len(expected) == 4  # the test data has images of every group
    assert {g: {"n": r["n"], "hit": r["hit"]} for g, r in res["needs"].items()} == expected
    assert sum(r["n"] for r in res["needs"].values()) == res["kinds"]["base"]["n"] > 0
    assert list(res["needs"]) == [g for g in miss.NEEDS if g in expected]
    assert all(r["hit"] + r["other"] == r["n"] for r in res["needs"].values())
    rows = miss.tables(res)
    assert [r["needs"] for r in rows["needs"]] == list(res["needs"])
    assert all(r["hit %"] == pytest.approx(100 * res["needs"][r["needs"]]["hit"] / r["n"]) for r in rows["needs"])
    assert rows["kinds"][-1]["kind"] == "all" and rows["kinds"][-1]["n"] == len(preds)

    # the CLI prints both tables; two files are pooled (each sentence once per file)
    f = tmp_path / "predictions_val.json"
    f.write_text(json.dumps(preds))
    cli = load_benchmark("miss_analysis")
    assert cli.main(["--predictions", str(f), str(f), "--data_root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "2 runs pooled" in out and f"| all | {2 * len(preds)} |" in out
    n_shape = 2 * expected["shape"]["n"]
    assert f"| shape | {n_shape} | {100 * expected['shape']['hit'] / expected['shape']['n']:.1f} |" in out
