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
# # 03 · Ablations: what the language-adaptive weights buy
#
# The paper's ablation over how the expression shapes the backbone (DESIGN §3.3): `none` (a passive
# backbone, no generator), `la` (per-channel scaling of the qkv input), `od1`/`od2`/`od3`
# (input-channel scalings shared by q,k,v / split qk|v / separate, plus an output scaling) and
# `svd` (the paper's P·Φ·Q low-rank weight). One ordinary training run per law_type and seed,
# through the library; a finished run with the same settings is reused, so re-running trains only
# what is missing. Optional extra knobs: rank K, shared vs per-block P/Q, which blocks adapt.
#
# A difference between law types means something only if it exceeds the noise of training (seeds)
# and of the finite val set (sentences). So every mean gets a 95% CI, and every law type is compared
# with `none` *paired* (same seed, same sentences), its CI from a two-level bootstrap: resample
# seeds, then sentences (one draw for all drawn seeds, as every run scores the same sentences).
# `make ablation` runs the full grid (six law types x three seeds); `make reproduce` runs a reduced
# one (`none`, `la` and `svd`, one seed, 80 updates each), and the table title says which.
#
# Writes `reports/tables/ablation_law_type.{md,csv}` and `reports/figures/ablation_law_type.png`
# (under `report_dir`: `make ablation` writes to `reports/ablation/`, so `make reproduce` keeps its own).

# %% tags=["parameters"]
law_types: list[str] = ["none", "la", "svd"]  # ablated law_type values (the full grid, make ablation: all six)
seeds: list[int] = [0]  # one run per seed and setting; the full grid (make ablation) uses [0, 1, 2]
law_ranks: list[int] = []  # extra knob: K values for svd (empty: the preset's K only)
law_shared: list[bool] = []  # extra knob: [True, False] compares one shared P/Q pair with one per block
law_blocks: list[list[int]] = []  # extra knob: lists of adaptive block indices, e.g. [[0, 1], [2, 3]]
dataset: str = "shapes"  # dataset of every run
split_by: str | None = None  # None: the dataset's usual split (unc, umd, berkeley)
vit_model: str | None = None  # backbone init: vitdet_b_mrcnn (needs vit_model_path), shapes_pretrained, scratch; None: the recipe's
vit_model_path: str = ""  # vitdet_b_mrcnn: detectron2's model_final_61ccd1.pkl; shapes_pretrained: a backbone.ckpt
text_encoder_path: str = ""  # Hugging Face BERT folder (bert-base-uncased for paper); empty: MiniLM if its width fits
device_target: str | None = None  # CPU, GPU or Ascend; None: MindSpore's default (CPU here)
preset: str = "tiny"  # model preset of every run
max_epochs: int = 1  # epochs per run
max_steps: int = 80  # optimiser updates per run (the reduced grid must fit the workbook budget); 0: all max_epochs
lr_scheduler: str = "cosine"  # as 02: the LR reaches 0 at each run's last update
batch_size: int | None = None  # None: the recipe's
use_mask: bool = True  # multi-task (REC + RES)
translate: bool = True  # random-offset padding augmentation in every run
data_root: str = ""  # empty: data/ in the repository
cache_dir: str = ""  # empty: .cache/refer in the repository
save_ckpt_dir: str = ""  # empty: runs/ in the repository
experiment_prefix: str = "ablation"  # run directories are named <prefix>-<law_type>-...-s<seed>-<hash>
report_dir: str = ""  # tables/ and figures/ go here; empty: reports/ in the repository
run_archive: str = ""  # a folder keeping each finished run's record (config, metrics, val predictions; no checkpoints) and reusing it when settings and data match, so a grid can be finished across sessions; make ablation: reports/ablation_runs; empty: none
n_boot: int = 2000  # bootstrap resamples (seeds, then sentences) behind every 95% CI
workers: int = 2  # grid points trained at a time, each in its own process (the first alone: it builds the shared cache and backbone); 1: one after another
smoke: bool = False  # seconds-long runs on 40 small synthetic images

# %%
from vglaw.workbook.params import resolve_parameters

P = resolve_parameters(globals())

# %%
# %matplotlib inline
import logging

import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display

from vglaw.utils.errors import install_notebook_handler
from vglaw.utils.paths import reports_dir, resolve_path
from vglaw.workbook.ablation import ablation_stats, grid_label, reading, run_ablation
from vglaw.workbook.reports import plot_ablation, write_ablation_table
from vglaw.workbook.runs import notebook_train_config

install_notebook_handler()  # known errors (bad settings, missing files, a held run) show as one line

logging.basicConfig(level=logging.INFO, format="%(message)s")
# The parameters named as TrainConfig fields, plus what every ablation run shares: val only, no bars.
base = notebook_train_config(P, max_steps=P.max_steps or None, eval_splits=("val",), progress=False,
                             smoke_overrides=dict(synthetic_images=40, max_steps=4, max_epochs=1, log_freq=1,
                                                  pretrain_updates=2))
extra = {k: v for k, v in (("law_rank", P.law_ranks), ("law_shared", P.law_shared),
                           ("law_blocks", [tuple(b) for b in P.law_blocks])) if v}
out = resolve_path(P.report_dir, reports_dir())

# %% [markdown]
# ## 1. Train what is missing

# %%
archive = resolve_path(P.run_archive, None) if P.run_archive else None
df = run_ablation(base, P.law_types, P.seeds, prefix=P.experiment_prefix, extra=extra, archive=archive,
                  workers=P.workers)
display(df[["run", "law_type", "seed", "updates", "prec@0.5", "box_miou", "miou", "wall_s", "run_dir"]])

# %% [markdown]
# ## 2. Mean over seeds and paired difference vs `none` (val, %, 95% CI)

# %%
by = ["law_type", *extra]
stats = ablation_stats(df, "val", by=by, n_boot=P.n_boot)
runs = df.drop_duplicates("run")
what = grid_label(P.law_types, P.seeds, runs["updates"])
title = f"Ablation over {', '.join(by)} ({P.dataset}, preset {P.preset}, val; {what})"
md, csv = write_ablation_table(stats, "ablation_law_type", out / "tables", title=title)
display(Markdown(md.read_text()))

# %% [markdown]
# ## 3. Plot: means (top) and differences vs `none` (bottom), with 95% CIs

# %%
png = plot_ablation(stats, out / "figures" / "ablation_law_type.png", title=title)
display(Image(filename=str(png)))

# %% [markdown]
# ## 4. Reading

# %%
print(reading(stats))
