"""Config routing: each loss weight, LR group, the weight decay, the clip norm, the drop epochs,
--recompute and --lean_kernels given on the CLI reach the object that uses them in a real `run_training` (in this process; the
train step is replaced by a recorder that stops the run once everything is built)."""

from __future__ import annotations

import numpy as np
import pytest

from _inprocess import train
from _train_helpers import cli_args
from vglaw.train.optim import no_weight_decay

LOSS = {"bbox_loss_coef": 1.5, "xiou_loss_coef": 2.5, "focal_loss_coef": 3.5, "dice_loss_coef": 4.5}
LR = {"lang": 1e-4, "visual": 3e-4, "base": 7e-4}
WARMUP, DROP_RATE, WD, CLIP = 3, 0.2, 0.03, 0.37


class _Built(Exception):
    """Raised by the recorder in place of the train step: everything the run uses exists."""


@pytest.fixture(scope="module")
def built(tiny_data, tmp_path_factory):
    import vglaw.train.optim as optim
    import vglaw.train.step as step
    from vglaw.data import RefDataset
    seen = {}
    real_build = optim.build_optimizer

    def build_optimizer(*args, **kw):
        opt, group_of = real_build(*args, **kw)
        seen.update(optimizer=opt, group_of=group_of)
        return opt, group_of

    def recorder(model, loss_fn, optimizer, **kw):
        seen.update(model=model, loss_fn=loss_fn, step_optimizer=optimizer, **kw)
        raise _Built

    mp = pytest.MonkeyPatch()
    mp.setattr(optim, "build_optimizer", build_optimizer)
    mp.setattr(step, "TrainStep", recorder)
    flags = [x for k, v in LOSS.items() for x in (f"--{k}", str(v))]
    flags += ["--lr_lang", str(LR["lang"]), "--lr_visual", str(LR["visual"]), "--lr_base", str(LR["base"]),
              "--warmup_steps", str(WARMUP), "--drop_epochs", "1", "--drop_rate", str(DROP_RATE),
              "--weight_decay", str(WD), "--clip_norm", str(CLIP), "--mode_name", "PYNATIVE", "--recompute",
              "--lean_kernels"]
    try:
        with pytest.raises(_Built):
            train(cli_args(tiny_data, tmp_path_factory.mktemp("routing"), "routing", *flags))
    finally:
        mp.undo()
    # cli_args: batch 4, batch_sum 8 -> 2 micro-batches per update
    n_train = len(RefDataset(tiny_data["cache_dir"], "shapes", "unc", "train"))
    seen["updates_per_epoch"] = n_train // 4 // 2
    return seen


def test_loss_weights_reach_the_loss(built):
    import mindspore as ms
    loss_fn, cfg = built["loss_fn"], built["model"].config
    assert built["step_optimizer"] is built["optimizer"]
    assert (cfg.loss_l1, cfg.loss_giou, cfg.loss_focal, cfg.loss_dice) == tuple(LOSS.values())
    rng = np.random.default_rng(0)
    cxcywh = lambda: ms.Tensor(np.concatenate([rng.uniform(0.3, 0.7, (2, 2)), rng.uniform(0.1, 0.4, (2, 2))],  # noqa: E731
                                              1).astype(np.float32))
    logits = ms.Tensor(rng.standard_normal((2, 1, 16, 16)).astype(np.float32))
    masks = ms.Tensor((rng.random((2, 16, 16)) > 0.5).astype(np.float32))
    total, l1, giou, focal, dice = (float(t.asnumpy()) for t in loss_fn(cxcywh(), logits, cxcywh(), masks))
    assert len({round(v, 4) for v in (l1, giou, focal, dice)}) == 4  # the weights can be told apart
    assert total == pytest.approx(1.5 * l1 + 2.5 * giou + 3.5 * focal + 4.5 * dice, rel=1e-5)


def _applied_lrs(opt, group_of) -> dict:
    """{group: LR} from the optimiser's own per-parameter LR cells at its global_step, every cell
    evaluated once (vglaw.train.optim.effective_lrs evaluates one per parameter: 3 s here)."""
    out, done = {}, {}
    for p, cell in zip(opt._parameters, opt.learning_rate):
        if id(cell) not in done:
            done[id(cell)] = float(cell(opt.global_step).asnumpy().reshape(()))
        assert out.setdefault(group_of[p.name], done[id(cell)]) == done[id(cell)], p.name
    return out


def test_lr_groups_warmup_and_drop_epoch_reach_the_optimizer(built):
    import mindspore as ms
    from vglaw.train.optim import effective_lrs
    opt, group_of, upe = built["optimizer"], built["group_of"], built["updates_per_epoch"]
    assert set(group_of.values()) == set(LR)
    try:
        for s, factor in [(0, 0.01), (WARMUP, 1.0), (upe - 1, 1.0), (upe, DROP_RATE), (2 * upe - 1, DROP_RATE)]:
            opt.global_step.set_data(ms.Tensor(np.array([s], np.int32)))
            assert _applied_lrs(opt, group_of) == pytest.approx({g: lr * factor for g, lr in LR.items()},
                                                                rel=1e-5), s
            if s == upe:
                assert effective_lrs(opt, group_of) == _applied_lrs(opt, group_of)
    finally:
        opt.global_step.set_data(ms.Tensor(np.array([0], np.int32)))


def test_weight_decay_reaches_the_optimizer(built):
    opt = built["optimizer"]
    wd = {p.name: float(w) for p, w in zip(opt._parameters, opt.weight_decay)}
    matrices = [wd[p.name] for p in opt._parameters if not no_weight_decay(p.name, p.shape)]
    assert matrices and matrices == pytest.approx([WD] * len(matrices))
    assert {wd[p.name] for p in opt._parameters if no_weight_decay(p.name, p.shape)} == {0.0}


def test_clip_norm_and_accumulation_reach_the_train_step(built):
    assert built["clip_norm"] == CLIP
    assert built["accum_steps"] == 2 and built["world"] == 1


def test_recompute_reaches_every_block(built):
    """--recompute marks each ViT block and each BERT layer of the model the run trains (issue 10)."""
    model = built["model"]
    cells = list(model.backbone.blocks) + list(model.text_encoder.encoder.layer)
    assert len(cells) == model.config.vit_depth + model.config.text_layers
    assert all(c._has_config_recompute for c in cells)  # set by mindspore's Cell.recompute
    assert not model.head._has_config_recompute  # only the blocks


def test_lean_kernels_reach_every_vit_cell(built):
    """--lean_kernels switches the ViT's blocks, attentions, MLP GELUs, DropPaths, stem and trunk, and
    the train step's gradient clip (issue 10)."""
    from vglaw.models.layers import Gelu
    backbone = built["model"].backbone
    lean = {name: cell.lean for name, cell in backbone.cells_and_names() if hasattr(cell, "lean")}
    depth = built["model"].config.vit_depth
    assert len(lean) == 4 * depth + 1 + (1 if hasattr(backbone.patch_embed, "lean") else 0)
    assert all(lean.values()), lean
    assert built["lean_clip"] is True
    assert sum(isinstance(c, Gelu) for _, c in backbone.cells_and_names()) == depth
