"""The research workbook's library side: what the notebooks call, and their headless runner.

params.py (checks a notebook's parameters cell), runner.py (papermill runner;
`python -m vglaw.workbook reproduce`), runs.py (train or reuse a finished run), ablation.py (the
law_type grid and its statistics), reports.py (tables for reports/), paper.py (the paper's
numbers), law_analysis.py (what the LAW generator produced), lab.py (notebook 05's panel),
results_page.py (reports/index.html).
"""
