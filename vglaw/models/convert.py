"""Checkpoints of the authors' MindSpore release <-> vglaw checkpoints (issue 12).

    python -m vglaw.models.convert --official vglaw_official.ckpt --out ours.ckpt [--preset paper]
    python -m vglaw.models.convert --official ms_model_final_61ccd1.ckpt --out backbone.ckpt   # backbone only
    python -m vglaw.models.convert --to_official ours.ckpt --out theirs.ckpt

The authors' `LAWNet` (`src/model_law.py`) and ours compute the same function (issue 12's
comparison); the layouts differ where vglaw batches or renames:

| authors' name                               | vglaw name                           | layout          |
|---------------------------------------------|--------------------------------------|-----------------|
| text_encoder.*.self_attn.* / .layer_norm.*  | text_encoder.*.self.* / .LayerNorm.* | as is           |
| text_encoder.pooler.*                       | (unused by the forward)              | carried along   |
| visual_encoder.*                            | backbone.*                           | as is           |
| weight_generator.S (3C, K, 1) / D (K, C, 1)  | law.P (1, 3C, K) / law.Q (1, K, C)   | shared factors  |
| weight_generator.layer_embedding (nA, 1, D) | law.layer_embed (nA, D)              | reshape         |
| weight_generator.proj.i.{0,3}.weight        | law.fc{1,2}_weight[i]                | Dense transpose |
| weight_generator.proj.i.{0,3}.bias, .1.*    | law.fc{1,2}_bias / ln_*[i, 0]        | batched rows    |
| ada_gap.{q,k}_proj / bbox_pred.layers.j     | head.rec.{query,key} / head.rec.mlp.2j | as is          |
| up_sample.{0,1,3}                           | head.res.{up1,norm,up2}              | as is           |

A converted official checkpoint gets the authors' numerics (`vglaw.config.AUTHORS_FIDELITY`: ViT
LayerNorm eps 1e-5, generator eps 1e-7, the 14x14 position table kept and resized by MindSpore's
bicubic rule in every forward), so it computes what it computed in their code; `fidelity="ours"`
keeps the preset's values instead (the table is then resized once, which --to_official can only
approximate). Every name is placed or refused: a file with a name that has no place, a missing
name or a shape that does not fit is refused with one line saying which.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vglaw.config import AUTHORS_FIDELITY, ModelConfig, config_from_dict, make_model_config
from vglaw.utils.io import file_sha256
from vglaw.models.resize import WeightsError, bicubic_resize_matrix, crop_or_resize_rel_pos, resize_abs_pos

__all__ = ["ConversionError", "ConversionReport", "FIDELITIES", "official_layout", "official_shapes",
           "official_to_vglaw", "vglaw_to_official", "convert_official", "convert_to_official",
           "load_official_backbone", "main"]

log = logging.getLogger("vglaw")

FIDELITIES = ("authors", "ours")
KINDS = ("auto", "full", "backbone")
VISUAL_PREFIX = "visual_encoder."
# Built by the authors' BertModel but not used by LAWNet's forward: reported, carried for the way back.
UNUSED_OFFICIAL = ("text_encoder.pooler.dense.weight", "text_encoder.pooler.dense.bias")
# Entries a MindSpore training checkpoint may hold besides the network (optimiser state): ignored, listed.
OPTIMIZER_STATE = ("moment1.", "moment2.", "adam_m.", "adam_v.", "global_step", "learning_rate",
                   "beta1_power", "beta2_power", "current_iterator_step", "epoch_num", "step_num")
# ViT parameter names (backbone-relative) as the authors' backbone file stores them.
_VIT_ROOTS = ("blocks.", "patch_embed.", "pos_embed")
_MAX_LISTED = 20


class ConversionError(WeightsError):
    """A file that cannot be converted; the message is one line naming the file and the problem."""


@dataclass
class ConversionReport:
    source: str
    source_sha256: str = ""
    source_kind: str = ""                                 # full | backbone | vglaw
    mapped: int = 0                                       # entries of the source placed
    unused: list[str] = field(default_factory=list)       # placed nowhere by design (BERT pooler)
    ignored: list[str] = field(default_factory=list)      # not part of the network (optimiser, neck)
    adapted: list[str] = field(default_factory=list)      # resized / cropped / approximated on the way

    def __str__(self) -> str:
        return (f"{self.source} ({self.source_kind}): {self.mapped} tensors mapped, unused {self.unused or '-'}, "
                f"ignored {len(self.ignored)}, adapted {self.adapted or '-'}")

    def record(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Entry:
    official: str           # the authors' name (full model)
    ours: str | None        # our parameter name (None: unused)
    how: str                # copy | dense_t (batched Linear, transposed) | row (batched (n,1,k) row)
                            # | factor (S/D (.., 1) -> P/Q (1, ..)) | embed ((n,1,D) -> (n,D)) | pos
    shape: tuple            # the authors' shape
    index: int = 0          # block row of a batched generator parameter


def _one_line_list(names) -> str:
    names = list(names)
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" (+{len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def _check_official_architecture(cfg: ModelConfig) -> None:
    """The authors' LAWNet has svd LAW with one shared S/D pair on every block and the paper's head."""
    wrong = [f"{k}={getattr(cfg, k)!r} (needs {v!r})" for k, v in
             (("law_type", "svd"), ("law_shared", True), ("law_blocks", None), ("rec_token_norm", False),
              ("rec_pos_dim", 0)) if getattr(cfg, k) != v]
    if wrong:
        raise ConversionError(f"model config (preset {cfg.preset!r}) has no counterpart in the authors' "
                              f"release: {', '.join(wrong)}")


def _bert_entries(cfg: ModelConfig) -> list[_Entry]:
    h, f = cfg.text_hidden, cfg.text_ffn
    out = [_Entry("text_encoder.embeddings.word_embeddings.embedding_table",
                  "text_encoder.embeddings.word_embeddings.embedding_table", "copy", (cfg.vocab_size, h)),
           _Entry("text_encoder.embeddings.position_embeddings.embedding_table",
                  "text_encoder.embeddings.position_embeddings.embedding_table", "copy", (cfg.max_position, h)),
           _Entry("text_encoder.embeddings.token_type_embeddings.embedding_table",
                  "text_encoder.embeddings.token_type_embeddings.embedding_table", "copy", (cfg.type_vocab_size, h))]
    out += [_Entry(f"text_encoder.embeddings.layer_norm.{w}", f"text_encoder.embeddings.LayerNorm.{w}", "copy", (h,))
            for w in ("gamma", "beta")]
    for i in range(cfg.text_layers):
        layer = []
        for part in ("query", "key", "value"):
            layer += [(f"attention.self_attn.{part}.weight", (h, h)), (f"attention.self_attn.{part}.bias", (h,))]
        layer += [("attention.output.dense.weight", (h, h)), ("attention.output.dense.bias", (h,)),
                  ("attention.output.layer_norm.gamma", (h,)), ("attention.output.layer_norm.beta", (h,)),
                  ("intermediate.dense.weight", (f, h)), ("intermediate.dense.bias", (f,)),
                  ("output.dense.weight", (h, f)), ("output.dense.bias", (h,)),
                  ("output.layer_norm.gamma", (h,)), ("output.layer_norm.beta", (h,))]
        for name, shape in layer:
            ours = name.replace("self_attn.", "self.").replace("layer_norm.", "LayerNorm.")
            out.append(_Entry(f"text_encoder.encoder.layer.{i}.{name}", f"text_encoder.encoder.layer.{i}.{ours}",
                              "copy", shape))
    out += [_Entry(UNUSED_OFFICIAL[0], None, "copy", (h, h)), _Entry(UNUSED_OFFICIAL[1], None, "copy", (h,))]
    return out


def _vit_entries(cfg: ModelConfig) -> list[_Entry]:
    c, hd, hid, p = cfg.vit_dim, cfg.vit_dim // cfg.vit_heads, int(cfg.vit_dim * cfg.vit_mlp_ratio), cfg.patch_size
    out = [_Entry(VISUAL_PREFIX + "pos_embed", "backbone.pos_embed", "pos", (1, 1 + cfg.pretrain_grid ** 2, c)),
           _Entry(VISUAL_PREFIX + "patch_embed.proj.weight", "backbone.patch_embed.proj.weight", "copy", (c, 3, p, p)),
           _Entry(VISUAL_PREFIX + "patch_embed.proj.bias", "backbone.patch_embed.proj.bias", "copy", (c,))]
    for i in range(cfg.vit_depth):
        side = cfg.grid if i in cfg.global_blocks else cfg.window_size
        for name, shape in (("norm1.gamma", (c,)), ("norm1.beta", (c,)), ("attn.rel_pos_h", (2 * side - 1, hd)),
                            ("attn.rel_pos_w", (2 * side - 1, hd)), ("attn.qkv.weight", (3 * c, c)),
                            ("attn.qkv.bias", (3 * c,)), ("attn.proj.weight", (c, c)), ("attn.proj.bias", (c,)),
                            ("norm2.gamma", (c,)), ("norm2.beta", (c,)), ("mlp.fc1.weight", (hid, c)),
                            ("mlp.fc1.bias", (hid,)), ("mlp.fc2.weight", (c, hid)), ("mlp.fc2.bias", (c,))):
            out.append(_Entry(f"{VISUAL_PREFIX}blocks.{i}.{name}", f"backbone.blocks.{i}.{name}", "copy", shape))
    return out


def _head_entries(cfg: ModelConfig) -> list[_Entry]:
    c, d, k, hid, n = cfg.vit_dim, cfg.text_hidden, cfg.law_rank, cfg.law_hidden, cfg.vit_depth
    out = [_Entry("weight_generator.S", "law.P", "factor", (3 * c, k, 1)),
           _Entry("weight_generator.D", "law.Q", "factor", (k, c, 1)),
           _Entry("weight_generator.layer_embedding", "law.layer_embed", "embed", (n, 1, d))]
    for i in range(n):
        g = f"weight_generator.proj.{i}."
        out += [_Entry(g + "0.weight", "law.fc1_weight", "dense_t", (hid, d), i),
                _Entry(g + "0.bias", "law.fc1_bias", "row", (hid,), i),
                _Entry(g + "1.gamma", "law.ln_gamma", "row", (hid,), i),
                _Entry(g + "1.beta", "law.ln_beta", "row", (hid,), i),
                _Entry(g + "3.weight", "law.fc2_weight", "dense_t", (k * k, hid), i),
                _Entry(g + "3.bias", "law.fc2_bias", "row", (k * k,), i)]
    a, rh, r = cfg.rec_dim, cfg.res_hidden, cfg.rec_hidden
    pairs = [("ada_gap.q_proj", "head.rec.query", (a, d)), ("ada_gap.k_proj", "head.rec.key", (a, c)),
             ("bbox_pred.layers.0", "head.rec.mlp.0", (r, c)), ("bbox_pred.layers.1", "head.rec.mlp.2", (r, r)),
             ("bbox_pred.layers.2", "head.rec.mlp.4", (4, r))]
    table = [("up_sample.0.weight", "head.res.up1.weight", (c, rh, 2, 2)),  # ConvTranspose (in, out, kh, kw)
             ("up_sample.0.bias", "head.res.up1.bias", (rh,)),
             ("up_sample.1.weight", "head.res.norm.gamma", (rh,)),
             ("up_sample.1.bias", "head.res.norm.beta", (rh,)),
             ("up_sample.3.weight", "head.res.up2.weight", (rh, d, 2, 2)),
             ("up_sample.3.bias", "head.res.up2.bias", (d,))]
    for theirs, ours, shape in pairs:
        table += [(theirs + ".weight", ours + ".weight", shape), (theirs + ".bias", ours + ".bias", shape[:1])]
    order = ["ada_gap", "up_sample", "bbox_pred"]  # the authors' order
    table.sort(key=lambda t: order.index(t[0].split(".")[0]))
    for theirs, ours, shape in table:
        out.append(_Entry(theirs, ours, "copy", shape))
    return out


def official_layout(cfg: ModelConfig, kind: str = "full") -> list[_Entry]:
    """Every tensor of the authors' checkpoint for this config, in their order (full: 365 for `paper`;
    backbone: the `visual_encoder.*` ones, which any law_type / head can take)."""
    if kind == "backbone":
        return _vit_entries(cfg)
    _check_official_architecture(cfg)
    return _bert_entries(cfg) + _vit_entries(cfg) + _head_entries(cfg)


def official_shapes(cfg: ModelConfig, kind: str = "full") -> dict[str, tuple]:
    """{the authors' name: shape} for this config (compare with ../shared/official_params.json)."""
    return {e.official: e.shape for e in official_layout(cfg, kind)}


def _our_shape(e: _Entry, cfg: ModelConfig) -> tuple:
    n = cfg.vit_depth
    if e.how == "dense_t":
        return (n, e.shape[1], e.shape[0])
    if e.how == "row":
        return (n, 1, e.shape[0])
    if e.how == "factor":
        return (1,) + e.shape[:2]
    if e.how == "embed":
        return (e.shape[0], e.shape[2])
    if e.how == "pos" and cfg.pos_table == "token":
        return (1, cfg.grid, cfg.grid, e.shape[2])
    return e.shape


# --------------------------------------------------------------------------- reading and checking

def _read_ms_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict | None]:
    """({name: ndarray}, vglaw meta or None) of a MindSpore .ckpt; ConversionError if unreadable."""
    from vglaw.models.checkpoint import META_KEY, load_ms_checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        raw = load_ms_checkpoint(path)
    except MemoryError:
        raise
    except Exception as exc:  # MindSpore raises ValueError / RuntimeError on truncated or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{path} is truncated or not a MindSpore checkpoint ({first})") from exc
    meta_raw = raw.pop(META_KEY, None)
    try:
        meta = json.loads(meta_raw) if isinstance(meta_raw, str) else None
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}: its vglaw metadata {META_KEY!r} is not valid JSON ({exc})") from exc
    arrays = {k: v.asnumpy() for k, v in raw.items() if not isinstance(v, str)}
    return arrays, meta


