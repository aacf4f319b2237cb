"""Checkpoints: atomic save, metadata, strict load (DESIGN §5).

Files are MindSpore's own `.ckpt` format (`mindspore.save_checkpoint`), so `mindspore.load_checkpoint`
reads them too. Metadata (the model config, step, metrics, ...) travels as one JSON string under the
reserved name `__vglaw_meta__`, because `append_dict` holds only flat scalars and strings.

Saving is atomic: the file is written under a temporary name in the destination folder, flushed to
disk and renamed over `path` with `os.replace`, so a crash or kill mid-write leaves any previous
checkpoint at `path` intact (`mindspore.save_checkpoint` alone deletes the old file first).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vglaw.config import LOSS_WEIGHTS

__all__ = ["META_KEY", "CARRIED_PREFIX", "SOFT_CONFIG_FIELDS", "CheckpointError", "LoadReport", "save_checkpoint", "read_checkpoint", "save_model",
           "load_model", "load_ms_checkpoint", "available_memory"]

log = logging.getLogger("vglaw")

META_KEY = "__vglaw_meta__"
# Tensors a checkpoint carries for another codebase but that are no model parameter (the authors'
# unused BERT pooler, kept so `vglaw.models.convert` round trips are the identity): never loaded, never unexpected.
CARRIED_PREFIX = "__carried__."
# Config fields that change training, not the parameters or the forward pass in eval: a
# checkpoint that differs only in these loads (with a warning), e.g. fine-tuning with other loss weights.
SOFT_CONFIG_FIELDS = frozenset({*LOSS_WEIGHTS, "use_mask", "focal_alpha", "focal_gamma", "drop_path",
                                "hidden_dropout"})


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not fit the model."""


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)      # model parameters absent from the file
    unexpected: list[str] = field(default_factory=list)   # file entries the model does not have
    mismatched: list[str] = field(default_factory=list)   # "name: file (..) vs model (..)" (always an error)
    meta: dict = field(default_factory=dict)              # the checkpoint's metadata

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "asnumpy"):  # mindspore Tensor / Parameter
        return value.asnumpy()
    return np.asarray(value)


def _tmp_name(path: Path) -> Path:
    # Ends in ".ckpt" so MindSpore does not append a suffix; matches .gitignore's `*.ckpt.tmp*`.
    return path.with_name(f"{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}.ckpt")


def _write_ckpt(tmp: Path, entries: list[dict], append: dict) -> None:
    """The actual writer (a seam for the crash test)."""
    import mindspore as ms
    ms.save_checkpoint(entries, str(tmp), append_dict=append)


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, params: dict, meta: dict | None = None, *, store_meta: bool = True) -> Path:
    """Write `params` ({name: Tensor | Parameter | ndarray}) and JSON-able `meta` to `path`, atomically.

    store_meta=False writes the tensors only (a file for another codebase, e.g. `vglaw.models.convert`)."""
    from mindspore import Tensor
    path = Path(path)
    if META_KEY in params:
        raise ValueError(f"parameter name {META_KEY!r} is reserved for checkpoint metadata")
    try:
        meta_json = json.dumps(meta or {}, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"name": name, "data": Tensor(np.ascontiguousarray(_to_numpy(v)))} for name, v in params.items()]
    tmp = _tmp_name(path)
    # MindSpore writes `<stem>.tmp` first and renames it to `tmp`: clean both on failure.
    ms_tmp = tmp.with_suffix(".tmp")
    try:
        _write_ckpt(tmp, entries, {META_KEY: meta_json} if store_meta else None)
        os.chmod(tmp, 0o644)  # MindSpore leaves its files owner-read-only
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent, directory=True)
    except BaseException:
        for leftover in (tmp, ms_tmp):
            if leftover.exists():
                leftover.unlink()
        raise
    return path


