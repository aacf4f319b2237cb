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
# # 04 · Results: the paper's tables, regenerated from runs
#
# Scans every finished run directory and rebuilds the paper's result tables — REC Prec@0.5 and RES
# mIoU/oIoU per dataset and split — each number beside the paper's (VG-LAW, CVPR 2023; official
# README and later citations) where one exists. Every row carries a protocol card (dataset and
# whether synthetic, preset, initialisation, image size, law_type, epochs, seed, code and MindSpore
# version, mode, device), so numbers made under different protocols are never mixed silently.
# Synthetic-data rows have no paper number: they show the pipeline works, not parity.
#
# Writes `reports/tables/rec.{md,csv}`, `res.{md,csv}` and `runs.{md,csv}`.

# %% tags=["parameters"]
runs_dir: str = ""  # folder of run directories to scan; empty: runs/ in the repository
report_dir: str = ""  # where tables/ are written; empty: reports/ in the repository
experiment_prefix: str = ""  # only runs whose name starts with this; empty: all
smoke: bool = False  # no-op here (scanning is fast); kept so every notebook takes smoke

# %%
from vglaw.workbook.params import resolve_parameters

P = resolve_parameters(globals())

# %%
import pandas as pd
from IPython.display import Markdown, display

from vglaw.utils.paths import default_runs_dir, reports_dir, resolve_path
from vglaw.workbook.reports import rec_table, res_table, runs_table, scan_runs, write_table

runs = resolve_path(P.runs_dir, default_runs_dir())
tables_dir = resolve_path(P.report_dir, reports_dir()) / "tables"
pd.set_option("display.max_colwidth", 200)

# %% [markdown]
# ## 1. Finished runs

# %%
df = scan_runs(runs, experiment_prefix=P.experiment_prefix or None)
if df.empty:
    raise FileNotFoundError(f"No finished runs under {runs}: train one first (notebook 02_train or "
                            "`python -m vglaw.train`).")
overview = runs_table(df)
display(overview)
write_table(overview, "runs", tables_dir, title="Finished runs (%; wall time in seconds)")

# %% [markdown]
# ## 2. REC: Prec@0.5 (%) beside the paper

# %%
rec = rec_table(df)
display(Markdown(write_table(rec, "rec", tables_dir, title="REC: Prec@0.5 (%)")[0].read_text()))

# %% [markdown]
# ## 3. RES: mIoU / oIoU (%) at original resolution, and the official canvas protocol

# %%
res = res_table(df)
display(Markdown(write_table(res, "res", tables_dir, title="RES: mask IoU (%)")[0].read_text()))

# %% [markdown]
# ## 4. Written
#
# The tables above were written as Markdown and CSV; the README shows `reports/tables/rec.md`.

# %%
print("\n".join(str(p) for p in sorted(tables_dir.glob("*"))))
