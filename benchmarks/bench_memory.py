"""Peak memory of a model's forward, train step and evaluation forward (issue 10, item 1).

    GLOG_v=4 python benchmarks/bench_memory.py --preset paper --modes GRAPH --stages train --batches 1 2
    GLOG_v=4 python benchmarks/bench_memory.py --preset paper --stages train --batches 1 --recompute
    GLOG_v=4 python benchmarks/bench_memory.py --preset paper --stages eval --batches 1 8 --lean_kernels
    MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0 LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
        GLOG_v=4 python benchmarks/bench_memory.py --preset paper --stages train --batches 1 2 4 8 --lean_kernels --recompute

Each (mode, stage, batch) runs in its own process: build the model, run the stage twice on random
inputs of the preset's shapes, report the process's peak RSS (VmHWM). The parent watches every
child and stops one whose RSS passes `--limit_gb` (default: 85 % of MemTotal), so a configuration that
does not fit shows as "> limit" instead of waking the OOM killer (which also hits other processes).
Also printed: parameter bytes and, for train, AdamW's two moments, which fp32 training cannot avoid,
and where the RSS grows: after building the model and its inputs ("built"), after compiling the
graph without running it ("compiled": GRAPH forward and eval, through `Cell.compile`; the train
step's jit function has no compile-only call), and after the second run ("after run").
Run it alone: two paper-preset processes at once do not fit in 24 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

STAGES = ("forward", "train", "eval")


def _kib(field: str, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child(preset: str, law_type: str, mode: str, stage: str, batch: int, context: dict,
          recompute: bool = False, lean: bool = False) -> dict:
    import mindspore as ms
    from vglaw import build_model
    from vglaw.models.losses import GroundingLoss
    from vglaw.train.optim import Schedule, build_optimizer
    from vglaw.train.step import TrainStep

    ms.set_context(mode=ms.GRAPH_MODE if mode == "GRAPH" else ms.PYNATIVE_MODE, **context)
    ms.set_seed(0)
    model = build_model(preset, law_type)
    if recompute:
        model.set_recompute()
    if lean:
        model.set_lean_kernels()
        from vglaw.utils.malloc import release_freed_pages
        release_freed_pages()  # as vglaw.train and vglaw.evaluate do with --lean_kernels
    cfg = model.config
    from bench_model import _inputs  # this folder's random inputs of a preset's shapes
    im, ids, att, gt, mask = _inputs(cfg, batch)
    params = sum(p.size for p in model.get_parameters()) * 4
    moments = 0
    if stage == "train":
        opt, _ = build_optimizer(model, Schedule(base_lrs={"lang": 1e-5, "visual": 1e-5, "base": 1e-4},
                                                 warmup_steps=10))
        moments = 2 * sum(p.size for p in opt.parameters) * 4
        # the training loop's own step (vglaw.train.step.TrainStep: value_and_grad, clip 0.15, AdamW)
        trainer = TrainStep(model, GroundingLoss.from_config(cfg), opt, clip_norm=0.15,
                            use_jit=mode == "GRAPH", lean_clip=lean)

        def run(*x):
            return trainer.step(x)[0]["loss"]
        args = (im, ids, att, gt, mask)
        model.set_train(True)
    else:
        def run(*x):
            return model(*x)[0]  # in GRAPH mode a Cell call runs the Cell's compiled graph
        args = (im, ids, att)
        model.set_train(stage == "forward")
    built = _kib("VmRSS")
    compiled = None
    if mode == "GRAPH" and stage != "train":
        model.compile(*args)
        compiled = _kib("VmRSS")
    times = []
    for _ in range(2):
        t = time.perf_counter()
        out = run(*args)
        if stage != "train":
            out.asnumpy()
        times.append(time.perf_counter() - t)
    return {"peak_gb": _kib("VmHWM") / 2**20, "params_gb": params / 2**30, "moments_gb": moments / 2**30,
            "first_s": times[0], "second_s": times[1], "built_gb": built / 2**20,
            "compiled_gb": None if compiled is None else compiled / 2**20, "after_gb": _kib("VmRSS") / 2**20}


def run_one(argv: list[str], limit_kib: int) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--child", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            rss = _kib("VmRSS", proc.pid)
        except (FileNotFoundError, ProcessLookupError):
            break
        peak = max(peak, rss)
        if rss > limit_kib:
            proc.kill()
            proc.wait()
            return {"error": f"> {limit_kib / 2**20:.1f} GB (stopped)"}
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {(err.strip().splitlines() or [''])[-1][:120]}"}
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="paper", choices=("tiny", "paper"))
    p.add_argument("--law_type", default="svd")
    p.add_argument("--modes", nargs="+", default=["GRAPH"], choices=("GRAPH", "PYNATIVE"))
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    p.add_argument("--limit_gb", type=float, default=None, help="stop a child above this RSS")
    p.add_argument("--context", default="{}", help='JSON of mindspore.set_context options, e.g. {"memory_optimize_level": "O1"}')
    p.add_argument("--recompute", action="store_true",
                   help="recompute every ViT block and BERT layer in the backward (VGLAW.set_recompute)")
    p.add_argument("--lean_kernels", action="store_true",
                   help="the ViT's CPU-lean op spellings (VGLAW.set_lean_kernels, vglaw/models/layers.py)")
    p.add_argument("--child", nargs=8, metavar=("PRESET", "LAW", "MODE", "STAGE", "BATCH", "CONTEXT", "RECOMPUTE", "LEAN"),
                   help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        preset, law, mode, stage, batch, context, recompute, lean = a.child
        print(json.dumps(child(preset, law, mode, stage, int(batch), json.loads(context), recompute == "1",
                               lean == "1")))
        return
    if a.limit_gb:
        limit = int(a.limit_gb * 2**20)
    else:
        with open("/proc/meminfo") as f:
            limit = int(0.85 * int(next(line for line in f if line.startswith("MemTotal:")).split()[1]))
    print(f"preset {a.preset}, law {a.law_type}, context {a.context}, recompute {a.recompute}, lean_kernels {a.lean_kernels}, child RSS limit {limit / 2**20:.1f} GB, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; LD_PRELOAD {os.environ.get('LD_PRELOAD', '-')}, "
          f"MALLOC_CONF {os.environ.get('MALLOC_CONF', '-')}")
    print(f"{'mode':<9} {'stage':<8} {'batch':>5} {'peak RSS GB':>12} {'params GB':>10} {'AdamW m+v GB':>13} "
          f"{'first s':>8} {'second s':>9} {'built GB':>9} {'compiled GB':>12} {'after run GB':>13}")
    for mode in a.modes:
        for stage in a.stages:
            for b in a.batches:
                r = run_one([a.preset, a.law_type, mode, stage, str(b), a.context, str(int(a.recompute)), str(int(a.lean_kernels))], limit)
                if "error" in r:
                    print(f"{mode:<9} {stage:<8} {b:>5} {r['error']}", flush=True)
                    continue
                print(f"{mode:<9} {stage:<8} {b:>5} {r['peak_gb']:>12.2f} {r['params_gb']:>10.2f} "
                      f"{r['moments_gb']:>13.2f} {r['first_s']:>8.1f} {r['second_s']:>9.1f} {r['built_gb']:>9.2f} "
                      f"{'-' if r['compiled_gb'] is None else format(r['compiled_gb'], '.2f'):>12} "
                      f"{r['after_gb']:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
