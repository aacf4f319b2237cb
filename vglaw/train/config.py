"""TrainConfig: every knob of a training run, named like the seed's `src/train.py` flags.

Defaults live in two layers (dinov2 style): the dataclass holds the value of each field that is
the same for every preset, and `RECIPES[preset]` fills the fields left at `None` (learning rates,
batch, epochs, warmup, ...). `paper` follows DESIGN §5 (AdamW 1e-5 / 1e-5 / 1e-4, batch 256,
weight decay 1e-4, clip 0.15); `tiny` is the CPU recipe: a from-scratch ViT needs a ~40x higher LR
than a pretrained one, and a small batch gives more updates per minute. `resolve_config` returns
the fully specified config that `run_training` uses and saves as `config.json`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

# Choice lists shared with the model and the data layer live there (one definition each).
from vglaw.config import DEVICE_TARGETS, LAW_TYPES, LOSS_WEIGHTS, MODES
from vglaw.data.refer import DATASETS, DEFAULT_SPLIT_BY

__all__ = ["TrainConfig", "RECIPES", "LR_SCHEDULERS", "VIT_MODELS", "SELECT_METRICS", "MASK_METRICS",
           "selection_value", "resolve_config", "ConfigError", "RENAMED_FIELDS"]

LR_SCHEDULERS = ("step", "cosine")
# vitdet_b_mrcnn: initialise the backbone from detectron2's ViTDet-B Mask R-CNN .pkl (--vit_model_path);
# vitdet_b_ms: the same backbone as the authors' release ships it (ms_model_final_61ccd1.ckpt, vglaw.models.convert);
# scratch: random init.
# shapes_pretrained: the tiny backbone pretrained on the synthetic set's train-split instances
# (vglaw.train.pretrain, DESIGN §4.2b), from --vit_model_path or built once and reused.
VIT_MODELS = ("vitdet_b_mrcnn", "vitdet_b_ms", "shapes_pretrained", "scratch")


class ConfigError(ValueError):
    """A value a user gave is invalid; the message says what is allowed."""


# Val metrics best.ckpt can be selected on (`select_metric`); "box_miou+miou" is the mean of the
# box mIoU (REC) and the mask mIoU (RES), so a multi-task run is selected on both tasks at once.
SELECT_METRICS = ("prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9", "box_miou", "miou", "oiou",
                  "box_miou+miou")
MASK_METRICS = ("miou", "oiou", "box_miou+miou")  # need use_mask (a trained RES head)


def selection_value(metrics: dict, select_metric: str) -> float:
    """The number `select_metric` names in `metrics` (vglaw.eval.evaluate's fractions); higher is better."""
    if select_metric not in SELECT_METRICS:
        raise ConfigError(f"select_metric {select_metric!r} is not allowed; expected one of {list(SELECT_METRICS)}")
    parts = select_metric.split("+")
    missing = [k for k in parts if metrics.get(k) is None]
    if missing:
        raise KeyError(f"metrics lack {missing} needed by select_metric {select_metric!r}")
    return float(sum(metrics[k] for k in parts) / len(parts))


@dataclass
class TrainConfig:
    # --- what to train (seed flags) ---
    preset: str = "paper"               # model preset: paper | tiny (vglaw.config.PRESETS)
    dataset: str = "shapes"             # refcoco refcoco+ refcocog refclef shapes shapes_rle
    split_by: str | None = None         # None: the dataset's usual split (unc/umd/berkeley); --splitBy also works
    law_type: str = "svd"               # none la od1 od2 od3 svd (the seed ignored this flag)
    img_size: int | None = None         # None: the preset's canvas side
    max_len: int | None = None          # token length; None: the preset's
    law_rank: int | None = None         # K of the svd LAW; None: the preset's
    vit_model: str | None = None        # vitdet_b_mrcnn | vitdet_b_ms | shapes_pretrained | scratch; None: recipe
    vit_model_path: str | None = None   # vitdet_b_mrcnn: detectron2 .pkl; vitdet_b_ms: the authors' .ckpt; shapes_pretrained: backbone.ckpt
    pretrain_updates: int = 500         # shapes_pretrained without a path: updates of the pretraining
    pretrained_path: str | None = None  # full VG-LAW .ckpt to start from (as the seed's flag)
    text_encoder_path: str | None = None  # HF BERT folder; None: MiniLM if its width fits, "none": random
    model_overrides: dict = field(default_factory=dict)  # extra ModelConfig fields (e.g. vit_dim)
    use_mask: bool = False              # train the RES head too (seed: store_true); False = REC only
    translate: bool = False             # random-offset padding augmentation (seed: store_true)
    freeze_word_embeddings: bool | None = None  # keep BERT's vocab x hidden table fixed; None: recipe

    # --- optimisation (DESIGN §5); None = the preset's recipe ---
    batch_size: int | None = None       # per device, per micro-step
    batch_sum: int | None = None        # effective batch of one update = batch_size*accum*world
    lr_lang: float | None = None        # text encoder
    lr_visual: float | None = None      # ViT backbone incl. W0/b0
    lr_base: float | None = None        # LAW generator + heads
    lr_scheduler: str = "step"          # step: warmup, then x drop_rate at each drop epoch; cosine
    max_epochs: int | None = None
    drop_epochs: tuple | None = None    # epochs (0-based start) at which the LR is multiplied by drop_rate
    drop_rate: float = 0.1
    warmup_epochs: float | None = None  # linear warmup from 1% of each LR; give this or warmup_steps
    warmup_steps: int | None = None     # warmup length in optimiser updates (wins over warmup_epochs)
    weight_decay: float = 1e-4          # AdamW decoupled decay; never on norms and biases
    clip_norm: float = 0.15             # global-norm clip of the (averaged) gradient; <= 0: off
    bbox_loss_coef: float = 1.0         # seed names of the four loss weights (vglaw.config.LOSS_WEIGHTS)
    xiou_loss_coef: float = 1.0
    focal_loss_coef: float = 1.0
    dice_loss_coef: float = 1.0
    max_steps: int | None = None        # stop after this many optimiser updates (smoke runs)

    # --- evaluation ---
    eval_splits: tuple | None = None    # splits scored with best.ckpt at the end; None: all non-train
    eval_every: int = 1                 # epochs between val evaluations (best.ckpt); 0: only at the end
    eval_every_steps: int | None = None  # val every N updates too (time-to-accuracy rows); 0: off; None: recipe/0
    select_metric: str | None = None    # val metric picking best.ckpt; None: box_miou+miou (use_mask) or box_miou
    eval_batch_size: int | None = None  # None: 2 x batch_size
    mask_threshold: float = 0.5         # mask probability threshold at original resolution
    box_source: str | None = None       # head | mask: the REC box is the head's or the predicted mask's
                                        # bounding box (ModelConfig.box_source); None: the recipe's

    # --- run bookkeeping ---
    experiment_name: str = "experiment0"  # run dir = save_ckpt_dir/experiment_name
    short_comment: str = ""             # free text stored in config.json
    save_ckpt_dir: str | None = None    # None: <repo>/runs
    data_root: str | None = None        # None: <repo>/data (the synthetic set is generated there)
    cache_dir: str | None = None        # None: <repo>/.cache/refer
    synthetic_images: int | None = None  # shapes*: images to generate; None: the generator's default
    resume: bool = False                # continue from last.ckpt of the run dir
    overwrite: bool = False             # start afresh even if the run dir holds a run
    allow_changes: bool = False         # --resume may change settings that alter the run (recorded in config.json)
    force: bool = False                 # train even when the resource estimate exceeds free memory
    ckpt_every: int = 0                 # also write last.ckpt every N updates (0: epoch ends only)
    log_freq: int = 10                  # train_log.jsonl line every N optimiser updates
    seed: int = 0                       # model init, data order (with the epoch) and augmentation
    deterministic: bool | None = None   # bit-identical reruns of a seed (CPU kernels on one thread); None: the recipe's
    num_workers: int = 1                # data-pipeline workers
    recompute: bool = False             # recompute ViT blocks / BERT layers in the backward (same gradients; see
                                        # VGLAW.set_recompute: on CPU it pays only with lean_kernels, issue 10)
    lean_kernels: bool = False          # CPU-lean op spellings of the ViT (VGLAW.set_lean_kernels) and of the
                                        # gradient clip (step.clip_global_norm): less GRAPH-mode CPU memory;
                                        # GELU, DropPath and the clip differ in the last bit; issue 10
    mode_name: str = "GRAPH"            # GRAPH: mindspore.jit train step; PYNATIVE: op by op (debug)
    device_target: str | None = None    # CPU GPU Ascend; None: MindSpore's default
    progress: bool = True               # tqdm bar (rank 0)


# Fields renamed since run directories were first written: old name -> new. config.json files
# that hold the old name compare equal (vglaw.train.bookkeeping.changed_fields), and the CLI
# accepts the old flag (`--splitBy`, the seed's spelling, as the refer API writes it).
RENAMED_FIELDS = {"splitBy": "split_by"}

# Fields added since run directories were first written, with the value that computes what the
# runs before them did: a config.json without the field compares as if it held that value (a
# resume, a reuse, an archived record), and an ablation's run name leaves the field out at it.
ADDED_FIELDS = {"lean_kernels": False, "box_source": "head"}


# Fields a preset's recipe fills when they are None. Every resolved value is saved in config.json.
RECIPES: dict[str, dict] = {
    # DESIGN §5; epochs/drop as the seed's refcoco script (fine-tuning) uses them in its parser.
    "paper": dict(batch_size=8, batch_sum=256, lr_lang=1e-5, lr_visual=1e-5, lr_base=1e-4,
                  max_epochs=90, drop_epochs=(60,), warmup_epochs=1.0, vit_model="vitdet_b_mrcnn",
                  freeze_word_embeddings=False, deterministic=False, box_source="head"),
    # CPU recipe (2 cores): from-scratch ViT and LAW at 4e-3 (1e-4 barely moves it in minutes),
    # pretrained MiniLM layers at 1e-4; batch 16 without accumulation. NOT shown to reach the
    # workbook's bar (val prec@0.5 >= 0.85 in 15 min). Measured (issue 8; shapes, svd, --use_mask
    # --translate, seed 0, 305 val sentences), val prec@0.5 / box mIoU / mask mIoU:
    #   tiny model with rec_mask_guide (the default), one dedicated core, at 175/350/700/1050
    #   updates (194/367/694/1022 s): 0.138/0.257/0.469, 0.393/0.356/0.519, 0.534/0.429/0.540,
    #   0.554/0.465/0.545 -- train split at 1050: 0.620/0.493/0.558 (under-fitting, not over-fitting)
    #   before the guide, at 350/700/1050:
    #   scratch:            0.023/0.079/0.473, 0.036/0.094/0.550, 0.111/0.144/0.544
    #   shapes_pretrained:  0.030/0.136/0.394, 0.115/0.189/0.295, 0.230/0.213/0.381 (500 updates)
    # The pretrained backbone doubled box prec@0.5 at equal grounding updates but lowered mask mIoU,
    # and its 500 pretraining updates cost as much CPU time as ~1,000 grounding updates, so it does
    # not shorten the workbook's time-to-accuracy: scratch stays the default, the stage an option. The frozen word-embedding
    # table (30522 x 384) saves ~20% of the step and cannot overfit the small synthetic vocabulary.
    # Session 13: the from-scratch ViT, LAW and heads at 4e-3 (was 1e-3). Measured (issue 8; shapes,
    # svd, --use_mask --translate, 2-core AVX-512 CPU), val prec@0.5 / box mIoU / mask mIoU:
    #   the workbook's 700 cosine updates: 1e-3 seed 0 0.498/0.438/0.687, seed 1 0.574/0.475/0.713;
    #   4e-3 seed 0 0.698/0.544/0.725, seed 1 0.705/0.538/0.725. Paired over the 305 val sentences,
    #   4e-3 - 1e-3 (95 % CI): seed 0 prec@0.5 +0.200 (+0.148, +0.249), box mIoU +0.106 (+0.086,
    #   +0.128), mask mIoU +0.037 (+0.016, +0.058); seed 1 +0.131 (+0.088, +0.174), +0.063 (+0.043,
    #   +0.084), +0.012 (-0.007, +0.031: noise);
    #   4e-3 seed 2 0.662/0.521/0.719; 6e-3 seed 0 0.679/0.526/0.711 (no gain); 8e-3 seeds 0 and 1
    #   collapse to the mean box (prec@0.5 0.02 through update 525): 4e-3 is a factor 2 below that edge;
    #   this recipe's step schedule (constant after warmup): 0.5 reached at update 350 with 4e-3
    #   (seeds 0 and 1), at 700 with 1e-3; 2e-3 0.603 at 700; but 4e-3 levels off at 0.71-0.73
    #   from update 875 to 2,100 (1e-3: 0.675 at 1,400, still rising): a constant 4e-3 needs decay.
    "tiny": dict(batch_size=16, batch_sum=16, lr_lang=1e-4, lr_visual=4e-3, lr_base=4e-3,
                 max_epochs=30, drop_epochs=(24,), warmup_steps=100, vit_model="scratch",
                 freeze_word_embeddings=True,
                 # Bit-identical reruns of a seed, at no cost on 2 cores: measured (issue 8, session 8;
                 # 120 updates of the workbook recipe, alternated) 128 / 143 train-s with it against
                 # 136 / 141 without. Without it, one seed's val prec@0.5 at 700 updates ranged 32.5-64.3
                 # over five runs (CPU Dropout's kernel threads race), so a rerun could not be checked.
                 deterministic=True,
                 # val every 175 updates (half an epoch of shapes): the time-to-accuracy curve
                 # (~15 s per evaluation of the 305 val sentences on 2 cores)
                 eval_every_steps=175,
                 # Session 16: the box is the predicted mask's bounding box (ModelConfig.box_source).
                 # Measured on the 18 archived ablation runs (6 law types x 3 seeds, 700 updates; their
                 # stored val masks re-scored), the mask's box against the REC head's, paired over the
                 # runs and the 305 val sentences (two-level bootstrap, 95 % CI): Prec@0.5 +7.3
                 # [+4.8, +10.1], box mIoU +11.0 [+9.5, +12.6]; higher in all 18 runs. The REC head
                 # picks the object (the mask reads its box, res_select); the mask outlines it.
                 box_source="mask"),
}


def _positive(cfg, names, allow_none=False):
    for name in names:
        v = getattr(cfg, name)
        if v is None and allow_none:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"{name} must be > 0, got {v!r}")


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill `None` fields from the preset recipe and the dataset; validate; return a new config.

    Raises ConfigError (a ValueError) naming the field and the allowed values.
    """
    from vglaw.config import BOX_SOURCES, PRESETS

    def choice(name, allowed, obj=cfg):
        v = getattr(obj, name)
        if v not in allowed:
            raise ConfigError(f"{name} {v!r} is not allowed; expected one of {list(allowed)}")

    choice("preset", tuple(PRESETS))
    choice("dataset", tuple(DATASETS))
    choice("law_type", LAW_TYPES)
    choice("lr_scheduler", LR_SCHEDULERS)
    choice("mode_name", MODES)
    if cfg.device_target is not None:
        choice("device_target", DEVICE_TARGETS)
    if cfg.box_source is not None:
        choice("box_source", BOX_SOURCES)
    recipe = RECIPES.get(cfg.preset, RECIPES["paper"])
    values = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if v is None and f.name in recipe:
            if f.name.startswith("warmup_") and (cfg.warmup_steps is not None or cfg.warmup_epochs is not None):
                v = None  # the user chose the other warmup unit
            else:
                v = recipe[f.name]
        values[f.name] = v
    out = TrainConfig(**values)
    choice("vit_model", VIT_MODELS, out)
    if out.split_by is None:
        out.split_by = DEFAULT_SPLIT_BY[out.dataset]
    SPLITS_OF = DATASETS
    if out.split_by not in SPLITS_OF[out.dataset]:
        raise ConfigError(f"split_by {out.split_by!r} is not allowed for {out.dataset}; "
                          f"expected one of {list(SPLITS_OF[out.dataset])}")
    from vglaw.data.refer import allowed_splits
    allowed = [s for s in allowed_splits(out.dataset, out.split_by) if s != "train"]
    if out.eval_splits is None:
        out.eval_splits = tuple(s for s in SPLITS_OF[out.dataset][out.split_by] if s != "train")
    out.eval_splits = tuple(out.eval_splits)
    for s in out.eval_splits:
        if s not in allowed:
            raise ConfigError(f"eval split {s!r} is not allowed for {out.dataset}({out.split_by}); "
                              f"expected some of {allowed}")
    if "val" not in SPLITS_OF[out.dataset][out.split_by]:
        raise ConfigError(f"{out.dataset}({out.split_by}) has no val split to select best.ckpt on")
    out.drop_epochs = tuple(int(e) for e in (out.drop_epochs or ()))
    _positive(out, ("batch_size", "batch_sum", "max_epochs", "lr_lang", "lr_visual", "lr_base",
                    "log_freq", "num_workers"))
    _positive(out, ("img_size", "max_len", "law_rank", "max_steps", "eval_batch_size",
                    "synthetic_images"), allow_none=True)
    if out.batch_sum % out.batch_size:
        raise ConfigError(f"batch_sum {out.batch_sum} must be a multiple of batch_size {out.batch_size}")
    if any(e < 0 for e in out.drop_epochs):
        raise ConfigError(f"drop_epochs must be >= 0, got {list(out.drop_epochs)}")
    if out.eval_every_steps is None:
        out.eval_every_steps = 0  # the recipe has no value for it (paper: per epoch only)
    if out.select_metric is None:
        out.select_metric = "box_miou+miou" if out.use_mask else "box_miou"
    if out.select_metric not in SELECT_METRICS:
        raise ConfigError(f"select_metric {out.select_metric!r} is not allowed; expected one of "
                          f"{list(SELECT_METRICS)}")
    if out.select_metric in MASK_METRICS and not out.use_mask:
        raise ConfigError(f"select_metric {out.select_metric!r} scores masks: it needs --use_mask; without it "
                          f"expected one of {[m for m in SELECT_METRICS if m not in MASK_METRICS]}")
    if isinstance(out.eval_every_steps, bool) or not isinstance(out.eval_every_steps, int):
        raise ConfigError(f"eval_every_steps must be an integer >= 0, got {out.eval_every_steps!r}")
    for name in ("weight_decay", *LOSS_WEIGHTS.values(), "eval_every", "eval_every_steps", "ckpt_every"):
        if getattr(out, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(out, name)!r}")
    if not 0.0 < out.drop_rate <= 1.0:
        raise ConfigError(f"drop_rate must lie in (0, 1], got {out.drop_rate}")
    if not 0.0 < out.mask_threshold < 1.0:
        raise ConfigError(f"mask_threshold must lie in (0, 1), got {out.mask_threshold}")
    if (out.warmup_steps or 0) < 0 or (out.warmup_epochs or 0) < 0:
        raise ConfigError("warmup_steps / warmup_epochs must be >= 0")
    if out.eval_batch_size is None:
        out.eval_batch_size = 2 * out.batch_size
    if out.vit_model == "vitdet_b_ms" and not out.vit_model_path and not out.pretrained_path:
        raise ConfigError("vit_model 'vitdet_b_ms' needs --vit_model_path (the authors' ViTDet backbone "
                          "ms_model_final_61ccd1.ckpt) or a full --pretrained_path")
    if out.vit_model == "vitdet_b_mrcnn" and not out.vit_model_path and not out.pretrained_path:
        raise ConfigError("vit_model 'vitdet_b_mrcnn' needs --vit_model_path (detectron2's ViTDet "
                          "model_final_61ccd1.pkl) or a full --pretrained_path; use --vit_model "
                          "scratch to train the backbone from random init")
    out.model_overrides = dict(out.model_overrides or {})
    mc = model_config(out)  # validates the model overrides now, with the model's own messages
    out.img_size, out.max_len, out.law_rank = mc.img_size, mc.max_len, mc.law_rank
    return out


def model_config(cfg: TrainConfig):
    """The ModelConfig this run trains (preset + TrainConfig fields that shape the model)."""
    from vglaw.config import make_model_config
    over = dict(cfg.model_overrides)
    for name in ("img_size", "max_len", "law_rank"):
        if getattr(cfg, name) is not None:
            over[name] = getattr(cfg, name)
    over.update(law_type=cfg.law_type, use_mask=cfg.use_mask)
    if cfg.box_source is not None:
        over["box_source"] = cfg.box_source
    over.update({field: getattr(cfg, flag) for field, flag in LOSS_WEIGHTS.items()})
    try:
        return make_model_config(cfg.preset, **over)
    except ValueError as exc:
        raise ConfigError(f"model config: {exc}") from exc
