"""WordPiece tokenisation with `transformers.BertTokenizerFast` from a local vocab (DESIGN §3.2).

Never contacts a hub: the vocab comes from a folder (default: the offline all-MiniLM-L6-v2 one,
whose vocab is bert-base-uncased's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["load_tokenizer", "tokenize"]


def load_tokenizer(vocab_dir: str | Path | None = None):
    """A lower-casing BertTokenizerFast read from a local Hugging Face folder holding vocab.txt."""
    from transformers import BertTokenizerFast

    if vocab_dir is None:
        from vglaw.utils.paths import default_text_encoder_dir
        vocab_dir = default_text_encoder_dir()
    vocab = Path(vocab_dir) / "vocab.txt"
    if not vocab.is_file():
        raise FileNotFoundError(f"no vocab.txt in {vocab_dir}: pass a Hugging Face BERT folder "
                                "(vocab.txt + config.json + model.safetensors)")
    # from_pretrained on a local folder reads vocab.txt (+ tokenizer.json if present) and, with
    # local_files_only, never falls back to the hub; the vocab_file/vocab keyword differs by version
    return BertTokenizerFast.from_pretrained(str(vocab_dir), local_files_only=True, do_lower_case=True)


def tokenize(tokenizer, phrases: list[str], max_len: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Phrases -> (input_ids int32 (N, L), attention_mask int32 (N, L)), [CLS] ... [SEP] + padding,
    truncated to L = max_len."""
    enc = tokenizer(list(phrases), padding="max_length", truncation=True, max_length=max_len,
                    return_attention_mask=True, return_token_type_ids=False)
    return (np.asarray(enc["input_ids"], dtype=np.int32),
            np.asarray(enc["attention_mask"], dtype=np.int32))
