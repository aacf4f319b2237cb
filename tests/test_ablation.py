"""vglaw.ablation: the grid, run naming, reuse of finished runs, knobs routed to the model, and the
`make ablation` entry point (`python -m vglaw.workbook run`). The statistics: test_ablation_stats.py.

The training itself is exercised for real by the workbook test (tests/notebooks); here a recording
`train_fn` writes the run files so the reuse logic can be checked in milliseconds.
"""

import dataclasses
import json
import shlex
import subprocess

import pytest

from vglaw.workbook import runner as workbook
from vglaw.workbook.ablation import archive_run, experiment_name, grid, grid_label, run_ablation
from vglaw.config import LAW_TYPES
from vglaw.utils.paths import repo_root
from vglaw.train import TrainConfig


def _recorder(calls):
    def train_fn(cfg):
        calls.append(cfg)
        d = __import__("pathlib").Path(cfg.save_ckpt_dir) / cfg.experiment_name
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps({"train": {"law_type": cfg.law_type, "seed": cfg.seed,
                                                             "dataset": cfg.dataset}}))
        (d / "metrics.json").write_text(json.dumps({"val": {"n": 4, "prec@0.5": 0.5, "miou": 0.4}}))
        (d / "status.json").write_text(json.dumps({"state": "finished", "step": 10 + cfg.seed}))
        (d / "predictions_val.json").write_text(json.dumps([{"sent_id": 1, "box_iou": 0.5}]))
        (d / "last.ckpt").write_bytes(b"weights")  # not archived
        return d
    return train_fn


def test_grid_and_bad_knobs():
    g = grid(["none", "svd"], [0, 1], {"law_rank": [8, 16]})
    assert len(g) == 8 and g[0] == {"law_type": "none", "law_rank": 8, "seed": 0}
    with pytest.raises(ValueError, match="unknown ablation knob"):
        grid(["svd"], [0], {"law_rnak": [8]})
    with pytest.raises(ValueError, match="at least one"):
        grid([], [0])


def test_names_change_with_the_rest_of_the_config():
    a = experiment_name("abl", {"law_type": "svd", "seed": 0}, {"max_epochs": 3, "seed": 0})
    b = experiment_name("abl", {"law_type": "svd", "seed": 0}, {"max_epochs": 4, "seed": 0})
    c = experiment_name("abl", {"law_type": "svd", "seed": 0}, {"max_epochs": 3, "seed": 7,
                                                                 "experiment_name": "x"})
    assert a.startswith("abl-svd-s0-") and a != b and a == c
    # where runs and data live is not part of the name (another clone makes the same names)
    d = experiment_name("abl", {"law_type": "svd", "seed": 0}, {"max_epochs": 3, "data_root": "/a", "cache_dir": "/b",
                                                                 "save_ckpt_dir": "/c"})
    assert d == a


def test_finished_runs_are_reused_and_only_missing_ones_trained(tmp_path):
    base = TrainConfig(preset="tiny", dataset="shapes", save_ckpt_dir=str(tmp_path))
    calls = []
    df = run_ablation(base, ["none", "svd"], [0], train_fn=_recorder(calls))
    assert [c.law_type for c in calls] == ["none", "svd"] and len(df) == 2
    df = run_ablation(base, ["none", "svd", "la"], [0, 1], train_fn=_recorder(calls))
    trained = [(c.law_type, c.seed) for c in calls[2:]]
    assert trained == [("none", 1), ("svd", 1), ("la", 0), ("la", 1)]
    assert list(df["law_type"]) == ["none", "none", "svd", "svd", "la", "la"]  # grid order
    assert list(df["updates"]) == [10, 11] * 3  # status.json's step: the budget each run really got
    assert all(d == str(tmp_path / r) for d, r in zip(df["run_dir"], df["run"]))


def _same_seed(cfg, config):  # stands in for archived_run_differences (no dataset here)
    return [] if config["train"]["seed"] == cfg.seed else [f"seed: {config['train']['seed']} -> {cfg.seed}"]


def _rejecting(cfg, config):  # an archived record made on other data
    return ["data fingerprint: 'x' -> 'y' (the data changed since the run)"]


