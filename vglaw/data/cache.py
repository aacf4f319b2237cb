"""The preprocessed cache `<cache_dir>/<dataset>(<split_by>)/` and its reader `RefDataset`.

The cache holds every sentence of one refs file (`items.json`: columns of sent/ref/ann/image ids,
stored split and phrase; images' file names and sizes; one compressed COCO RLE per annotation,
decoded on access) and a `manifest.json` with counts per split, the SHA-256 of the annotation
files and the data `fingerprint`: a hash of those plus every image's path, size and mtime
(`image_stats.json` keeps the per-file record, so a change can be named). `verify_images` opens
every image of some splits, checks that it decodes with the size `instances.json` states, lists
every bad file at once, and records the scan in the manifest. A second `preprocess` with unchanged
sources reuses the cache; with changed sources it rebuilds (`on_change="rebuild"`) or refuses,
naming what changed (`on_change="refuse"`, what training uses: a changed image must go through
01_preprocess's check again). It is built in a temporary folder next to
the final one and renamed into place, so a failure never leaves a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vglaw.utils.io import file_sha256
from vglaw.data.refer import (DATASETS, README_HINT, check_names, dataset_paths, decode_rle,
                              read_refer, split_matches)

__all__ = ["CACHE_FORMAT", "preprocess", "cache_folder", "read_manifest", "RefDataset", "load_rgb",
           "open_rgb", "DataChangedError", "ImageCheckError", "image_stats", "describe_changes", "verify_images"]

log = logging.getLogger("vglaw")
CACHE_FORMAT = 1  # bump when the layout of items.json changes: old caches are then rebuilt


class DataChangedError(ValueError):
    """The dataset's files differ from those the cache (and the runs trained on it) were built from."""


class ImageCheckError(ValueError):
    """Some images are missing, do not decode, or differ in size from instances.json."""

    def __init__(self, message: str, bad: list[dict]):
        super().__init__(message)
        self.bad = bad


