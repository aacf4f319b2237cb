"""Small file helpers shared by evaluation and training."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["write_json_atomic", "read_json", "to_jsonable", "file_sha256", "mask_to_rle", "rle_to_mask"]


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_jsonable(obj):
    """NumPy scalars/arrays, Paths and tuples -> plain JSON types (recursively)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return obj.decode("ascii")
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path, obj, *, indent: int | None = 2) -> Path:
    """Write `obj` as JSON so readers never see a half-written file.

    The text goes to a temporary file in the same folder, is fsync'ed, then `os.replace`d onto
    `path` (atomic on POSIX and Windows). Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(to_jsonable(obj), f, indent=indent, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_json(path):
    """Read a JSON file with a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def mask_to_rle(mask) -> dict:
    """Binary (H, W) mask -> COCO RLE {"size": [H, W], "counts": str} (JSON-ready)."""
    from pycocotools import mask as mask_utils

    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    rle = mask_utils.encode(m)
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO RLE (counts str, bytes or an uncompressed list) -> (H, W) uint8 {0, 1}.

    The project's one RLE decoder (`vglaw.data.refer.decode_rle` is this function)."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    else:
        rle = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    m = mask_utils.decode(rle)
    if m.ndim == 3:  # defensive: a list of RLEs decodes to (H, W, N); union like the refer helper
        m = m.sum(axis=2)
    return (m > 0).astype(np.uint8)