def test_archive_finishes_a_grid_in_another_clone_and_is_never_half_written(tmp_path):
    archive, calls = tmp_path / "archive", []
    base = TrainConfig(preset="tiny", dataset="shapes", save_ckpt_dir=str(tmp_path / "a"))
    first = run_ablation(base, ["none", "svd"], [0], train_fn=_recorder(calls), archive=archive,
                         archive_check=_same_seed)
    assert sorted(p.name for p in archive.iterdir()) == sorted(first["run"])  # no temporary folders left
    for name in first["run"]:
        assert sorted(p.name for p in (archive / name).iterdir()) == [
            "config.json", "metrics.json", "predictions_val.json", "status.json"]  # no checkpoints
    # another clone: an empty runs folder, the same archive -> only the new point is trained
    other = dataclasses.replace(base, save_ckpt_dir=str(tmp_path / "b"))
    df = run_ablation(other, ["none", "svd", "la"], [0], train_fn=_recorder(calls), archive=archive,
                      archive_check=_same_seed)
    assert [c.law_type for c in calls[2:]] == ["la"]
    assert list(df["law_type"]) == ["none", "svd", "la"] and list(df["updates"]) == [10, 10, 10]
    assert list(df["run_dir"]) == [str(archive / df["run"][0]), str(archive / df["run"][1]),
                                   str(tmp_path / "b" / df["run"][2])]
    assert (archive / df["run"][2] / "predictions_val.json").is_file()  # the new point is archived too
    # a record the check rejects (other settings or data) is trained anew, then replaced
    third = dataclasses.replace(base, save_ckpt_dir=str(tmp_path / "c"))
    df = run_ablation(third, ["none"], [0], train_fn=_recorder(calls), archive=archive, archive_check=_rejecting)
    assert [c.law_type for c in calls[3:]] == ["none"]
    assert list(df["run_dir"]) == [str(tmp_path / "c" / df["run"][0])]
    # an unfinished run is refused, and the archive keeps what it had
    (tmp_path / "c" / df["run"][0] / "status.json").write_text(json.dumps({"state": "running"}))
    with pytest.raises(ValueError, match="not a finished run"):
        archive_run(tmp_path / "c" / df["run"][0], archive)
    assert json.loads((archive / df["run"][0] / "status.json").read_text())["state"] == "finished"


def test_model_knobs_become_model_overrides(tmp_path):
    base = TrainConfig(preset="tiny", save_ckpt_dir=str(tmp_path), model_overrides={"vit_dim": 64})
    calls = []
    run_ablation(base, ["svd"], [0], extra={"law_shared": [False], "law_blocks": [(0, 1)], "law_rank": [4]},
                 train_fn=_recorder(calls))
    (cfg,) = calls
    assert cfg.model_overrides == {"vit_dim": 64, "law_shared": False, "law_blocks": (0, 1)}
    assert cfg.law_rank == 4 and "perblock" in cfg.experiment_name and "b0_1" in cfg.experiment_name