def _detect_kind(names, path: Path) -> str:
    if any(n.startswith(("text_encoder.", "weight_generator.", "ada_gap.", "up_sample.", "bbox_pred."))
           for n in names):
        return "full"
    if any(n.startswith(VISUAL_PREFIX) or n.startswith(_VIT_ROOTS) for n in names):
        return "backbone"
    raise ConversionError(f"{path} is not a checkpoint of the authors' release: none of its {len(names)} "
                          f"names is theirs ({_one_line_list(sorted(names)[:5])})")


def _is_optimizer_state(name: str) -> bool:
    return name.startswith(OPTIMIZER_STATE)


def _gather_backbone(arrays: dict, path: Path, report: ConversionReport) -> dict:
    """Backbone-only file: ViT names with or without `visual_encoder.` -> under `visual_encoder.`;
    other entries (a detector's neck and heads, optimiser state) are ignored and listed."""
    out = {}
    for name, arr in arrays.items():
        rel = name[len(VISUAL_PREFIX):] if name.startswith(VISUAL_PREFIX) else name
        if rel.startswith(_VIT_ROOTS):
            if VISUAL_PREFIX + rel in out:
                raise ConversionError(f"{path} holds {rel!r} both with and without the {VISUAL_PREFIX!r} prefix")
            out[VISUAL_PREFIX + rel] = arr
        else:
            report.ignored.append(name)
    return out


