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
# # 05 · Inspect: grounding any expression, successes and failures, and what LAW does
#
# Loads a trained run's `best.ckpt`, grounds expressions of your choice in any image
# (`vglaw.eval.predict`), shows the best and worst predictions of the run on val, where its misses
# are (which object the box lands on, and on the synthetic set, which words the model reads), and
# looks inside the language-adaptive weights: how strongly each block's qkv weight changes with the expression, and
# how different expressions generate different weights.

# %% tags=["parameters"]
run_name: str = "train-shapes-tiny-svd"  # run directory to inspect (under save_ckpt_dir)
save_ckpt_dir: str = ""  # empty: runs/ in the repository
image_path: str = ""  # an image to ground expressions in; empty: the first val image of the run's dataset
texts: list[str] = []  # expressions for that image; empty: the dataset's own val expressions of that image
n_gallery: int = 6  # successes and failures shown each
report_dir: str = ""  # if non-empty, figures are also written to <report_dir>/figures/
panel: bool = True  # JupyterLab: an interactive panel to ground your own expressions (papermill runs pass False)
smoke: bool = False  # inspect the smoke run of 02_train instead (under .cache/smoke/runs)

# %%
from vglaw.workbook.params import resolve_parameters

P = resolve_parameters(globals())

# %%
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from vglaw.data import RefDataset
from vglaw.data.tokenizer import load_tokenizer
from vglaw.eval.evaluate import load_model_from_checkpoint
from vglaw.workbook.lab import compare, grounding_panel
from vglaw.workbook.law_analysis import generated_weights, pairwise_distance, relative_update
from vglaw.utils.paths import default_data_root, default_runs_dir, repo_root, reports_dir, resolve_path
from vglaw.eval.predict import overlay, predict
from vglaw.eval.misses import analyse, tables
from vglaw.eval.visualize import draw_panels

runs = resolve_path(P.save_ckpt_dir, repo_root() / ".cache" / "smoke" / "runs" if P.smoke else default_runs_dir())
run_dir = runs / P.run_name
if not (run_dir / "best.ckpt").is_file():
    raise FileNotFoundError(f"{run_dir}/best.ckpt not found: train the run first (notebook 02_train with "
                            f"experiment_name={P.run_name!r}) or pick another run_name")
cfg = json.loads((run_dir / "config.json").read_text())["train"]
model = load_model_from_checkpoint(run_dir / "best.ckpt")
tokenizer = load_tokenizer()
split_by = cfg.get("split_by", cfg.get("splitBy"))
ds = RefDataset(cfg["cache_dir"], cfg["dataset"], split_by, "val")
figures = resolve_path(P.report_dir, reports_dir()) / "figures" if P.report_dir else None
if figures:
    figures.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Ground expressions in an image

# %%
if P.image_path:
    image, texts = resolve_path(P.image_path, repo_root()), list(P.texts)
else:
    # The val image with the most distinct referred objects, one expression for each.
    refs_of = ds.refs_by_image()
    image_id = max(refs_of, key=lambda k: len(refs_of[k]))
    first = list(refs_of[image_id].values())
    image = ds.image_path(first[0])
    texts = list(P.texts) or [ds.phrases[i] for i in first][:4]
if not texts:
    raise ValueError("texts is empty: give expressions for image_path")
fig, axes = plt.subplots(1, len(texts), figsize=(3.6 * len(texts), 3.8), squeeze=False)
for ax, text in zip(axes.flat, texts):
    result = predict(model, tokenizer, image, text)
    ax.imshow(overlay(image, result, text))
    ax.set_title(f"{text}\nbox {np.round(result['box_xywh'], 1).tolist()}", fontsize=8)
    ax.axis("off")
fig.tight_layout()
if figures:
    fig.savefig(figures / "05_grounding.png", dpi=100)
display(fig)
plt.close(fig)

# %% [markdown]
# ## 2. Gallery: the run's best and worst val predictions (by box IoU)

# %%
predictions = json.loads((run_dir / "predictions_val.json").read_text())
order = np.argsort([p["box_iou"] for p in predictions])
for title, chosen in (("successes", order[::-1][:P.n_gallery]), ("failures", order[:P.n_gallery])):
    picks = [ds.index_of(predictions[j]["sent_id"]) for j in chosen]
    grid, _ = draw_panels(ds, predictions, picks, ncols=min(P.n_gallery, 6))
    ious = ", ".join(f"{predictions[j]['box_iou']:.2f}" for j in chosen)
    grid.suptitle(f"{title}: box IoU {ious}")
    if figures:
        grid.savefig(figures / f"05_{title}.png", dpi=90)
    display(grid)
    plt.close(grid)

