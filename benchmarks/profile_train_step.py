"""Where a train step's time goes: forward, forward+backward and the full step, then MindSpore's
profiler by op type (issue 10, item 3: the tiny preset's throughput).

    GLOG_v=4 python benchmarks/profile_train_step.py --preset tiny --batch_size 16

Prints the median wall time of each stage (GRAPH, random inputs of the preset's shapes, word
embeddings fixed as in the tiny recipe), then one row per op type of the full step: ms per step,
ops per step, share. MindSpore's CPU runtime runs independent ops at the same time, so op times
add up to about the step but do not say what removing one op would save: measure a change with
the stage timings, side by side in one session.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def _median_s(fn, steps: int) -> tuple[float, float]:
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


def op_table(prof_dir: Path, steps: int) -> list[dict]:
    """Rows {op_type, ms_per_step, ops_per_step, share} from the profiler's CPU op-type CSV."""
    [path] = list(prof_dir.rglob("cpu_op_type_info_*.csv")) or [None]
    if path is None:
        raise FileNotFoundError(f"no cpu_op_type_info_*.csv under {prof_dir}: the profiler wrote nothing")
    rows = list(csv.DictReader(path.open()))
    total = sum(float(r["total_compute_time"]) for r in rows) or 1.0
    out = [{"op_type": r["op_type"], "ms_per_step": float(r["total_compute_time"]) / steps,
            "ops_per_step": int(r["execution_frequency(per-step)"]),
            "share": float(r["total_compute_time"]) / total} for r in rows]
    return sorted(out, key=lambda r: -r["ms_per_step"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=("tiny", "paper"))
    p.add_argument("--law_type", default="svd")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="timed steps per stage (median)")
    p.add_argument("--profile_steps", type=int, default=3)
    p.add_argument("--top", type=int, default=20, help="op types printed")
    p.add_argument("--model_overrides", default="{}", help="JSON dict of ModelConfig overrides")
    p.add_argument("--op_threads", type=int, default=0,
                   help="CPU kernel threads (0: MindSpore's default; 1: what --deterministic runs)")
    p.add_argument("--keep_profile", default=None, help="keep the profiler's output in this folder")
    a = p.parse_args()

    import mindspore as ms
    from mindspore import Profiler, ops
    from vglaw import build_model
    from vglaw.models.losses import GroundingLoss
    from vglaw.train.optim import Schedule, build_optimizer

    ms.set_context(mode=ms.GRAPH_MODE)
    if a.op_threads:
        ms.device_context.cpu.op_tuning.threads_num(a.op_threads)
    ms.set_seed(0)
    model = build_model(a.preset, a.law_type, **json.loads(a.model_overrides))
    for name, prm in model.parameters_and_names():
        if "word_embeddings" in name:
            prm.requires_grad = False
    cfg = model.config
    from bench_model import _inputs  # this folder's random inputs of a preset's shapes
    batch = _inputs(cfg, a.batch_size)
    opt, _ = build_optimizer(model, Schedule(base_lrs={"lang": 1e-4, "visual": 1e-3, "base": 1e-3},
                                             warmup_steps=10))
    loss_fn = GroundingLoss.from_config(cfg)
    model.set_train(True)

    def forward(im, ids, att, gt, mask):
        boxes, logits = model(im, ids, att)
        return loss_fn(boxes, logits, gt, mask)

    grad_fn = ms.value_and_grad(forward, None, opt.parameters, has_aux=True)

    def fwd(*x):
        return forward(*x)[0]

    def grad(*x):
        (loss, *_), grads = grad_fn(*x)
        return loss, grads

    def full(*x):
        (loss, *_), grads = grad_fn(*x)
        return ops.depend(loss, opt(ops.clip_by_global_norm(grads, 0.15)))

    stages = {}
    for name, fn in (("forward + loss", fwd), ("forward + backward", grad), ("full step (+ clip, AdamW)", full)):
        jitted = ms.jit(fn)

        def run(f=jitted):
            out = f(*batch)
            (out[0] if isinstance(out, tuple) else out).asnumpy()
        stages[name] = _median_s(run, a.steps)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = a.keep_profile or tmp
        prof = Profiler(output_path=tmp)
        for _ in range(a.profile_steps):
            run()  # the full step, the last `run` defined above
        prof.stop()
        prof.analyse()
        table = op_table(Path(tmp), a.profile_steps)

    b = a.batch_size
    print(f"preset {a.preset}, law {a.law_type}, batch {b}, GRAPH, op threads {a.op_threads or 'default'}, load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'stage':<28} {'compile+first s':>15} {'median ms':>10} {'samples/s':>10}")
    for name, (first, med) in stages.items():
        print(f"{name:<28} {first:>15.1f} {med * 1000:>10.0f} {b / med:>10.1f}")
    print(f"\nfull step by op type ({a.profile_steps} profiled steps; op times overlap, see the docstring)")
    print(f"{'op type':<24} {'ms/step':>8} {'ops/step':>9} {'share':>7}")
    for r in table[:a.top]:
        print(f"{r['op_type']:<24} {r['ms_per_step']:>8.1f} {r['ops_per_step']:>9d} {r['share']:>7.1%}")
    print(f"{'all op types':<24} {sum(r['ms_per_step'] for r in table):>8.1f}")


if __name__ == "__main__":
    main()