def _check_names(arrays: dict, layout: list[_Entry], path: Path, kind: str, adapt: bool,
                 strict: bool = True) -> list[str]:
    """Refuse unknown names, missing names (if strict) and shapes that do not fit (one line). With
    adapt=True (backbone files) rel-pos tables and the position table of another size are accepted
    (resized later). Returns the unused names present."""
    expected = {e.official: e.shape for e in layout}
    unknown = sorted(n for n in arrays if n not in expected)
    missing = sorted(n for n in expected if n not in arrays and n not in UNUSED_OFFICIAL) if strict else []
    bad = []
    for name in sorted(set(arrays) & set(expected)):
        got, want = tuple(arrays[name].shape), expected[name]
        if got == want:
            continue
        resizable = adapt and len(got) == len(want) and (
            (name.endswith(("rel_pos_h", "rel_pos_w")) and got[1:] == want[1:])
            or (name.endswith("pos_embed") and got[0] == 1 and got[-1] == want[-1]))
        if not resizable:
            bad.append(f"{name} {got} vs {want}")
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} name(s) with no place in the model: {_one_line_list(unknown)}")
    if missing:
        problems.append(f"{len(missing)} name(s) missing: {_one_line_list(missing)}")
    if bad:
        problems.append(f"shape mismatch (file vs model): {_one_line_list(bad)}")
    if problems:
        what = "the authors' backbone" if kind == "backbone" else "the authors' VG-LAW model"
        raise ConversionError(f"{path} does not fit {what} for this config: " + "; ".join(problems))
    return [n for n in UNUSED_OFFICIAL if n in arrays]


