"""vglaw.lab: the grounding-and-compare function behind notebook 05's panel, and the panel itself,
driven headless (no browser front end needed: ipywidgets objects work without one)."""

import shutil

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from vglaw.workbook.lab import compare, grounding_panel, list_runs  # noqa: E402


@pytest.fixture(scope="module")
def law_model(tiny_ckpt):
    """The untrained tiny model with a non-zero Phi generator (its last layer starts at zero)."""
    import mindspore as ms

    from vglaw.eval.evaluate import load_model_from_checkpoint

    model = load_model_from_checkpoint(tiny_ckpt)
    w = model.law.fc2_weight
    w.set_data(ms.Tensor(np.random.default_rng(0).normal(0, 0.05, w.shape).astype(np.float32)))
    return model


def test_compare_grounds_both_expressions_and_scales_to_the_values(law_model, tokenizer, val_ds):
    import matplotlib.pyplot as plt

    tiny_model = law_model
    image = val_ds.load_image(0)
    h, w = image.shape[:2]
    fig, res = compare(tiny_model, tokenizer, image, "the red circle", "the blue square on the left")
    cfg = tiny_model.config
    blocks = list(cfg.adaptive_blocks)
    assert [r["text"] for r in res] == ["the red circle", "the blue square on the left"]
    for r in res:
        x, y, bw, bh = r["box_xywh"]
        assert 0 <= x <= w and 0 <= y <= h and r["mask"].shape == (h, w)
        assert r["weights"].shape == (len(blocks), cfg.law_rank, cfg.law_rank)  # svd: one K x K Phi per block
    diff = res[0]["weights"] - res[1]["weights"]
    assert np.abs(diff).max() > 0, "two expressions generated identical weights"
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2 + 2 * len(blocks)
    # each heat map's colour scale is set by its own values (symmetric), not a fixed [-1, 1]
    for j in range(len(blocks)):
        phi_im, diff_im = images[2 + 2 * j], images[3 + 2 * j]
        assert phi_im.get_clim() == pytest.approx((-np.abs(res[0]["weights"][j]).max(), np.abs(res[0]["weights"][j]).max()))
        assert diff_im.get_clim() == pytest.approx((-np.abs(diff[j]).max(), np.abs(diff[j]).max()))
    plt.close(fig)
    fig, res = compare(tiny_model, tokenizer, image, "the red circle")  # one expression: no difference panels
    assert len([ax for ax in fig.axes if ax.images]) == 1 + len(blocks)
    plt.close(fig)
    with pytest.raises(ValueError, match="type an expression"):
        compare(tiny_model, tokenizer, image, "  ")


def test_panel_loads_the_chosen_run_and_reports_bad_input_in_one_line(tiny_ckpt, val_ds, tmp_path):
    runs = tmp_path / "runs"
    (runs / "run-a").mkdir(parents=True)
    shutil.copy(tiny_ckpt, runs / "run-a" / "best.ckpt")
    (runs / "unfinished").mkdir()
    assert list_runs(runs) == ["run-a"]
    path = val_ds.record(0)["image_path"]
    panel = grounding_panel(runs, [("val 0", str(path))], text="the red circle", text2="the blue square")
    out = panel.children[-1]
    panel.ground()
    kinds = [o.get("output_type") for o in out.outputs]
    assert "display_data" in kinds and any("image/png" in o.get("data", {}) for o in out.outputs)
    panel.children[1].value = str(tmp_path / "missing.png")  # the typed path wins over the dropdown
    panel.ground()
    text = "".join(o.get("text", "") for o in out.outputs)
    assert text.startswith("error: ") and "missing.png" in text and text.count("\n") == 1
    with pytest.raises(FileNotFoundError, match="no run with a best.ckpt"):
        grounding_panel(tmp_path / "empty", [])
