"""Which MindSpore CPU kernels keep memory per graph node (issue 10, item 1).

    GLOG_v=4 python benchmarks/bench_op_memory.py            # every case
    GLOG_v=4 python benchmarks/bench_op_memory.py transpose permute

Each case, in its own process: a GRAPH-mode Cell of N = 40 chained ops on an (8, 784, 768) float32
tensor (18.4 MB, a batch-8 ViT-B token map), compiled with `Cell.compile`, then run twice. Printed:
the RSS growth per node at compile and after the runs. A kernel that keeps buffers per node shows
as tens of MB per node; one that does not, as ~1 MB (benchmarks/RESULTS_model.md, session 9).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

N = 40
SHAPE = (8, 784, 768)
# case -> what one node computes (x: the running tensor; w: a (768, 768) matrix; v: a (768,) vector)
CASES = {
    "add_scalar": "x + 1.0",
    "mul_scalar": "x * 1.0001",
    "div_scalar": "x / 1.0001",
    "add_same_shape": "x + x * 1.0001 (the Mul is by a scalar)",
    "add_bias": "x + v (implicit broadcast)",
    "add_bias_broadcast_to": "x + ops.broadcast_to(v, x.shape)",
    "mul_row": "x * x[:, :1] (implicit broadcast)",
    "mul_row_broadcast_to": "x * ops.broadcast_to(x[:, :1], x.shape)",
    "sub_last": "x - x[:, :, :1] (implicit broadcast along the last axis: the softmax bprop's Sub)",
    "sub_last_broadcast_to": "x - ops.broadcast_to(x[:, :, :1], x.shape)",
    "transpose": "x.transpose(0, 2, 1), every other node",
    "permute": "mint.permute(x, (0, 2, 1)), every other node",
    "gelu": "nn.GELU(approximate=False)",
    "softmax": "ops.softmax(x, -1)",
    "layernorm": "nn.LayerNorm((768,))",
    "matmul_nd": "ops.matmul(x, w) on the 3-D x",
    "matmul_2d": "ops.matmul(x.reshape(-1, 768), w).reshape(x.shape)",
    "dense": "nn.Dense(768, 768)",
}


def child(case: str) -> dict:
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, mint, nn, ops

    ms.set_context(mode=ms.GRAPH_MODE)

    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    class Chain(nn.Cell):
        def __init__(self):
            super().__init__()
            self.case = case
            self.chain = nn.CellList([nn.Dense(768, 768) if case == "dense" else nn.LayerNorm((768,)) if case == "layernorm"
                                      else nn.GELU(approximate=False) for _ in range(N if case in ("dense", "layernorm", "gelu") else 0)])
            self.w = ms.Parameter(Tensor(np.random.rand(768, 768).astype(np.float32) * 0.01), name="w")
            self.v = ms.Parameter(Tensor(np.random.rand(768).astype(np.float32)), name="v")

        def construct(self, x):
            for i in range(N):
                c = self.case
                if c in ("dense", "layernorm", "gelu"):
                    x = self.chain[i](x)
                elif c == "add_scalar":
                    x = x + 1.0
                elif c == "mul_scalar":
                    x = x * 1.0001
                elif c == "div_scalar":
                    x = x / 1.0001
                elif c == "add_same_shape":
                    x = x + x * 1.0001
                elif c == "add_bias":
                    x = x + self.v
                elif c == "add_bias_broadcast_to":
                    x = x + ops.broadcast_to(self.v, x.shape)
                elif c == "mul_row":
                    x = x * x[:, :1] * 0.999
                elif c == "mul_row_broadcast_to":
                    x = x * ops.broadcast_to(x[:, :1], x.shape) * 0.999
                elif c == "sub_last":
                    x = x - x[:, :, :1] * 0.5
                elif c == "sub_last_broadcast_to":
                    x = x - ops.broadcast_to(x[:, :, :1] * 0.5, x.shape)
                elif c == "transpose":
                    x = x.transpose(0, 2, 1) if i % 2 == 0 else x.transpose(0, 2, 1) * 1.0
                elif c == "permute":
                    x = mint.permute(x, (0, 2, 1)) if i % 2 == 0 else mint.permute(x, (0, 2, 1)) * 1.0
                elif c == "softmax":
                    x = ops.softmax(x, -1)
                elif c == "matmul_nd":
                    x = ops.matmul(x, self.w)
                elif c == "matmul_2d":
                    x = ops.matmul(x.reshape(-1, 768), self.w).reshape(x.shape)
            return x

    net = Chain()
    x = Tensor(np.random.rand(*SHAPE).astype(np.float32))
    before = rss()
    net.compile(x)
    compiled = rss()
    for _ in range(2):
        net(x).asnumpy()
    after = rss()
    return {"compile_mb": (compiled - before) / 1024 / N, "run_mb": (after - compiled) / 1024 / N}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2])))
        return
    cases = sys.argv[1:] or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    tensor_mb = np.prod(SHAPE) * 4 / 2**20 if (np := __import__("numpy")) else 0
    print(f"{N} chained nodes on a {SHAPE} float32 tensor ({tensor_mb:.1f} MB), GRAPH mode, CPU; "
          f"RSS growth per node; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"| case | one node | MB per node at compile | MB per node after 2 runs |\n|---|---|---|---|")
    for case in cases:
        r = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"| {case} | {CASES[case]} | failed: {(r.stderr.strip().splitlines() or [''])[-1][:80]} | |", flush=True)
            continue
        out = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"| {case} | {CASES[case]} | {out['compile_mb']:.1f} | {out['run_mb']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
