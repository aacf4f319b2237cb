"""The `mindspore` position-table resize rule against MindSpore's own op (issue 12)."""

import numpy as np
import pytest
from mindspore import Tensor, ops

from vglaw.models.resize import bicubic_resize, bicubic_resize_matrix
from vglaw.models.vit import ViTDet
from vglaw.config import make_model_config

from _model_helpers import SMALL


def _ms_bicubic(grid: np.ndarray, out: int) -> np.ndarray:
    """(H, W, C) -> (out, out, C) by `ops.interpolate(mode="bicubic", align_corners=False)`."""
    x = Tensor(np.ascontiguousarray(grid.transpose(2, 0, 1)[None]))
    return ops.interpolate(x, size=(out, out), mode="bicubic", align_corners=False).asnumpy()[0].transpose(1, 2, 0)


def test_mindspore_rule_equals_ops_interpolate_on_14x14():
    grid = np.random.default_rng(0).normal(0, 1, (14, 14, 16)).astype(np.float32)
    ref = _ms_bicubic(grid, 28)
    ours = bicubic_resize(grid, (28, 28), "mindspore")
    assert np.abs(ours - ref).max() < 1e-6
    # the two rules really differ (a = -0.5 with renormalised borders vs a = -0.75 with clamping)
    assert np.abs(bicubic_resize(grid, (28, 28), "torch") - ref).max() > 1e-2


def test_mindspore_rule_rows_sum_to_one_and_identity():
    m = bicubic_resize_matrix(14, 28, "mindspore")
    assert np.allclose(m.sum(1), 1.0)
    assert bicubic_resize_matrix(7, 7, "mindspore") == pytest.approx(np.eye(7))
    with pytest.raises(ValueError, match="unknown resize rule"):
        bicubic_resize_matrix(4, 8, "cv2")


def test_pretrain_table_is_resized_in_forward_by_the_rule():
    """pos_table='pretrain': the backbone adds MindSpore's bicubic resize of its (1, 1+S*S, C) table."""
    cfg = make_model_config("tiny", **dict(SMALL, pretrain_grid=2, pos_table="pretrain", pos_resize="mindspore"))
    vit = ViTDet(cfg)
    table = vit.pos_embed.asnumpy()  # (1, 1+2*2, C)
    assert table.shape == (1, 5, cfg.vit_dim)
    ref = _ms_bicubic(table[0, 1:].reshape(2, 2, -1), cfg.grid)
    assert np.abs(vit.abs_pos().asnumpy()[0] - ref).max() < 1e-6


def test_authors_fidelity_backbone_graph_equals_pynative_and_trains_the_table():
    """The per-forward resize is graph-safe, and the 2x2 table (not the cls entry) gets gradients."""
    import mindspore as ms
    from vglaw.config import AUTHORS_FIDELITY
    cfg = make_model_config("paper", law_type="none", **dict(SMALL, pretrain_grid=2, **AUTHORS_FIDELITY))
    vit = ViTDet(cfg)
    vit.set_train(False)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32))
    try:
        ms.set_context(mode=ms.PYNATIVE_MODE)
        eager = vit(x).asnumpy()
        ms.set_context(mode=ms.GRAPH_MODE)
        graph = vit(x).asnumpy()
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-5)
    grad = ms.grad(lambda t: vit(t).sum(), grad_position=None, weights=[vit.pos_embed])(x)[0].asnumpy()
    assert grad.shape == (1, 5, 32) and not grad[0, 0].any() and np.abs(grad[0, 1:]).min() > 0