# --------------------------------------------------------------------------- the two directions

def official_to_vglaw(arrays: dict[str, np.ndarray], cfg: ModelConfig, *, kind: str = "full",
                      source: str = "<arrays>", report: ConversionReport | None = None,
                      strict: bool = True) -> dict[str, np.ndarray]:
    """The authors' tensors (full names, or `visual_encoder.*` for kind="backbone") -> our parameters.

    Raises ConversionError (one line) on a name that has no place, a missing name or a shape that
    does not fit. Unused names (the BERT pooler) are listed in `report.unused` and returned under
    `vglaw.models.checkpoint.CARRIED_PREFIX` so the way back restores them."""
    from vglaw.models.checkpoint import CARRIED_PREFIX
    report = report if report is not None else ConversionReport(source=source)
    path = Path(source)
    layout = official_layout(cfg, kind)
    net = {n: a for n, a in arrays.items() if not _is_optimizer_state(n)}
    report.ignored += sorted(set(arrays) - set(net))
    report.unused = _check_names(net, layout, path, kind, adapt=kind == "backbone", strict=strict)
    out: dict[str, np.ndarray] = {}
    for e in layout:
        if e.official not in net:
            continue
        arr = np.asarray(net[e.official], dtype=np.float32)
        if e.ours is None:
            out[CARRIED_PREFIX + e.official] = arr
            continue
        report.mapped += 1
        want = _our_shape(e, cfg)
        if e.how == "copy":
            if arr.shape != want:  # backbone files: rel-pos tables of another window or resolution
                new, how = crop_or_resize_rel_pos(arr, want[0])
                report.adapted.append(f"{e.official}: {arr.shape} -> {new.shape} {how}")
                arr = new
            out[e.ours] = arr
        elif e.how == "pos":
            if arr.shape != want:
                new, how = resize_abs_pos(arr, want, cfg.pos_resize)
                report.adapted.append(f"{e.official}: {arr.shape} -> {new.shape} {how}")
                arr = new
            out[e.ours] = arr
        elif e.how == "factor":
            out[e.ours] = arr[None, :, :, 0]  # (3C, K, 1) -> (1, 3C, K); (K, C, 1) -> (1, K, C)
        elif e.how == "embed":
            out[e.ours] = arr.reshape(e.shape[0], e.shape[2])
        else:  # dense_t / row: one block's slice of a batched generator parameter
            full = out.setdefault(e.ours, np.zeros(want, np.float32))
            full[e.index] = arr.T if e.how == "dense_t" else arr[None]
    return out


