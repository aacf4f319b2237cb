"""Train-step time: `mindspore.jit` (GRAPH) vs op-by-op (PYNATIVE), same model, batch and optimiser.

    GLOG_v=4 python benchmarks/bench_train.py --preset tiny --batch_size 16 --steps 10

Prints one table row per mode (compile = first step, then the median of `--steps` steps) and
the PYNATIVE / GRAPH ratio. Random inputs of the preset's shapes; no data set needed. Note the
machine load (`uptime`) next to any number you quote.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def bench(mode: str, preset: str, batch_size: int, steps: int, overrides: dict) -> dict:
    import mindspore as ms
    from vglaw import build_model
    from vglaw.models.losses import GroundingLoss
    from vglaw.train.optim import Schedule, build_optimizer
    from vglaw.train.step import TrainStep

    ms.set_context(mode=ms.GRAPH_MODE if mode == "GRAPH" else ms.PYNATIVE_MODE)
    ms.set_seed(0)
    model = build_model(preset, "svd", **overrides)
    cfg = model.config
    sched = Schedule(base_lrs={"lang": 1e-4, "visual": 1e-3, "base": 1e-3}, warmup_steps=10)
    opt, _ = build_optimizer(model, sched)
    step = TrainStep(model, GroundingLoss.from_config(cfg), opt, use_jit=mode == "GRAPH")
    rng = np.random.default_rng(0)
    b, s, l = batch_size, cfg.img_size, cfg.max_len
    batch = (ms.Tensor(rng.normal(size=(b, 3, s, s)).astype(np.float32)),
             ms.Tensor(rng.integers(1000, 2000, (b, l)).astype(np.int32)),
             ms.Tensor(np.ones((b, l), np.int32)),
             ms.Tensor(rng.uniform(0.2, 0.6, (b, 4)).astype(np.float32)),
             ms.Tensor((rng.uniform(size=(b, s, s)) > 0.5).astype(np.float32)))
    model.set_train(True)
    t = time.perf_counter()
    step.step(batch)
    first = time.perf_counter() - t
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step.step(batch)
        times.append(time.perf_counter() - t)
    return {"mode": mode, "first_s": first, "step_s": statistics.median(times),
            "samples_per_s": b / statistics.median(times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=("tiny", "paper"))
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--model_overrides", default="{}", help="JSON dict of ModelConfig overrides")
    p.add_argument("--modes", nargs="+", default=["GRAPH", "PYNATIVE"], choices=("GRAPH", "PYNATIVE"))
    a = p.parse_args()
    over = json.loads(a.model_overrides)
    rows = [bench(m, a.preset, a.batch_size, a.steps, over) for m in a.modes]
    print(f"preset {a.preset}, batch {a.batch_size}, overrides {over}, load {os.getloadavg()[0]:.2f}")
    print(f"{'mode':<9} {'first step s':>12} {'step s (median)':>16} {'samples/s':>10}")
    for r in rows:
        print(f"{r['mode']:<9} {r['first_s']:>12.2f} {r['step_s']:>16.3f} {r['samples_per_s']:>10.1f}")
    if len(rows) == 2:
        print(f"PYNATIVE / GRAPH step-time ratio: {rows[1]['step_s'] / rows[0]['step_s']:.1f}x")


if __name__ == "__main__":
    main()
