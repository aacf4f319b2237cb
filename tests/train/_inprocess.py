"""Run `run_training` in this process with parts replaced (imported as `_inprocess`).

The loop imports its collaborators when it runs, so a test can swap a module attribute
(`vglaw.train.step.TrainStep`, `vglaw.train.loop._evaluate`, ...) with pytest's monkeypatch and see
exactly what the real wiring hands over. MindSpore's execution mode is global: it is restored.
"""

from __future__ import annotations

import contextlib

import mindspore as ms

from vglaw.train.cli import parse_config
from vglaw.train.loop import run_training


@contextlib.contextmanager
def keep_mode():
    mode = ms.get_context("mode")
    try:
        yield
    finally:
        ms.set_context(mode=mode)


def train(argv: list[str]):
    """argv as the CLI takes it -> run_training(parse_config(argv)) in this process."""
    with keep_mode():
        return run_training(parse_config(argv))
