"""BertEncoder: HF name mapping, and token-feature parity with transformers' BertModel (torch CPU)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "4")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ms = pytest.importorskip("mindspore")
from mindspore import Tensor  # noqa: E402

from vglaw.models.bert import BertEncoder, hf_to_ms_name, ms_to_hf_name  # noqa: E402
from vglaw.models.weights import WeightsError, load_text_encoder  # noqa: E402
from vglaw.utils.paths import default_text_encoder_dir  # noqa: E402

MINILM = dict(vocab_size=30522, hidden=384, heads=12, ffn=1536)


def _batch():
    """Two expressions, the second padded: exercises the attention mask."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(2, 12)).astype(np.int32)
    ids[:, 0] = 101  # [CLS]
    mask = np.ones((2, 12), dtype=np.int32)
    ids[0, 11] = 102
    ids[1, 7] = 102
    ids[1, 8:] = 0
    mask[1, 8:] = 0
    return ids, mask


def test_name_mapping_is_plain_and_invertible():
    assert hf_to_ms_name("embeddings.LayerNorm.weight") == "embeddings.LayerNorm.gamma"
    assert hf_to_ms_name("encoder.layer.3.output.LayerNorm.bias") == "encoder.layer.3.output.LayerNorm.beta"
    assert hf_to_ms_name("embeddings.word_embeddings.weight") == "embeddings.word_embeddings.embedding_table"
    assert hf_to_ms_name("encoder.layer.0.attention.self.query.weight") == "encoder.layer.0.attention.self.query.weight"
    enc = BertEncoder(vocab_size=50, hidden=16, layers=2, heads=4, ffn=32, max_position=24)
    names = [n for n, _ in enc.parameters_and_names()]
    assert len(names) == 5 + 2 * 16  # embeddings (3 tables + LN) + 16 per layer, no pooler
    for n in names:
        assert hf_to_ms_name(ms_to_hf_name(n)) == n
        assert not ms_to_hf_name(n).endswith(("gamma", "beta", "embedding_table"))
    assert "encoder.layer.1.attention.self.value.bias" in names
    assert not any("pooler" in n for n in names)


@pytest.fixture(scope="module")
def hf_dir():
    return default_text_encoder_dir()


@pytest.mark.parametrize("layers", [6, 2])
def test_parity_with_transformers(hf_dir, layers):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ids, mask = _batch()

    ref = transformers.BertModel.from_pretrained(str(hf_dir), local_files_only=True, num_hidden_layers=layers,
                                                 add_pooling_layer=False, attn_implementation="eager")
    ref.eval()
    with torch.no_grad():
        want = ref(input_ids=torch.from_numpy(ids.astype(np.int64)),
                   attention_mask=torch.from_numpy(mask.astype(np.int64))).last_hidden_state.numpy()

    enc = BertEncoder(layers=layers, **MINILM)
    report = load_text_encoder(enc, hf_dir)
    assert len(report.loaded) == 5 + 16 * layers
    assert any(n.startswith("pooler.") for n in report.ignored)
    assert any(n.startswith(f"encoder.layer.{layers}.") for n in report.ignored) == (layers < 6)
    enc.set_train(False)
    got = enc(Tensor(ids), Tensor(mask)).asnumpy()
    assert got.shape == (2, 12, 384)
    # All positions, padded ones included: HF computes them the same way (queries are not masked).
    assert np.abs(got - want).max() < 1e-4
    # The pad tokens must not influence the real tokens: change them and nothing real moves.
    ids2 = ids.copy()
    ids2[1, 8:] = 5000
    got2 = enc(Tensor(ids2), Tensor(mask)).asnumpy()
    assert np.abs(got2[1, :8] - got[1, :8]).max() < 1e-5


def test_graph_mode_matches_pynative(hf_dir):
    ids, mask = _batch()
    enc = BertEncoder(layers=1, **MINILM)
    load_text_encoder(enc, hf_dir)
    enc.set_train(False)
    eager = enc(Tensor(ids), Tensor(mask)).asnumpy()
    jitted = ms.jit(enc.construct)(Tensor(ids), Tensor(mask)).asnumpy()
    assert np.abs(eager - jitted).max() < 1e-5