def _pos_to_official(grid: np.ndarray, cfg: ModelConfig, report: ConversionReport) -> np.ndarray:
    """(1, g, g, C) token-grid table -> (1, 1+S*S, C): the least-squares S x S table whose MindSpore
    bicubic upsampling (the authors' forward) is closest to ours; cls entry 0 (unused). Approximate."""
    s, c = cfg.pretrain_grid, grid.shape[-1]
    m = bicubic_resize_matrix(s, cfg.grid, "mindspore")  # (g, S)
    pinv = np.linalg.pinv(m)  # (S, g)
    table = np.einsum("sh,hwc,tw->stc", pinv, grid[0].astype(np.float64), pinv)
    back = np.einsum("hs,stc,wt->hwc", m, table, m)
    err = float(np.abs(back - grid[0]).max())
    report.adapted.append(f"backbone.pos_embed: {tuple(grid.shape)} -> (1, {1 + s * s}, {c}) least-squares "
                          f"{s}x{s} table (pos_table='token' is not invertible; max abs error after the "
                          f"authors' resize {err:.3g})")
    out = np.zeros((1, 1 + s * s, c), np.float32)
    out[0, 1:] = table.reshape(s * s, c)
    return out


def vglaw_to_official(arrays: dict[str, np.ndarray], cfg: ModelConfig, *, source: str = "<arrays>",
                      report: ConversionReport | None = None) -> dict[str, np.ndarray]:
    """Our parameters -> the authors' 365 tensors (their order). Exact inverse of `official_to_vglaw`
    except the position table of a `pos_table="token"` model (least squares, reported)."""
    from vglaw.models.checkpoint import CARRIED_PREFIX
    report = report if report is not None else ConversionReport(source=source)
    layout = official_layout(cfg, "full")
    wanted = {e.ours: _our_shape(e, cfg) for e in layout if e.ours is not None}
    missing = sorted(n for n in wanted if n not in arrays)
    bad = sorted(f"{n} {tuple(arrays[n].shape)} vs {wanted[n]}" for n in wanted
                 if n in arrays and tuple(arrays[n].shape) != wanted[n])
    extra = sorted(n for n in arrays if n not in wanted and not n.startswith(CARRIED_PREFIX))
    if missing or bad or extra:
        parts = [f"{len(missing)} parameter(s) missing: {_one_line_list(missing)}" if missing else "",
                 f"shape mismatch (file vs config): {_one_line_list(bad)}" if bad else "",
                 f"{len(extra)} name(s) with no place in the authors' model: {_one_line_list(extra)}" if extra else ""]
        raise ConversionError(f"{source} does not fit its stored config: " + "; ".join(p for p in parts if p))
    out: dict[str, np.ndarray] = {}
    for e in layout:
        if e.ours is None:
            carried = arrays.get(CARRIED_PREFIX + e.official)
            if carried is None:
                report.adapted.append(f"{e.official}: not in the file (unused by the forward), written as zeros")
                carried = np.zeros(e.shape, np.float32)
            else:
                report.unused.append(e.official)
            out[e.official] = np.asarray(carried, np.float32)
            continue
        arr = np.asarray(arrays[e.ours], np.float32)
        report.mapped += 1
        if e.how == "pos" and cfg.pos_table == "token":
            out[e.official] = _pos_to_official(arr, cfg, report)
        elif e.how in ("copy", "pos"):
            out[e.official] = arr
        elif e.how == "factor":
            out[e.official] = arr[0][:, :, None]
        elif e.how == "embed":
            out[e.official] = arr.reshape(e.shape)
        else:
            out[e.official] = np.ascontiguousarray(arr[e.index].T if e.how == "dense_t" else arr[e.index, 0])
    return out


