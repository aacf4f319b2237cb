"""VG-LAW model parts: backbone (vit), text encoder (bert), LAW (law), heads, the full model."""

from vglaw.models.vglaw import VGLAW, build_model

__all__ = ["VGLAW", "build_model"]
