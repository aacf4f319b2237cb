# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Train: one VG-LAW run through the library
#
# Trains VG-LAW (REC box + RES mask, language-adaptive weights in every ViT block) with
# `vglaw.train.run_training`, the same engine as `python -m vglaw.train`: AdamW with three LR
# groups, warmup + step schedule, gradient accumulation to `batch_sum`, a `mindspore.jit` train
# step, `best.ckpt` chosen on a **val** metric (`select_metric`). It then shows the loss and LR
# curves, the val accuracy against updates and against seconds (time to accuracy), the evaluation
# metrics (masks scored at the original image resolution) and a few predictions, and leaves a run
# directory `<save_ckpt_dir>/<experiment_name>/` that notebooks 04 and 05 read.
#
# Parameters are named as the training CLI's flags; `None` means the preset's recipe
# (`vglaw.train.config.RECIPES`). Headless: `papermill notebooks/02_train.ipynb out.ipynb -p dataset refcoco+`.

# %% tags=["parameters"]
dataset = "shapes"  # refcoco, refcoco+, refcocog, refclef, shapes, shapes_rle
split_by = None  # None: the dataset's usual split (unc, umd, berkeley)
law_type = "svd"  # none, la, od1, od2, od3, svd
preset = "tiny"  # tiny (CPU workbook) or paper (DESIGN section 3, for GPU/Ascend)
img_size = None  # canvas side in pixels; None: the preset's
max_epochs = 2  # the workbook's budget (about 7 CPU minutes); None: the preset's recipe
batch_size = None  # per device and micro-step; None: the recipe's
batch_sum = None  # effective batch of one update (gradient accumulation); None: the recipe's
lr_lang = None  # text-encoder LR; None: the recipe's
lr_visual = None  # ViT backbone LR; None: the recipe's
lr_base = None  # LAW generator and head LR; None: the recipe's
use_mask = True  # train the RES head too (multi-task)
translate = True  # random-offset padding augmentation
eval_every_steps = None  # val every N updates too (time-to-accuracy points); None: the recipe's; 0: per epoch only
select_metric = None  # val metric picking best.ckpt, e.g. prec@0.5; None: box_miou+miou (with use_mask)
deterministic = False  # bit-identical reruns of a seed (CPU kernels on one thread)
data_root = ""  # folder in refer layout; empty: data/ in the repository
cache_dir = ""  # preprocessed cache; empty: .cache/refer in the repository
save_ckpt_dir = ""  # where run directories go; empty: runs/ in the repository
experiment_name = ""  # run directory name; empty: train-<dataset>-<preset>-<law_type>
pretrained_path = ""  # a full VG-LAW checkpoint to start from; empty: none
vit_model = None  # backbone init: vitdet_b_mrcnn (needs vit_model_path), shapes_pretrained, scratch; None: the recipe's
vit_model_path = ""  # vitdet_b_mrcnn: detectron2's model_final_61ccd1.pkl; shapes_pretrained: a backbone.ckpt
text_encoder_path = ""  # Hugging Face BERT folder (bert-base-uncased for paper); empty: MiniLM if its width fits
max_steps = None  # stop after this many optimiser updates; None: all max_epochs
seed = 0  # model init, data order and augmentation
mode_name = "GRAPH"  # GRAPH (mindspore.jit train step) or PYNATIVE (debugging)
device_target = "CPU"  # CPU, GPU or Ascend
report_dir = ""  # if non-empty, figures are also written to <report_dir>/figures/
n_show = 8  # predictions drawn at the end
smoke = False  # seconds-long run: 40 small synthetic images, a few optimiser steps

# %%
from vglaw.workbook.params import resolve_parameters

P = resolve_parameters(globals())

# %%
# %matplotlib inline
import json
import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from vglaw.data import RefDataset
from vglaw.utils.paths import default_cache_dir, default_data_root, default_runs_dir, repo_root, reports_dir, resolve_path
from vglaw.workbook.runs import train_or_reuse
from vglaw.train import TrainConfig, resolve_config
from vglaw.eval.visualize import draw_panels
from vglaw.utils.errors import install_notebook_handler

install_notebook_handler()  # known errors (bad settings, missing files, a held run) show as one line

logging.basicConfig(level=logging.INFO, format="%(message)s")
smoke_root = repo_root() / ".cache" / "smoke"  # smoke runs never touch the default data or runs
smoke_overrides = dict(synthetic_images=40, max_steps=6, max_epochs=1, eval_splits=("val",), log_freq=1,
                       eval_every_steps=2, pretrain_updates=2) if P.smoke else {}