# --------------------------------------------------------------------------- files

def _config_for(preset: str, fidelity: str, overrides: dict) -> ModelConfig:
    if fidelity not in FIDELITIES:
        raise ValueError(f"unknown fidelity {fidelity!r}; expected one of {list(FIDELITIES)}")
    values = dict(AUTHORS_FIDELITY) if fidelity == "authors" else {}
    values.update(overrides)
    return make_model_config(preset, **dict({"law_type": "svd"}, **values))


def convert_official(src: str | Path, out: str | Path, *, preset: str = "paper", kind: str = "auto",
                     fidelity: str = "authors", **overrides) -> ConversionReport:
    """Convert the authors' checkpoint `src` (full VG-LAW, or backbone-only) into a vglaw checkpoint.

    Args:
        preset: our preset whose sizes the file must have (`paper`); `overrides`: ModelConfig fields.
        kind: "auto" (from the names), "full" or "backbone" (refused if the file is the other one).
        fidelity: "authors" (their eps values and per-forward MindSpore resize of the 14x14 table,
            `AUTHORS_FIDELITY`) or "ours" (the preset's values).
    The output stores the model config and `conversion` (source, sha256, options, what was unused,
    ignored or adapted) in its metadata. A backbone file gives a checkpoint of `backbone.*` only.
    """
    from vglaw.models.checkpoint import save_checkpoint
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {list(KINDS)}")
    src, out = Path(src), Path(out)
    cfg = _config_for(preset, fidelity, overrides)
    arrays, meta = _read_ms_checkpoint(src)
    if meta is not None:
        raise ConversionError(f"{src} is a vglaw checkpoint already; use --to_official to convert it to the "
                              "authors' layout")
    found = _detect_kind([n for n in arrays if not _is_optimizer_state(n)], src)
    if kind == "full" and found == "backbone":
        raise ConversionError(f"{src} is the authors' backbone-only checkpoint (no text_encoder, weight_generator "
                              "or head names), not a full VG-LAW one: convert it with --kind backbone, or "
                              "train from it with --vit_model vitdet_b_ms")
    if kind == "backbone" and found == "full":
        raise ConversionError(f"{src} is a full VG-LAW checkpoint, not a backbone-only one: convert it with "
                              "--kind full (or auto)")
    report = ConversionReport(source=str(src), source_sha256=file_sha256(src), source_kind=found)
    if found == "backbone":
        arrays = _gather_backbone(arrays, src, report)
    ours = official_to_vglaw(arrays, cfg, kind=found, source=str(src), report=report)
    meta = {"kind": "vglaw-model" if found == "full" else "vglaw-backbone",
            "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
            "conversion": dict(report.record(), direction="official->vglaw", fidelity=fidelity,
                               options={k: getattr(cfg, k) for k in AUTHORS_FIDELITY})}
    save_checkpoint(out, ours, meta)
    log.info("%s -> %s", report, out)
    return report


