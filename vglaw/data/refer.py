"""Reading the refer layout: `<data_root>/<dataset>/refs(<splitBy>).p` + `instances.json` + images.

Follows lichengunc/refer (`refer.py`): one sample per sentence, the refer API's split semantics
(`testA` also matches `testAB`, `test` matches every split containing "test"), masks from
pycocotools binarised (the refer helper sums overlapping parts). DESIGN §4.1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pycocotools import mask as mask_utils

from vglaw.utils.pickle_safe import safe_load
from vglaw.utils.io import rle_to_mask

__all__ = ["DATASETS", "DEFAULT_SPLIT_BY", "SPLIT_BYS", "SPLITS", "IMAGE_DIRS", "DataNotFoundError", "check_names", "allowed_splits",
           "split_matches", "dataset_paths", "read_refer", "to_rle", "decode_rle", "ReferSample",
           "README_HINT"]

README_HINT = "see data/README.md for where each dataset comes from and where to put it"

# dataset -> split_by -> the splits the refs file holds (DESIGN §4.1 table).
DATASETS: dict[str, dict[str, tuple[str, ...]]] = {
    "refcoco": {"unc": ("train", "val", "testA", "testB"), "google": ("train", "val", "test")},
    "refcoco+": {"unc": ("train", "val", "testA", "testB")},
    "refcocog": {"umd": ("train", "val", "test"), "google": ("train", "val")},
    "refclef": {"berkeley": ("train", "val", "test"),
                "unc": ("train", "val", "testA", "testB", "testC")},
    "shapes": {"unc": ("train", "val", "testA", "testB")},
    "shapes_rle": {"berkeley": ("train", "val", "test")},
}
# Every split_by and split name of the table (CLI choices); which combinations exist: `check_names`.
SPLIT_BYS = tuple(sorted({sb for by in DATASETS.values() for sb in by}))
SPLITS = tuple(dict.fromkeys(s for by in DATASETS.values() for splits in by.values() for s in splits))
# The split_by a dataset uses when none is given (the one its papers report).
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd", "refclef": "berkeley",
                    "shapes": "unc", "shapes_rle": "berkeley"}
# Image folder under data_root; instances.json `file_name` is relative to it.
IMAGE_DIRS = {
    "refcoco": "images/mscoco/images/train2014", "refcoco+": "images/mscoco/images/train2014",
    "refcocog": "images/mscoco/images/train2014", "shapes": "images/mscoco/images/train2014",
    "refclef": "images/saiapr_tc-12", "shapes_rle": "images/saiapr_tc-12",
}


class DataNotFoundError(FileNotFoundError):
    """A dataset file or folder is missing; the message names it and points to data/README.md."""

    def __init__(self, what: str, path: Path | str):
        self.message = f"{what} not found: {path} ({README_HINT})"
        super().__init__(self.message)
        self.path = str(path)

    def __str__(self) -> str:
        return self.message


def allowed_splits(dataset: str, split_by: str) -> tuple[str, ...]:
    """The stored splits plus the refer API's aggregate `test` where testA/testB... exist."""
    stored = DATASETS[dataset][split_by]
    if "test" not in stored and any(s.startswith("test") for s in stored):
        return stored + ("test",)
    return stored


def check_names(dataset: str, split_by: str, split: str | None = None) -> None:
    """Raise ValueError naming the allowed values for an unknown dataset / split_by / split."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    if split_by not in DATASETS[dataset]:
        raise ValueError(f"unknown split_by {split_by!r} for {dataset}; allowed: "
                         f"{', '.join(DATASETS[dataset])}")
    if split is not None and split not in allowed_splits(dataset, split_by):
        raise ValueError(f"unknown split {split!r} for {dataset}({split_by}); allowed: "
                         f"{', '.join(allowed_splits(dataset, split_by))}")


def split_matches(query: str, ref_split: str) -> bool:
    """The refer API's rule for whether a ref stored under `ref_split` belongs to split `query`."""
    if query in ("testA", "testB", "testC"):
        return ref_split.startswith("test") and query[-1] in ref_split[4:]  # testA matches testAB
    if query == "test":
        return "test" in ref_split
    return ref_split == query


def dataset_paths(data_root: str | Path, dataset: str, split_by: str) -> dict[str, Path]:
    """The refs file, instances file and image folder, checked to exist (DataNotFoundError)."""
    check_names(dataset, split_by)
    root = Path(data_root)
    if not root.is_dir():
        raise DataNotFoundError("data root", root)
    folder = root / dataset
    if not folder.is_dir():
        raise DataNotFoundError(f"dataset folder of {dataset}", folder)
    paths = {"refs": folder / f"refs({split_by}).p", "instances": folder / "instances.json",
             "images": root / IMAGE_DIRS[dataset]}
    for key, what in (("refs", "refs file"), ("instances", "instances file"), ("images", "image folder")):
        exists = paths[key].is_dir() if key == "images" else paths[key].is_file()
        if not exists:
            raise DataNotFoundError(f"{what} of {dataset}({split_by})", paths[key])
    return paths


