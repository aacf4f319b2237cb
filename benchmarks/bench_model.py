"""Forward and train-step time of VG-LAW presets, GRAPH vs PYNATIVE, svd vs none.

    python benchmarks/bench_model.py                          # tiny: b1/b8, both modes, svd+none
    python benchmarks/bench_model.py --presets paper --batches 1 --modes graph --repeats 2
    python benchmarks/bench_model.py --presets tiny --batches 16 --what step --json out.json

Times are the minimum over `--repeats` runs after one warm-up (which includes graph compilation,
reported separately), since the CPU may be shared; the law types are timed round-robin so that
load changes hit them alike. The train step is forward + GroundingLoss +
backward + AdamWeightDecay on all trainable parameters, compiled with `mindspore.jit` in GRAPH mode.
"LAW cost" is time(svd) / time(none) - 1 at the same preset, mode and batch.
Memory: all law types' models live at once; paper batch 2 in GRAPH mode with svd + none was
killed by the OOM killer at 21 GB RSS on the 23 GB CPU box: there use `--laws svd` or batch 1.
Measured results: benchmarks/RESULTS_model.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("GLOG_v", "4")

import numpy as np  # noqa: E402
import mindspore as ms  # noqa: E402
from mindspore import Tensor, nn  # noqa: E402

from vglaw.models.losses import GroundingLoss  # noqa: E402
from vglaw.models import build_model  # noqa: E402

DEFAULT_BATCHES = {"tiny": [1, 8], "paper": [1, 2]}


def _inputs(cfg, batch: int):
    rng = np.random.default_rng(0)
    s, n = cfg.img_size, cfg.max_len
    return [Tensor(rng.standard_normal((batch, 3, s, s)).astype(np.float32)),
            Tensor(rng.integers(1000, 5000, (batch, n)).astype(np.int32)),
            Tensor(np.ones((batch, n), np.int32)),
            Tensor(rng.uniform(0.3, 0.6, (batch, 4)).astype(np.float32)),
            Tensor((rng.random((batch, s, s)) > 0.5).astype(np.float32))]


def _sync(out):
    (out[0] if isinstance(out, (tuple, list)) else out).asnumpy()


def _forward_fn(model, graph: bool):
    def fwd(images, ids, mask):
        return model(images, ids, mask)
    return ms.jit(fwd) if graph else fwd


def _step_fn(model, graph: bool):
    loss = GroundingLoss.from_config(model.config)
    opt = nn.AdamWeightDecay(model.trainable_params(), learning_rate=1e-5, weight_decay=1e-4)

    def forward(images, ids, mask, gt_box, gt_mask):
        boxes, logits = model(images, ids, mask)
        return loss(boxes, logits, gt_box, gt_mask)[0]

    grad_fn = ms.value_and_grad(forward, None, opt.parameters)

    def step(images, ids, mask, gt_box, gt_mask):
        value, grads = grad_fn(images, ids, mask, gt_box, gt_mask)
        opt(grads)
        return value
    return ms.jit(step) if graph else step


def run(presets, laws, modes, batches, what, repeats):
    """Law types are timed interleaved (round-robin), so load changes on a shared CPU hit them alike."""
    rows = []
    for preset in presets:
        models = {law: build_model(preset, law_type=law) for law in laws}
        for mode in modes:
            ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
            graph = mode == "graph"
            for batch in batches.get(preset, DEFAULT_BATCHES[preset]):
                args = _inputs(models[laws[0]].config, batch)
                res = {law: dict(preset=preset, law=law, mode=mode, batch=batch) for law in laws}
                for kind in ("fwd", "step"):
                    if kind not in what:
                        continue
                    fns, n_args = {}, 3 if kind == "fwd" else 5
                    for law, model in models.items():
                        model.set_train(kind == "step")  # forward: dropout / drop-path off
                        fns[law] = (_forward_fn if kind == "fwd" else _step_fn)(model, graph)
                        t0 = time.perf_counter()
                        _sync(fns[law](*args[:n_args]))  # warm-up: compiles in GRAPH mode
                        res[law][f"{kind}_first_s"] = time.perf_counter() - t0
                    times = {law: [] for law in laws}
                    for _ in range(repeats):
                        for law in laws:
                            models[law].set_train(kind == "step")
                            t0 = time.perf_counter()
                            _sync(fns[law](*args[:n_args]))
                            times[law].append(time.perf_counter() - t0)
                    for law in laws:
                        res[law][f"{kind}_s"] = min(times[law])
                for law in laws:
                    rows.append(res[law])
                    print(json.dumps(res[law]), flush=True)
        del models
    return rows


def table(rows) -> str:
    by_key = {(r["preset"], r["law"], r["mode"], r["batch"]): r for r in rows}
    lines = ["| preset | law | mode | batch | fwd s | step s | compile/first step s | LAW cost fwd | LAW cost step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        none = by_key.get((r["preset"], "none", r["mode"], r["batch"]))
        cost = {}
        for k in ("fwd_s", "step_s"):
            if r["law"] != "none" and none and k in r and k in none:
                cost[k] = f"{100 * (r[k] / none[k] - 1):+.1f}%"
        f = lambda k: f"{r[k]:.3f}" if k in r else "-"  # noqa: E731
        lines.append(f"| {r['preset']} | {r['law']} | {r['mode']} | {r['batch']} | {f('fwd_s')} | {f('step_s')} "
                     f"| {f('step_first_s')} | {cost.get('fwd_s', '')} | {cost.get('step_s', '')} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny", help="comma list of: tiny, paper")
    ap.add_argument("--laws", default="svd,none", help="comma list of law types")
    ap.add_argument("--modes", default="graph,pynative", help="comma list of: graph, pynative")
    ap.add_argument("--batches", default=None, help="comma list of batch sizes (default tiny 1,8; paper 1,2)")
    ap.add_argument("--what", default="fwd,step", help="comma list of: fwd, step")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = ap.parse_args(argv)
    presets = a.presets.split(",")
    for p in presets:
        if p not in DEFAULT_BATCHES:
            ap.error(f"unknown preset {p!r}; expected tiny or paper")
    batches = {p: [int(b) for b in a.batches.split(",")] for p in presets} if a.batches else {}
    rows = run(presets, a.laws.split(","), a.modes.split(","), batches, a.what.split(","), a.repeats)
    print(table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
