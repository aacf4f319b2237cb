"""Every choice list is defined once (issue 11): each name is assigned in exactly one module of
vglaw, and whoever else uses it imports that object (same identity, so the lists cannot drift)."""

from __future__ import annotations

import ast
import importlib

from vglaw.utils.paths import repo_root

# name -> its one home
HOMES = {"LAW_TYPES": "vglaw.config", "MODES": "vglaw.config", "DEVICE_TARGETS": "vglaw.config",
         "LOSS_WEIGHTS": "vglaw.config", "PRESETS": "vglaw.config", "DATASETS": "vglaw.data.refer",
         "DEFAULT_SPLIT_BY": "vglaw.data.refer", "SPLIT_BYS": "vglaw.data.refer", "SPLITS": "vglaw.data.refer"}
# modules that use a list, with the name it is used under
USERS = [("vglaw.train.config", "LAW_TYPES"), ("vglaw.train.config", "MODES"),
         ("vglaw.train.config", "DEVICE_TARGETS"), ("vglaw.train.config", "DATASETS"),
         ("vglaw.train.config", "DEFAULT_SPLIT_BY"), ("vglaw.train.config", "LOSS_WEIGHTS"),
         ("vglaw.train.cli", "DATASETS"), ("vglaw.train.cli", "LAW_TYPES"), ("vglaw.train.cli", "SPLIT_BYS"),
         ("vglaw.eval.cli", "MODES"), ("vglaw.eval.cli", "DEVICE_TARGETS"), ("vglaw.eval.cli", "DATASETS"),
         ("vglaw.eval.cli", "SPLITS"), ("vglaw.workbook.ablation", "LAW_TYPES")]


def _assignments() -> dict[str, list[str]]:
    """{name: modules that assign it at module level} over every vglaw source file."""
    found: dict[str, list[str]] = {}
    pkg = repo_root() / "vglaw"
    for path in sorted(pkg.rglob("*.py")):
        module = ".".join(path.relative_to(pkg.parent).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AnnAssign) else [])
            for t in targets:
                if isinstance(t, ast.Name) and t.id in HOMES:
                    found.setdefault(t.id, []).append(module)
    return found


def test_each_choice_list_is_assigned_in_its_home_only():
    assert _assignments() == {name: [home] for name, home in HOMES.items()}


def test_users_import_the_home_object():
    for module, name in USERS:
        home = importlib.import_module(HOMES[name])
        assert getattr(importlib.import_module(module), name) is getattr(home, name), (module, name)


def test_the_cli_choices_are_the_lists():
    from vglaw.config import LAW_TYPES, MODES
    from vglaw.data.refer import DATASETS, SPLIT_BYS
    from vglaw.train.cli import CHOICES
    assert CHOICES["law_type"] == LAW_TYPES and CHOICES["mode_name"] == MODES
    assert CHOICES["dataset"] == tuple(DATASETS) and CHOICES["split_by"] == SPLIT_BYS


def test_every_loss_weight_flag_reaches_its_model_field():
    import dataclasses

    from vglaw.config import LOSS_WEIGHTS
    from vglaw.train.config import TrainConfig, model_config, resolve_config
    values = {flag: 0.5 + i for i, flag in enumerate(LOSS_WEIGHTS.values())}
    mc = model_config(resolve_config(TrainConfig(preset="tiny", dataset="shapes", **values)))
    assert {field: getattr(mc, field) for field in LOSS_WEIGHTS} == {f: values[flag] for f, flag in LOSS_WEIGHTS.items()}
    assert set(LOSS_WEIGHTS) <= {f.name for f in dataclasses.fields(mc)}
