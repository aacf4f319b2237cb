"""Resource guard (issue 9): the estimate agrees with the measured paper-on-CPU failure, refuses a
run that cannot fit in one line (exit 2) unless --force, and states the expected seconds per update."""

from __future__ import annotations

import logging

import pytest

from _train_helpers import run_cli


def test_estimate_matches_the_measurements():
    from vglaw.train.resources import estimate
    # measured: paper batch 2 on CPU was OOM-killed at 21.5 GB; train step 7.5 s per sample at 448 px
    assert estimate("paper", 2, 448, 1)["peak_gb"] >= 21.5
    assert estimate("paper", 1, 448, 256)["s_per_update"] == pytest.approx(256 * 7.5)
    # tiny: about 1 s per update of batch 16 (the workbook runs)
    assert 0.5 <= estimate("tiny", 16, 128, 1)["s_per_update"] <= 2.0
    # --lean_kernels --recompute (session 18): 5.22 / 7.25 / 7.79 / 13.31 GB at batch 1 / 2 / 4 / 8
    for b, peak in ((1, 5.22), (2, 7.25), (4, 7.79), (8, 13.31)):
        assert peak <= estimate("paper", b, 448, 1, lean=True)["peak_gb"] <= peak + 2.0
    assert estimate("tiny", 16, 128, 1, lean=True) == estimate("tiny", 16, 128, 1)  # no lean anchor: the plain one
    # linear in the batch, quadratic in the image side
    a, b = estimate("paper", 1, 896, 1), estimate("paper", 4, 448, 1)
    assert a == b and a["s_per_update"] == pytest.approx(4 * 7.5)


def test_refused_without_force_and_announced_with_it(caplog):
    from vglaw.train.resources import ResourceError, check_resources
    with pytest.raises(ResourceError, match=r"needs about 14\.0 GB on CPU, 8\.0 GB are free.*"
                                            r"--lean_kernels --recompute \(about 6\.5 GB\).*--force"):
        check_resources("paper", 1, 448, 256, "CPU", available_gb=8.0)
    with caplog.at_level(logging.INFO, logger="vglaw"):
        est = check_resources("paper", 1, 448, 256, "CPU", force=True, available_gb=8.0)
    assert est["peak_gb"] == 14.0 and est["available_gb"] == 8.0
    assert "--force: starting although" in caplog.text
    assert "expect about 1920 s per update" in caplog.text  # CPU + paper says what it costs
    assert check_resources("paper", 1, 448, 256, "GPU", available_gb=1.0) == {"device": "GPU"}


def test_cli_refuses_a_run_that_cannot_fit_in_one_line(tiny_data, tmp_path):
    r = run_cli(["--preset", "paper", "--vit_model", "scratch", "--dataset", "shapes", "--batch_size", "64",
                 "--batch_sum", "64", "--data_root", tiny_data["data_root"], "--cache_dir", tiny_data["cache_dir"],
                 "--save_ckpt_dir", str(tmp_path), "--experiment_name", "big", "--no-progress"], timeout=120)
    assert r.returncode == 2, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "needs about 518.0 GB on CPU" in errors[0] and "--force" in errors[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "big").exists()


def test_the_estimate_never_reads_zero_seconds(caplog):
    from vglaw.train.resources import check_resources
    with caplog.at_level(logging.INFO, logger="vglaw"):
        check_resources("tiny", 8, 128, 1, "CPU", available_gb=20.0)  # 0.48 s: once printed "about 0 s"
        check_resources("paper", 1, 448, 256, "CPU", force=True, available_gb=20.0)
    assert "about 0.5 s per update" in caplog.text and "about 1920 s per update" in caplog.text
