"""Train-step time: `mindspore.jit` (GRAPH) vs op-by-op (PYNATIVE), same model, batch and optimiser.

    GLOG_v=4 python benchmarks/bench_train.py --preset tiny --batch_size 16 --steps 10
    GLOG_v=4 python benchmarks/bench_train.py --host_blocking both --op_threads 1 --rounds 3
    GLOG_v=4 python benchmarks/bench_train.py --malloc both --op_threads 1 --rounds 3
    GLOG_v=4 python benchmarks/bench_train.py --preset paper --modes GRAPH --batch_sizes 1 8 --steps 3 \
        --lean_kernels --recompute --gemm_peak

Prints one table row per mode (compile = first step, then the median of `--steps` steps) and
the PYNATIVE / GRAPH ratio. Random inputs of the preset's shapes; no data set needed. Note the
machine load (`uptime`) next to any number you quote.

`--host_blocking both`: the GRAPH step with MindSpore's MS_DEV_HOST_BLOCKING_RUN=1 (the graph runs
in the calling thread; `import vglaw` sets it) against =0 (a queue thread runs it while the caller
busy-waits), each in its own process (MindSpore reads it once, at import), alternated over
`--rounds`: wall and CPU seconds per step (CPU = user + sys of the whole process), and whether the
last step's losses are bit-identical. `--op_threads 1` is what `--deterministic` (the tiny recipe)
sets.

`--batch_sizes 1 8 --gemm_peak`: one row per batch size (its own process), samples/s, the per-sample
time against the first batch size, and the achieved fraction of this machine's fp32 GEMM peak
(NumPy, 2048 x 2048, measured in the same run): the step's useful FLOP per sample is counted from
the model's shapes (`train_gflop`: 3x the forward's matrix products; recomputation not counted).

`--malloc both`: the same A/B for the C allocator, glibc's malloc against jemalloc preloaded
(`LD_PRELOAD`; `vglaw.utils.malloc.find_jemalloc`, what the Makefile preloads).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import numpy as np


def forward_gflop(cfg) -> float:
    """FLOP (x 1e-9) of one sample's forward in matrix products (2 per multiply-add), from the shapes:
    ViT (patch projection, qkv, attention and its decomposed rel-pos terms, projection, MLP; the svd
    LAW's rank-K path), BERT at max_len tokens, and the heads' products at the token grid."""
    g = cfg.img_size // cfg.patch_size
    n, c = g * g, cfg.vit_dim
    macs = n * 3 * cfg.patch_size ** 2 * c  # patch projection (as a product; hmlp stems are close)
    for i in range(cfg.vit_depth):
        side = g if (i in cfg.global_blocks or not cfg.window_size) else cfg.window_size
        macs += n * c * 3 * c + n * c * c + 2 * n * c * int(c * cfg.vit_mlp_ratio)  # qkv, proj, MLP
        macs += 2 * n * side * side * c + 2 * n * side * c  # q k^T and attn v; rel-pos h and w terms
        if cfg.law_type == "svd":
            k = cfg.law_rank
            macs += n * c * k + n * k * k + n * k * 3 * c
    l, h = cfg.max_len, cfg.text_hidden
    macs += cfg.text_layers * (4 * l * h * h + 2 * l * h * cfg.text_ffn + 2 * l * l * h)
    macs += 4 * n * c * h  # heads: token projections against the sentence (small)
    return 2 * macs / 1e9


def train_gflop(cfg) -> float:
    """A train step's useful FLOP per sample: forward + backward (2x the forward) in matrix products."""
    return 3 * forward_gflop(cfg)


def gemm_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 GEMM rate through NumPy's BLAS (all cores), best of `repeats`."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(mode: str, preset: str, batch_size: int, steps: int, overrides: dict, op_threads: int = 0,
          lean: bool = False, recompute: bool = False) -> dict:
    import mindspore as ms
    if op_threads:
        ms.device_context.cpu.op_tuning.threads_num(op_threads)
    from vglaw import build_model
    from vglaw.models.losses import GroundingLoss
    from vglaw.train.optim import Schedule, build_optimizer
    from vglaw.train.step import TrainStep

    ms.set_context(mode=ms.GRAPH_MODE if mode == "GRAPH" else ms.PYNATIVE_MODE)
    ms.set_seed(0)
    model = build_model(preset, "svd", **overrides)
    if recompute:
        model.set_recompute()
    if lean:
        model.set_lean_kernels()
        from vglaw.utils.malloc import release_freed_pages
        release_freed_pages()  # as vglaw.train does with --lean_kernels
    cfg = model.config
    sched = Schedule(base_lrs={"lang": 1e-4, "visual": 1e-3, "base": 1e-3}, warmup_steps=10)
    opt, _ = build_optimizer(model, sched)
    step = TrainStep(model, GroundingLoss.from_config(cfg), opt, use_jit=mode == "GRAPH", lean_clip=lean)
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
    times, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        parts, _ = step.step(batch)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"mode": mode, "first_s": first, "step_s": statistics.median(times),
            "cpu_s": statistics.median(cpu), "samples_per_s": b / statistics.median(times),
            "batch": b, "train_gflop": train_gflop(cfg), "times": times,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "losses": [repr(parts[k]) for k in sorted(parts)]}


