"""AdamW with the three LR groups of DESIGN §5, each on its own warmup + drop schedule.

`model.param_groups()` splits the trainable parameters into lang (text encoder, `lr_lang`),
visual (ViT incl. the qkv W0/b0, `lr_visual`) and base (LAW generator + heads, `lr_base`). Each is
split again into decayed and undecayed parameters (`no_weight_decay`: biases, norms, position
tables, by name), so the optimiser holds up to six groups. `nn.AdamWeightDecay` is MindSpore's decoupled AdamW (it runs on
CPU in 2.10); its moments are named `adam_m.<param>` / `adam_v.<param>` and its update counter
`global_step`, which the schedule reads, so a checkpoint of `optimizer_state` resumes all three.

`GroupAdamW` is that optimiser with the same update, compiled in less time: MindSpore's grouped
AdamW maps its fused kernel over one flat list of parameters, each with its own LR and weight-decay
entry (the group's schedule cell evaluated once per parameter): the optimiser alone took 4.0 s to
compile for the tests' 101-parameter model; mapping once per group, with that group's LR evaluated
once, takes 1.4 s (the whole train step: `benchmarks/bench_compile.py`). Parameters, moments and
`global_step` equal `nn.AdamWeightDecay`'s bit for bit (tests/train/test_optim.py).
"""

from __future__ import annotations

import itertools

import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.nn.optim.adam import _fused_adam_weight_decay  # the per-parameter fused AdamW kernel call

from vglaw.train.schedule import WarmupDropLR, lr_factor

__all__ = ["GROUPS", "NO_DECAY_NAMES", "no_weight_decay", "build_optimizer", "group_lrs", "effective_lrs", "optimizer_state", "Schedule",
           "GroupAdamW"]

GROUPS = ("lang", "visual", "base")


class Schedule:
    """The run's schedule in optimiser updates (shared by the optimiser cells and the log)."""

    def __init__(self, *, base_lrs: dict, warmup_steps: int, drop_steps=(), drop_rate=0.1,
                 scheduler="step", total_steps=1):
        self.base_lrs = dict(base_lrs)
        self.kw = dict(warmup_steps=int(warmup_steps), drop_steps=tuple(int(d) for d in drop_steps),
                       drop_rate=float(drop_rate), scheduler=scheduler, total_steps=int(total_steps))

    def lr(self, group: str, step: int) -> float:
        return self.base_lrs[group] * lr_factor(step, **self.kw)

    def cell(self, group: str) -> WarmupDropLR:
        return WarmupDropLR(self.base_lrs[group], **self.kw)

    @classmethod
    def from_config(cls, cfg, updates_per_epoch: int) -> "Schedule":
        """Epoch quantities of a resolved TrainConfig -> update steps."""
        if cfg.warmup_steps is not None:
            warmup = cfg.warmup_steps
        else:
            warmup = int(round((cfg.warmup_epochs or 0.0) * updates_per_epoch))
        total = cfg.max_epochs * updates_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        return cls(base_lrs={"lang": cfg.lr_lang, "visual": cfg.lr_visual, "base": cfg.lr_base},
                   warmup_steps=warmup, drop_steps=[e * updates_per_epoch for e in cfg.drop_epochs],
                   drop_rate=cfg.drop_rate, scheduler=cfg.lr_scheduler, total_steps=total)


# What AdamW does not decay, by name as timm does (`param_groups_weight_decay` + the model's
# `no_weight_decay()` set): biases and LayerNorm gain/shift (MindSpore's gamma/beta), including the
# LAW generator's batched (n, 1, h) `fc*_bias` / `ln_gamma` / `ln_beta`, and the position tables. An
# "ndim <= 1" rule alone decays those, pulling la/od's fc2_bias (initialised to 1) towards 0.
NO_DECAY_NAMES = ("bias", "gamma", "beta", "pos_embed", "rel_pos_h", "rel_pos_w")


def no_weight_decay(name: str, shape=()) -> bool:
    """True for a parameter AdamW leaves undecayed: every vector, and the names ending in
    NO_DECAY_NAMES (`x.bias`, `law.fc1_bias`, `norm1.gamma`, `law.ln_beta`, `backbone.pos_embed`, ...)."""
    leaf = name.rsplit(".", 1)[-1]
    return len(shape) <= 1 or any(leaf == n or leaf.endswith("_" + n) for n in NO_DECAY_NAMES)


