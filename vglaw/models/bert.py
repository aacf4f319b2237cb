"""BERT text encoder with Hugging Face parameter names (DESIGN §3.2).

The cell tree mirrors `transformers.BertModel` (embeddings / encoder.layer.{i}.attention.self.query
...), so a Hugging Face checkpoint maps one to one. Only two leaf names differ, because MindSpore's
cells name them differently: `nn.LayerNorm` holds `gamma`/`beta` (HF `weight`/`bias`) and
`nn.Embedding` holds `embedding_table` (HF `weight`). `hf_to_ms_name` / `ms_to_hf_name` are the whole
mapping. The pooler is left out: VG-LAW reads token features and the [CLS] feature, not the pooler.
"""

from __future__ import annotations

import math

import mindspore as ms
from mindspore import nn, ops

__all__ = ["BertEncoder", "hf_to_ms_name", "ms_to_hf_name"]

# (HF suffix, ours) leaf renames; everything before the leaf is identical.
_LEAF_RENAMES = (
    ("LayerNorm.weight", "LayerNorm.gamma"),
    ("LayerNorm.bias", "LayerNorm.beta"),
    ("_embeddings.weight", "_embeddings.embedding_table"),
)


def hf_to_ms_name(name: str) -> str:
    """Hugging Face BERT parameter name (without a `bert.` prefix) -> our parameter name."""
    for hf, ours in _LEAF_RENAMES:
        if name.endswith(hf):
            return name[: -len(hf)] + ours
    return name


def ms_to_hf_name(name: str) -> str:
    """Our parameter name -> Hugging Face BERT parameter name (inverse of `hf_to_ms_name`)."""
    for hf, ours in _LEAF_RENAMES:
        if name.endswith(ours):
            return name[: -len(ours)] + hf
    return name


class BertEmbeddings(nn.Cell):
    """word + absolute position + token type (always 0: one segment) -> LayerNorm -> dropout."""

    def __init__(self, vocab_size: int, hidden: int, max_position: int, type_vocab: int,
                 dropout: float, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden)
        self.position_embeddings = nn.Embedding(max_position, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.LayerNorm = nn.LayerNorm((hidden,), epsilon=eps)
        self.dropout = nn.Dropout(p=dropout)

    def construct(self, input_ids):
        seq_len = input_ids.shape[1]
        positions = ops.arange(0, seq_len, dtype=ms.int32).reshape(1, seq_len)  # (1, L)
        x = self.word_embeddings(input_ids)  # (B, L, H)
        x = x + self.position_embeddings(positions) + self.token_type_embeddings(ops.zeros_like(input_ids))
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Cell):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"text hidden size {hidden} is not divisible by its {heads} heads")
        self.heads = heads
        self.head_dim = hidden // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query = nn.Dense(hidden, hidden)
        self.key = nn.Dense(hidden, hidden)
        self.value = nn.Dense(hidden, hidden)
        self.dropout = nn.Dropout(p=dropout)

    def _split(self, x):
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(0, 2, 1, 3)  # (B, h, L, d)

    def construct(self, x, mask_bias):
        b, n, c = x.shape
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = ops.matmul(q, k.transpose(0, 1, 3, 2)) * self.scale + mask_bias  # (B, h, L, L)
        probs = self.dropout(ops.softmax(scores, axis=-1))
        ctx = ops.matmul(probs, v)  # (B, h, L, d)
        return ctx.transpose(0, 2, 1, 3).reshape(b, n, c)


class BertSelfOutput(nn.Cell):
    def __init__(self, hidden: int, dropout: float, eps: float):
        super().__init__()
        self.dense = nn.Dense(hidden, hidden)
        self.LayerNorm = nn.LayerNorm((hidden,), epsilon=eps)
        self.dropout = nn.Dropout(p=dropout)

    def construct(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Cell):
    def __init__(self, hidden: int, heads: int, dropout: float, eps: float):
        super().__init__()
        # `self.self` mirrors HF's `attention.self.query` names (it is only an attribute name).
        self.self = BertSelfAttention(hidden, heads, dropout)
        self.output = BertSelfOutput(hidden, dropout, eps)

    def construct(self, x, mask_bias):
        return self.output(self.self(x, mask_bias), x)


