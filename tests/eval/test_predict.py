"""predict() / overlay() and the `python -m vglaw.predict` CLI on a real image."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vglaw.eval.predict import count_tokens, load_image, overlay, predict


def test_predict_in_original_pixels(tiny_model, tokenizer, val_ds):
    image = val_ds.load_image(0)
    r = predict(tiny_model, tokenizer, image, val_ds[0]["phrase"])
    h, w = image.shape[:2]
    assert r["mask"].shape == (h, w) and r["mask"].dtype == np.uint8
    assert set(np.unique(r["mask"])) <= {0, 1}
    x, y, bw, bh = r["box_xywh"]
    assert 0 <= x <= w and 0 <= y <= h and x + bw <= w + 1e-3 and y + bh <= h + 1e-3
    assert 0.0 <= r["score"] <= 1.0 and not r["truncated"]
    pil = overlay(image, r, "the text")
    assert pil.size == (w, h)


class _Config:
    img_size, max_len = 128, 20


class _StubModel:
    config = _Config()


def test_predict_maps_known_outputs_to_original_pixels(tokenizer):
    """A stub forward with a chosen box and mask: H 40 x W 80 sits on the 128 canvas at scale 1.6,
    resized to 128 x 64 with 32 rows of padding above and below."""
    seen = []

    def forward(images, input_ids, attention_mask):
        seen.append((images.shape, input_ids.shape))
        box = np.array([[0.5, 0.5, 0.5, 0.25]], np.float32)      # canvas xyxy (32, 48, 96, 80)
        logits = np.full((1, 1, 128, 128), -5.0, np.float32)
        logits[0, 0, :64] = 5.0        # padding rows 0..31 (must vanish) + the image's top half
        return box, logits

    image = np.zeros((40, 80, 3), np.uint8)
    r = predict(_StubModel(), tokenizer, image, "the red circle", forward=forward)
    assert seen == [((1, 3, 128, 128), (1, 20))]
    # (32 - 0) / 1.6 = 20, (48 - 32) / 1.6 = 10, 64 / 1.6 = 40, 32 / 1.6 = 20
    np.testing.assert_allclose(r["box_xywh"], [20, 10, 40, 20], atol=1e-4)
    np.testing.assert_allclose(r["box_cxcywh_canvas"], [0.5, 0.5, 0.5, 0.25], atol=1e-6)
    want = np.zeros((40, 80), np.uint8)
    want[:20] = 1                      # canvas rows 32..63 are original rows 0..19
    np.testing.assert_array_equal(r["mask"], want)
    assert r["mask_prob"].shape == (40, 80) and r["score"] > 0.9


def test_predict_bad_input(tiny_model, tokenizer, tmp_path, caplog):
    img = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(ValueError, match="empty"):
        predict(tiny_model, tokenizer, img, "   ")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        predict(tiny_model, tokenizer, tmp_path / "none.png", "a circle")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.float32))
    long_text = " ".join(["circle"] * 40)
    assert count_tokens(tokenizer, long_text) > 20
    r = predict(tiny_model, tokenizer, img, long_text)
    assert r["truncated"] and "truncated" in caplog.text


def _run_cli(*args):
    env = dict(os.environ, GLOG_v="4")
    return subprocess.run([sys.executable, "-m", "vglaw.predict", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_predict_cli_writes_png_and_prints_box(tiny_ckpt, val_ds, tmp_path):
    out = tmp_path / "o" / "overlay.png"
    p = _run_cli("--checkpoint", str(tiny_ckpt), "--image", str(val_ds[0]["image_path"]),
                 "--text", val_ds[0]["phrase"], "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    m = re.search(r"box_xywh \(original px\): (\S+) (\S+) (\S+) (\S+)", p.stdout)
    assert m, p.stdout
    w, h = Image.open(val_ds[0]["image_path"]).size
    x, y, bw, bh = map(float, m.groups())
    assert x + bw <= w + 0.1 and y + bh <= h + 0.1
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (w, h)


def test_predict_cli_errors(tiny_ckpt, tmp_path, capsys):
    from vglaw.eval.predict import main

    with pytest.raises(SystemExit, match="does not exist"):
        main(["--checkpoint", str(tmp_path / "missing.ckpt"), "--image", "x.png", "--text", "a"])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--checkpoint", str(tiny_ckpt), "--image", str(tmp_path / "missing.png"), "--text", "a"])
    (tmp_path / "bad.jpg").write_text("no pixels here")
    with pytest.raises(SystemExit, match="cannot read"):
        main(["--checkpoint", str(tiny_ckpt), "--image", str(tmp_path / "bad.jpg"), "--text", "a"])
    with pytest.raises(SystemExit, match="empty"):
        main(["--checkpoint", str(tiny_ckpt), "--image", "x.png", "--text", " "])
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", str(tiny_ckpt), "--image", "x.png", "--text", "a", "--device_target", "TPU"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "CPU" in err and "Ascend" in err
