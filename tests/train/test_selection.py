"""Selection: with val metrics that differ between evaluations, best.ckpt holds the weights of the
best one on `select_metric`, metrics.json scores those weights, and no test split is evaluated
before training ends. The evaluation is replaced by a script of known metrics (in-process run);
everything else (train steps, checkpoints, the final phase) is the real loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _inprocess import train
from _train_helpers import cli_args

# val metrics of the evaluations at updates 1..3: the default select_metric, the mean of box mIoU
# and mask mIoU, is best at update 2 (0.55); prec@0.5 alone would pick update 1, mask mIoU update 3.
SCRIPT = [dict(prec=0.9, box=0.1, mask=0.1), dict(prec=0.1, box=0.5, mask=0.6),
          dict(prec=0.2, box=0.2, mask=0.7)]
BEST_STEP = 2


def _metrics(prec, box, mask):
    keys = ("prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9")
    return {"n": 5, **dict.fromkeys(keys, prec), "box_miou": box, "miou": mask, "oiou": mask,
            "miou_canvas": mask, "mask_threshold": 0.5, "canvas_threshold": 0.35}


@pytest.fixture(scope="module")
def selected(tiny_data, tmp_path_factory):
    import vglaw.train.loop as loop
    calls = []

    def scripted(model, ds, tokenizer, cfg, use_jit, forward=None):
        weights = {n: p.asnumpy().copy() for n, p in model.parameters_and_names()}
        i = len(calls)
        m = _metrics(**SCRIPT[i]) if i < len(SCRIPT) else _metrics(0.99, 0.99, 0.99)
        calls.append({"split": ds.split, "weights": weights, "metrics": m})
        return m, [{"sent_id": 0}]

    runs = tmp_path_factory.mktemp("selection")
    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "_evaluate", scripted)
    try:
        # 3 updates of batch 2, val after each; best.ckpt on the default box_miou+miou
        train(cli_args(tiny_data, runs, "sel", "--batch_size", "2", "--batch_sum", "2", "--max_steps", "3",
                       "--eval_every_steps", "1", "--mode_name", "PYNATIVE",
                       "--eval_splits", "val", "testA", "testB"))
    finally:
        mp.undo()
    return runs / "sel", calls


def test_val_only_during_training_then_every_eval_split(selected):
    _, calls = selected
    assert [c["split"] for c in calls] == ["val"] * 3 + ["val", "testA", "testB"]


def test_best_ckpt_holds_the_weights_of_the_best_evaluation(selected):
    from vglaw.models.checkpoint import read_checkpoint
    run, calls = selected
    arrays, meta = read_checkpoint(run / "best.ckpt")
    assert meta["step"] == BEST_STEP and meta["select_metric"] == "box_miou+miou"
    assert meta["select_value"] == pytest.approx(0.55)
    best = calls[BEST_STEP - 1]["weights"]
    assert set(best) <= set(arrays)
    assert all(np.array_equal(arrays[n], best[n]) for n in best)
    # the weights moved between evaluations, so another evaluation's weights would not match
    last = calls[2]["weights"]
    assert any(not np.array_equal(last[n], best[n]) for n in best)
    status = json.loads((run / "status.json").read_text())
    assert (status["best_step"], status["best_metric"]) == (BEST_STEP, "box_miou+miou")
    assert status["best_value"] == pytest.approx(0.55)


def test_final_metrics_score_best_ckpt(selected):
    run, calls = selected
    best = calls[BEST_STEP - 1]["weights"]
    for c in calls[3:]:  # the final phase evaluated best.ckpt's weights on every split
        assert all(np.array_equal(c["weights"][n], best[n]) for n in best), c["split"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"val", "testA", "testB"}
    assert metrics["testA"] == calls[4]["metrics"]