class BertIntermediate(nn.Cell):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.dense = nn.Dense(hidden, ffn)
        self.gelu = nn.GELU(approximate=False)  # exact erf GELU, as HF's "gelu"

    def construct(self, x):
        return self.gelu(self.dense(x))


class BertOutput(nn.Cell):
    def __init__(self, hidden: int, ffn: int, dropout: float, eps: float):
        super().__init__()
        self.dense = nn.Dense(ffn, hidden)
        self.LayerNorm = nn.LayerNorm((hidden,), epsilon=eps)
        self.dropout = nn.Dropout(p=dropout)

    def construct(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertLayer(nn.Cell):
    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float, eps: float):
        super().__init__()
        self.attention = BertAttention(hidden, heads, dropout, eps)
        self.intermediate = BertIntermediate(hidden, ffn)
        self.output = BertOutput(hidden, ffn, dropout, eps)

    def construct(self, x, mask_bias):
        a = self.attention(x, mask_bias)
        return self.output(self.intermediate(a), a)


class _Encoder(nn.Cell):
    def __init__(self, layers: int, hidden: int, heads: int, ffn: int, dropout: float, eps: float):
        super().__init__()
        self.layer = nn.CellList([BertLayer(hidden, heads, ffn, dropout, eps) for _ in range(layers)])

    def construct(self, x, mask_bias):
        for blk in self.layer:
            x = blk(x, mask_bias)
        return x


class BertEncoder(nn.Cell):
    """The first `layers` layers of a BERT encoder; returns token features, no pooler.

    Args:
        vocab_size: WordPiece vocabulary size (30522 for bert-base-uncased / MiniLM).
        hidden: hidden size H (768 for BERT-base, 384 for MiniLM).
        layers: how many encoder layers to keep (the paper keeps 6 of BERT-base's 12).
        heads: attention heads.
        ffn: intermediate (feed-forward) size.
        max_position: rows of the absolute position table (512 in HF checkpoints).
        type_vocab: rows of the token-type table (2 in HF checkpoints; only row 0 is used).
        dropout: hidden and attention-probability dropout (active only in training mode).
        eps: LayerNorm epsilon (1e-12 in BERT).
    """

    def __init__(self, *, vocab_size: int = 30522, hidden: int = 768, layers: int = 6, heads: int = 12,
                 ffn: int = 3072, max_position: int = 512, type_vocab: int = 2, dropout: float = 0.1,
                 eps: float = 1e-12):
        super().__init__()
        # Geometry, read by the weight loader to check a checkpoint's config.json against.
        self.hidden = hidden
        self.num_layers = layers
        self.num_heads = heads
        self.ffn = ffn
        self.vocab_size = vocab_size
        self.max_position = max_position
        self.type_vocab = type_vocab
        self.eps = eps
        self.embeddings = BertEmbeddings(vocab_size, hidden, max_position, type_vocab, dropout, eps)
        self.encoder = _Encoder(layers, hidden, heads, ffn, dropout, eps)

    @classmethod
    def from_config(cls, cfg) -> "BertEncoder":
        """Build from a `vglaw.config.ModelConfig` (its text_* / vocab / BERT fields)."""
        return cls(vocab_size=cfg.vocab_size, hidden=cfg.text_hidden, layers=cfg.text_layers,
                   heads=cfg.text_heads, ffn=cfg.text_ffn, max_position=cfg.max_position,
                   type_vocab=cfg.type_vocab_size, dropout=cfg.hidden_dropout, eps=cfg.layer_norm_eps)

    def construct(self, input_ids, attention_mask):
        """input_ids (B, L) int32, attention_mask (B, L) int32 {1 token, 0 padding} -> (B, L, H)."""
        x = self.embeddings(input_ids)  # (B, L, H)
        # Additive key mask, broadcast over heads and queries; -1e9 zeroes padded keys in softmax.
        keep = attention_mask.astype(x.dtype).reshape(attention_mask.shape[0], 1, 1, attention_mask.shape[1])
        mask_bias = (1.0 - keep) * -1e9  # (B, 1, 1, L)
        return self.encoder(x, mask_bias)
