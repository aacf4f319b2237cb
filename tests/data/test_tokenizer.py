"""The WordPiece tokenizer (vglaw.data.tokenizer, on Hugging Face's `tokenizers`) gives the ids
`transformers.BertTokenizerFast(do_lower_case=True)` gives, from a folder with tokenizer.json and
from one with only vocab.txt, on the cases where tokenizers differ (accents, case, CJK, control
characters, punctuation, unknown words, truncation, padding)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vglaw.data.tokenizer import load_tokenizer, tokenize
from vglaw.eval.predict import count_tokens
from vglaw.utils.paths import default_text_encoder_dir

TEXTS = ["the red circle", "The LEFT  Blue square!", "café naïve résumé", "北京 the 東京 circle", "a" * 150,
         "x " * 60, "", "   ", "the red circle left of the blue square, please.", "Ünïcödé ÀÉÎ", "don't stop-it now",
         "\t tabs\nnewlines\r", "emoji \U0001F600 test", "##weird ## tokens", "[CLS] literal [SEP]", "ñandú 123.45 $%&",
         "zxqvbnmk", "the\u200bzero\u00adwidth"]


@pytest.fixture(scope="module", params=["tokenizer.json", "vocab.txt only"])
def folder(request, tmp_path_factory):
    src = default_text_encoder_dir()
    if request.param == "tokenizer.json":
        assert (src / "tokenizer.json").is_file()
        return src
    dst = tmp_path_factory.mktemp("vocab_only")
    shutil.copy(src / "vocab.txt", dst / "vocab.txt")
    return dst


def test_same_ids_as_bert_tokenizer_fast(folder):
    transformers = pytest.importorskip("transformers")
    ref = transformers.BertTokenizerFast.from_pretrained(str(folder), local_files_only=True, do_lower_case=True)
    ours = load_tokenizer(folder)
    assert ours.unk_token_id == ref.unk_token_id == 100 and ours.pad_token_id == ref.pad_token_id == 0
    for max_len in (8, 20, 40):
        ids, mask = tokenize(ours, TEXTS, max_len)
        enc = ref(TEXTS, padding="max_length", truncation=True, max_length=max_len, return_attention_mask=True,
                  return_token_type_ids=False)
        assert ids.dtype == mask.dtype == np.int32 and ids.shape == mask.shape == (len(TEXTS), max_len)
        np.testing.assert_array_equal(ids, np.asarray(enc["input_ids"]))
        np.testing.assert_array_equal(mask, np.asarray(enc["attention_mask"]))
    for text in TEXTS:
        assert ours.token_ids(text, special=False) == ref(text, add_special_tokens=False)["input_ids"], text
        assert count_tokens(ours, text) == len(ref(text, add_special_tokens=True)["input_ids"]), text
    assert ours.token_ids("zxqvbnmk", special=False) != [ours.unk_token_id]  # word pieces, not one [UNK]


def test_truncation_state_does_not_leak():
    tok = load_tokenizer()
    tokenize(tok, ["the red circle left of the blue square"], 4)
    assert len(tok.token_ids("the red circle left of the blue square")) == 10  # untruncated, unpadded after it


def test_folder_without_vocab_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no vocab.txt"):
        load_tokenizer(tmp_path)
