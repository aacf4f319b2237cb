# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Preprocess: from the refer layout to the per-sentence cache
#
# Reads one dataset in the refer API's layout (`<data_root>/<dataset>/refs(<split_by>).p`,
# `instances.json`, images; see `data/README.md`) and writes the cache
# `<cache_dir>/<dataset>(<split_by>)/` that training and evaluation read through
# `vglaw.data.RefDataset`. For the synthetic datasets (`shapes`, `shapes_rle`) it first generates
# the data if absent, so the workbook runs with no download. Shows the counts per split and a grid
# of samples with their ground-truth boxes and masks. Re-running with unchanged sources reuses the
# cache.

# %% tags=["parameters"]
data_root: str = ""  # folder in refer layout; empty = data/ in the repository
dataset: str = "shapes"  # refcoco, refcoco+, refcocog, refclef, shapes, shapes_rle
split_by: str = "unc"  # refcoco unc|google, refcoco+ unc, refcocog umd|google, refclef berkeley|unc, shapes unc, shapes_rle berkeley
cache_dir: str = ""  # where the cache goes; empty = .cache/refer in the repository
shapes_images: int = 1740  # synthetic only: number of images (1500 train + 80 per eval split)
shapes_seed: int = 0  # synthetic only: generator seed (same seed, same bytes)
shapes_min_size: int = 160  # synthetic only: smallest long side of an image, pixels
shapes_max_size: int = 256  # synthetic only: largest long side of an image, pixels
verify_images: bool = True  # open every image of every split: decodes, size as instances.json; lists all bad files
smoke: bool = False  # tiny fast variant: 40 synthetic images of 64-96 px
n_show: int = 8  # samples drawn in the grid
report_dir: str = ""  # if non-empty, counts are written to <report_dir>/data/ as CSV and JSON

# %%
from vglaw.workbook.params import resolve_parameters

P = resolve_parameters(globals())

# %%
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from vglaw.data import RefDataset, check_names, ensure_shapes, preprocess, read_manifest
from vglaw.data.cache import ImageCheckError, verify_images
from vglaw.utils.errors import install_notebook_handler
from vglaw.utils.paths import default_cache_dir, default_data_root, reports_dir, resolve_path

install_notebook_handler()  # known errors (missing files, bad images) show as one line
check_names(P.dataset, P.split_by)
root = resolve_path(P.data_root, default_data_root())
cache = resolve_path(P.cache_dir, default_cache_dir())
print(f"data_root: {root}\ncache_dir: {cache}")

# %% [markdown]
# ## 1. Synthetic data (only for `shapes` / `shapes_rle`)
#
# Generated deterministically from the seed, in exactly the real layout; skipped when the same
# parameters already produced it.

# %%
if P.dataset in ("shapes", "shapes_rle"):
    n_images, min_size, max_size = ((40, 64, 96) if P.smoke else
                                    (P.shapes_images, P.shapes_min_size, P.shapes_max_size))
    folder = ensure_shapes(root, dataset=P.dataset, n_images=n_images, seed=P.shapes_seed,
                           min_size=min_size, max_size=max_size)
    print(json.dumps(json.loads((folder / "generator.json").read_text()), indent=1))

# %% [markdown]
# ## 2. Build (or reuse) the cache

# %%
cache_folder = preprocess(root, P.dataset, P.split_by, cache, check_images=not P.verify_images)  # 2b checks them
manifest = read_manifest(cache_folder)
print(cache_folder)
print("skipped:", manifest["skipped"])
print("data fingerprint:", manifest["fingerprint"], "(runs record it in config.json)")

# %% [markdown]
# ## 2b. Check every image
#
# Opens every image of every split and checks that it decodes and that its size equals the one
# `instances.json` states. All bad files are listed at once in one table, then the notebook stops:
# a missing or truncated image would otherwise surface mid-epoch as a long traceback. The result
# is recorded in the cache manifest (`image_scan`).

# %%
if P.verify_images:
    try:
        verify_images(cache_folder, progress=True)
    except ImageCheckError as err:
        with pd.option_context("display.max_colwidth", None):
            display(pd.DataFrame(err.bad))
        raise
    scan = read_manifest(cache_folder)["image_scan"]
    print(f"{scan['checked']} images of {', '.join(scan['splits'])}: all decode with the stated size")

# %% [markdown]
# ## 3. Counts per split

# %%
counts = pd.DataFrame(manifest["splits"]).T[["refs", "sentences", "images"]]
counts.index.name = "split"
display(counts)
if P.report_dir:
    out = resolve_path(P.report_dir, reports_dir()) / "data"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{P.dataset}({P.split_by})_counts"
    counts.to_csv(out / f"{stem}.csv")
    (out / f"{stem}.json").write_text(json.dumps(
        {"dataset": P.dataset, "split_by": P.split_by, "splits": manifest["splits"],
         "skipped": manifest["skipped"], "sources": manifest["sources"]}, indent=1))
    print("wrote", out / f"{stem}.csv")

# %% [markdown]
# ## 4. Samples with their ground truth
#
# Box (x, y, w, h in original pixels) in white, mask outline in black, expression on top.

# %%
split = [s for s in manifest["splits"] if s != "train"][0]
ds = RefDataset(cache, P.dataset, P.split_by, split)
picks = np.linspace(0, len(ds) - 1, num=min(P.n_show, len(ds))).astype(int)
cols = 4
rows = -(-len(picks) // cols)
fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
for ax in axes.flat:
    ax.axis("off")
for ax, i in zip(axes.flat, picks):
    s = ds[int(i)]
    image = ds.load_image(int(i))
    ax.imshow(image)
    ax.contour(s["mask"], levels=[0.5], colors="black", linewidths=1.5)  # keeps the colours visible
    x, y, w, h = s["bbox"]
    ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color="white", lw=2))
    ax.set_title(s["phrase"], fontsize=8)
fig.suptitle(f"{P.dataset}({P.split_by}) {split}: {len(ds)} sentences")
fig.tight_layout()
display(fig)
plt.close(fig)
