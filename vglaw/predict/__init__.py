"""Entry point: `python -m vglaw.predict` runs vglaw.eval.predict (the library code lives there)."""

from vglaw.eval.predict import build_parser, main

__all__ = ["build_parser", "main"]