cfg = resolve_config(TrainConfig(**{**dict(
    preset=P.preset, dataset=P.dataset, splitBy=P.split_by, law_type=P.law_type, img_size=P.img_size,
    max_epochs=P.max_epochs, batch_size=P.batch_size, batch_sum=P.batch_sum, lr_lang=P.lr_lang,
    lr_visual=P.lr_visual, lr_base=P.lr_base, use_mask=P.use_mask, translate=P.translate,
    eval_every_steps=P.eval_every_steps, select_metric=P.select_metric, deterministic=P.deterministic,
    data_root=str(resolve_path(P.data_root, smoke_root / "data" if P.smoke else default_data_root())),
    cache_dir=str(resolve_path(P.cache_dir, smoke_root / "cache" if P.smoke else default_cache_dir())),
    save_ckpt_dir=str(resolve_path(P.save_ckpt_dir, smoke_root / "runs" if P.smoke else default_runs_dir())),
    experiment_name=P.experiment_name or f"train-{P.dataset}-{P.preset}-{P.law_type}",
    pretrained_path=P.pretrained_path or None, vit_model=P.vit_model, vit_model_path=P.vit_model_path or None,
    text_encoder_path=P.text_encoder_path or None, max_steps=P.max_steps,
    seed=P.seed, mode_name=P.mode_name, device_target=P.device_target), **smoke_overrides}))
display(pd.Series({k: v for k, v in vars(cfg).items()}, name="resolved config").to_frame())

# %% [markdown]
# ## 1. Train
#
# Progress goes to the bar below; every `log_freq` updates a line goes to `train_log.jsonl`.
# A finished run with the same settings is reused; an interrupted one resumes from `last.ckpt`.

# %%
run_dir = train_or_reuse(cfg)
print(run_dir)

# %% [markdown]
# ## 2. Loss and learning-rate curves, val accuracy over updates and seconds
#
# Val rows come from every epoch end and every `eval_every_steps` updates. `time` is wall-clock
# seconds of the run with the evaluations included (`train_time` leaves them out); both continue
# across a resume. `benchmarks/bench_convergence.py --run_dir <run>` tabulates the first update and
# second at which val Prec@0.5 reached 0.5 / 0.8 / 0.9.

# %%
rows = pd.json_normalize([json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()])
is_val = rows["eval"].eq("val") if "eval" in rows else pd.Series(False, index=rows.index)
log, val = rows[~is_val], rows[is_val].drop_duplicates("step", keep="last")  # a redone evaluation: last row
loss_cols = [c for c in ("loss", "l1", "giou", "focal", "dice") if c in log]
lr_cols = [c for c in log.columns if c.startswith("lr.")]
val_cols = [c for c in ("prec@0.5", "miou") if c in val and val[c].notna().any()]  # miou: use_mask runs
fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(11, 7))
log.plot(x="step", y=loss_cols, ax=ax1, logy=True, title="training losses")
log.plot(x="step", y=lr_cols, ax=ax2, logy=True, title="learning rate per group")
for ax, x, label in ((ax3, "step", "optimiser updates"), (ax4, "time", "seconds since the start")):
    if x in val:
        val.plot(x=x, y=val_cols, ax=ax, marker="o", ylim=(-0.02, 1.02), title=f"val accuracy vs {label}")
        ax.set_xlabel(label)
        ax.set_ylabel("fraction")
fig.tight_layout()
if P.report_dir:
    figures = resolve_path(P.report_dir, reports_dir()) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / "02_train_curves.png", dpi=100)
display(fig)
plt.close(fig)

# %% [markdown]
# ## 3. Evaluation (best.ckpt, selected on val)
#
# Fractions; masks scored at the original image resolution (`miou`, `oiou`) and with the official
# protocol on the padded canvas at threshold 0.35 (`miou_canvas`).

# %%
status = json.loads((run_dir / "status.json").read_text())
print(f"best.ckpt: update {status['best_step']} (epoch {status['best_epoch']}), selected on val "
      f"{status.get('best_metric', 'prec@0.5')} = {status.get('best_value', status['best_val_prec50']):.4f}")
metrics = json.loads((run_dir / "metrics.json").read_text())
display(pd.DataFrame(metrics).T.round(4))

# %% [markdown]
# ## 4. A few predictions on val (green: ground truth, red: prediction)

# %%
ds = RefDataset(cfg.cache_dir, cfg.dataset, cfg.splitBy, "val")
predictions = json.loads((run_dir / "predictions_val.json").read_text())
picks = np.linspace(0, len(ds) - 1, num=min(P.n_show, len(ds))).astype(int).tolist()
grid, _ = draw_panels(ds, predictions, picks)
display(grid)
plt.close(grid)

# %% [markdown]
# ## 5. The run directory

# %%
print("\n".join(sorted(p.name for p in run_dir.iterdir())))