def test_train_mode_applies_dropout(hf_dir):
    ids, mask = _batch()
    enc = BertEncoder(layers=1, **MINILM)
    load_text_encoder(enc, hf_dir)
    enc.set_train(True)
    a = enc(Tensor(ids), Tensor(mask)).asnumpy()
    enc.set_train(False)
    b = enc(Tensor(ids), Tensor(mask)).asnumpy()
    assert np.abs(a - b).max() > 1e-3


def test_loader_rejects_incompatible_geometry(hf_dir):
    with pytest.raises(WeightsError, match="hidden_size is 384"):
        load_text_encoder(BertEncoder(vocab_size=30522, hidden=768, layers=1, heads=12, ffn=1536), hf_dir)
    with pytest.raises(WeightsError, match="num_hidden_layers is 6, the text encoder needs >= 7"):
        load_text_encoder(BertEncoder(layers=7, **MINILM), hf_dir)


def test_loader_names_the_bad_parameter(tmp_path, hf_dir):
    import json
    from safetensors.numpy import load_file, save_file
    tensors = load_file(str(hf_dir / "model.safetensors"))
    cfg = json.loads((hf_dir / "config.json").read_text())
    # A BertForMaskedLM-style file: `bert.` prefix, truncated; one tensor has the wrong shape.
    small = {"bert." + k: v for k, v in tensors.items() if not k.startswith("encoder.layer.") or
             k.startswith("encoder.layer.0.")}
    small["bert.encoder.layer.0.intermediate.dense.bias"] = np.zeros(7, np.float32)
    save_file(small, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(dict(cfg, num_hidden_layers=1)))
    enc = BertEncoder(layers=1, **MINILM)
    before = enc.encoder.layer[0].intermediate.dense.weight.asnumpy().copy()
    with pytest.raises(WeightsError, match=r"bert\.encoder\.layer\.0\.intermediate\.dense\.bias.*\(7,\)"):
        load_text_encoder(enc, tmp_path)
    # nothing was written
    assert np.array_equal(before, enc.encoder.layer[0].intermediate.dense.weight.asnumpy())

    # an unknown tensor name is an error too; the `bert.` prefix is stripped for the good ones
    small["bert.encoder.layer.0.intermediate.dense.bias"] = tensors["encoder.layer.0.intermediate.dense.bias"]
    small["bert.encoder.layer.0.adapter.weight"] = np.zeros((2, 2), np.float32)
    save_file(small, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"bert\.encoder\.layer\.0\.adapter\.weight"):
        load_text_encoder(enc, tmp_path)
    del small["bert.encoder.layer.0.adapter.weight"]
    save_file(small, str(tmp_path / "model.safetensors"))
    report = load_text_encoder(enc, tmp_path)
    assert np.array_equal(enc.encoder.layer[0].intermediate.dense.weight.asnumpy(),
                          tensors["encoder.layer.0.intermediate.dense.weight"])
    assert "encoder.layer.0.attention.output.LayerNorm.gamma" in report.loaded


def test_tiny_model_takes_minilm_weights(hf_dir):
    """The tiny preset's 2-layer text encoder loads MiniLM's first 2 layers through the VGLAW model."""
    import vglaw
    from safetensors.numpy import load_file
    model = vglaw.build_model(preset="tiny", law_type="svd", vit_dim=32, vit_depth=2, vit_heads=2,
                              window_size=4, global_blocks=(1,))
    report = load_text_encoder(model)  # default folder: the installed all-MiniLM-L6-v2
    assert report.source == str(hf_dir) and len(report.loaded) == 5 + 16 * model.config.text_layers
    tensors = load_file(str(hf_dir / "model.safetensors"))
    enc = model.text_encoder
    assert np.array_equal(enc.encoder.layer[1].output.LayerNorm.gamma.asnumpy(),
                          tensors["encoder.layer.1.output.LayerNorm.weight"])
    assert np.array_equal(enc.embeddings.word_embeddings.embedding_table.asnumpy(),
                          tensors["embeddings.word_embeddings.weight"])
