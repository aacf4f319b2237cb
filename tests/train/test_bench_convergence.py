"""benchmarks/bench_convergence.py on a hand-written train_log.jsonl: first crossing per threshold,
"not reached" with the best value, the pretraining seconds added, bad input refused."""

from __future__ import annotations

import importlib.util
import json

import pytest

from _train_helpers import REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_convergence", REPO / "benchmarks" / "bench_convergence.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    rows = [{"step": 10, "epoch": 0, "loss": 3.0, "time": 5.0, "train_time": 5.0},
            {"step": 10, "epoch": 0, "eval": "val", "prec@0.5": 0.2, "time": 6.0, "train_time": 6.0, "eval_s": 1.0},
            {"step": 20, "epoch": 0, "eval": "val", "prec@0.5": 0.55, "time": 20.0, "train_time": 19.0, "eval_s": 1.0},
            {"step": 30, "epoch": 1, "eval": "val", "prec@0.5": 0.4, "time": 30.0, "train_time": 28.0, "eval_s": 1.0},
            {"step": 40, "epoch": 1, "eval": "val", "prec@0.5": 0.7, "time": 41.0, "train_time": 38.0, "eval_s": 1.0},
            {"step": 40, "epoch": 1, "eval": "val", "prec@0.5": 0.81, "time": 42.0, "train_time": 38.0, "eval_s": 1.0}]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 50, "ev'  # torn last line
    (d / "train_log.jsonl").write_text(text)
    (d / "status.json").write_text(json.dumps({"state": "running", "step": 45, "total_updates": 100}))
    (d / "config.json").write_text(json.dumps({"derived": {"loaded_weights": {"backbone_pretrain": {"wall_s": 300.0}}}}))
    return d


def test_first_crossings_and_not_reached(bench, run_dir, capsys):
    rows = bench.eval_rows(run_dir)
    assert [r["step"] for r in rows] == [10, 20, 30, 40] and rows[-1]["prec@0.5"] == 0.81  # re-evaluated step: last row
    assert bench.first_reached(rows, "prec@0.5", 0.5)["step"] == 20
    bench.main(["--run_dir", str(run_dir)])
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("running, update 45 of 100, 4 val evaluations")
    assert out[3] == "| 0.5 | 20 | 0 | 20 | 19 |"
    assert out[4] == "| 0.8 | 40 | 1 | 42 | 38 |"
    assert out[5] == "| 0.9 | not reached, best 0.810 (update 40) | - | - | - |"
    assert "pretrained in 300 s, not counted" in out[6]


def test_pretraining_seconds_added(bench, run_dir, tmp_path, capsys):
    pre = tmp_path / "pre"
    pre.mkdir()
    (pre / "status.json").write_text(json.dumps({"state": "finished", "wall_s": 100.0}))
    bench.main(["--run_dir", str(run_dir), "--thresholds", "0.5", "--pretrain_dir", str(pre)])
    assert capsys.readouterr().out.splitlines()[-1] == "| 0.5 | 20 | 0 | 20 | 19 | 120 |"
    bench.main(["--run_dir", str(run_dir), "--thresholds", "0.5", "--pretrain_dir", "auto"])
    assert capsys.readouterr().out.splitlines()[-1] == "| 0.5 | 20 | 0 | 20 | 19 | 320 |"


def test_bad_input_is_refused(bench, run_dir, tmp_path, capsys):
    for argv in (["--run_dir", str(tmp_path / "nope")], ["--run_dir", str(run_dir), "--metric", "acc"],
                 [], ["--run_dir", str(run_dir), "--pretrain_dir", str(tmp_path / "nope")]):
        with pytest.raises(SystemExit) as err:
            bench.main(argv)
        assert err.value.code != 0
    assert "no status.json" in str(err.value.code)