def to_rle(segmentation, height: int, width: int) -> dict:
    """Any COCO segmentation (polygon list, compressed or uncompressed RLE) -> one compressed RLE.

    Several polygon parts are merged as a union, which is the binarised sum the refer helper makes.
    Returns {"size": [h, w], "counts": str} (JSON-friendly).
    """
    if isinstance(segmentation, list):  # polygon(s): [[x0, y0, x1, y1, ...], ...]
        parts = [p for p in segmentation if len(p) >= 6]
        if not parts:
            raise ValueError("polygon segmentation has no part with at least 3 points")
        rle = mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)  # uncompressed RLE
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
        counts = segmentation["counts"]
        rle = {"size": list(segmentation["size"]),
               "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


# Compressed RLE -> (H, W) uint8 in {0, 1}: the one decoder, vglaw.utils.io.rle_to_mask.
decode_rle = rle_to_mask


@dataclass
class ReferSample:
    """One sentence. bbox: (x, y, w, h) in original image pixels."""
    sent_id: int
    ref_id: int
    ann_id: int
    image_id: int
    split: str          # the ref's stored split (e.g. "testAB"); queries use `split_matches`
    phrase: str


def read_refer(data_root: str | Path, dataset: str, split_by: str, *, check_images: bool = True):
    """Read the refs + instances of one dataset.

    Returns (samples: list[ReferSample], images: {image_id: {file_name, height, width}},
    anns: {ann_id: {bbox, rle, category_id}}, stats: dict of skipped counts, paths).
    Annotations with a zero-width or zero-height box are skipped (their sentences too) and counted.
    """
    paths = dataset_paths(data_root, dataset, split_by)
    refs = safe_load(paths["refs"])
    if not isinstance(refs, list):
        raise ValueError(f"{paths['refs']}: expected a list of refs, got {type(refs).__name__}")
    try:
        instances = json.loads(paths["instances"].read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{paths['instances']}: not valid JSON ({exc})") from exc
    images = {int(im["id"]): {"file_name": str(im["file_name"]), "height": int(im["height"]),
                              "width": int(im["width"])} for im in instances["images"]}
    raw_anns = {int(a["id"]): a for a in instances["annotations"]}

    stats = {"degenerate_box_anns": 0, "degenerate_box_sentences": 0, "missing_ann_refs": 0}
    anns: dict[int, dict] = {}
    degenerate: set[int] = set()
    samples: list[ReferSample] = []
    for ref in refs:
        ann_id, image_id = int(ref["ann_id"]), int(ref["image_id"])
        sentences = ref["sentences"]
        if ann_id not in raw_anns or image_id not in images:
            stats["missing_ann_refs"] += 1
            continue
        if ann_id in degenerate:
            stats["degenerate_box_sentences"] += len(sentences)
            continue
        if ann_id not in anns:
            a = raw_anns[ann_id]
            x, y, w, h = (float(v) for v in a["bbox"])
            if w <= 0 or h <= 0:
                degenerate.add(ann_id)
                stats["degenerate_box_anns"] += 1
                stats["degenerate_box_sentences"] += len(sentences)
                continue
            im = images[image_id]
            anns[ann_id] = {"bbox": [x, y, w, h], "category_id": int(a.get("category_id", 0)),
                            "rle": to_rle(a["segmentation"], im["height"], im["width"])}
        for s in sentences:
            samples.append(ReferSample(sent_id=int(s["sent_id"]), ref_id=int(ref["ref_id"]),
                                       ann_id=ann_id, image_id=image_id, split=str(ref["split"]),
                                       phrase=str(s["sent"])))
    used = {s.image_id for s in samples}
    images = {k: v for k, v in images.items() if k in used}
    if check_images:
        missing = [paths["images"] / images[i]["file_name"] for i in sorted(used)
                   if not (paths["images"] / images[i]["file_name"]).is_file()]
        if missing:
            names = ", ".join(p.name for p in missing[:10]) + (f", ... {len(missing) - 10} more"
                                                              if len(missing) > 10 else "")
            raise DataNotFoundError(f"{len(missing)} of {len(used)} images of {dataset} ({names})",
                                    paths["images"])
    return samples, images, anns, stats, paths
