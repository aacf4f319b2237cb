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
dataset: str = "shapes"  # refcoco, refcoco+, refcocog, refclef, shapes, shapes_rle
split_by: str | None = None  # None: the dataset's usual split (unc, umd, berkeley)
law_type: str = "svd"  # none, la, od1, od2, od3, svd
preset: str = "tiny"  # tiny (CPU workbook) or paper (DESIGN section 3, for GPU/Ascend)
img_size: int | None = None  # canvas side in pixels; None: the preset's
max_epochs: int = 2  # the workbook's budget (about 7 CPU minutes); None: the preset's recipe
lr_scheduler: str = "cosine"  # cosine: warmup, then to 0 over this run's updates (the workbook's fixed budget); step: the recipe's drops
batch_size: int | None = None  # per device and micro-step; None: the recipe's
batch_sum: int | None = None  # effective batch of one update (gradient accumulation); None: the recipe's
lr_lang: float | None = None  # text-encoder LR; None: the recipe's
lr_visual: float | None = None  # ViT backbone LR; None: the recipe's
lr_base: float | None = None  # LAW generator and head LR; None: the recipe's
use_mask: bool = True  # train the RES head too (multi-task)
translate: bool = True  # random-offset padding augmentation
eval_every_steps: int | None = None  # val every N updates too (time-to-accuracy points); None: the recipe's; 0: per epoch only
select_metric: str | None = None  # val metric picking best.ckpt, e.g. prec@0.5; None: box_miou+miou (with use_mask)
deterministic: bool | None = None  # bit-identical reruns of a seed (CPU kernels on one thread); None: the recipe's (tiny on, paper off)
data_root: str = ""  # folder in refer layout; empty: data/ in the repository
cache_dir: str = ""  # preprocessed cache; empty: .cache/refer in the repository
save_ckpt_dir: str = ""  # where run directories go; empty: runs/ in the repository
experiment_name: str = ""  # run directory name; empty: train-<dataset>-<preset>-<law_type>
pretrained_path: str = ""  # a full VG-LAW checkpoint to start from; empty: none
vit_model: str | None = None  # backbone init: vitdet_b_mrcnn (needs vit_model_path), shapes_pretrained, scratch; None: the recipe's
vit_model_path: str = ""  # vitdet_b_mrcnn: detectron2's model_final_61ccd1.pkl; shapes_pretrained: a backbone.ckpt
text_encoder_path: str = ""  # Hugging Face BERT folder (bert-base-uncased for paper); empty: MiniLM if its width fits
max_steps: int | None = None  # stop after this many optimiser updates; None: all max_epochs
seed: int = 0  # model init, data order and augmentation
mode_name: str = "GRAPH"  # GRAPH (mindspore.jit train step) or PYNATIVE (debugging)
device_target: str = "CPU"  # CPU, GPU or Ascend
report_dir: str = ""  # if non-empty, figures are also written to <report_dir>/figures/
n_show: int = 8  # predictions drawn at the end
smoke: bool = False  # seconds-long run: 40 small synthetic images, a few optimiser steps

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
from vglaw.eval.visualize import draw_panels, plot_training_curves
from vglaw.utils.errors import install_notebook_handler
from vglaw.utils.paths import reports_dir, resolve_path
from vglaw.workbook.runs import notebook_train_config, train_or_reuse

install_notebook_handler()  # known errors (bad settings, missing files, a held run) show as one line

logging.basicConfig(level=logging.INFO, format="%(message)s")
# The parameters named as TrainConfig fields; smoke runs go under .cache/smoke/.
cfg = notebook_train_config(P, experiment_name=P.experiment_name or f"train-{P.dataset}-{P.preset}-{P.law_type}",
                            smoke_overrides=dict(synthetic_images=40, max_steps=6, max_epochs=1, eval_splits=("val",),
                                                 log_freq=1, eval_every_steps=2, pretrain_updates=2))
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
fig = plot_training_curves(run_dir)
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
ds = RefDataset(cfg.cache_dir, cfg.dataset, cfg.split_by, "val")
predictions = json.loads((run_dir / "predictions_val.json").read_text())
picks = np.linspace(0, len(ds) - 1, num=min(P.n_show, len(ds))).astype(int).tolist()
grid, _ = draw_panels(ds, predictions, picks)
display(grid)
plt.close(grid)

# %% [markdown]
# ## 5. The run directory

# %%
print("\n".join(sorted(p.name for p in run_dir.iterdir())))
