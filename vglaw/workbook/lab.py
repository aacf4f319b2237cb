"""Grounding you can try: type an expression, see the box, the mask and the generated weights.

`compare(model, tokenizer, image, text, text2)` is the plain function (tested headless): it grounds
both expressions and draws one figure — each expression's predicted box and mask, and per adaptive
block the generated weights of the first expression beside their difference from the second's, on
colour scales set by the values themselves (so small differences are visible, not a saturated 1.0).
`grounding_panel(...)` wraps it in an ipywidgets form for JupyterLab (`make lab`, notebook 05):
pick a val image or give a path, type expressions, choose a run; under papermill or in an HTML
export the notebook draws the same figure statically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["compare", "list_runs", "grounding_panel"]


def _weights_view(gen: np.ndarray, law_type: str) -> tuple[np.ndarray, str]:
    """One expression's generated weights of one block as a 2-D array, and what it shows."""
    if law_type == "svd":
        return gen, "Φ (K×K)"
    flat = np.asarray(gen).reshape(-1) - 1.0  # scalings: their change from 1
    side = int(np.ceil(np.sqrt(flat.size)))
    grid = np.full(side * side, np.nan)
    grid[:flat.size] = flat
    return grid.reshape(side, side), "scaling − 1"


def compare(model, tokenizer, image, text: str, text2: str = "", *, threshold: float = 0.5):
    """Ground `text` (and `text2`, if given) in `image`; returns (figure, results).

    results: one `vglaw.eval.predict.predict` dict per expression, each with "weights": the generated
    weights per adaptive block (None for law_type none). Figure: row 1 the overlays; row 2 per
    adaptive block the first expression's weights and (with text2) the difference text − text2,
    each on its own symmetric colour scale.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from vglaw.workbook.law_analysis import generated_weights
    from vglaw.eval.predict import load_image, overlay, predict

    texts = [t for t in (text, text2) if t and t.strip()]
    if not texts:
        raise ValueError("type an expression to ground (text is empty)")
    img = load_image(image)
    results = [predict(model, tokenizer, img, t, threshold=threshold) for t in texts]
    law_type = model.config.law_type
    blocks = list(model.config.adaptive_blocks) if law_type != "none" else []
    if blocks:
        gen = generated_weights(model, tokenizer, texts)  # (N, nA, ...)
        for r, g in zip(results, gen):
            r["weights"] = g
    else:
        for r in results:
            r["weights"] = None
    ncols = max(len(texts), 2 * len(blocks) if len(texts) > 1 else len(blocks), 1)
    nrows = 2 if blocks else 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, r in enumerate(results):
        ax = axes[0, k]
        ax.imshow(overlay(img, r, r["text"]))
        ax.set_title(f"{r['text'][:40]}\nbox {np.round(r['box_xywh'], 1).tolist()}", fontsize=8)
    for j, b in enumerate(blocks):
        w0, what = _weights_view(results[0]["weights"][j], law_type)
        panels = [(w0, f"block {b}: {what}\n“{texts[0][:24]}”")]
        if len(texts) > 1:
            w1, _ = _weights_view(results[1]["weights"][j], law_type)
            rel = np.nansum(np.abs(w0 - w1)) / max(np.nansum(np.abs(w0)), 1e-12)
            panels.append((w0 - w1, f"block {b}: difference\n(relative L1 {rel:.3f})"))
        for i, (arr, title) in enumerate(panels):
            ax = axes[1, j * len(panels) + i]
            vmax = float(np.nanmax(np.abs(arr))) or 1e-12  # the scale the values need, not a fixed ±1
            im = ax.imshow(arr, cmap="coolwarm", vmin=-vmax, vmax=vmax)
            ax.set_title(title, fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig, results


def list_runs(runs_dir: str | Path) -> list[str]:
    """Run directories under `runs_dir` that hold a best.ckpt, newest first."""
    runs_dir = Path(runs_dir)
    found = [p for p in runs_dir.iterdir() if (p / "best.ckpt").is_file()] if runs_dir.is_dir() else []
    return [p.name for p in sorted(found, key=lambda p: (p / "best.ckpt").stat().st_mtime, reverse=True)]


def grounding_panel(runs_dir: str | Path, images: Sequence[tuple[str, str]], *, run: str | None = None,
                    text: str = "", text2: str = ""):
    """An ipywidgets form: run, image (label, path) or a typed path, two expressions, a button.

    Returns the widget (display it in JupyterLab). Models are loaded once per run and kept.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import Image

    from vglaw.data.tokenizer import load_tokenizer
    from vglaw.eval.evaluate import load_model_from_checkpoint

    runs = list_runs(runs_dir)
    if not runs:
        raise FileNotFoundError(f"no run with a best.ckpt under {runs_dir}: train one first (notebook 02_train)")
    tokenizer = load_tokenizer()
    models: dict = {}
    run_w = w.Dropdown(options=runs, value=run if run in runs else runs[0], description="run")
    image_w = w.Dropdown(options=list(images), description="image")
    path_w = w.Text(value="", placeholder="or a path to any image", description="path")
    text_w = w.Text(value=text, placeholder="the red circle", description="expression")
    text2_w = w.Text(value=text2, placeholder="a second one to compare (optional)", description="compare with")
    go = w.Button(description="Ground", button_style="primary")
    out = w.Output()

    def on_click(_=None):
        # outputs are set directly (not `with out:`), so the panel also works with no front end
        out.outputs = ()
        try:
            name = run_w.value
            if name not in models:
                models[name] = load_model_from_checkpoint(Path(runs_dir) / name / "best.ckpt")
            fig, _ = compare(models[name], tokenizer, path_w.value.strip() or image_w.value, text_w.value, text2_w.value)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90)
            plt.close(fig)
            out.append_display_data(Image(data=buf.getvalue(), format="png"))
        except (ValueError, FileNotFoundError) as e:  # bad input: one line, not a traceback
            out.append_stdout(f"error: {e}\n")

    go.on_click(on_click)
    box = w.VBox([w.HBox([run_w, image_w]), path_w, text_w, text2_w, go, out])
    box.ground = on_click  # for tests and scripted use
    return box
