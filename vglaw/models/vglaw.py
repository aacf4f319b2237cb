"""The VG-LAW model (DESIGN §2): BERT -> LAW generator -> language-adaptive ViTDet -> head."""

from __future__ import annotations

from mindspore import Tensor, nn, ops

from vglaw.config import ModelConfig, make_model_config
from vglaw.models.bert import BertEncoder
from vglaw.models.heads import MultiTaskHead
from vglaw.models.law import LAW
from vglaw.models.vit import ViTDet

__all__ = ["VGLAW", "build_model"]


class _NoLAW(nn.Cell):
    """Placeholder for law_type="none" so the sub-cell `law` always exists (no parameters)."""


class VGLAW(nn.Cell):
    """images (B,3,S,S) f32, input_ids (B,L) i32, attention_mask (B,L) i32
    -> (boxes (B,4) sigmoid cxcywh normalised to the S x S canvas, mask_logits (B,1,S,S)).

    Sub-cells: `text_encoder` (HF BERT names), `backbone` (ViTDet incl. qkv W0/b0),
    `law` (P/Q + generator), `head` (REC + RES).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.law_type = cfg.law_type
        self.img_size = cfg.img_size
        self.max_len = cfg.max_len
        self.text_encoder = BertEncoder.from_config(cfg)
        self.backbone = ViTDet(cfg)
        self.law = _NoLAW() if cfg.law_type == "none" else LAW(cfg)
        self.head = MultiTaskHead(cfg)
        self.text_pool_mean = cfg.text_pool == "mean"

    def check_inputs(self, images, input_ids, attention_mask=None) -> None:
        """Raise ValueError on shapes this model cannot take (also checked inside construct)."""
        self._check_shapes(tuple(images.shape), tuple(input_ids.shape),
                           None if attention_mask is None else tuple(attention_mask.shape))

    def _check_shapes(self, img_shape, ids_shape, mask_shape):
        s = self.img_size
        if len(img_shape) != 4 or img_shape[1] != 3 or img_shape[2] != s or img_shape[3] != s:
            raise ValueError(f"images must be (B, 3, {s}, {s}) for preset "
                             f"{self.config.preset!r} (img_size={s}), got {img_shape}")
        if len(ids_shape) != 2 or ids_shape[0] != img_shape[0]:
            raise ValueError(f"input_ids must be (B, L) with B = {img_shape[0]}, got {ids_shape}")
        if ids_shape[1] > self.max_len:
            raise ValueError(f"token length {ids_shape[1]} exceeds max_len={self.max_len} of this "
                             f"model; tokenize with max_len={self.max_len}")
        if mask_shape is not None and mask_shape != ids_shape:
            raise ValueError(f"attention_mask shape {mask_shape} != input_ids shape {ids_shape}")

    def construct(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor):
        # Static-shape checks: plain Python on constant shapes, allowed in graph mode.
        s = self.img_size
        if images.shape[1] != 3 or images.shape[2] != s or images.shape[3] != s:
            raise ValueError(f"images must be (B, 3, {s}, {s}) (img_size of this model), got {images.shape}")
        if input_ids.shape[1] > self.max_len:
            raise ValueError(f"token length {input_ids.shape[1]} exceeds max_len {self.max_len}")
        feats = self.text_encoder(input_ids, attention_mask)  # (B, L, D)
        if self.text_pool_mean:  # mean of the real tokens ([CLS] and [SEP] included), as sentence-transformers
            m = attention_mask.astype(feats.dtype).expand_dims(-1)  # (B, L, 1)
            cls = (feats * m).sum(1) / ops.maximum(m.sum(1), 1.0)
        else:
            cls = feats[:, 0]  # (B, D): the paper's [CLS]
        if self.law_type == "none":
            fmap, cells = self.backbone.features(images)
        else:
            gen = self.law(feats, attention_mask)  # (B, nA, out)
            fmap, cells = self.backbone.features(images, gen, self.law.P, self.law.Q)  # (B, C, g, g)
        return self.head(fmap, cls, cells)

    def generated_weights(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Per adaptive block: svd Phi (B, nA, K, K); la/od* scalings (B, nA, out)."""
        if self.law_type == "none":
            raise ValueError("law_type='none' generates no weights")
        feats = self.text_encoder(input_ids, attention_mask)
        gen = self.law(feats, attention_mask)
        if self.law_type == "svd":
            k = self.config.law_rank
            return gen.reshape(gen.shape[0], gen.shape[1], k, k)
        return gen

    def set_recompute(self) -> int:
        """Recompute each ViT block's and each BERT layer's forward in the backward instead of
        keeping its activations (MindSpore `Cell.recompute`, GRAPH mode; issue 10). The function
        and its gradients stay the same; returns how many cells were marked."""
        cells = list(self.backbone.blocks) + list(self.text_encoder.encoder.layer)
        for cell in cells:
            cell.recompute()
        return len(cells)

    def set_lean_kernels(self, on: bool = True) -> int:
        """Use the CPU-lean op spellings of `vglaw.models.layers` in the ViT (issue 10): layout
        transposes as `mint.permute` and spelt-out broadcasts (the same bits), and the MLP's GELU
        via erf (the same function, last-bit differences). Cuts MindSpore's per-graph-node CPU
        kernel buffers, i.e. GRAPH-mode CPU memory; call before the first (compiled) call. Returns
        how many cells were switched. Weights and checkpoints are unaffected."""
        n = 0
        for _, cell in self.backbone.cells_and_names():
            if hasattr(cell, "lean"):
                cell.lean = bool(on)
                n += 1
        return n

    def param_groups(self) -> dict:
        """Trainable Parameters by LR group: lang (text encoder), visual (backbone incl. W0/b0),
        base (LAW + head)."""
        return {"lang": list(self.text_encoder.trainable_params()),
                "visual": list(self.backbone.trainable_params()),
                "base": list(self.law.trainable_params()) + list(self.head.trainable_params())}


def build_model(preset: str = "tiny", law_type: str = "svd", **overrides) -> VGLAW:
    """Build VG-LAW from a preset (`paper`, `tiny`) plus ModelConfig overrides (ValueError on
    unknown names or bad values). Weights are randomly initialised; see vglaw.models.weights."""
    return VGLAW(make_model_config(preset, law_type=law_type, **overrides))
