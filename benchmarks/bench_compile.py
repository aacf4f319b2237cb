"""Graph-compile time of the train step: MindSpore's grouped `nn.AdamWeightDecay` against
`vglaw.train.optim.GroupAdamW` (the same update, one fused-kernel map per parameter group).

    GLOG_v=4 python benchmarks/bench_compile.py            # the tests' model and the tiny preset
    GLOG_v=4 python benchmarks/bench_compile.py --models tests --repeats 2
    GLOG_v=4 python benchmarks/bench_compile.py --malloc both --repeats 3   # glibc vs jemalloc

Each row is its own process (nothing compiled is shared): build the model, its loss and the
optimiser of `build_optimizer` (three LR groups x decay / no decay, the training schedule cells),
then time the first fused train step (graph compile + one step) and the median of the next steps.
The rows of one model alternate optimisers, so a machine that slows down during the run shows in
both. Compare rows of one run only: machines differ between sessions.

`--malloc both`: the same rows (GroupAdamW only) with the C allocator as it is (glibc's malloc)
and with jemalloc preloaded (`LD_PRELOAD`, the library `vglaw.utils.malloc.find_jemalloc` finds:
Debian's libjemalloc2, conda-forge's jemalloc, or `VGLAW_JEMALLOC`), alternated. A graph compile
is millions of small allocations of MindSpore's IR nodes; `perf` of the tests' model's compile put
~17 % of its samples in glibc's malloc/free (`_int_malloc`, `unlink_chunk`, `malloc_consolidate`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# The CLI tests' model (tests/train/_train_helpers.py TINY_MODEL): the graph most compiled in `make test`.
TESTS_MODEL = {"img_size": 64, "window_size": 2, "vit_dim": 32, "vit_depth": 2, "vit_heads": 2,
               "global_blocks": [1], "text_layers": 1, "law_rank": 4, "law_hidden": 16,
               "rec_hidden": 32, "res_hidden": 16, "rec_dim": 16, "max_len": 20}
MODELS = {"tests": (TESTS_MODEL, 8), "tiny": ({}, 16)}  # overrides of the tiny preset, batch size


def _child(model: str, optimizer: str, steps: int) -> dict:
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from vglaw.config import make_model_config
    from vglaw.models import VGLAW
    from vglaw.models.losses import GroundingLoss
    from vglaw.train import optim
    from vglaw.train.step import TrainStep

    ms.set_context(mode=ms.GRAPH_MODE)
    over, batch = MODELS[model]
    cfg = make_model_config("tiny", law_type="svd", use_mask=True, **over)
    ms.set_seed(0)
    net = VGLAW(cfg)
    for name, p in net.text_encoder.parameters_and_names():  # the tiny recipe's fixed word table
        if "word_embeddings" in name:
            p.requires_grad = False
    if optimizer == "mindspore":
        optim.GroupAdamW = nn.AdamWeightDecay
    sched = optim.Schedule(base_lrs={"lang": 1e-4, "visual": 1e-3, "base": 1e-3}, warmup_steps=3,
                           drop_steps=(100,), total_steps=200)
    opt, _ = optim.build_optimizer(net, sched)
    step = TrainStep(net, GroundingLoss.from_config(net.config), opt, accum_steps=1, clip_norm=0.15)
    rng = np.random.default_rng(0)
    s, L = cfg.img_size, cfg.max_len
    data = (ms.Tensor(rng.standard_normal((batch, 3, s, s)).astype(np.float32)),
            ms.Tensor(rng.integers(1000, 2000, (batch, L)).astype(np.int32)), ms.Tensor(np.ones((batch, L), np.int32)),
            ms.Tensor(rng.uniform(0.3, 0.6, (batch, 4)).astype(np.float32)),
            ms.Tensor((rng.uniform(size=(batch, 1, s, s)) > 0.5).astype(np.float32)))
    from profile_train_step import _median_s  # (first call, median of the next `steps`) in seconds
    out = []
    first, median = _median_s(lambda: out.append(step.step(data)[0]), steps)
    return {"loss": repr(float(out[-1]["loss"])), "model": model, "optimizer": type(opt).__name__, "params": len(opt.parameters), "batch": batch,
            "first_step_s": round(first, 2), "step_s": round(median, 3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["tests", "tiny"])
    ap.add_argument("--repeats", type=int, default=1, help="rows per model and optimiser (alternating)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    ap.add_argument("--malloc", choices=("glibc", "jemalloc", "both"), default="glibc",
                    help="C allocator of the rows (both: alternated, GroupAdamW only)")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "OPTIMIZER"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("ROW " + json.dumps(_child(*args.child, args.steps)), flush=True)
        return
    env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "4"))
    env.pop("LD_PRELOAD", None)
    mallocs = ["glibc", "jemalloc"] if args.malloc == "both" else [args.malloc]
    opts = ["group"] if args.malloc == "both" else ["mindspore", "group"]
    if "jemalloc" in mallocs:
        from vglaw.utils.malloc import require_jemalloc
        lib = require_jemalloc()
    rows = []
    for model in args.models:
        for rep in range(args.repeats):
            for malloc in (mallocs if rep % 2 == 0 else mallocs[::-1]):
                for opt in opts:
                    e = dict(env, LD_PRELOAD=lib) if malloc == "jemalloc" else env
                    r = subprocess.run([sys.executable, __file__, "--child", model, opt, "--steps", str(args.steps)],
                                       env=e, capture_output=True, text=True)
                    line = [x for x in r.stdout.splitlines() if x.startswith("ROW ")]
                    if r.returncode != 0 or not line:
                        raise SystemExit(f"{model}/{opt}/{malloc} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
                    rows.append({**json.loads(line[0][4:]), "malloc": malloc})
    print(f"load {os.getloadavg()[0]:.2f}")
    print(f"{'model':6} {'optimizer':16} {'malloc':8} {'params':>6} {'batch':>5} {'first step (compile) s':>23} {'step s':>7}")
    for r in rows:
        print(f"{r['model']:6} {r['optimizer']:16} {r['malloc']:8} {r['params']:>6} {r['batch']:>5} "
              f"{r['first_step_s']:>23.2f} {r['step_s']:>7.3f}")
    if len(mallocs) == 2:
        import statistics
        for model in args.models:
            med = {m: statistics.median(r["first_step_s"] for r in rows if r["model"] == model and r["malloc"] == m)
                   for m in mallocs}
            print(f"{model}: median first step glibc {med['glibc']:.2f} s, jemalloc {med['jemalloc']:.2f} s "
                  f"({med['jemalloc'] / med['glibc']:.2f}x)")
            losses = {r["loss"] for r in rows if r["model"] == model}
            print(f"{model}: last loss bit-identical across all rows: {len(losses) == 1} ({sorted(losses)})")

if __name__ == "__main__":
    main()
