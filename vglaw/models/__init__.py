"""VG-LAW model parts: text encoder (bert), LAW (law), backbone (vit), heads, the full model (vglaw),
its losses (losses); weights in and out: weights, resize, checkpoint, convert (the authors' format)."""

from vglaw.models.vglaw import VGLAW, build_model

__all__ = ["VGLAW", "build_model"]
