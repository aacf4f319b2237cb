"""benchmarks/attribute_probe.py: the ridge probe and the per-object token weights."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from attribute_probe import match_rows, named, probe_table, ridge_probe, token_weights  # noqa: E402


def test_ridge_probe_separates_what_is_linear_and_not_what_is_not():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 800)
    centres = rng.normal(0, 1, (4, 16)) * 3
    x = centres[y] + rng.normal(0, 1, (800, 16))
    acc, train_acc, ok = ridge_probe(x[:600], y[:600], x[600:], y[600:], 4)
    assert acc > 0.95 and train_acc > 0.95 and ok.shape == (200,)
    noise = rng.normal(0, 1, (800, 16))  # labels unrelated to the features: held-out accuracy near chance
    acc, _, _ = ridge_probe(noise[:600], y[:600], noise[600:], y[600:], 4)
    assert acc < 0.4


def test_token_weights_are_the_objects_share_of_each_token():
    canvas = np.zeros((32, 32), np.float32)
    canvas[0:8, 0:8] = 1   # all of token (0, 0) of a 4 x 4 grid
    canvas[8:12, 8:16] = 1  # half of token (1, 1)
    w = token_weights(canvas, 4)
    assert w.shape == (16,) and np.isclose(w.sum(), 1.0)
    assert np.isclose(w[0], 64 / 96) and np.isclose(w[5], 32 / 96) and np.count_nonzero(w) == 2
    assert not token_weights(np.zeros((32, 32), np.float32), 4).any()


def test_probe_table_reports_category_colour_and_sizes():
    rng = np.random.default_rng(1)

    def rows(n):
        out = []
        for _ in range(n):
            c, k = int(rng.integers(1, 4)), ["red", "blue"][int(rng.integers(0, 2))]
            f = np.r_[np.eye(3)[c - 1] * 4, [4.0 if k == "red" else -4.0]] + rng.normal(0, 0.5, 4)
            out.append({"feature": f, "category": c, "colour": k, "area": float(rng.uniform(50, 500)),
                        "phrase": "the thing on the left"})
        return out

    table = probe_table(rows(300), rows(150))
    assert probe_table(rows(300), rows(150), match=False)[-1]["attribute"] == "colour"
    names = [r["attribute"] for r in table]
    assert names[:5] == ["category"] + names[1:4] + ["colour"] and len(table) == 5  # no phrase naming a colour and a shape: no match rows
    assert table[0]["val"] > 0.95 and table[-1]["val"] > 0.95 and table[-1]["classes"] == 2
    assert sum(r["objects"] for r in table[1:4]) == 150


def test_match_rows_probe_whether_the_object_is_what_the_sentence_names():
    from vglaw.data.synthetic import COLOURS, SHAPES

    rng = np.random.default_rng(2)
    colours = list(COLOURS)[:3]

    def rows(n):
        out = []
        for _ in range(n):
            want_c, want_s = rng.choice(colours), int(rng.integers(0, 4))
            have_c, have_s = rng.choice(colours), int(rng.integers(0, 4))
            # the feature says whether the colour matches; it says nothing about the shape
            f = np.r_[4.0 * (have_c == want_c), rng.normal(0, 1, 3)]
            out.append({"feature": f, "category": have_s + 1, "colour": str(have_c), "area": 100.0,
                        "phrase": f"the {want_c} {SHAPES[want_s]}"})
        out.append({"feature": np.zeros(4), "category": 1, "colour": "red", "area": 1.0,
                    "phrase": "the red circle left of the blue square"})  # two shapes named: skipped
        return out

    train, val = rows(400), rows(200)
    table = {r["attribute"]: r for r in match_rows(train, val)}
    shape, colour = table["has the shape the sentence names"], table["has the colour the sentence names"]
    assert shape["objects"] == colour["objects"] == 200
    assert colour["val"] > 0.95
    assert shape["val"] <= shape["chance"] + 0.05  # not linearly present: no better than the majority
    assert named("the big red circle", COLOURS) == "red" and named("red or blue", COLOURS) is None