def image_stats(image_dir: Path, file_names) -> dict:
    """{file_name: [size, mtime_ns]} of every image (None when the file is missing)."""
    out = {}
    for name in sorted(set(file_names)):
        try:
            st = os.stat(Path(image_dir) / name)
            out[name] = [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            out[name] = None
    return out


def _fingerprint(sources: dict, stats: dict) -> str:
    h = hashlib.sha256(json.dumps([sources, stats], sort_keys=True).encode())
    return h.hexdigest()[:16]


def content_digest(sources: dict, image_dir: Path, file_names) -> str:
    """A hash of the annotation files' hashes and every image's bytes: the data's identity wherever
    it lies. `fingerprint` (sizes and mtimes, cheap to re-check) tells whether these files changed;
    this one whether two copies hold the same data (a regenerated synthetic set, a copy on another
    machine): what an archived run is matched on (`vglaw.workbook.runs.archived_run_differences`)."""
    h = hashlib.sha256(json.dumps(sources, sort_keys=True).encode())
    for name in sorted(set(file_names)):
        path = Path(image_dir) / name
        h.update(name.encode() + b"\0" + (file_sha256(path).encode() if path.is_file() else b"missing"))
    return h.hexdigest()[:16]


def describe_changes(old: dict, new: dict, limit: int = 5) -> str:
    """`N modified (a, b, ...); N missing (...); N new (...)` between two `image_stats` records."""
    groups = {"missing": [], "modified": [], "new": []}
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if b is None:
            groups["missing"].append(name)
        elif a is None:
            groups["new"].append(name)
        else:
            groups["modified"].append(f"{name} (size {a[0]} -> {b[0]})" if a[0] != b[0] else name)
    parts = []
    for kind, names in groups.items():
        if names:
            more = f", ... {len(names) - limit} more" if len(names) > limit else ""
            parts.append(f"{len(names)} {kind} image(s): {', '.join(names[:limit])}{more}")
    return "; ".join(parts)


def cache_folder(cache_dir: str | Path, dataset: str, split_by: str) -> Path:
    check_names(dataset, split_by)
    return Path(cache_dir) / f"{dataset}({split_by})"


def read_manifest(folder: str | Path) -> dict | None:
    try:
        return json.loads((Path(folder) / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def preprocess(data_root: str | Path, dataset: str, split_by: str, cache_dir: str | Path, *,
               force: bool = False, on_change: str = "rebuild", check_images: bool = True) -> Path:
    """Build (or reuse) the cache of `dataset(split_by)` read from `data_root`; returns its folder.

    Reused when its manifest records the same cache format, data root and fingerprint (annotation
    hashes, every image's size and mtime); `force=True` rebuilds. With changed sources it rebuilds,
    or with `on_change="refuse"` raises DataChangedError naming what changed. `check_images=False`
    skips the check that every image file exists (for a caller that runs `verify_images` next,
    which lists every bad file at once). Raises DataNotFoundError (a FileNotFoundError) for
    missing files, ValueError for unknown names.
    """
    if on_change not in ("rebuild", "refuse"):
        raise ValueError(f"on_change must be 'rebuild' or 'refuse', got {on_change!r}")
    final = cache_folder(cache_dir, dataset, split_by)
    paths = dataset_paths(data_root, dataset, split_by)
    sources = {p.name: file_sha256(p) for p in (paths["refs"], paths["instances"])}
    old = read_manifest(final)
    if (not force and old is not None and old.get("format") == CACHE_FORMAT
            and old.get("data_root") == str(Path(data_root).resolve())):
        what = ""
        if old.get("sources") != sources:
            what = "changed annotation file(s): " + ", ".join(
                k for k in sorted(set(sources) | set(old.get("sources", {})))
                if sources.get(k) != old.get("sources", {}).get(k))
        elif old.get("fingerprint") is None:  # a cache of an older version: nothing to compare, upgrade
            what, on_change = "no data fingerprint (a cache of an older version)", "rebuild"
        elif old.get("content") is None:  # before content digests (session 10): upgrade once
            what, on_change = "no content digest (a cache of an older version)", "rebuild"
        else:
            stored = _read_json(final / "image_stats.json") or {}
            now = image_stats(paths["images"], stored)
            if _fingerprint(sources, now) == old["fingerprint"]:
                log.info("reusing cache %s", final)
                return final
            what = describe_changes(stored, now) or "image records differ"
        if on_change == "refuse":
            raise DataChangedError(
                f"the data of {dataset}({split_by}) under {data_root} changed since the cache {final} was "
                f"built ({what}); run notebooks/01_preprocess (or vglaw.data.preprocess) again to "
                "rebuild and check it")
        log.warning("rebuilding cache %s: %s", final, what)

    t0 = time.time()
    samples, images, anns, stats, paths = read_refer(data_root, dataset, split_by, check_images=check_images)
    splits = {}
    for split in DATASETS[dataset][split_by]:
        chosen = [s for s in samples if split_matches(split, s.split)]
        splits[split] = {"refs": len({s.ref_id for s in chosen}), "sentences": len(chosen),
                         "images": len({s.image_id for s in chosen})}
    items = {
        "samples": {"sent_id": [s.sent_id for s in samples], "ref_id": [s.ref_id for s in samples],
                    "ann_id": [s.ann_id for s in samples], "image_id": [s.image_id for s in samples],
                    "split": [s.split for s in samples], "phrase": [s.phrase for s in samples]},
        "images": {str(k): v for k, v in images.items()},
        "anns": {str(k): v for k, v in anns.items()},
    }
    manifest = {"format": CACHE_FORMAT, "dataset": dataset, "split_by": split_by,
                "data_root": str(Path(data_root).resolve()),
                "image_dir": str(paths["images"].resolve()),
                "splits": splits, "skipped": stats, "sentences": len(samples),
                "images": len(images), "annotations": len(anns), "sources": sources}
    stats = image_stats(paths["images"], [im["file_name"] for im in images.values()])
    manifest["fingerprint"] = _fingerprint(sources, stats)
    manifest["content"] = content_digest(sources, paths["images"], stats)
    manifest["image_scan"] = None  # verify_images records its result here

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        _write_json(tmp / "items.json", items)
        _write_json(tmp / "image_stats.json", stats)
        _write_json(tmp / "manifest.json", manifest)  # the manifest last: it marks a whole cache
        if final.exists():  # swap: move the stale cache aside first, so the rename cannot fail on it
            stale = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, stale / "cache")
            os.replace(tmp, final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built cache %s: %d sentences in %.1f s", final, len(samples), time.time() - t0)
    return final


def _write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _check_image(path: Path, width: int, height: int) -> str | None:
    """What is wrong with one image file (None: it decodes with the stated size)."""
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as im:
            im.load()  # decodes every byte: a truncated file fails here
            size = im.size
    except (OSError, SyntaxError, ValueError) as exc:
        return f"does not decode ({' '.join(str(exc).split())})"
    if size != (width, height):
        return f"size {size[0]}x{size[1]}, instances.json says {width}x{height}"
    return None


def verify_images(folder: str | Path, splits=None, *, progress: bool = False) -> list[dict]:
    """Open every image of `splits` (default: all) of the cache `folder`; returns the bad ones.

    Records {splits, checked, bad, fingerprint} as the manifest's `image_scan`, then raises
    ImageCheckError listing **every** bad file (one row each: file, split(s), problem) if any.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"no preprocessed cache at {folder}")
    items = json.loads((folder / "items.json").read_text())
    splits = list(splits or manifest["splits"])
    image_dir = Path(manifest["image_dir"])
    where: dict[int, set] = {}
    for image_id, stored in zip(items["samples"]["image_id"], items["samples"]["split"]):
        for split in splits:
            if split_matches(split, stored):
                where.setdefault(int(image_id), set()).add(split)
    bad = []
    ids = sorted(where)
    if progress:
        from tqdm import tqdm
        ids = tqdm(ids, desc="checking images", leave=False)
    for image_id in ids:
        im = items["images"][str(image_id)]
        problem = _check_image(image_dir / im["file_name"], im["width"], im["height"])
        if problem:
            bad.append({"file": im["file_name"], "splits": ",".join(sorted(where[image_id])), "problem": problem})
    manifest["image_scan"] = {"splits": splits, "checked": len(where), "bad": bad,
                              "fingerprint": manifest.get("fingerprint"),
                              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = folder / "manifest.json.tmp"
    _write_json(tmp, manifest)
    os.replace(tmp, folder / "manifest.json")
    if bad:
        rows = "; ".join(f"{b['file']} [{b['splits']}]: {b['problem']}" for b in bad)
        raise ImageCheckError(f"{len(bad)} of {len(where)} images of {', '.join(splits)} under {image_dir} "
                              f"are bad: {rows}", bad)
    return bad


class RefDataset:
    """The sentences of one split of a preprocessed dataset.

    Args:
        cache_dir: the folder `preprocess` wrote into (holding `<dataset>(<split_by>)/`).
        dataset, split_by, split: see DATASETS; split follows the refer API (testA matches testAB).
        data_root: if given and the cache is absent or stale, `preprocess` builds it first.

    `ds[i]` is a dict: image_path (str), image_id, ref_id, sent_id (int), phrase (str),
    bbox (x, y, w, h) float in original pixels, mask (H, W) uint8 {0, 1} at original resolution.
    """

    def __init__(self, cache_dir: str | Path, dataset: str = "refcoco", split_by: str = "unc",
                 split: str = "val", *, data_root: str | Path | None = None):
        check_names(dataset, split_by, split)
        self.dataset, self.split_by, self.split = dataset, split_by, split
        folder = (preprocess(data_root, dataset, split_by, cache_dir) if data_root is not None
                  else cache_folder(cache_dir, dataset, split_by))
        manifest = read_manifest(folder)
        if manifest is None:
            raise FileNotFoundError(
                f"no preprocessed cache at {folder}: run vglaw.data.preprocess(data_root, "
                f"{dataset!r}, {split_by!r}, cache_dir) or notebooks/01_preprocess.ipynb first "
                f"({README_HINT})")
        if manifest.get("format") != CACHE_FORMAT:
            raise ValueError(f"{folder} was written by another cache format "
                             f"({manifest.get('format')} != {CACHE_FORMAT}): preprocess again")
        self.folder, self.manifest = folder, manifest
        self.image_dir = Path(manifest["image_dir"])
        items = json.loads((folder / "items.json").read_text())
        cols = items["samples"]
        keep = [i for i, s in enumerate(cols["split"]) if split_matches(split, s)]
        self.sent_ids = np.asarray(cols["sent_id"], dtype=np.int64)[keep]
        self.ref_ids = np.asarray(cols["ref_id"], dtype=np.int64)[keep]
        self.ann_ids = np.asarray(cols["ann_id"], dtype=np.int64)[keep]
        self.image_ids = np.asarray(cols["image_id"], dtype=np.int64)[keep]
        self.phrases = [cols["phrase"][i] for i in keep]
        self.images = {int(k): v for k, v in items["images"].items()}
        self.anns = {int(k): v for k, v in items["anns"].items()}

    def __len__(self) -> int:
        return len(self.sent_ids)

    def __repr__(self) -> str:
        return (f"RefDataset({self.dataset}({self.split_by}) {self.split}: {len(self)} sentences, "
                f"{len(set(self.image_ids.tolist()))} images)")

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} sentences")
        return i % n

    def image_path(self, i: int) -> Path:
        return self.image_dir / self.images[int(self.image_ids[self._index(i)])]["file_name"]

    def record(self, i: int) -> dict:
        """Everything about sample i except the decoded mask (rle: compressed COCO RLE)."""
        i = self._index(i)
        ann = self.anns[int(self.ann_ids[i])]
        image = self.images[int(self.image_ids[i])]
        return {"image_path": str(self.image_dir / image["file_name"]),
                "image_id": int(self.image_ids[i]), "ref_id": int(self.ref_ids[i]),
                "sent_id": int(self.sent_ids[i]), "phrase": self.phrases[i],
                "bbox": tuple(float(v) for v in ann["bbox"]), "rle": ann["rle"],
                "height": image["height"], "width": image["width"]}

    def __getitem__(self, i: int) -> dict:
        rec = self.record(i)
        rec["mask"] = decode_rle(rec.pop("rle"))
        del rec["height"], rec["width"]
        return rec

    def load_image(self, i: int) -> np.ndarray:
        """The image of sample i as (H, W, 3) uint8 RGB."""
        return load_rgb(self.image_path(i))

    def index_of(self, sent_id: int) -> int:
        """The index of the sentence `sent_id` in this split (KeyError if it is not in it)."""
        if not hasattr(self, "_index_of"):
            self._index_of = {int(s): i for i, s in enumerate(self.sent_ids)}
        return self._index_of[int(sent_id)]

    def refs_by_image(self) -> dict[int, dict[int, int]]:
        """{image_id: {ref_id: index of the ref's first sentence}}, in dataset order."""
        out: dict[int, dict[int, int]] = {}
        for i, (image_id, ref_id) in enumerate(zip(self.image_ids.tolist(), self.ref_ids.tolist())):
            out.setdefault(image_id, {}).setdefault(ref_id, i)
        return out


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; errors name the file."""
    return np.asarray(open_rgb(path))


def open_rgb(path: str | Path) -> Image.Image:
    """Read an image file as a decoded RGB PIL image (what `load_rgb` returns, before the copy
    into NumPy); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path} ({README_HINT})")
    try:
        with Image.open(path) as im:
            if im.mode == "RGB":
                im.load()  # decodes every byte; the image outlives the closed file
                return im
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise OSError(f"unreadable image {path}: {exc}") from exc
