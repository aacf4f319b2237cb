"""The embedded default dataset: coloured shapes with referring expressions (DESIGN §4.2).

Written deterministically from a seed in **exactly** the refer layout, so the real data path runs
on it unchanged:

  shapes (refcoco style, polygon masks, split_by unc, splits train/val/testA/testB)
    <root>/images/mscoco/images/train2014/COCO_train2014_%012d.jpg
    <root>/shapes/instances.json, <root>/shapes/refs(unc).p
  shapes_rle (refclef style, RLE masks, split_by berkeley, splits train/val/test)
    <root>/images/saiapr_tc-12/shapes_<dd>/images/<id>.jpg
    <root>/shapes_rle/instances.json, <root>/shapes_rle/refs(berkeley).p

Image ids start at 900,000,000 (shapes) / 900,000 (shapes_rle), far from COCO's and SAIAPR's own,
so the synthetic JPEGs never overwrite real images in a shared images folder.

Every expression singles out one object, by the simplest description that is unique in its image:
colour + shape when that pair is unique, otherwise size ("the big red circle"), horizontal or
vertical position among the look-alikes ("the left red circle", "the lower red circle") or a
relation to a uniquely named object ("the red circle left of the blue square"). A generated
description is checked against the scene by `_matching` (the same rules that chose it).
testA targets circles and squares, testB triangles and diamonds (mirroring refcoco's
people / other-objects split).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from vglaw.data.refer import IMAGE_DIRS

__all__ = ["COLOURS", "SHAPES", "EXPRESSION_KINDS", "generate_shapes", "ensure_shapes", "expression_kind",
           "DEFAULT_N_IMAGES"]

log = logging.getLogger("vglaw")

COLOURS = {"red": (215, 35, 35), "green": (35, 160, 55), "blue": (35, 75, 215),
           "yellow": (235, 205, 25), "purple": (135, 50, 175), "orange": (245, 130, 20)}
SHAPES = ("circle", "square", "triangle", "diamond")
DEFAULT_N_IMAGES = 1740    # 1500 train + 80 per eval split: ~5.6k train / ~300 per eval sentences
EVAL_FRACTION = 0.046      # share of images in each eval split
GROUP_A = ("circle", "square")  # testA targets; testB targets the other shapes
_FORMAT = 1                # bump when the generator's output changes for the same parameters

_TEMPLATES = {
    "base": ["the {c} {s}", "{c} {s}", "the {s} that is {c}"],
    "colour": ["the {c} one", "the {c} shape"],
    "shape": ["the {s}", "the only {s}"],
    "big": ["the big {c} {s}", "the larger {c} {s}", "the bigger {c} {s}"],
    "small": ["the small {c} {s}", "the smaller {c} {s}", "the little {c} {s}"],
    "left": ["the left {c} {s}", "the {c} {s} on the left", "the leftmost {c} {s}"],
    "right": ["the right {c} {s}", "the {c} {s} on the right", "the rightmost {c} {s}"],
    "top": ["the top {c} {s}", "the {c} {s} at the top", "the upper {c} {s}"],
    "bottom": ["the bottom {c} {s}", "the {c} {s} at the bottom", "the lower {c} {s}"],
    "left of": ["the {c} {s} left of the {rc} {rs}", "the {c} {s} to the left of the {rc} {rs}"],
    "right of": ["the {c} {s} right of the {rc} {rs}", "the {c} {s} to the right of the {rc} {rs}"],
    "above": ["the {c} {s} above the {rc} {rs}", "the {c} {s} over the {rc} {rs}"],
    "below": ["the {c} {s} below the {rc} {rs}", "the {c} {s} under the {rc} {rs}"],
}
EXPRESSION_KINDS = tuple(_TEMPLATES)


def _template_pattern(template: str) -> re.Pattern:
    colours, shapes = "|".join(COLOURS), "|".join(SHAPES)
    fill = {"c": f"(?:{colours})", "s": f"(?:{shapes})", "rc": f"(?:{colours})", "rs": f"(?:{shapes})"}
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ...
    return re.compile("".join(re.escape(t) if i % 2 == 0 else fill[t] for i, t in enumerate(parts)) + r"\Z")


_KIND_PATTERNS = [(kind, _template_pattern(t)) for kind, ts in _TEMPLATES.items() for t in ts]


def expression_kind(sentence: str) -> str | None:
    """Which description kind of the generator wrote `sentence` (one of EXPRESSION_KINDS: "base",
    "colour", "shape", "big", ..., "below"); None for a sentence no template of this generator
    writes (e.g. a real dataset's)."""
    text = " ".join(sentence.lower().split())
    for kind, pattern in _KIND_PATTERNS:
        if pattern.match(text):
            return kind
    return None


_SIZE_RATIO = 1.6   # "big"/"small": area at least this factor apart from every look-alike
_POS_MARGIN = 0.08  # "left"/"top": centre at least this fraction of the image apart


# ----------------------------------------------------------------------------- scenes
def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Analytic outline of a shape of half-size r centred at (cx, cy), in pixels."""
    if shape == "circle":
        return [(cx + r * math.cos(2 * math.pi * k / 32), cy + r * math.sin(2 * math.pi * k / 32))
                for k in range(32)]
    if shape == "square":
        q = 0.85 * r
        return [(cx - q, cy - q), (cx + q, cy - q), (cx + q, cy + q), (cx - q, cy + q)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)]
    raise ValueError(shape)


def _place(rng: np.random.Generator, specs: list[tuple[str, str, float]], w: int, h: int):
    """Place objects (colour, shape, diameter fraction of the short side) without overlap."""
    objs = []
    short = min(w, h)
    for colour, shape, frac in specs:
        r = frac * short / 2
        for _ in range(60):
            cx, cy = rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, h - r - 1)
            poly = [(round(x, 2), round(y, 2)) for x, y in _polygon(shape, cx, cy, r)]
            xs, ys = [p[0] for p in poly], [p[1] for p in poly]
            box = (min(xs), min(ys), max(xs), max(ys))
            if all(box[2] + 3 < o["box"][0] or o["box"][2] + 3 < box[0] or
                   box[3] + 3 < o["box"][1] or o["box"][3] + 3 < box[1] for o in objs):
                area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
                objs.append({"colour": colour, "shape": shape, "poly": poly, "box": box,
                             "cx": (box[0] + box[2]) / 2, "cy": (box[1] + box[3]) / 2, "area": area})
                break
    return objs


def _scene_specs(rng: np.random.Generator, group: tuple[str, ...] | None):
    n = int(rng.integers(2, 6))
    colours, shapes = list(COLOURS), list(SHAPES)
    specs = [(colours[rng.integers(len(colours))], shapes[rng.integers(len(shapes))])
             for _ in range(n)]
    if group is not None:  # eval split A/B: at least one possible target of the group
        specs[0] = (specs[0][0], group[rng.integers(len(group))])
    if rng.random() < 0.45:  # a look-alike pair (or triple): needs size / position / relation words
        for k in range(1, min(n, 2 + int(rng.random() < 0.2))):
            specs[k] = specs[0]
    fracs = rng.uniform(0.15, 0.45, size=n)
    if n >= 4:
        fracs = np.minimum(fracs, 0.35)  # crowded images: smaller objects so they fit
    return [(c, s, float(f)) for (c, s), f in zip(specs, fracs)]


# ----------------------------------------------------------------------------- expressions
def _relation(a: dict, b: dict, word: str) -> bool:
    if word == "left of":
        return a["box"][2] < b["box"][0]
    if word == "right of":
        return a["box"][0] > b["box"][2]
    if word == "above":
        return a["box"][3] < b["box"][1]
    return a["box"][1] > b["box"][3]  # below


def _matching(objs: list[dict], desc: dict, w: int, h: int) -> list[int]:
    """Indices of the objects a description fits (the generator's own semantics)."""
    cand = [i for i, o in enumerate(objs)
            if desc.get("colour") in (None, o["colour"]) and desc.get("shape") in (None, o["shape"])]
    kind = desc.get("kind", "base")
    if kind in ("big", "small"):
        sign = 1 if kind == "big" else -1
        return [i for i in cand if all(
            (objs[i]["area"] / objs[j]["area"]) ** sign >= _SIZE_RATIO for j in cand if j != i)]
    if kind in ("left", "right", "top", "bottom"):
        key, span = ("cx", w) if kind in ("left", "right") else ("cy", h)
        sign = 1 if kind in ("left", "top") else -1
        return [i for i in cand if all(
            sign * (objs[j][key] - objs[i][key]) >= _POS_MARGIN * span for j in cand if j != i)]
    if kind in ("left of", "right of", "above", "below"):
        ref = objs[desc["ref"]]
        return [i for i in cand if i != desc["ref"] and _relation(objs[i], ref, kind)]
    return cand


def _descriptions(objs: list[dict], t: int, w: int, h: int) -> list[dict]:
    """Every unique description of object t, simplest kinds first (the empty list: none)."""
    o = objs[t]
    full = {"colour": o["colour"], "shape": o["shape"]}
    if _matching(objs, full, w, h) == [t]:
        out = [dict(full, kind="base")]
        if _matching(objs, {"colour": o["colour"]}, w, h) == [t]:
            out.append({"colour": o["colour"], "kind": "colour"})
        if _matching(objs, {"shape": o["shape"]}, w, h) == [t]:
            out.append({"shape": o["shape"], "kind": "shape"})
        return out
    out = [dict(full, kind=k) for k in ("left", "right", "top", "bottom", "big", "small")
           if _matching(objs, dict(full, kind=k), w, h) == [t]]
    for j, r in enumerate(objs):  # relation to an object named uniquely by colour + shape
        if j == t or _matching(objs, {"colour": r["colour"], "shape": r["shape"]}, w, h) != [j]:
            continue
        out += [dict(full, kind=k, ref=j) for k in ("left of", "right of", "above", "below")
                if _matching(objs, dict(full, kind=k, ref=j), w, h) == [t]]
    return out


def _sentences(rng: np.random.Generator, objs: list[dict], descs: list[dict], n: int) -> list[str]:
    """n distinct sentences drawn from the unique descriptions (spatial ones preferred)."""
    if descs[0]["kind"] != "base":  # look-alikes: favour left/right, the words a flip swaps
        order = sorted(descs, key=lambda d: (d["kind"] not in ("left", "right"), rng.random()))
    else:
        order = [descs[0]] + [descs[k] for k in rng.permutation(len(descs) - 1) + 1]
    options = []
    for d in order:
        ref = objs[d["ref"]] if "ref" in d else None
        for k in rng.permutation(len(_TEMPLATES[d["kind"]])):
            options.append(_TEMPLATES[d["kind"]][k].format(
                c=d.get("colour", ""), s=d.get("shape", ""),
                rc=ref["colour"] if ref else "", rs=ref["shape"] if ref else ""))
    seen, out = set(), []
    # take from the first (preferred) description first, then the others, without repeats
    for s in options:
        if s not in seen:
            seen.add(s)
            out.append(s)
        if len(out) == n:
            break
    return out


# ----------------------------------------------------------------------------- writing
def _uncompressed_rle(m: np.ndarray) -> dict:
    flat = m.flatten(order="F")  # COCO RLE runs over columns, starting with a run of zeros
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts}


def _dump_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _params(dataset, n_images, seed, min_size, max_size, rle) -> dict:
    return {"format": _FORMAT, "dataset": dataset, "n_images": n_images, "seed": seed,
            "min_size": min_size, "max_size": max_size, "rle": rle}


def generate_shapes(data_root: str | Path, *, dataset: str = "shapes",
                    n_images: int = DEFAULT_N_IMAGES, seed: int = 0, min_size: int = 160,
                    max_size: int = 256, rle: bool | None = None, overwrite: bool = False) -> Path:
    """Write the synthetic referring dataset under `data_root`; returns `<data_root>/<dataset>`.

    Args:
        dataset: "shapes" (refcoco layout) or "shapes_rle" (refclef layout, split_by berkeley).
        n_images: total images; each eval split gets ~4.6% of them (at least 1), train the rest.
        seed: everything (scenes, words, ids) is a function of the parameters: same bytes out.
        min_size, max_size: range of the images' long side in pixels (aspect 0.6..1.67).
        rle: store RLE segmentations (default: True for shapes_rle, polygons for shapes).
        overwrite: replace an existing dataset (else FileExistsError).
    """
    if dataset not in ("shapes", "shapes_rle"):
        raise ValueError(f"unknown synthetic dataset {dataset!r}; allowed: shapes, shapes_rle")
    if n_images < 3 or not 32 <= min_size <= max_size:
        raise ValueError(f"need n_images >= 3 and 32 <= min_size <= max_size, got {n_images}, "
                         f"{min_size}, {max_size}")
    rle = (dataset == "shapes_rle") if rle is None else bool(rle)
    t0 = time.time()
    root = Path(data_root)
    folder = root / dataset
    split_by = "unc" if dataset == "shapes" else "berkeley"
    refs_path, inst_path = folder / f"refs({split_by}).p", folder / "instances.json"
    if (refs_path.exists() or inst_path.exists()) and not overwrite:
        raise FileExistsError(f"{folder} already holds a dataset: pass overwrite=True or use "
                              "ensure_shapes()")
    image_dir = root / IMAGE_DIRS[dataset]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generator.json").unlink(missing_ok=True)  # marks a complete dataset; written last
    if inst_path.exists():  # drop the old synthetic images, so none outlive their annotations
        for im in json.loads(inst_path.read_text()).get("images", []):
            (image_dir / im["file_name"]).unlink(missing_ok=True)

    eval_splits = ("val", "testA", "testB") if dataset == "shapes" else ("val", "test")
    n_eval = max(1, round(n_images * EVAL_FRACTION))
    splits = ["train"] * (n_images - n_eval * len(eval_splits))
    for s in eval_splits:
        splits += [s] * n_eval
    rng = np.random.default_rng(seed)
    images, anns, refs = [], [], []
    next_sent = 0
    for idx, split in enumerate(splits):
        group = {"testA": GROUP_A, "testB": tuple(s for s in SHAPES if s not in GROUP_A)}.get(split)
        while True:  # resample until the scene has a describable target (rarely more than once)
            long = int(rng.integers(min_size, max_size + 1))
            aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1 / 0.6))))
            w, h = (long, max(32, round(long / aspect))) if aspect >= 1 else (max(32, round(long * aspect)), long)
            objs = _place(rng, _scene_specs(rng, group), w, h)
            cands = [t for t in range(len(objs)) if group is None or objs[t]["shape"] in group]
            cands = [t for t in cands if _descriptions(objs, t, w, h)]
            if len(objs) >= 2 and cands:
                break
        image_id = (900_000_000 if dataset == "shapes" else 900_000) + idx + 1
        file_name = (f"COCO_train2014_{image_id:012d}.jpg" if dataset == "shapes"
                     else f"shapes_{idx // 1000:02d}/images/{image_id}.jpg")
        # look-alike targets first (they carry the spatial words), then the others
        lookalike = [t for t in cands if _descriptions(objs, t, w, h)[0]["kind"] != "base"]
        order = [int(t) for t in rng.permutation(cands)]
        if lookalike and rng.random() < 0.7:
            order.remove(lookalike[0])
            order.insert(0, lookalike[0])
        targets = order[:int(rng.integers(1, 3))]

        bg = np.array([rng.integers(195, 245)] * 3) + rng.integers(-12, 13, size=3)
        pixels = np.clip(bg[None, None, :] + rng.normal(0, 5, size=(h, w, 1)), 0, 255).astype(np.uint8)
        img = Image.fromarray(pixels)
        draw = ImageDraw.Draw(img)
        for k, o in enumerate(objs):
            fill = tuple(int(v) for v in np.clip(np.array(COLOURS[o["colour"]]) +
                                                 rng.integers(-15, 16, size=3), 0, 255))
            draw.polygon(o["poly"], fill=fill)
            ann_id = image_id * 10 + k
            x0, y0, x1, y1 = o["box"]
            seg = [[v for p in o["poly"] for v in p]]
            if rle:
                r = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
                seg = (_uncompressed_rle(mask_utils.decode(r)) if ann_id % 2 else
                       {"size": [h, w], "counts": r["counts"].decode("ascii")})
            anns.append({"id": ann_id, "image_id": image_id, "category_id": SHAPES.index(o["shape"]) + 1,
                         "segmentation": seg, "area": round(o["area"], 2), "iscrowd": 0,
                         "colour": o["colour"],  # extra key (COCO allows them): for tests/analysis
                         "bbox": [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)]})
        for t in targets:
            descs = _descriptions(objs, t, w, h)
            sents = _sentences(rng, objs, descs, int(rng.integers(2, 4)))
            ref_id = len(refs)
            sentences = []
            for s in sents:
                raw = s[0].upper() + s[1:] if rng.random() < 0.3 else s
                sentences.append({"tokens": s.split(), "raw": raw, "sent": s, "sent_id": next_sent})
                next_sent += 1
            refs.append({"ref_id": ref_id, "ann_id": image_id * 10 + t, "image_id": image_id,
                         "split": split, "category_id": SHAPES.index(objs[t]["shape"]) + 1,
                         "sent_ids": [s["sent_id"] for s in sentences],
                         "file_name": f"{Path(file_name).stem}_{t}.jpg", "sentences": sentences})
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        path = image_dir / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=92)

    instances = {"info": {"description": f"vglaw synthetic {dataset}", "seed": seed},
                 "images": images, "annotations": anns,
                 "categories": [{"id": i + 1, "name": s, "supercategory": "shape"}
                                for i, s in enumerate(SHAPES)]}
    _dump_atomic(inst_path, json.dumps(instances, sort_keys=True).encode())
    _dump_atomic(refs_path, pickle.dumps(refs, protocol=2))
    counts = {s: {"images": splits.count(s), "refs": sum(r["split"] == s for r in refs),
                  "sentences": sum(len(r["sentences"]) for r in refs if r["split"] == s)}
              for s in ("train",) + eval_splits}
    _dump_atomic(folder / "generator.json", json.dumps(
        {"params": _params(dataset, n_images, seed, min_size, max_size, rle), "counts": counts},
        indent=1).encode())
    log.info("generated %s under %s in %.1f s: %s", dataset, root, time.time() - t0, counts)
    return folder


def ensure_shapes(data_root: str | Path, *, dataset: str = "shapes",
                  n_images: int = DEFAULT_N_IMAGES, seed: int = 0, min_size: int = 160,
                  max_size: int = 256, rle: bool | None = None) -> Path:
    """`generate_shapes` unless the same parameters already produced the dataset there."""
    rle_ = (dataset == "shapes_rle") if rle is None else bool(rle)
    marker = Path(data_root) / dataset / "generator.json"
    try:
        if json.loads(marker.read_text())["params"] == _params(dataset, n_images, seed, min_size,
                                                              max_size, rle_):
            return marker.parent
        log.warning("%s was generated with other parameters: regenerating", marker.parent)
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        pass
    return generate_shapes(data_root, dataset=dataset, n_images=n_images, seed=seed,
                           min_size=min_size, max_size=max_size, rle=rle, overwrite=True)