def test_workbook_run_passes_literal_parameters(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(workbook, "run_notebook", lambda name, params, out: calls.append((name, params)) or out)
    monkeypatch.setattr(workbook, "export_html", lambda executed, html_dir: tmp_path / "x.html")
    workbook.main(["run", "03_ablations", "-p", "seeds", "[0, 1, 2]", "-p", "max_steps", "0",
                   "-p", "report_dir", "reports", "-p", "smoke", "True"])
    assert calls == [("03_ablations", {"seeds": [0, 1, 2], "max_steps": 0, "report_dir": "reports", "smoke": True})]
    with pytest.raises(SystemExit):
        workbook.main(["run", "03_ablation"])  # not a notebook of the workbook


def test_make_ablation_runs_the_full_grid():
    dry = subprocess.run(["make", "-n", "ablation"], cwd=repo_root(), capture_output=True, text=True, check=True)
    line = next(line for line in dry.stdout.replace("\\\n", " ").splitlines() if "vglaw.workbook run" in line)
    argv = shlex.split(line)
    params = {argv[i + 1]: workbook._literal(argv[i + 2]) for i, a in enumerate(argv) if a == "-p"}
    assert argv[argv.index("run") + 1] == "03_ablations"
    assert tuple(params["law_types"]) == LAW_TYPES and len(params["seeds"]) >= 3
    assert params["max_steps"] == 0  # no cap: every run gets its full epochs
    assert params["run_archive"] == "reports/ablation_runs"  # finished runs are kept in the repository
    assert grid_label(params["law_types"], params["seeds"], [700]).startswith("full grid: 6 law types x 3 seeds")


def test_archived_record_matches_another_copy_of_the_data_on_content(tmp_path):
    """The real check of `make ablation`'s archive: a clone regenerates the synthetic set (the same
    images, new mtimes, so another fingerprint); its record is still the same run, matched on the
    data's content, and a changed image or setting is not."""
    import time
    from PIL import Image
    from vglaw.data import generate_shapes, preprocess, read_manifest
    from vglaw.train import resolve_config
    from vglaw.workbook.runs import archived_run_differences, stored_run_differences

    def copy(name):
        root = tmp_path / name
        generate_shapes(root / "data", dataset="shapes", n_images=6, min_size=64, max_size=80, seed=3)
        return root

    a = copy("a")
    time.sleep(0.05)
    b = copy("b")
    cfg = {r: TrainConfig(preset="tiny", dataset="shapes", data_root=str(r / "data"), cache_dir=str(r / "cache"),
                          save_ckpt_dir=str(r / "runs"), experiment_name="x") for r in (a, b)}
    man = {r: read_manifest(preprocess(r / "data", "shapes", "unc", r / "cache")) for r in (a, b)}
    assert man[a]["fingerprint"] != man[b]["fingerprint"]  # mtimes differ
    assert man[a]["content"] == man[b]["content"]  # the same data
    # a cache from before content digests is rebuilt once to get one (same files: same fingerprint)
    folder = a / "cache" / "shapes(unc)"
    (folder / "manifest.json").write_text(json.dumps({k: v for k, v in man[a].items() if k != "content"}))
    again = read_manifest(preprocess(a / "data", "shapes", "unc", a / "cache"))
    assert (again["content"], again["fingerprint"]) == (man[a]["content"], man[a]["fingerprint"])
    record = {"train": json.loads(json.dumps(dataclasses.asdict(resolve_config(cfg[a])))),
              "data": {"fingerprint": man[a]["fingerprint"], "content": man[a]["content"]}}
    assert archived_run_differences(cfg[b], record) == []
    # a run in its own runs folder is still matched strictly (the files it was trained on)
    assert any("data fingerprint" in d for d in stored_run_differences(cfg[b], record))
    # another setting, or a record without a content digest (before session 10): not the same run
    assert any("lr_base" in d for d in archived_run_differences(dataclasses.replace(cfg[b], lr_base=5e-4), record))
    old = {**record, "data": {"fingerprint": man[a]["fingerprint"]}}
    assert any("data fingerprint" in d for d in archived_run_differences(cfg[b], old))
    # another image in one copy: once its cache is rebuilt, other content, named as such
    name = json.loads((b / "data" / "shapes" / "instances.json").read_text())["images"][0]["file_name"]
    path = b / "data/images/mscoco/images/train2014" / name
    w, h = Image.open(path).size
    Image.new("RGB", (w, h)).save(path)
    preprocess(b / "data", "shapes", "unc", b / "cache")  # what 01_preprocess does: rebuild
    diff = archived_run_differences(cfg[b], record)
    assert len(diff) == 1 and diff[0].startswith("data content:"), diff


def test_make_ablation_names_reach_the_archived_records():
    """The archived runs (reports/ablation_runs) are found only under the names `make ablation`
    gives its grid points at the settings they were made with; a new TrainConfig field must not
    rename them (ADDED_FIELDS). The archived grid was trained at the tiny recipe's LR before session
    13 (lr_visual = lr_base = 1e-3); at today's recipe `make ablation` names, and trains, new points."""
    import re
    from types import SimpleNamespace
    from vglaw.train.config import RECIPES
    from vglaw.workbook.params import _declared_from_percent_script
    from vglaw.workbook.runs import notebook_train_config

    make = (repo_root() / "Makefile").read_text()
    assert "-p max_epochs $(ABLATION_EPOCHS) -p max_steps 0" in make and "ABLATION_EPOCHS ?= 2" in make
    values = _declared_from_percent_script(repo_root() / "notebooks" / "03_ablations.py")
    values.update(max_epochs=2, max_steps=0, report_dir="reports/ablation", run_archive="reports/ablation_runs")
    P = SimpleNamespace(**values)
    base = notebook_train_config(P, max_steps=P.max_steps or None, eval_splits=("val",), progress=False,
                                 smoke_overrides=dict(synthetic_images=40, max_steps=4, max_epochs=1,
                                                      log_freq=1, pretrain_updates=2))
    records = sorted((repo_root() / "reports" / "ablation_runs").glob("ablation-*"))
    assert records
    lr_keys = ("lr_visual", "lr_base", "lr_lang")
    for record in records:
        law, seed = re.match(r"ablation-(\w+)-s(\d+)-", record.name).groups()
        stored = json.loads((record / "config.json").read_text())
        made = {k: stored["train"][k] for k in lr_keys}
        then = dataclasses.replace(base, **made)
        assert experiment_name("ablation", {"law_type": law, "seed": int(seed)}, dataclasses.asdict(then)) == record.name
        now = experiment_name("ablation", {"law_type": law, "seed": int(seed)}, dataclasses.asdict(base))
        if any(made[k] != RECIPES["tiny"][k] for k in lr_keys):  # another recipe: another name, retrained
            assert now != record.name


def test_a_config_from_before_an_added_field_compares_as_its_old_value():
    """A run written before `lean_kernels` existed is the same run at lean_kernels=False (resume,
    reuse, archive), and another one at True."""
    from vglaw.train.bookkeeping import changed_fields
    from vglaw.train.config import ADDED_FIELDS
    new = json.loads(json.dumps(dataclasses.asdict(TrainConfig(preset="tiny", box_source="head"))))
    old = {k: v for k, v in new.items() if k not in ADDED_FIELDS}
    assert ADDED_FIELDS and all(new[k] == v for k, v in ADDED_FIELDS.items())
    assert changed_fields(old, new) == {}
    assert changed_fields(old, dict(new, lean_kernels=True)) == {"lean_kernels": [False, True]}
    # box_source (session 16): older runs scored the head's box; the tiny recipe now the mask's
    assert changed_fields(old, dict(new, box_source="mask")) == {"box_source": ["head", "mask"]}


def test_an_added_field_left_to_the_recipe_does_not_rename_a_grid():
    """A base config that leaves an added field to the recipe (None) keeps the grid's names; one
    that sets it to another value than older runs used gets new names."""
    from vglaw.workbook.ablation import _fingerprint
    base = json.loads(json.dumps(dataclasses.asdict(TrainConfig(preset="tiny"))))
    before = {k: v for k, v in base.items() if k != "box_source"}
    assert base["box_source"] is None
    assert _fingerprint(base) == _fingerprint(before) == _fingerprint(dict(base, box_source="head"))
    assert _fingerprint(dict(base, box_source="mask")) != _fingerprint(before)


def _write_run_here(cfg):
    """A module-level train_fn (workers > 1 sends it to spawned processes): the recorder's files, and
    the pid that wrote them."""
    import os
    d = _recorder([])(cfg)
    conf = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**conf, "pid": os.getpid()}))
    return d


