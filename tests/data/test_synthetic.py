"""The synthetic referring dataset: layout, determinism, unique expressions."""

import json
import re

import numpy as np
import pytest

from vglaw.data import RefDataset, ensure_shapes, generate_shapes, preprocess
from vglaw.data.synthetic import COLOURS, SHAPES, _matching
from vglaw.utils.pickle_safe import safe_load

_KINDS = [(r"\b(to the )?left of\b", "left of"), (r"\b(to the )?right of\b", "right of"),
          (r"\b(above|over)\b", "above"), (r"\b(below|under)\b", "below"),
          (r"\b(left|leftmost)\b", "left"), (r"\b(right|rightmost)\b", "right"),
          (r"\b(top|upper)\b", "top"), (r"\b(bottom|lower)\b", "bottom"),
          (r"\b(big|bigger|larger)\b", "big"), (r"\b(small|smaller|little)\b", "small")]


def _parse(sentence: str, objs: list[dict]) -> dict:
    """Read a generated sentence back into the generator's description form."""
    words = sentence.split()
    colours = [w for w in words if w in COLOURS]
    shapes = [w for w in words if w in SHAPES]
    desc = {}
    if colours:
        desc["colour"] = colours[0]
    if shapes:
        desc["shape"] = shapes[0]
    for pattern, kind in _KINDS:
        if re.search(pattern, sentence):
            desc["kind"] = kind
            break
    if desc.get("kind") in ("left of", "right of", "above", "below"):
        ref = [i for i, o in enumerate(objs) if (o["colour"], o["shape"]) == (colours[1], shapes[1])]
        assert len(ref) == 1, sentence
        desc["ref"] = ref[0]
    return desc


def _scene(folder):
    inst = json.loads((folder / "instances.json").read_text())
    by_image = {}
    for a in inst["annotations"]:
        x, y, w, h = a["bbox"]
        by_image.setdefault(a["image_id"], {})[a["id"]] = {
            "colour": a["colour"], "shape": SHAPES[a["category_id"] - 1], "area": a["area"],
            "box": (x, y, x + w, y + h), "cx": x + w / 2, "cy": y + h / 2}
    sizes = {im["id"]: (im["width"], im["height"]) for im in inst["images"]}
    return inst, by_image, sizes


def test_layout_and_refs_format(shapes_root):
    folder = shapes_root / "shapes"
    raw = (folder / "refs(unc).p").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2
    refs = safe_load(folder / "refs(unc).p")
    inst, _, sizes = _scene(folder)
    assert {r["split"] for r in refs} == {"train", "val", "testA", "testB"}
    for r in refs:
        assert set(r) == {"ref_id", "ann_id", "image_id", "split", "category_id", "sent_ids",
                          "file_name", "sentences"}
        assert len(r["sentences"]) >= 2
        assert r["sent_ids"] == [s["sent_id"] for s in r["sentences"]]
        for s in r["sentences"]:
            assert set(s) == {"tokens", "raw", "sent", "sent_id"} and s["tokens"] == s["sent"].split()
        assert re.fullmatch(r"COCO_train2014_%012d_\d+\.jpg" % r["image_id"], r["file_name"])
        if r["split"] == "testA":
            assert SHAPES[r["category_id"] - 1] in ("circle", "square")
        if r["split"] == "testB":
            assert SHAPES[r["category_id"] - 1] in ("triangle", "diamond")
    for im in inst["images"]:
        assert im["file_name"] == "COCO_train2014_%012d.jpg" % im["id"]
        assert (shapes_root / "images/mscoco/images/train2014" / im["file_name"]).is_file()
        assert 64 <= max(im["width"], im["height"]) <= 96
    assert len({round(w / h, 1) for w, h in sizes.values()}) > 3  # varying aspect ratios
    assert all(isinstance(a["segmentation"], list) for a in inst["annotations"])


def test_expressions_unique_and_correct(shapes_root):
    folder = shapes_root / "shapes"
    refs = safe_load(folder / "refs(unc).p")
    inst, scenes, sizes = _scene(folder)
    per_image = {}
    lr = 0
    for r in refs:
        objs_by_id = scenes[r["image_id"]]
        ids = sorted(objs_by_id)
        objs = [objs_by_id[i] for i in ids]
        for s in r["sentences"]:
            sent = s["sent"]
            assert sent not in per_image.setdefault(r["image_id"], set()), sent
            per_image[r["image_id"]].add(sent)
            desc = _parse(sent, objs)
            # the sentence fits its target and no other object of the image
            assert _matching(objs, desc, *sizes[r["image_id"]]) == [ids.index(r["ann_id"])], sent
            lr += bool(re.search(r"\b(left|right|leftmost|rightmost)\b", sent))
    assert lr > 0  # some expressions need left/right, so the flip's word swap matters


