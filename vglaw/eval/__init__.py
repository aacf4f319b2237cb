"""Evaluation: metrics, the evaluation loop and its CLI, single-image prediction, figures.

evaluate.py (checkpoint x split -> predictions + metrics.json; `python -m vglaw.evaluate`),
metrics.py (Prec@t, mIoU, oIoU; the box IoU comes from vglaw.boxes), predict.py (one image and
phrase; `python -m vglaw.predict`), visualize.py (grounding figures; `python -m vglaw.visualize`).
Importing this package does not import MindSpore.
"""
