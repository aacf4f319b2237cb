"""Multi-task head (DESIGN §3.4): REC box by language-guided pooling, RES mask by pixel-text dot.

Box: (cx, cy, w, h) after a sigmoid, normalised to the padded S x S canvas.
Mask: logits (B, 1, S, S) on the same canvas.
"""

from __future__ import annotations

from mindspore import Tensor, nn, ops

__all__ = ["RECHead", "RESHead", "MultiTaskHead"]


class RECHead(nn.Cell):
    """Query = Linear(c), keys = Linear(tokens), one head, softmax over tokens; values = raw tokens;
    then MLP C-hidden-hidden-4 (ReLU) and a sigmoid.

    Args:
        vis_dim: backbone channels C. text_dim: [CLS] width D. attn_dim: q/k width. hidden: MLP width.
    """

    def __init__(self, vis_dim: int, text_dim: int, attn_dim: int = 64, hidden: int = 256):
        super().__init__()
        self.query = nn.Dense(text_dim, attn_dim)
        self.key = nn.Dense(vis_dim, attn_dim)
        self.scale = attn_dim ** -0.5
        self.mlp = nn.SequentialCell(nn.Dense(vis_dim, hidden), nn.ReLU(), nn.Dense(hidden, hidden),
                                     nn.ReLU(), nn.Dense(hidden, 4))

    def construct(self, tokens: Tensor, cls: Tensor) -> Tensor:
        """tokens (B, N, C), cls (B, D) -> boxes (B, 4) sigmoid cxcywh on the canvas."""
        q = self.query(cls).expand_dims(1)  # (B, 1, a)
        k = self.key(tokens)  # (B, N, a)
        attn = ops.softmax(ops.bmm(q, k.transpose(0, 2, 1)) * self.scale, axis=-1)  # (B, 1, N)
        pooled = ops.bmm(attn, tokens).squeeze(1)  # (B, C)
        return ops.sigmoid(self.mlp(pooled))


class RESHead(nn.Cell):
    """ConvT(C->hidden, k2 s2) -> channel LayerNorm -> GELU -> ConvT(hidden->D, k2 s2) -> dot with c
    -> bilinear (align_corners) to the canvas.

    Args:
        vis_dim: C. text_dim: D. hidden: channels between the transposed convolutions.
        img_size: canvas side S.
    """

    def __init__(self, vis_dim: int, text_dim: int, hidden: int = 256, img_size: int = 448):
        super().__init__()
        self.img_size = img_size
        self.up1 = nn.Conv2dTranspose(vis_dim, hidden, 2, stride=2, pad_mode="valid", has_bias=True)
        self.norm = nn.LayerNorm((hidden,), epsilon=1e-6)
        self.act = nn.GELU(approximate=False)
        self.up2 = nn.Conv2dTranspose(hidden, text_dim, 2, stride=2, pad_mode="valid", has_bias=True)

    def construct(self, fmap: Tensor, cls: Tensor) -> Tensor:
        """fmap (B, C, g, g), cls (B, D) -> mask logits (B, 1, S, S)."""
        x = self.up1(fmap)  # (B, hid, 2g, 2g)
        x = self.norm(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # LayerNorm over channels
        x = self.up2(self.act(x))  # (B, D, 4g, 4g)
        logits = (x * cls.expand_dims(2).expand_dims(3)).sum(1, keepdims=True)  # (B, 1, 4g, 4g)
        if logits.shape[-1] != self.img_size:
            logits = ops.interpolate(logits, size=(self.img_size, self.img_size), mode="bilinear",
                                     align_corners=True)
        return logits


class MultiTaskHead(nn.Cell):
    """REC + RES on the backbone map and the [CLS] feature."""

    def __init__(self, cfg):
        super().__init__()
        self.rec = RECHead(cfg.vit_dim, cfg.text_hidden, cfg.rec_dim, cfg.rec_hidden)
        self.res = RESHead(cfg.vit_dim, cfg.text_hidden, cfg.res_hidden, cfg.img_size)

    def construct(self, fmap: Tensor, cls: Tensor):
        b, c, h, w = fmap.shape
        tokens = fmap.reshape(b, c, h * w).transpose(0, 2, 1)  # (B, N, C)
        return self.rec(tokens, cls), self.res(fmap, cls)
