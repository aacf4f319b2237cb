"""Pretrained weights: a Hugging Face BERT folder and detectron2's ViTDet `.pkl` (DESIGN §3.1-3.2).

Both loaders are torch-free: safetensors' NumPy API for BERT, the restricted unpickler for the
detectron2 pickle. They check every name and shape before touching the model, so a failed load
leaves the model as it was, and they return a `WeightsReport` saying what was loaded, what was
adapted (rel-pos crop, pos-embed resize) and what in the file was ignored.

The resampling (rel-pos crop/resize, pos-embed resize) is `vglaw.models.resize`, plain NumPy
matching torch's `F.interpolate(..., align_corners=False)`; `WeightsError` is defined there too.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vglaw.models.resize import WeightsError, crop_or_resize_rel_pos, resize_abs_pos

__all__ = ["WeightsReport", "WeightsError", "load_text_encoder", "load_vitdet"]

log = logging.getLogger("vglaw")

DETECTRON2_PREFIX = "backbone.net."


@dataclass
class WeightsReport:
    source: str
    loaded: list[str] = field(default_factory=list)     # our parameter names that received values
    adapted: list[str] = field(default_factory=list)    # "name: (from) -> (to) how" for resized ones
    ignored: list[str] = field(default_factory=list)    # names in the file that were not used

    def __str__(self) -> str:
        return (f"{self.source}: loaded {len(self.loaded)} parameters, adapted {len(self.adapted)}, "
                f"ignored {len(self.ignored)} entries of the file")


def _named_params(cell) -> dict:
    return {name: p for name, p in cell.parameters_and_names()}


def _assign(params: dict, values: dict[str, np.ndarray]) -> None:
    """Write every value (all were checked before: nothing is written if anything is wrong)."""
    from mindspore import Tensor
    for name, arr in values.items():
        p = params[name]
        p.set_data(Tensor(np.ascontiguousarray(arr), dtype=p.dtype))


# --------------------------------------------------------------------------- BERT

def _text_encoder_of(obj):
    enc = getattr(obj, "text_encoder", obj)
    if not hasattr(enc, "num_layers") or not hasattr(enc, "embeddings"):
        raise TypeError(f"expected a VGLAW model or a vglaw.models.bert.BertEncoder, got {type(obj).__name__}")
    return enc


def load_text_encoder(model_or_bert, hf_dir: str | Path | None = None) -> WeightsReport:
    """Load a Hugging Face BERT folder (`model.safetensors` + `config.json`) into the text encoder.

    Takes layers 0..n-1 of the file (n = the encoder's layer count); a `bert.` prefix (from a
    `BertFor...` checkpoint) is stripped; the pooler, extra layers and buffers are ignored.
    Default folder: `vglaw.utils.paths.default_text_encoder_dir()` (all-MiniLM-L6-v2).
    """
    from safetensors.numpy import load_file

    from vglaw.models.bert import hf_to_ms_name
    if hf_dir is None:
        from vglaw.utils.paths import default_text_encoder_dir
        hf_dir = default_text_encoder_dir()
    hf_dir = Path(hf_dir)
    bert = _text_encoder_of(model_or_bert)
    weights_file, config_file = hf_dir / "model.safetensors", hf_dir / "config.json"
    for f in (weights_file, config_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: a Hugging Face BERT folder needs model.safetensors "
                                    "and config.json")
    hf_cfg = json.loads(config_file.read_text())
    checks = [("hidden_size", bert.hidden, "=="), ("num_attention_heads", bert.num_heads, "=="),
              ("intermediate_size", bert.ffn, "=="), ("vocab_size", bert.vocab_size, "=="),
              ("num_hidden_layers", bert.num_layers, ">="),
              ("max_position_embeddings", bert.max_position, "==")]
    for key, ours, op in checks:
        theirs = hf_cfg.get(key)
        ok = theirs is not None and (theirs == ours if op == "==" else theirs >= ours)
        if not ok:
            raise WeightsError(f"{config_file}: {key} is {theirs}, the text encoder needs {op} {ours}")
    act = hf_cfg.get("hidden_act", "gelu")
    if act != "gelu":
        raise WeightsError(f"{config_file}: hidden_act {act!r}; this encoder implements exact 'gelu' only")
    if hf_cfg.get("position_embedding_type", "absolute") != "absolute":
        raise WeightsError(f"{config_file}: only absolute position embeddings are supported")

    tensors = load_file(str(weights_file))
    params = _named_params(bert)
    report = WeightsReport(source=str(hf_dir))
    values: dict[str, np.ndarray] = {}
    for hf_name, arr in tensors.items():
        name = hf_name[len("bert."):] if hf_name.startswith("bert.") else hf_name
        ours = hf_to_ms_name(name)
        if ours not in params:
            parts = name.split(".")
            extra_layer = (name.startswith("encoder.layer.") and parts[2].isdigit()
                           and int(parts[2]) >= bert.num_layers)
            known_extra = (extra_layer or name.startswith(("pooler.", "cls.")) or name.endswith("position_ids"))
            if not known_extra:
                raise WeightsError(f"{weights_file}: parameter {hf_name!r} has no counterpart in the text "
                                   f"encoder (looked for {ours!r})")
            report.ignored.append(hf_name)
            continue
        if tuple(arr.shape) != tuple(params[ours].shape):
            raise WeightsError(f"{weights_file}: {hf_name!r} has shape {tuple(arr.shape)}, the text encoder's "
                               f"{ours!r} is {tuple(params[ours].shape)}")
        values[ours] = arr
    missing = sorted(set(params) - set(values))
    if missing:
        raise WeightsError(f"{weights_file}: no values for text-encoder parameter(s) {missing}")
    _assign(params, values)
    report.loaded = sorted(values)
    log.info("%s", report)
    return report


# --------------------------------------------------------------------------- ViTDet

def _backbone_of(obj):
    return getattr(obj, "backbone", obj)


def _default_name_map(backbone) -> Callable[[str], str | None]:
    """detectron2 name (under backbone.net.) -> our backbone-relative name, as vit.py declares it."""
    try:
        from vglaw.models.vit import detectron2_to_vglaw_name
    except ImportError:  # vit.py without the map: detectron2 names with nn.LayerNorm leaves
        return _layernorm_rename
    return lambda d2: detectron2_to_vglaw_name(DETECTRON2_PREFIX + d2, prefix="")


def _layernorm_rename(name: str) -> str:
    """Fallback map: detectron2 names kept, nn.LayerNorm leaves renamed (norm*.weight -> gamma)."""
    return re.sub(r"((?:^|\.)norm\d*)\.(weight|bias)$",
                  lambda m: m.group(1) + (".gamma" if m.group(2) == "weight" else ".beta"), name)


def load_vitdet(model_or_backbone, pkl_path: str | Path, *, name_map: Callable[[str], str] | None = None,
                strict: bool = True) -> WeightsReport:
    """Load detectron2's ViTDet Mask R-CNN `.pkl` (keys under `backbone.net.`) into the backbone.

    `name_map` turns a detectron2 name (prefix stripped, e.g. `blocks.0.norm1.weight`) into the
    backbone's parameter name (`blocks.0.norm1.gamma`); by default vit.py's `detectron2_to_vglaw_name`. Relative-position tables are
    centre-cropped / interpolated to the model's size, the absolute position embedding loses its cls
    entry and is resized bicubically to the token grid with the model's `pos_resize` rule (kept as it
    is when the model stores it at the pretrain grid, `pos_table="pretrain"`). Everything outside `backbone.net.` (neck,
    RPN, ROI heads) is ignored and listed. With strict=True (default) a backbone parameter without
    a value, or a backbone.net key without a parameter, is an error.
    """
    from vglaw.utils.pickle_safe import safe_load
    pkl_path = Path(pkl_path)
    if not pkl_path.is_file():
        raise FileNotFoundError(f"{pkl_path} not found (detectron2 ViTDet checkpoint, e.g. model_final_61ccd1.pkl)")
    obj = safe_load(pkl_path, allow_numpy=True)
    state = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise WeightsError(f"{pkl_path}: expected a dict with key 'model' (detectron2 checkpoint), got "
                           f"{type(obj).__name__} with keys {list(obj)[:5] if isinstance(obj, dict) else '-'}")
    backbone = _backbone_of(model_or_backbone)
    name_map = name_map or _default_name_map(backbone)
    params = _named_params(backbone)
    report = WeightsReport(source=str(pkl_path))
    values: dict[str, np.ndarray] = {}
    unknown = []
    for key, arr in state.items():
        if not key.startswith(DETECTRON2_PREFIX):
            report.ignored.append(key)
            continue
        d2 = key[len(DETECTRON2_PREFIX):]
        ours = name_map(d2)
        if ours is None or ours not in params:
            unknown.append(f"{key} (-> {ours})")
            continue
        arr = np.asarray(arr, dtype=np.float32)
        want = tuple(params[ours].shape)
        if d2.endswith(("rel_pos_h", "rel_pos_w")) and arr.ndim == 2 and arr.shape[1:] == want[1:] \
                and arr.shape[0] != want[0]:
            new, how = crop_or_resize_rel_pos(arr, want[0])
            report.adapted.append(f"{ours}: {arr.shape} -> {new.shape} {how}")
            arr = new
        elif d2 == "pos_embed" and tuple(arr.shape) != want:
            new, how = resize_abs_pos(arr, want, getattr(backbone, "pos_rule", "torch"))
            report.adapted.append(f"{ours}: {arr.shape} -> {new.shape} {how}")
            arr = new
        if tuple(arr.shape) != want:
            raise WeightsError(f"{pkl_path}: {key!r} has shape {tuple(arr.shape)}, the backbone's {ours!r} "
                               f"is {want}")
        values[ours] = arr
    missing = sorted(set(params) - set(values))
    if strict and (unknown or missing):
        msg = [f"{pkl_path} does not match the backbone:"]
        if unknown:
            msg.append(f"  keys with no backbone parameter: {unknown}")
        if missing:
            msg.append(f"  backbone parameters with no value in the file: {missing}")
        raise WeightsError("\n".join(msg))
    report.ignored.extend(u.split(" ")[0] for u in unknown)
    _assign(params, values)
    report.loaded = sorted(values)
    if missing:
        log.warning("%s: backbone parameters left at their init: %s", pkl_path, missing)
    log.info("%s", report)
    return report