# %% [markdown]
# ## 3. Where the misses are
#
# Each val sentence's box is matched to the image's annotated objects: a hit (IoU >= 0.5 with the
# referred object), a loose box on the referred object, or a box on another object
# (`vglaw.eval.misses`; `benchmarks/miss_analysis.py` pools several runs). On the synthetic set the
# second table splits the "base" sentences ("the red circle") by the words the image makes
# necessary: `shape` when another object has the referred one's colour, `colour` when another has
# its shape, `both`, `either`. A model that does not read a word fails its rows.

# %%
import pandas as pd

misses = analyse(predictions, cfg["dataset"], split_by, resolve_path(cfg.get("data_root", ""), default_data_root()))
miss_tables = tables(misses)
kinds = pd.DataFrame(miss_tables["kinds"]).set_index("kind")
display(kinds.round(1).assign(**{"its mean box IoU": kinds["its mean box IoU"].round(3)}))
if miss_tables["needs"]:
    display(pd.DataFrame(miss_tables["needs"]).set_index("needs").round(1))

# %% [markdown]
# ## 4. What LAW does
#
# Left: how much each adaptive block's qkv weight changes with the expression (svd:
# ‖P·Φ·Q‖ / ‖W0‖; la/od*: mean |scaling − 1|). Right: how far apart the generated weights of the
# expressions above are, in the first and the last adaptive block (‖g_i − g_j‖ / mean ‖g‖; 0 =
# identical), on a colour scale set by the values: different expressions for the same image
# should generate different weights. (Their cosine sits near 1.0 because the part every
# expression shares dominates, so it shows nothing.)

# %%
if model.config.law_type == "none":
    print("law_type 'none': a passive backbone, nothing is generated")
else:
    gen = generated_weights(model, tokenizer, texts)
    change = relative_update(model, gen)
    dist = pairwise_distance(gen, model.config.law_type)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(model.config.adaptive_blocks, change.T, marker="o")
    axes[0].set_xlabel("block")
    axes[0].set_xticks(list(model.config.adaptive_blocks))
    axes[0].set_ylabel("relative qkv change")
    axes[0].legend([t[:24] for t in texts], fontsize=7)
    vmax = max(float(dist.max()), 1e-6)
    for ax, b in zip(axes[1:], (0, -1)):
        im = ax.imshow(dist[b], vmin=0.0, vmax=vmax, cmap="viridis")
        for (i, j), v in np.ndenumerate(dist[b]):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 * vmax else "black")
        ax.set_title(f"distance of generated weights, block {model.config.adaptive_blocks[b]}", fontsize=9)
        ax.set_xticks(range(len(texts)), [t[:14] for t in texts], rotation=45, fontsize=7)
        ax.set_yticks(range(len(texts)), [t[:14] for t in texts], fontsize=7)
    fig.colorbar(im, ax=axes[1:])
    if figures:
        fig.savefig(figures / "05_law.png", dpi=100)
    display(fig)
    plt.close(fig)

# %% [markdown]
# ## 5. Try it: ground your own expression, compare two
#
# The figure grounds the first two expressions above and shows, per adaptive block, the first
# one's generated weights beside the difference to the second's (each on its own colour scale).
# In JupyterLab (`make lab`) the panel below it lets you pick a run and an image (or type a path)
# and type any two expressions; under papermill and in the HTML export only the figure is drawn.

# %%
fig, _ = compare(model, tokenizer, image, texts[0], texts[1] if len(texts) > 1 else "")
if figures:
    fig.savefig(figures / "05_compare.png", dpi=90)
display(fig)
plt.close(fig)
if P.panel:
    val_images = {}
    for i in range(len(ds)):
        rec = ds.record(i)
        val_images.setdefault(str(rec["image_path"]), f"val image {rec['image_id']}")
    display(grounding_panel(runs, [(label, path) for path, label in list(val_images.items())[:50]],
                            run=P.run_name, text=texts[0], text2=texts[1] if len(texts) > 1 else ""))
