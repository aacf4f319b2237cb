"""Issue 9: the eval/predict CLIs report known errors as one line with the documented exit code
(2 user error, 1 runtime failure; traceback only with --debug / VGLAW_DEBUG=1), refuse the refer
API's merged `test` split where a dataset has none, composite transparency, and warn about an
expression the vocabulary does not know."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _cli(module: str, *args: str, debug_env: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOG_v="4")
    env.pop("VGLAW_DEBUG", None)
    if debug_env:
        env["VGLAW_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line or "Traceback" in line]


def test_corrupt_and_foreign_checkpoints_are_one_line_exit_2(shapes_data, tmp_path):
    data_root, cache_dir = shapes_data
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint at all" * 10)
    common = ["--dataset", "shapes", "--split_by", "unc", "--data_root", str(data_root),
              "--cache_dir", str(cache_dir), "--no_progress"]
    r = _cli("vglaw.evaluate", "--checkpoint", str(corrupt), *common)
    assert r.returncode == 2, r.stderr[-3000:]
    [line] = _error_lines(r.stderr)
    assert line.startswith("python -m vglaw.evaluate: error: ") and str(corrupt) in line
    assert "Traceback" not in r.stderr

    r = _cli("vglaw.evaluate", "--checkpoint", str(corrupt), *common, "--debug")  # traceback on request
    assert r.returncode == 2 and "Traceback (most recent call last)" in r.stderr
    r = _cli("vglaw.evaluate", "--checkpoint", str(corrupt), *common, debug_env=True)
    assert r.returncode == 2 and "Traceback (most recent call last)" in r.stderr

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    r = _cli("vglaw.predict", "--checkpoint", str(corrupt), "--image", str(image), "--text", "a red circle",
             "--out", str(tmp_path / "o.png"))
    assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr


def test_test_split_of_a_dataset_without_one_is_refused(tiny_ckpt, shapes_data, capsys):
    from vglaw.eval.evaluate import main
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", str(tiny_ckpt), "--dataset", "shapes", "--split_by", "unc", "--split", "test",
              "--data_root", str(shapes_data[0]), "--cache_dir", str(shapes_data[1])])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "shapes(unc) has no split 'test'" in err and "testA, testB" in err


def test_run_main_codes_and_one_line(capsys, monkeypatch):
    from vglaw.utils.errors import run_main
    from vglaw.models.checkpoint import CheckpointError
    monkeypatch.delenv("VGLAW_DEBUG", raising=False)

    def user():
        raise CheckpointError("x.ckpt was written by another preset\n(tiny, not paper)")

    def bug():
        raise KeyError("boom")
    assert run_main("prog", user) == 2
    assert capsys.readouterr().err == "prog: error: x.ckpt was written by another preset (tiny, not paper)\n"
    assert run_main("prog", bug) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KeyError: 'boom'" in err and "VGLAW_DEBUG=1" in err
    monkeypatch.setenv("VGLAW_DEBUG", "1")
    assert run_main("prog", user) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_predict_composites_alpha_over_white(tmp_path):
    from vglaw.eval.predict import load_image
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200          # hidden red under full transparency
    rgba[:2, :, 3] = 255        # top half opaque red
    rgba[2:, :2, 3] = 0         # transparent: white
    rgba[2:, 2:, 3] = 128       # half: between red and white
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    for src in (path, rgba):
        rgb = load_image(src)
        assert rgb.shape == (4, 4, 3)
        assert (rgb[:2] == [200, 0, 0]).all() and (rgb[2:, :2] == 255).all()
        assert np.allclose(rgb[2, 2], [200 * 128 / 255 + 255 * 127 / 255, 127, 127], atol=1)


def test_expression_of_unknown_words_warns(tiny_model, tokenizer, caplog):
    from vglaw.eval.predict import predict
    image = np.full((32, 48, 3), 90, np.uint8)
    with caplog.at_level(logging.WARNING, logger="vglaw"):
        res = predict(tiny_model, tokenizer, image, "☂☂")
    assert res["unknown_words"] is True and "vocabulary" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vglaw"):
        assert predict(tiny_model, tokenizer, image, "the red circle")["unknown_words"] is False
    assert "vocabulary" not in caplog.text


def test_failed_notebook_is_its_cells_error_on_one_line(capsys, monkeypatch):
    from papermill.exceptions import PapermillExecutionError

    from vglaw.utils.errors import run_main
    monkeypatch.delenv("VGLAW_DEBUG", raising=False)

    def failing(ename, evalue):
        def body():
            raise PapermillExecutionError(5, 4, "preprocess(...)", ename, evalue, ["line 1", "line 2"])
        return body
    assert run_main("python -m vglaw.workbook", failing("DataNotFoundError", "refs(unc).p not found: /x\n(hint)")) == 2
    assert capsys.readouterr().err == ("python -m vglaw.workbook: error: notebook cell 4 raised DataNotFoundError: "
                                       "refs(unc).p not found: /x (hint)\n")
    assert run_main("python -m vglaw.workbook", failing("ZeroDivisionError", "division by zero")) == 1
    assert "raised ZeroDivisionError" in capsys.readouterr().err


def test_visualize_and_pretrain_user_errors_exit_2(tmp_path, capsys):
    from vglaw.train.pretrain import main as pretrain_main
    from vglaw.eval.visualize import main as visualize_main
    with pytest.raises(SystemExit) as exc:
        visualize_main(["--checkpoint", str(tmp_path / "none.ckpt"), "--dataset", "shapes", "--split_by", "unc",
                        "--out_dir", str(tmp_path)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"python -m vglaw.visualize: error: --checkpoint {tmp_path / 'none.ckpt'} does not exist\n"
    assert pretrain_main(["--dataset", "refcoco", "--data_root", str(tmp_path), "--runs_dir", str(tmp_path / "r")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("python -m vglaw.train.pretrain: error: ") and "data/README.md" in line
