"""Entry point: `python -m vglaw.evaluate` runs vglaw.eval.evaluate (the library code lives there)."""

from vglaw.eval.evaluate import build_parser, main

__all__ = ["build_parser", "main"]