def convert_to_official(src: str | Path, out: str | Path) -> ConversionReport:
    """Convert a vglaw checkpoint (a model, or a run's best/last .ckpt) into the authors' layout, a
    plain MindSpore checkpoint of their 365 names that their scripts load."""
    from vglaw.models.checkpoint import save_checkpoint
    src, out = Path(src), Path(out)
    arrays, meta = _read_ms_checkpoint(src)
    if meta is None or "config" not in meta:
        raise ConversionError(f"{src} is not a vglaw checkpoint (no stored model config); "
                              "--official converts the authors' checkpoints")
    cfg = config_from_dict(meta["config"])
    if meta.get("kind") == "vglaw-backbone":
        raise ConversionError(f"{src} holds a backbone only; --to_official needs a full model")
    if str(meta.get("kind", "")).startswith("vglaw-train-state"):  # a run's last.ckpt: drop optimiser state
        keep = {e.ours for e in official_layout(cfg) if e.ours}
        arrays = {n: a for n, a in arrays.items() if n in keep}
    report = ConversionReport(source=str(src), source_sha256=file_sha256(src), source_kind="vglaw")
    theirs = vglaw_to_official(arrays, cfg, source=str(src), report=report)
    save_checkpoint(out, theirs, store_meta=False)
    log.info("%s -> %s", report, out)
    return report