def _fail_on_la(cfg):
    from vglaw.train import ConfigError
    if cfg.law_type == "la":
        raise ConfigError("la: refused for the test")
    return _write_run_here(cfg)


def test_workers_train_the_rest_in_other_processes_after_the_first_alone(tmp_path):
    import os
    base = TrainConfig(preset="tiny", dataset="shapes", save_ckpt_dir=str(tmp_path / "runs"))
    archive = tmp_path / "archive"
    df = run_ablation(base, ["none", "la", "svd", "od1"], [0], train_fn=_write_run_here, workers=2,
                      archive=archive, archive_check=_same_seed)
    assert list(df["law_type"]) == ["none", "la", "svd", "od1"]  # grid order, every point finished
    pids = [json.loads((tmp_path / "runs" / r / "config.json").read_text())["pid"] for r in df["run"]]
    assert pids[0] == os.getpid()  # the first alone, here: it builds the cache and the backbone
    assert os.getpid() not in pids[1:]  # the rest in worker processes
    assert len(set(pids[1:])) == 3  # each in a fresh one: a worker keeps what MindSpore held of its runs
    assert sorted(p.name for p in archive.iterdir()) == sorted(df["run"])  # each archived as it finished
    again = run_ablation(base, ["none", "la", "svd", "od1"], [0], train_fn=_fail_on_la, workers=2)
    assert list(again["run"]) == list(df["run"])  # all reused: nothing trained, nothing failed


def test_a_failed_point_lets_the_others_finish_then_raises_its_error(tmp_path):
    from vglaw.train import ConfigError
    base = TrainConfig(preset="tiny", dataset="shapes", save_ckpt_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="la: refused for the test"):
        run_ablation(base, ["none", "la", "svd", "od1"], [0], train_fn=_fail_on_la, workers=2)
    done = sorted(json.loads((d / "config.json").read_text())["train"]["law_type"] for d in tmp_path.iterdir())
    assert done == ["none", "od1", "svd"]


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_bad_workers_are_refused(tmp_path, workers):
    base = TrainConfig(preset="tiny", dataset="shapes", save_ckpt_dir=str(tmp_path))
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        run_ablation(base, ["none"], [0], train_fn=_write_run_here, workers=workers)


def test_workers_need_a_train_fn_other_processes_can_import(tmp_path):
    base = TrainConfig(preset="tiny", dataset="shapes", save_ckpt_dir=str(tmp_path))
    with pytest.raises(ValueError, match="module-level function"):
        run_ablation(base, ["none", "svd"], [0], train_fn=_recorder([]), workers=2)
    assert not list(tmp_path.iterdir())  # refused before anything trained
