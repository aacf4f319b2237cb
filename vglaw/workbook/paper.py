"""The paper's numbers (DESIGN §7), for the results tables to set ours beside.

Percentages as published. "multi" = the multi-task model (official README, val splits and refclef
test); "single" = single-task REC/RES numbers as cited by later papers.
"""

from __future__ import annotations

__all__ = ["PAPER_REC", "PAPER_RES_MIOU", "paper_number"]

# (setting, dataset, split) -> Prec@0.5 (%)
PAPER_REC: dict[tuple[str, str, str], float] = {
    ("multi", "refcoco", "val"): 86.62,
    ("multi", "refcoco+", "val"): 76.37,
    ("multi", "refcocog", "val"): 76.90,
    ("multi", "refclef", "test"): 77.22,
    ("single", "refcoco", "val"): 86.06, ("single", "refcoco", "testA"): 88.56,
    ("single", "refcoco", "testB"): 82.87,
    ("single", "refcoco+", "val"): 75.74, ("single", "refcoco+", "testA"): 80.32,
    ("single", "refcoco+", "testB"): 66.69,
    ("single", "refcocog", "val"): 75.31, ("single", "refcocog", "test"): 75.95,
    ("single", "refclef", "test"): 76.60,
}

# (setting, dataset, split) -> mask mIoU (%)
PAPER_RES_MIOU: dict[tuple[str, str, str], float] = {
    ("multi", "refcoco", "val"): 75.62,
    ("multi", "refcoco+", "val"): 66.63,
    ("multi", "refcocog", "val"): 65.63,
    ("single", "refcoco", "val"): 75.05, ("single", "refcoco", "testA"): 77.36,
    ("single", "refcoco", "testB"): 71.69,
    ("single", "refcoco+", "val"): 66.61, ("single", "refcoco+", "testA"): 70.30,
    ("single", "refcoco+", "testB"): 58.14,
    ("single", "refcocog", "val"): 65.36, ("single", "refcocog", "test"): 65.13,
}


def paper_number(task: str, dataset: str, split: str, setting: str = "multi") -> float | None:
    """The paper's value for `task` ("rec" Prec@0.5 or "res" mIoU), or None where it reports none.

    Synthetic datasets (`shapes`, `shapes_rle`) never have one.
    """
    table = {"rec": PAPER_REC, "res": PAPER_RES_MIOU}.get(task)
    if table is None:
        raise ValueError(f"unknown task {task!r}; expected 'rec' or 'res'")
    return table.get((setting, dataset, split))