def load_official_backbone(model_or_backbone, path: str | Path, *, strict: bool = True):
    """Load the authors' backbone checkpoint (`ms_model_final_61ccd1.ckpt`: ViT names with or without
    `visual_encoder.`) into the backbone, as strictly as `load_vitdet` loads detectron2's .pkl: every
    backbone parameter needs a value (strict=False: missing ones keep their init, with a warning)
    and every ViT name a parameter; rel-pos tables of another size
    are centre-cropped / interpolated and the 14x14 position table is kept (pos_table="pretrain") or
    resized with the model's `pos_resize` rule; other entries are ignored and listed.
    Returns a `vglaw.models.weights.WeightsReport`."""
    from vglaw.models.weights import WeightsReport, _assign, _backbone_of, _named_params
    path = Path(path)
    backbone = _backbone_of(model_or_backbone)
    cfg = getattr(model_or_backbone, "config", None)
    if cfg is None:
        raise TypeError("load_official_backbone needs a VGLAW model (it reads model.config)")
    arrays, meta = _read_ms_checkpoint(path)
    if meta is not None:
        raise ConversionError(f"{path} is a vglaw checkpoint, not the authors' backbone; load it with "
                              "--pretrained_path or vglaw.models.checkpoint.load_model")
    found = _detect_kind([n for n in arrays if not _is_optimizer_state(n)], path)
    if found != "backbone":
        raise ConversionError(f"{path} is a full VG-LAW checkpoint, not the authors' backbone; convert it with "
                              "python -m vglaw.models.convert and start from it with --pretrained_path")
    conv = ConversionReport(source=str(path), source_kind="backbone")
    arrays = _gather_backbone(arrays, path, conv)
    ours = official_to_vglaw(arrays, cfg, kind="backbone", source=str(path), report=conv, strict=strict)
    params = _named_params(backbone)
    values = {n[len("backbone."):]: a for n, a in ours.items()}
    missing = sorted(set(params) - set(values))
    _assign(params, values)
    if missing:
        log.warning("%s: backbone parameters left at their init: %s", path, missing)
    report = WeightsReport(source=str(path), loaded=sorted(values), adapted=conv.adapted, ignored=conv.ignored)
    log.info("%s", report)
    return report


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vglaw.models.convert", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--official", help="the authors' checkpoint (full VG-LAW or backbone-only) -> vglaw")
    src.add_argument("--to_official", help="a vglaw checkpoint -> the authors' layout")
    ap.add_argument("--out", required=True, help="output .ckpt")
    ap.add_argument("--preset", default="paper", help="our preset the official file must fit (default paper)")
    ap.add_argument("--kind", default="auto", choices=KINDS, help="what --official holds (default: from its names)")
    ap.add_argument("--fidelity", default="authors", choices=FIDELITIES,
                    help="authors: their LayerNorm eps and position-table resize (default); ours: the preset's")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.official:
            report = convert_official(args.official, args.out, preset=args.preset, kind=args.kind,
                                      fidelity=args.fidelity)
        else:
            report = convert_to_official(args.to_official, args.out)
    except (ConversionError, FileNotFoundError, ValueError, MemoryError) as exc:
        print(f"vglaw.models.convert: error: {exc}", file=sys.stderr)
        return 2
    print(f"{report}\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
