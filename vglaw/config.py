"""Model configuration: one dataclass, two presets (`paper`, `tiny`), validated overrides.

`paper` is DESIGN.md §3 exactly (ViT-B/16 at 448, 6-layer BERT-base, K = 32, 40 tokens);
`tiny` runs the same code at sizes a 2-core CPU trains in minutes. Only sizes differ.
`dataclasses.asdict(cfg)` is JSON-serialisable and `make_model_config(**asdict(cfg))`
round-trips it (lists are turned back into tuples).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["ModelConfig", "PRESETS", "LAW_TYPES", "MODES", "DEVICE_TARGETS", "LOSS_WEIGHTS", "POS_RESIZE_RULES",
           "POS_TABLES", "STEMS", "BOX_SOURCES", "POS_INITS", "AUTHORS_FIDELITY", "make_model_config", "config_from_dict"]

# The choice lists every layer checks against, defined here only (train config, CLIs, notebooks).
LAW_TYPES = ("none", "la", "od1", "od2", "od3", "svd")  # vglaw.models.law: add a new type there
MODES = ("GRAPH", "PYNATIVE")                             # mindspore execution modes (--mode_name)
DEVICE_TARGETS = ("CPU", "GPU", "Ascend")                 # mindspore.set_device (--device_target)
# The four loss weights (DESIGN §3.5): ModelConfig field -> the seed's TrainConfig flag that sets it.
LOSS_WEIGHTS = {"loss_l1": "bbox_loss_coef", "loss_giou": "xiou_loss_coef", "loss_focal": "focal_loss_coef",
                "loss_dice": "dice_loss_coef"}
TEXT_POOLS = ("cls", "mean")
BOX_SOURCES = ("head", "mask")  # where the REC box comes from at inference (ModelConfig.box_source)
POS_RESIZE_RULES = ("torch", "mindspore")  # vglaw.models.resize.bicubic_resize_matrix
POS_TABLES = ("token", "pretrain")
STEMS = ("patch", "hmlp")  # vglaw.models.vit: PatchEmbed | HMLPStem
POS_INITS = ("normal", "sincos")  # vglaw.models.vit.ViTDet: the absolute position table's start
# What the authors' MindSpore release computes (issue 12): its vitdet_vit.py builds the ViT norms
# with eps 1e-5, its generator uses nn.LayerNorm's default 1e-7, and it resizes the 14x14 position
# table with ops.interpolate in every forward. Converted official checkpoints carry these values.
AUTHORS_FIDELITY = dict(vit_ln_eps=1e-5, law_ln_eps=1e-7, pos_resize="mindspore", pos_table="pretrain")


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "paper"             # name of the preset these values started from
    # --- input ---
    img_size: int = 448               # square padded canvas side (pixels)
    max_len: int = 40                 # token length (padded); longer input is an error

    # --- visual backbone: ViTDet (DESIGN §3.1) ---
    patch_size: int = 16
    vit_dim: int = 768
    vit_depth: int = 12
    vit_heads: int = 12
    vit_mlp_ratio: float = 4.0
    window_size: int = 14             # window attention side in tokens (non-global blocks)
    global_blocks: tuple = (2, 5, 8, 11)  # blocks with global attention
    pretrain_grid: int = 14           # abs pos-embed learnt at this token grid (224/16), resized
    drop_path: float = 0.1            # max stochastic depth rate, linear 0 -> drop_path
    vit_ln_eps: float = 1e-6          # block LayerNorm eps (detectron2; the authors' release: 1e-5)
    pos_resize: str = "torch"         # bicubic rule of the abs pos-table resize: torch | mindspore (authors)
    pos_table: str = "token"          # token: (1,g,g,C) parameter, resized once at init/load;
                                      # pretrain: (1,1+S*S,C) at pretrain_grid, resized in every forward (authors)
    # Not in the paper (issue 8): "hmlp" replaces the linear p x p patch projection by a hierarchical
    # per-patch MLP (p/4 x p/4 pixels -> stem_dim, then 2x2 -> stem_dim, then 2x2 -> vit_dim, each
    # LayerNorm + GELU; Touvron et al. 2022's hMLP stem): still no overlap between patches.
    stem: str = "patch"               # patch (ViTDet's linear projection) | hmlp
    # Not in the paper (issue 8): where the referred object is told apart only by place ("the left
    # purple diamond"), a from-scratch tiny ViT fails: the patch embedding grows to RMS ~11 while
    # the N(0, 0.02) position table stays near 0.05, so after the blocks' LayerNorm the tokens
    # carry almost no position. embed_norm: LayerNorm on the patch embedding before the position
    # table is added; pos_init "sincos": the table starts as the 2-D sin-cos code (RMS 0.71).
    embed_norm: bool = False
    pos_init: str = "normal"          # normal: N(0, 0.02) clipped (ViTDet) | sincos
    stem_dim: int = 32                # hmlp: channels of its first two stages

    # --- language encoder: BERT (DESIGN §3.2), read by vglaw/models/bert.py ---
    text_hidden: int = 768
    text_layers: int = 6
    text_heads: int = 12
    text_ffn: int = 3072
    vocab_size: int = 30522
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12     # BERT LayerNorm eps
    hidden_dropout: float = 0.1       # BERT hidden and attention-probability dropout

    # --- language-adaptive weights (DESIGN §3.3) ---
    law_type: str = "svd"             # one of LAW_TYPES; "none" = passive backbone
    law_rank: int = 32                # K: Phi is K x K (svd only)
    law_shared: bool = True           # one P/Q pair for all adaptive blocks (else one per block)
    law_blocks: tuple | None = None   # indices of adaptive blocks; None = every block
    law_hidden: int = 48              # generator MLP hidden width
    law_ln_eps: float = 1e-5          # generator LayerNorm eps (the authors' release: 1e-7)

    # --- multi-task head (DESIGN §3.4) ---
    rec_dim: int = 64                 # query/key width of the language-guided pooling
    rec_hidden: int = 256             # box MLP hidden width
    res_hidden: int = 256             # channels between the two transposed convolutions
    # Not in the paper (issue 8): a from-scratch backbone's REC head needs them to leave the mean box.
    rec_token_norm: bool = False      # LayerNorm on the tokens the REC head pools
    rec_pos_dim: int = 0              # >0: fixed 2-D sin-cos position code (channels) in the REC pooling
    rec_mask_guide: bool = False      # add the detached RES mask logits (per token) to the REC pooling logits
                                      # (only with use_mask: an untrained RES head guides nothing)
    rec_cell_pool: bool = False       # the REC pooling runs over the RES head's 4g x 4g cells (needs rec_pos_dim);
                                      # the box starts from the pooling weights' moments (vglaw.models.heads)
    res_refine: int = 0               # >0 (needs stem="hmlp"): the mask logits at stride 4 get a per-pixel
                                      # correction from the stem's first stage (4x4-pixel cells), the token
                                      # logit and the sentence: MLP(stem_dim + 1 -> res_refine -> 1)
    res_select: int = 0               # >0: the mask logits at stride 4 get a per-cell correction from the
                                      # (detached) predicted box: MLP([logit, |dx|/w, |dy|/h] -> res_select -> 1),
                                      # last layer zero-initialised; the box picks the object, the mask keeps it
    text_pool: str = "cls"            # sentence vector c the heads read: "cls" (paper) | "mean" of the tokens
    # Not in the paper (issue 8, session 16): where the predicted box comes from at inference.
    # "head" (paper): the REC head's box. "mask": the bounding box of the predicted mask at the
    # original resolution (probability > the evaluation's mask threshold), the head's box when that
    # mask is empty or use_mask is off. Training is the same either way (both heads, same losses).
    box_source: str = "head"

    # --- losses (DESIGN §3.5) ---
    loss_l1: float = 1.0
    loss_giou: float = 1.0
    loss_focal: float = 1.0
    loss_dice: float = 1.0
    use_mask: bool = True             # False: REC only (mask losses off)
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    @property
    def grid(self) -> int:
        """Token grid side of the backbone (img_size / patch_size)."""
        return self.img_size // self.patch_size

    @property
    def adaptive_blocks(self) -> tuple:
        """Sorted indices of the blocks whose qkv is language-adaptive (empty for `none`)."""
        if self.law_type == "none":
            return ()
        if self.law_blocks is None:
            return tuple(range(self.vit_depth))
        return tuple(sorted(self.law_blocks))


PRESETS: dict[str, dict] = {
    "paper": {},
    # CPU workbook model: 8x8 token grid, 2x2 windows of 4x4 tokens, global blocks 1 and 3,
    # all-MiniLM-L6-v2 geometry truncated to 2 layers (its weights load into it).
    "tiny": dict(
        img_size=128, max_len=20, patch_size=16, vit_dim=128, vit_depth=4, vit_heads=4,
        window_size=4, global_blocks=(1, 3), pretrain_grid=8, drop_path=0.05,
        text_hidden=384, text_layers=2, text_heads=12, text_ffn=1536,
        law_rank=16, res_hidden=64, rec_hidden=128,
        # REC head deviation from DESIGN §3.4 (issue 8), measured on shapes/svd with --use_mask
        # --translate: the paper's head stays at the mean box (val prec@0.5 0.026 after 1,050
        # updates, LayerNorm alone the same); LayerNorm + a 64-channel sin-cos code on keys and
        # pooled values reached 0.334 at 1,050 updates. `paper` keeps the paper's head exactly.
        rec_token_norm=True, rec_pos_dim=64,
        # The box pooling also reads the RES head's detached mask logits (per token): the mask
        # finds the referred object in ~100 updates, the box pooling alone needed 300-700 (and the
        # take-off time varied from run to run). Measured (issue 8; shapes, svd, --use_mask
        # --translate, scratch, seed 0, token mean), val prec@0.5 / box mIoU / mask mIoU at 175 /
        # 350 updates: without 0.016/0.077/0.490, 0.020/0.077/0.476; with 0.190/0.248/0.473,
        # 0.348/0.349/0.513. (patch_size=8 with the guide: 0.285/0.341/0.525 at 175 updates, but
        # each update costs 2.6x as much CPU time.)
        rec_mask_guide=True,
        # Pooling over the RES head's 4 x 4-pixel cells instead of the 16-pixel tokens, with the
        # pooling weights' moment box as a learnt prior (`rec_cell_pool`), and a patch stem that
        # reads each patch with a small MLP whose first stage also sharpens the mask cells
        # (`stem="hmlp"`, `res_refine`). Measured (issue 8, session 4; shapes, svd, --use_mask
        # --translate, 2 epochs = 700 updates with the workbook's cosine LR, 305 val sentences),
        # val prec@0.5 / box mIoU / mask mIoU at 700 updates, seed 0: without them 0.607 / 0.474 /
        # 0.558; cell pooling alone 0.626 / 0.497 / 0.549; all three 0.666 / 0.526 / 0.561
        # (seed 1: see README). The moment box of a mask alone (no pooling) broke left/right
        # expressions, where the mask marks both candidates (box prec@0.5 0.05 on them).
        rec_cell_pool=True, stem="hmlp", res_refine=32,
        # The mask reads the box (`res_select`, session 6): on look-alikes ("the left purple
        # diamond") the mask marked both candidates while the box, which reads positions, picked
        # one; a per-cell MLP of the logit and the cell's offset from the detached box (last layer
        # at 0) lets the mask drop the other. Measured (issue 8; shapes, svd, --use_mask --translate,
        # 700 updates, cosine LR, 305 val sentences), val prec@0.5 / box mIoU / mask mIoU: seeds 0, 1
        # 0.564 / 0.486 / 0.718, 0.643 / 0.524 / 0.723, against 0.551-0.666 / 0.484-0.526 /
        # 0.556-0.561 over 4 runs without (seeds 0, 1, 0, 0).
        res_select=16,
        # The heads' sentence vector (DESIGN §3.4: [CLS]) is the mean of the token outputs here:
        # all-MiniLM-L6-v2 was trained as a mean-pooled sentence encoder, and its [CLS] output
        # barely depends on the sentence (mean pairwise cosine 0.99 over 80 val expressions at
        # init, 0.94 after 700 updates; the mean: 0.93 -> 0.32). Measured (issue 8; shapes, svd,
        # --use_mask --translate, scratch, seed 0): val prec@0.5 / box mIoU / mask mIoU at 700
        # updates 0.036 / 0.094 / 0.550 with [CLS], 0.298 / 0.340 / 0.534 with the mean.
        text_pool="mean",
    ),
}


def _fail(msg: str):
    raise ValueError(msg)


def _validate(cfg: ModelConfig) -> None:
    if cfg.law_type not in LAW_TYPES:
        _fail(f"unknown law_type {cfg.law_type!r}; expected one of {list(LAW_TYPES)}")
    for name in ("img_size", "max_len", "patch_size", "vit_dim", "vit_depth", "vit_heads",
                 "window_size", "pretrain_grid", "text_hidden", "text_layers", "text_heads",
                 "text_ffn", "vocab_size", "max_position", "type_vocab_size", "law_rank",
                 "law_hidden", "rec_dim", "rec_hidden", "res_hidden"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            _fail(f"{name} must be a positive int, got {v!r}")
    if cfg.img_size % (cfg.patch_size * cfg.window_size):
        _fail(f"img_size {cfg.img_size} must be divisible by patch_size*window_size "
              f"= {cfg.patch_size}*{cfg.window_size} = {cfg.patch_size * cfg.window_size}")
    if cfg.pos_resize not in POS_RESIZE_RULES:
        _fail(f"unknown pos_resize {cfg.pos_resize!r}; expected one of {list(POS_RESIZE_RULES)}")
    if cfg.pos_table not in POS_TABLES:
        _fail(f"unknown pos_table {cfg.pos_table!r}; expected one of {list(POS_TABLES)}")
    for name in ("vit_ln_eps", "law_ln_eps", "layer_norm_eps"):
        v = getattr(cfg, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            _fail(f"{name} must be a positive number, got {v!r}")
    if cfg.text_pool not in TEXT_POOLS:
        _fail(f"unknown text_pool {cfg.text_pool!r}; expected one of {list(TEXT_POOLS)}")
    if cfg.box_source not in BOX_SOURCES:
        _fail(f"unknown box_source {cfg.box_source!r}; expected one of {list(BOX_SOURCES)}")
    if cfg.pos_init not in POS_INITS:
        _fail(f"unknown pos_init {cfg.pos_init!r}; expected one of {list(POS_INITS)}")
    if cfg.pos_init == "sincos" and cfg.vit_dim % 4:
        _fail(f"pos_init='sincos' needs vit_dim divisible by 4, got {cfg.vit_dim}")
    if cfg.stem not in STEMS:
        _fail(f"unknown stem {cfg.stem!r}; expected one of {list(STEMS)}")
    if not isinstance(cfg.res_select, int) or isinstance(cfg.res_select, bool) or cfg.res_select < 0:
        _fail(f"res_select must be an int >= 0, got {cfg.res_select!r}")
    if cfg.stem_dim <= 0 or cfg.res_refine < 0:
        _fail(f"stem_dim must be > 0 and res_refine >= 0, got {cfg.stem_dim!r}, {cfg.res_refine!r}")
    if cfg.res_refine and cfg.stem != "hmlp":
        _fail(f"res_refine={cfg.res_refine} reads the hmlp stem's first stage; set stem='hmlp' or res_refine=0")
    if cfg.rec_cell_pool and not cfg.rec_pos_dim:
        _fail("rec_cell_pool needs the REC position code: set rec_pos_dim > 0 (e.g. 64)")
    if cfg.rec_pos_dim < 0 or cfg.rec_pos_dim % 4:
        _fail(f"rec_pos_dim must be 0 (off) or a positive multiple of 4, got {cfg.rec_pos_dim!r}")
    if cfg.patch_size % 4:
        _fail(f"patch_size must be a multiple of 4 (the RES head upsamples x4), got {cfg.patch_size}")
    if cfg.vit_dim % cfg.vit_heads:
        _fail(f"vit_dim {cfg.vit_dim} must be divisible by vit_heads {cfg.vit_heads}")
    if cfg.text_hidden % cfg.text_heads:
        _fail(f"text_hidden {cfg.text_hidden} must be divisible by text_heads {cfg.text_heads}")
    if cfg.max_len > cfg.max_position:
        _fail(f"max_len {cfg.max_len} exceeds max_position {cfg.max_position}")
    for name in ("global_blocks",) + (("law_blocks",) if cfg.law_blocks is not None else ()):
        blocks = getattr(cfg, name)
        if not all(isinstance(b, int) and 0 <= b < cfg.vit_depth for b in blocks):
            _fail(f"{name} must hold block indices in [0, {cfg.vit_depth}), got {blocks!r}")
        if len(set(blocks)) != len(blocks):
            _fail(f"{name} has duplicate indices: {blocks!r}")
    if cfg.law_blocks is not None and cfg.law_type != "none" and not cfg.law_blocks:
        _fail("law_blocks is empty; use law_type='none' for a passive backbone")
    if not 0.0 <= cfg.drop_path < 1.0 or not 0.0 <= cfg.hidden_dropout < 1.0:
        _fail("drop_path and hidden_dropout must lie in [0, 1)")
    for name in LOSS_WEIGHTS:
        if getattr(cfg, name) < 0:
            _fail(f"{name} must be >= 0, got {getattr(cfg, name)!r}")


def make_model_config(preset: str = "tiny", **overrides) -> ModelConfig:
    """Preset values, then `overrides`; raises ValueError on unknown names or bad values."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    allowed = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "preset"]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"unknown model config field(s) {unknown}; allowed: {allowed}")
    values = dict(PRESETS[preset], **overrides)
    for name in ("global_blocks", "law_blocks"):  # JSON gives lists back
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    cfg = ModelConfig(preset=preset, **values)
    _validate(cfg)
    return cfg


def config_from_dict(d: dict) -> ModelConfig:
    """Inverse of `dataclasses.asdict` (e.g. a run's config.json); validates like make_model_config.

    A field the dict lacks (a checkpoint saved before the field existed) takes ModelConfig's
    default, which computes what the code did before the field was added, not the preset's
    current value (e.g. `text_pool`: "cls", though `tiny` now says "mean")."""
    d = dict(d)
    preset = d.pop("preset", "tiny")
    absent = {f.name: f.default for f in dataclasses.fields(ModelConfig)
              if f.name not in d and f.name != "preset" and f.default is not dataclasses.MISSING}
    return make_model_config(preset, **{**absent, **d})
