"""Entry point: `python -m vglaw.visualize` runs vglaw.eval.visualize (the library code lives there)."""

from vglaw.eval.visualize import build_parser, main

__all__ = ["build_parser", "main"]
