"""Ground one expression in one image + `python -m vglaw.predict` (box print + overlay PNG).

    python -m vglaw.predict --checkpoint runs/x/best.ckpt --image cat.jpg --text "the left cat" \
        --out overlay.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["predict", "overlay", "load_image", "count_tokens", "main"]

log = logging.getLogger("vglaw")

_COLOR_PRED = (255, 64, 32)


def load_image(image) -> np.ndarray:
    """Path or (H, W, 3|4) uint8 array -> (H, W, 3) uint8 RGB; transparency is composited over
    white; clear errors for bad input."""
    if isinstance(image, (str, Path)):
        from PIL import Image, UnidentifiedImageError

        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        try:
            with Image.open(path) as im:
                if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                    return _on_white(np.asarray(im.convert("RGBA"), dtype=np.uint8))
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read {path} as an image: {err}") from err
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or arr.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 array, got shape {arr.shape} {arr.dtype}")
    if min(arr.shape[:2]) < 1:
        raise ValueError(f"image is empty: shape {arr.shape}")
    return _on_white(arr) if arr.shape[-1] == 4 else np.ascontiguousarray(arr)


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3): transparent pixels composited over white (as a viewer shows
    them), not their hidden RGB values."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.ascontiguousarray(np.round(rgb).astype(np.uint8))


def count_tokens(tokenizer, text: str) -> int:
    """Number of word pieces incl. [CLS] and [SEP] (what has to fit into max_len)."""
    return len(tokenizer.token_ids(text, special=True))


def predict(model, tokenizer, image, text: str, *, threshold: float = 0.5, forward=None) -> dict:
    """Predict the box and mask of `text` in `image`.

    Args:
        model: a VGLAW cell; its config gives img_size and max_len.
        tokenizer: from `vglaw.data.tokenizer.load_tokenizer`.
        image: path or (H, W, 3) uint8 RGB.
        text: the referring expression; longer than max_len tokens -> truncated with a warning.
        threshold: mask probability threshold at the original resolution.
        forward: optional prebuilt `vglaw.eval.evaluate.make_forward(model)` (reuse one compiled
            graph across many calls); default: op-by-op.

    Returns:
        dict: box_xywh (x, y, w, h ORIGINAL px, floats), box_cxcywh_canvas (normalised to the
        canvas), head_box_xywh (the REC head's box), box_source ("mask": box_xywh is the mask's
        box, as ModelConfig.box_source "mask" asks when the mask is not empty; "head"), mask (H, W) uint8 {0,1} at the original resolution, mask_prob (H, W) float32,
        score (mean probability inside the predicted mask, 0 if empty), n_tokens, truncated,
        unknown_words (every word piece is [UNK]: the prediction ignores the text; also warned).
    """
    from vglaw.data.tokenizer import tokenize
    from vglaw.data.transforms import prepare_image
    from vglaw.eval.evaluate import box_from_mask, make_forward, sigmoid
    from vglaw.eval.metrics import mask_bbox

    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is empty: give a referring expression such as 'the red circle'")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    img = load_image(image)
    cfg = model.config
    n_tokens = count_tokens(tokenizer, text)
    pieces = tokenizer.token_ids(text, special=False)
    unknown = bool(pieces) and all(t == tokenizer.unk_token_id for t in pieces)
    if unknown:
        log.warning("no word of %r is in the vocabulary (all [UNK]): the box below ignores the "
                    "expression", text)
    truncated = n_tokens > cfg.max_len
    if truncated:
        log.warning("the expression has %d tokens (with [CLS]/[SEP]) but the model takes %d: "
                    "it is truncated to the first %d", n_tokens, cfg.max_len, cfg.max_len)
    pixels, lb = prepare_image(img, cfg.img_size)                 # (3, S, S), Letterbox
    ids, attn = tokenize(tokenizer, [text], cfg.max_len)          # (1, L) each
    # one image: op-by-op beats paying a graph compilation (pass a jit `forward` for many calls)
    fwd = forward or make_forward(model, use_jit=False)
    boxes, logits = fwd(pixels[None], ids, attn)                   # (1, 4), (1, 1, S, S)
    prob = lb.mask_to_original(sigmoid(logits[0, 0])).astype(np.float32)  # (H, W)
    mask = (prob > threshold).astype(np.uint8)
    score = float(prob[mask > 0].mean()) if mask.any() else 0.0
    head_xywh = np.asarray(lb.box_to_original(boxes[0]), np.float64)
    box_xywh, box_canvas = head_xywh, np.asarray(boxes[0], np.float64)
    mb = mask_bbox(mask) if box_from_mask(cfg) else None
    if mb is not None:  # box_source "mask": the box of the mask (the head's when it is empty)
        box_xywh, box_canvas = mb, lb.box_to_canvas(mb)
    return {"box_xywh": [float(v) for v in box_xywh],
            "box_cxcywh_canvas": [float(v) for v in box_canvas],
            "head_box_xywh": [float(v) for v in head_xywh], "box_source": "mask" if mb is not None else "head",
            "mask": mask, "mask_prob": prob, "score": score,
            "n_tokens": int(n_tokens), "truncated": bool(truncated), "unknown_words": unknown, "text": text}


def overlay(image, result: dict, text: str | None = None, *, color=_COLOR_PRED, alpha: float = 0.45):
    """Image with the predicted mask tinted, the box outlined and the expression written on top."""
    from PIL import Image, ImageDraw

    img = load_image(image).astype(np.float32)
    m = np.asarray(result["mask"], dtype=bool)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match image {img.shape[:2]}")
    img[m] = (1 - alpha) * img[m] + alpha * np.asarray(color, np.float32)
    pil = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    x, y, w, h = result["box_xywh"]
    lw = max(2, round(min(pil.size) / 150))
    draw.rectangle([x, y, x + w, y + h], outline=color, width=lw)
    caption = text if text is not None else result.get("text", "")
    if caption:
        tw = draw.textlength(caption)
        draw.rectangle([0, 0, tw + 8, 14], fill=(0, 0, 0))
        draw.text((4, 1), caption, fill=(255, 255, 255))
    return pil


def build_parser() -> argparse.ArgumentParser:
    from vglaw.eval.cli import add_device_args

    p = argparse.ArgumentParser(prog="python -m vglaw.predict", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--image", required=True, type=Path)
    p.add_argument("--text", required=True, help="the referring expression")
    p.add_argument("--out", type=Path, default=Path("overlay.png"), help="overlay PNG to write")
    p.add_argument("--threshold", type=float, default=0.5, help="mask probability threshold")
    add_device_args(p)
    p.add_argument("--debug", action="store_true", help="print the traceback of an error (also VGLAW_DEBUG=1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user error (one line on stderr), 1 a runtime failure; --debug or
    VGLAW_DEBUG=1 prints the traceback."""
    from vglaw.utils.errors import UsageExit, run_main
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.checkpoint.is_file():
        raise UsageExit(prog, f"checkpoint {args.checkpoint} does not exist")
    if not args.text.strip():
        raise UsageExit(prog, "--text is empty: give a referring expression")
    try:
        image = load_image(args.image)
    except (FileNotFoundError, ValueError) as err:
        raise UsageExit(prog, str(err)) from err
    if args.out.suffix.lower() != ".png":
        raise UsageExit(prog, f"--out must be a .png file, got {args.out}")
    return run_main(prog, lambda: _predict_cli(args, image, prog), args.debug)


def _predict_cli(args, image: np.ndarray, prog: str) -> int:
    from vglaw.data.tokenizer import load_tokenizer
    from vglaw.utils.errors import UsageExit
    from vglaw.eval.cli import setup_mindspore
    from vglaw.eval.evaluate import load_model_from_checkpoint

    setup_mindspore(args.device_target, args.mode_name)
    model = load_model_from_checkpoint(args.checkpoint)
    try:
        result = predict(model, load_tokenizer(), image, args.text, threshold=args.threshold)
    except ValueError as err:
        raise UsageExit(prog, str(err)) from err
    args.out.parent.mkdir(parents=True, exist_ok=True)
    overlay(image, result, args.text).save(args.out)
    x, y, w, h = result["box_xywh"]
    note = f" (expression truncated to {model.config.max_len} tokens)" if result["truncated"] else ""
    if result["unknown_words"]:
        note += " (no word of the expression is in the vocabulary: the box ignores it)"
    print(f"box_xywh (original px): {x:.1f} {y:.1f} {w:.1f} {h:.1f}{note}")
    print(f"mask pixels: {int(result['mask'].sum())}  score: {result['score']:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