def available_memory() -> int | None:
    """Bytes the kernel can hand out now (`MemAvailable`: free memory plus reclaimable page cache), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class _CountPageCache:
    """While active, MindSpore's pre-read memory check counts reclaimable page cache as available.

    MindSpore 2.10's `load_checkpoint` refuses a file larger than `os.sysconf("SC_AVPHYS_PAGES")`,
    which is MemFree: on a machine whose page cache is full (after a test suite or a data pass) that
    can be a few hundred MB while 20 GB are available, and a 620 MB paper checkpoint is refused as
    "exceeds current available memory". The check is a module function of
    `mindspore.train.serialization`; where it exists, it is replaced for the duration of one read by
    the larger of MemFree and MemAvailable. Versions without it are left alone.
    """

    def __enter__(self):
        from mindspore.train import serialization
        self._module = serialization
        self._original = getattr(serialization, "_get_available_memory", None)
        kernel = available_memory()
        if self._original is not None and kernel is not None:
            original = self._original

            def _free_or_reclaimable():
                free = original()
                return kernel if free is None else max(free, kernel)

            serialization._get_available_memory = _free_or_reclaimable
        return self

    def __exit__(self, *exc):
        if self._original is not None:
            self._module._get_available_memory = self._original
        return False


def _memory_refusal(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "available memory" in str(exc) or "not enough memory" in str(exc)


def load_ms_checkpoint(path: str | Path) -> dict:
    """`mindspore.load_checkpoint(path)` that counts the page cache as available memory (see
    `_CountPageCache`). A real shortage raises MemoryError naming the file, its size and what is available."""
    import mindspore as ms
    path = Path(path)
    try:
        with _CountPageCache():
            return ms.load_checkpoint(str(path))
    except Exception as exc:
        if _memory_refusal(exc):
            size = path.stat().st_size if path.is_file() else None
            avail = available_memory()
            raise MemoryError(f"not enough memory to read checkpoint {path} ({size} bytes; MemAvailable "
                              f"{avail} bytes): free memory or read it on a larger machine") from exc
        raise


def read_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint -> ({name: ndarray}, meta dict). Raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        raw = load_ms_checkpoint(path)
    except MemoryError:
        raise
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError for corrupt or truncated files
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read "
                              f"({type(exc).__name__}: {exc})") from exc
    meta_raw = raw.pop(META_KEY, None)
    try:
        meta = json.loads(meta_raw) if isinstance(meta_raw, str) else {}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path}: metadata {META_KEY!r} is not valid JSON ({exc})") from exc
    arrays = {name: (v if isinstance(v, str) else v.asnumpy()) for name, v in raw.items()}
    return arrays, meta


def _config_dict(model) -> dict | None:
    cfg = getattr(model, "config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        return None
    return json.loads(json.dumps(dataclasses.asdict(cfg)))  # tuples -> lists, as stored


def save_model(model, path: str | Path, meta: dict | None = None) -> Path:
    """Save every parameter of `model` with `meta` plus the model config under meta["config"]."""
    meta = dict(meta or {})
    cfg = _config_dict(model)
    if cfg is not None:
        meta["config"] = cfg
    params = {name: p for name, p in model.parameters_and_names()}
    return save_checkpoint(path, params, meta)


def _with_defaults(stored: dict) -> dict:
    """A stored config with ModelConfig's defaults for fields it lacks: a checkpoint saved before a
    field existed (e.g. `law_ln_eps`, `pos_resize`, issue 12) computed what that default computes."""
    from vglaw.config import ModelConfig
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    return {**json.loads(json.dumps(defaults)), **stored}


def _config_diff(expected: dict, found: dict, keys) -> list[str]:
    return [f"{k}: expected {expected.get(k, '<absent>')!r}, found {found.get(k, '<absent>')!r}"
            for k in sorted(keys) if expected.get(k, "<absent>") != found.get(k, "<absent>")]


def load_model(model, path: str | Path, strict: bool = True, check_config: bool = True,
               strict_optimizer: bool = False) -> LoadReport:
    """Load a checkpoint into `model`; returns a LoadReport(missing, unexpected, mismatched, meta).

    Refuses (CheckpointError) a checkpoint whose stored config differs from `model.config` in any
    field but the training-only SOFT_CONFIG_FIELDS (check_config=False skips that), any shape mismatch, and, when strict, any missing or
    unexpected key. Nothing is written into the model unless the whole load is accepted. A training
    state (a run's last.ckpt) loads too: its optimiser entries are not counted as unexpected unless
    strict_optimizer.
    """
    from mindspore import Tensor
    path = Path(path)
    arrays, meta = read_checkpoint(path)
    ours = _config_dict(model)
    theirs = meta.get("config")
    if check_config and ours is not None:
        if theirs is None:
            log.warning("%s stores no model config; cannot check it was trained with this one", path)
        else:
            theirs = _with_defaults(theirs)
            keys = set(ours) | set(theirs)
            soft = _config_diff(ours, theirs, keys & SOFT_CONFIG_FIELDS)
            if soft:
                log.warning("%s was saved with other training settings: %s", path, "; ".join(soft))
            diff = _config_diff(ours, theirs, keys - SOFT_CONFIG_FIELDS)
            if diff:
                raise CheckpointError(
                    f"checkpoint {path} was saved from another model config (preset "
                    f"{theirs.get('preset')!r}; this model is preset {ours.get('preset')!r}):\n  "
                    + "\n  ".join(diff))
    params = {name: p for name, p in model.parameters_and_names()}
    arrays = {name: a for name, a in arrays.items() if not name.startswith(CARRIED_PREFIX)}
    report = LoadReport(meta=meta)
    report.missing = sorted(set(params) - set(arrays))
    report.unexpected = sorted(set(arrays) - set(params))
    if str(meta.get("kind", "")).startswith("vglaw-train-state") and not strict_optimizer:
        # A run's last.ckpt also holds optimiser moments and the step: not model weights.
        report.unexpected = []
    for name in sorted(set(params) & set(arrays)):
        if tuple(arrays[name].shape) != tuple(params[name].shape):
            report.mismatched.append(f"{name}: file {tuple(arrays[name].shape)} vs model {tuple(params[name].shape)}")
    if report.mismatched:
        raise CheckpointError(f"checkpoint {path}: shape mismatch for " + "; ".join(report.mismatched))
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f"checkpoint {path} does not match the model (strict load): "
                              f"missing {report.missing}, unexpected {report.unexpected}")
    for name in sorted(set(params) & set(arrays)):
        p = params[name]
        p.set_data(Tensor(arrays[name], dtype=p.dtype))
    if report.missing or report.unexpected:
        log.warning("%s: missing %s, unexpected %s", path, report.missing, report.unexpected)
    return report
