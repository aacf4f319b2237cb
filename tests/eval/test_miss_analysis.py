"""benchmarks/miss_analysis.py: each class of miss counted where it belongs, mask boxes read back."""

import json

import numpy as np
import pytest

from _eval_helpers import load_benchmark


@pytest.fixture(scope="module")
def miss():
    return load_benchmark("miss_analysis")


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