def env_ab(a, over: dict, var: str, settings: dict) -> None:
    """The GRAPH step under two environments (`settings`: label -> env additions, None removes
    `var`), one process each, alternated over `--rounds`."""
    import subprocess
    import sys
    labels = list(settings)
    runs = {k: [] for k in labels}
    for r in range(a.rounds):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            cmd = [sys.executable, __file__, "--preset", a.preset, "--batch_size", str(a.batch_size),
                   "--steps", str(a.steps), "--model_overrides", json.dumps(over), "--modes", "GRAPH",
                   "--op_threads", str(a.op_threads), "--json"]
            env = {k: v for k, v in os.environ.items() if k != var}
            if settings[label] is not None:
                env[var] = settings[label]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            runs[label].append(json.loads(out.strip().splitlines()[-1])[0])
    print(f"preset {a.preset}, GRAPH, batch {a.batch_size}, op threads {a.op_threads or 'default'}, "
          f"{a.steps} steps per process (median), {a.rounds} processes per setting, alternated; "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{var:<25} {'compile s':>10} {'step s':>14} {'CPU s per step':>15} {'samples/s':>10}")
    for label in labels:
        st = [r["step_s"] for r in runs[label]]
        cp = [r["cpu_s"] for r in runs[label]]
        fi = [r["first_s"] for r in runs[label]]
        print(f"{label:<25} {statistics.median(fi):>10.2f} {statistics.median(st):>7.3f} ({min(st):.3f}-{max(st):.3f}) "
              f"{statistics.median(cp):>8.3f} {a.batch_size / statistics.median(st):>10.1f}")
    first = runs[labels[0]][0]["losses"]
    same = all(r["losses"] == first for k in labels for r in runs[k])
    print(f"losses of the last step bit-identical across all processes: {same}")


def host_blocking_ab(a, over: dict) -> None:
    """MS_DEV_HOST_BLOCKING_RUN 1 vs 0 for the GRAPH step."""
    env_ab(a, over, "MS_DEV_HOST_BLOCKING_RUN", {"0 (MindSpore default)": "0", "1 (vglaw default)": "1"})


def malloc_ab(a, over: dict) -> None:
    """glibc's malloc vs preloaded jemalloc for the GRAPH step (vglaw.utils.malloc)."""
    from vglaw.utils.malloc import require_jemalloc
    env_ab(a, over, "LD_PRELOAD", {"glibc malloc": None, "jemalloc": require_jemalloc()})


def batch_rows(a, over: dict) -> None:
    """GRAPH rows per batch size (one process each) with per-sample time and the GEMM fraction."""
    import subprocess
    import sys
    peak = gemm_peak_gflops() if a.gemm_peak else None
    rows = []
    for b in a.batch_sizes:
        cmd = [sys.executable, __file__, "--preset", a.preset, "--batch_size", str(b), "--steps", str(a.steps),
               "--model_overrides", json.dumps(over), "--modes", "GRAPH", "--op_threads", str(a.op_threads),
               "--json"] + (["--lean_kernels"] if a.lean_kernels else []) + (["--recompute"] if a.recompute else [])
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                               .strip().splitlines()[-1])[0])
    print(f"preset {a.preset}, GRAPH, lean_kernels {a.lean_kernels}, recompute {a.recompute}, overrides {over}, "
          f"{a.steps} steps per row (median after the compiling first step), {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}" + (f"; NumPy fp32 GEMM peak {peak:.1f} GFLOP/s" if peak else ""))
    print(f"train step: {rows[0]['train_gflop']:.1f} GFLOP per sample (matrix products, counted from the shapes)")
    print("| batch | first step s | step s (median) | steps s | samples/s | s per sample | vs batch "
          f"{rows[0]['batch']} | GFLOP/s | of GEMM peak | peak RSS GB |\n|---|---|---|---|---|---|---|---|---|---|")
    base = rows[0]["step_s"] / rows[0]["batch"]
    for r in rows:
        per = r["step_s"] / r["batch"]
        rate = r["train_gflop"] / per
        print(f"| {r['batch']} | {r['first_s']:.1f} | {r['step_s']:.2f} | {', '.join(f'{t:.2f}' for t in r['times'])} | "
              f"{r['samples_per_s']:.3f} | {per:.2f} | {per / base:.2f}x | {rate:.1f} | "
              f"{'-' if peak is None else format(rate / peak, '.0%')} | {r['peak_gb']:.2f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=("tiny", "paper"))
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--model_overrides", default="{}", help="JSON dict of ModelConfig overrides")
    p.add_argument("--modes", nargs="+", default=["GRAPH", "PYNATIVE"], choices=("GRAPH", "PYNATIVE"))
    p.add_argument("--op_threads", type=int, default=0, help="CPU kernel threads (0: MindSpore's default)")
    p.add_argument("--host_blocking", choices=("both",), help="A/B of MS_DEV_HOST_BLOCKING_RUN (see above)")
    p.add_argument("--malloc", choices=("both",), help="A/B of glibc's malloc and preloaded jemalloc")
    p.add_argument("--rounds", type=int, default=3, help="--host_blocking/--malloc: processes per setting")
    p.add_argument("--batch_sizes", type=int, nargs="+", help="one row per batch size, each in its own process")
    p.add_argument("--lean_kernels", action="store_true", help="VGLAW.set_lean_kernels + the lean clip")
    p.add_argument("--recompute", action="store_true", help="VGLAW.set_recompute")
    p.add_argument("--gemm_peak", action="store_true", help="measure NumPy's fp32 GEMM rate; print the fraction")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    over = json.loads(a.model_overrides)
    if a.batch_sizes:
        return batch_rows(a, over)
    if a.host_blocking:
        return host_blocking_ab(a, over)
    if a.malloc:
        return malloc_ab(a, over)
    rows = [bench(m, a.preset, a.batch_size, a.steps, over, a.op_threads, a.lean_kernels, a.recompute)
            for m in a.modes]
    if a.json:
        print(json.dumps(rows))
        return
    print(f"preset {a.preset}, batch {a.batch_size}, overrides {over}, load {os.getloadavg()[0]:.2f}")
    print(f"{'mode':<9} {'first step s':>12} {'step s (median)':>16} {'samples/s':>10}")
    for r in rows:
        print(f"{r['mode']:<9} {r['first_s']:>12.2f} {r['step_s']:>16.3f} {r['samples_per_s']:>10.1f}")
    if len(rows) == 2:
        print(f"PYNATIVE / GRAPH step-time ratio: {rows[1]['step_s'] / rows[0]['step_s']:.1f}x")


if __name__ == "__main__":
    main()