def test_deterministic(tmp_path):
    a = generate_shapes(tmp_path / "a", n_images=8, seed=5, min_size=48, max_size=64)
    b = generate_shapes(tmp_path / "b", n_images=8, seed=5, min_size=48, max_size=64)
    c = generate_shapes(tmp_path / "c", n_images=8, seed=6, min_size=48, max_size=64)
    for name in ("instances.json", "refs(unc).p"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "instances.json").read_bytes() != (c / "instances.json").read_bytes()
    im = "images/mscoco/images/train2014/COCO_train2014_000900000001.jpg"
    assert (tmp_path / "a" / im).read_bytes() == (tmp_path / "b" / im).read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_shapes(tmp_path / "a", n_images=8, seed=5)


def test_ensure_reuses(tmp_path):
    folder = ensure_shapes(tmp_path, n_images=6, min_size=48, max_size=64)
    mtime = (folder / "instances.json").stat().st_mtime_ns
    assert ensure_shapes(tmp_path, n_images=6, min_size=48, max_size=64) == folder
    assert (folder / "instances.json").stat().st_mtime_ns == mtime
    ensure_shapes(tmp_path, n_images=7, min_size=48, max_size=64)  # other parameters: regenerate
    assert len(json.loads((folder / "instances.json").read_text())["images"]) == 7


def test_rle_variant_reads_like_refclef(tmp_path):
    root = tmp_path / "data"
    generate_shapes(root, dataset="shapes_rle", n_images=6, seed=1, min_size=48, max_size=64)
    inst = json.loads((root / "shapes_rle/instances.json").read_text())
    kinds = {type(a["segmentation"]["counts"]).__name__ for a in inst["annotations"]}
    assert kinds == {"str", "list"}  # compressed and uncompressed RLE
    preprocess(root, "shapes_rle", "berkeley", tmp_path / "cache")
    ds = RefDataset(tmp_path / "cache", "shapes_rle", "berkeley", "train")
    s = ds[0]
    assert re.search(r"images/saiapr_tc-12/shapes_00/images/\d+\.jpg$", s["image_path"])
    ys, xs = np.nonzero(s["mask"])
    x, y, w, h = s["bbox"]
    assert abs(xs.min() - x) <= 1.5 and abs(xs.max() + 1 - (x + w)) <= 1.5
    assert abs(ys.min() - y) <= 1.5 and abs(ys.max() + 1 - (y + h)) <= 1.5
    # the object's pixels carry a saturated colour (the mask is where the shape was drawn)
    img = ds.load_image(0).astype(int)
    assert (img[s["mask"] > 0].max(axis=1) - img[s["mask"] > 0].min(axis=1)).mean() > 80
    assert len(RefDataset(tmp_path / "cache", "shapes_rle", "berkeley", "test")) > 0


def test_expression_kind_reads_every_generated_sentence(shapes_root):
    """`expression_kind` (the miss analysis's per-kind rows) names the kind the generator wrote,
    checked against this file's own parser, for every sentence of a generated set."""
    from vglaw.data.synthetic import EXPRESSION_KINDS, expression_kind

    inst, scenes, _ = _scene(shapes_root / "shapes")
    seen = set()
    for r in safe_load(shapes_root / "shapes" / "refs(unc).p"):
        objs = [scenes[r["image_id"]][i] for i in sorted(scenes[r["image_id"]])]
        for s in r["sentences"]:
            kind = expression_kind(s["sent"])
            desc = _parse(s["sent"], objs)
            expected = desc.get("kind") or ("base" if "colour" in desc and "shape" in desc
                                             else "colour" if "colour" in desc else "shape")
            assert kind == expected, s["sent"]
            seen.add(kind)
    assert len(seen) >= 4 and seen <= set(EXPRESSION_KINDS)
    assert expression_kind("The  RED circle") == "base"  # case and spacing as a user types them
    assert expression_kind("the man on the left") is None  # a real dataset's sentence
    assert expression_kind("the red circle left of the") is None  # templates match whole sentences