def _no_decay(p) -> bool:
    return no_weight_decay(p.name, p.shape)


class GroupAdamW(nn.AdamWeightDecay):
    """`nn.AdamWeightDecay` over parameter groups, whose update maps the fused kernel once per run of
    parameters that share an LR cell and a weight decay (each group's cell evaluated once)."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        if not (self.is_group_lr and self.dynamic_lr) or self.dynamic_weight_decay or self.use_parallel:
            raise ValueError("GroupAdamW needs groups with LR schedule cells and fixed weight decays "
                             "(build_optimizer's groups); use nn.AdamWeightDecay otherwise")
        slot, spans, first = {}, [], 0  # slot: id(LR cell) -> its index in group_lr_cells
        runs = itertools.groupby(zip(self.learning_rate, self.weight_decay), key=lambda c_wd: (id(c_wd[0]), c_wd[1]))
        for (cell_id, _), run in runs:
            end = first + len(list(run))
            spans.append((first, end, slot.setdefault(cell_id, len(slot))))
            first = end
        cells = {id(c): c for c in self.learning_rate}
        self.group_lr_cells = nn.CellList([cells[i] for i in slot], auto_prefix=False)
        self.spans = tuple(spans)  # (first, end, index into group_lr_cells) per run of parameters

    @ms.jit(backend="ms_backend")  # as nn.AdamWeightDecay.construct: one graph in PYNATIVE mode too
    def construct(self, gradients):
        lrs = ()
        for cell in self.group_lr_cells:  # read before the counter moves, as nn.AdamWeightDecay does
            lrs += (cell(self.global_step).reshape(()),)
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        result = ()
        for first, end, i in self.spans:
            result += self.hyper_map(
                ops.partial(_fused_adam_weight_decay, self.fused_opt, self.beta1, self.beta2, self.eps, lrs[i],
                            self.weight_decay[first]),
                self._parameters[first:end], self.moments1[first:end], self.moments2[first:end],
                gradients[first:end], self.decay_flags[first:end], self.optim_filter[first:end])
        return result


def build_optimizer(model, schedule: Schedule, weight_decay: float = 1e-4, eps: float = 1e-8):
    """`GroupAdamW` over `model.param_groups()`; returns (optimizer, {param name: group})."""
    groups, group_of = [], {}
    seen = set()
    for gname, params in model.param_groups().items():
        if gname not in GROUPS:
            raise ValueError(f"model.param_groups() returned unknown group {gname!r}; expected {GROUPS}")
        for decay in (True, False):
            ps = [p for p in params if _no_decay(p) != decay]
            if not ps:
                continue
            groups.append({"params": ps, "lr": schedule.cell(gname),
                           "weight_decay": weight_decay if decay else 0.0})
            for p in ps:
                if p.name in seen:
                    raise ValueError(f"parameter {p.name} is in two LR groups")
                seen.add(p.name)
                group_of[p.name] = gname
    missing = [p.name for p in model.trainable_params() if p.name not in seen]
    if missing:
        raise ValueError(f"trainable parameters outside model.param_groups(): {missing[:5]}...")
    # beta2 0.999 / eps 1e-8: torch AdamW defaults, which the official (PyTorch) recipe used.
    opt = GroupAdamW(groups, learning_rate=schedule.base_lrs["base"], beta1=0.9, beta2=0.999,
                             eps=eps)
    return opt, group_of


def group_lrs(schedule: Schedule, step: int) -> dict:
    """{group: LR at update `step`} from the Python formula (for the log)."""
    return {g: schedule.lr(g, step) for g in schedule.base_lrs}


def effective_lrs(optimizer, group_of: dict) -> dict:
    """{group: LR the optimiser will use on its next update}, read from the optimiser's own
    schedule cells at its `global_step` (what tests check the schedule against)."""
    lrs = optimizer.get_lr()
    out = {}
    for p, lr in zip(optimizer._parameters, lrs):
        out.setdefault(group_of[p.name], float(np.asarray(lr.asnumpy()).reshape(())))
    return out


def optimizer_state(optimizer) -> dict:
    """{name: Parameter} of everything an optimiser resume needs: moments and the update counter."""
    state = {p.name: p for p in optimizer.moments1}
    state.update({p.name: p for p in optimizer.moments2})
    state["global_step"] = optimizer.global_step
    return state
