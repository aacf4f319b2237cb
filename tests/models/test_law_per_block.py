"""LAW per block: with law_shared=False and a subset of adaptive blocks, each adaptive block's qkv
equals the naive per-sample weight W0_i + P_j Phi_j Q_j built from that block's OWN P, Q and Phi
(j = its row among the adaptive blocks), and the other blocks stay plain."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "4")
ms = pytest.importorskip("mindspore")

import vglaw.models.vit as vit  # noqa: E402
from vglaw.models import build_model  # noqa: E402

from _model_helpers import SMALL, make_inputs, perturb_generator  # noqa: E402

# three blocks (global attention in block 1), adaptive blocks 0 and 2, one P/Q pair per block
CFG = dict(SMALL, vit_depth=3, global_blocks=(1,), law_blocks=(0, 2), law_shared=False)


@pytest.fixture(autouse=True)
def _pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def test_each_adaptive_block_uses_its_own_p_q_and_phi(monkeypatch):
    model = build_model("tiny", law_type="svd", **CFG)
    model.set_train(False)
    perturb_generator(model)
    P, Q = model.law.P.asnumpy(), model.law.Q.asnumpy()  # (2, 3C, K), (2, K, C)
    k = CFG["law_rank"]
    assert P.shape[0] == Q.shape[0] == 2
    assert np.abs(P[0] - P[1]).max() > 1e-3 and np.abs(Q[0] - Q[1]).max() > 1e-3  # the test can tell

    calls = []
    real = vit.adaptive_qkv

    def spy(law_type, x, w0, b0, g, p, q, rank, *rest):  # rest: `lean` (VGLAW.set_lean_kernels)
        out = real(law_type, x, w0, b0, g, p, q, rank, *rest)
        calls.append((x.asnumpy(), w0.asnumpy(), b0.asnumpy(), out.asnumpy()))
        return out

    monkeypatch.setattr(vit, "adaptive_qkv", spy)
    images, ids, mask = make_inputs()
    phi = model.generated_weights(ids, mask).asnumpy()  # (B, 2, K, K): one Phi per adaptive block
    assert phi.shape == (2, 2, k, k)
    assert np.abs(phi[:, 0] - phi[:, 1]).max() > 1e-3
    model(images, ids, mask)

    assert len(calls) == 2  # blocks 0 and 2 only; block 1 is a plain qkv
    for j, block in enumerate(CFG["law_blocks"]):
        x, w0, b0, got = calls[j]
        np.testing.assert_array_equal(w0, model.backbone.blocks[block].attn.qkv.weight.asnumpy())
        for s in range(x.shape[0]):  # per sample: materialise the weight the paper writes
            w = w0 + P[j] @ phi[s, j] @ Q[j]  # (3C, C)
            np.testing.assert_allclose(got[s], x[s] @ w.T + b0, rtol=1e-4, atol=1e-4,
                                       err_msg=f"block {block} (adaptive row {j}), sample {s}")
