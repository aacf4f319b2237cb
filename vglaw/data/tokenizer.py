"""WordPiece tokenisation from a local vocab (DESIGN §3.2), with Hugging Face's `tokenizers`.

`tokenizers` is the Rust library behind `transformers.BertTokenizerFast`; this module builds the
same pipeline from the same files (a folder's tokenizer.json, or its vocab.txt with BERT's
uncased rules) and returns the same ids (tests/data/test_tokenizer.py checks it against
`BertTokenizerFast` on edge cases), without importing `transformers` (about 1.5 CPU-seconds per
process). Never contacts a hub: the vocab comes from a folder (default: the offline
all-MiniLM-L6-v2 one, whose vocab is bert-base-uncased's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["WordPieceTokenizer", "load_tokenizer", "tokenize"]


class WordPieceTokenizer:
    """BERT uncased WordPiece: lower-casing + accent stripping, [CLS] ... [SEP], [PAD] = 0 padding.

    Args:
        vocab_dir: a Hugging Face BERT folder holding vocab.txt (tokenizer.json is used if present).
    """

    def __init__(self, vocab_dir: str | Path):
        from tokenizers import Tokenizer
        from tokenizers.implementations import BertWordPieceTokenizer
        from tokenizers.normalizers import BertNormalizer

        vocab_dir = Path(vocab_dir)
        vocab = vocab_dir / "vocab.txt"
        if not vocab.is_file():
            raise FileNotFoundError(f"no vocab.txt in {vocab_dir}: pass a Hugging Face BERT folder "
                                    "(vocab.txt + config.json + model.safetensors)")
        spec = vocab_dir / "tokenizer.json"
        if spec.is_file():
            tok = Tokenizer.from_file(str(spec))
        else:
            tok = BertWordPieceTokenizer(str(vocab), lowercase=True)._tokenizer
        # As BertTokenizerFast(do_lower_case=True): uncased, accents stripped with the lower-casing,
        # CJK characters split, control characters removed, whatever tokenizer.json said.
        tok.normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                        lowercase=True)
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self.vocab_dir = str(vocab_dir)
        self.unk_token_id = tok.token_to_id("[UNK]")
        self.pad_token_id = tok.token_to_id("[PAD]")
        if self.unk_token_id is None or self.pad_token_id is None:
            raise ValueError(f"{vocab} has no [UNK] or [PAD] token: not a BERT WordPiece vocabulary")

    def token_ids(self, text: str, special: bool = True) -> list[int]:
        """Ids of one text, untruncated (encode_batch leaves no truncation or padding set); with
        [CLS]/[SEP] when `special`."""
        return self._tok.encode(text, add_special_tokens=special).ids

    def encode_batch(self, phrases: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) int32 (N, max_len): [CLS] ... [SEP], truncated, [PAD]-padded."""
        tok = self._tok
        tok.enable_truncation(max_len)
        tok.enable_padding(length=max_len, pad_id=self.pad_token_id, pad_token="[PAD]")
        try:
            enc = tok.encode_batch(list(phrases))
        finally:
            tok.no_truncation()
            tok.no_padding()
        return (np.asarray([e.ids for e in enc], dtype=np.int32).reshape(len(enc), max_len),
                np.asarray([e.attention_mask for e in enc], dtype=np.int32).reshape(len(enc), max_len))


def load_tokenizer(vocab_dir: str | Path | None = None) -> WordPieceTokenizer:
    """The uncased WordPiece tokenizer of a local Hugging Face folder holding vocab.txt."""
    if vocab_dir is None:
        from vglaw.utils.paths import default_text_encoder_dir
        vocab_dir = default_text_encoder_dir()
    return WordPieceTokenizer(vocab_dir)


def tokenize(tokenizer: WordPieceTokenizer, phrases: list[str], max_len: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Phrases -> (input_ids int32 (N, L), attention_mask int32 (N, L)), [CLS] ... [SEP] + padding,
    truncated to L = max_len."""
    return tokenizer.encode_batch(list(phrases), max_len)
