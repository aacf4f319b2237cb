"""Samples/s of the data loader alone (no model): the paper preset's input on COCO-sized JPEGs.

    GLOG_v=4 python benchmarks/bench_data.py --workers 1 2 --repeats 3

Writes `--images` synthetic JPEGs with a 640-pixel long side (COCO's; aspect 0.6-1.67) in the
refer layout (polygon masks) into a temporary folder, preprocesses them (the masks become COCO
RLE, as for refcoco), then times `vglaw.data.build_dataset` (train mode: JPEG decode, flip,
letterbox to --img_size, ImageNet normalisation, RLE decode + mask letterbox, tokenisation,
batches of --batch_size) with each worker count, threads and processes, round-robin over
--repeats rounds (median reported). "main thread" is `RefBatches` called directly, without
MindSpore's dataset engine. A measurement starts at the first batch (pipeline start-up excluded)
and spans --epochs passes over the data. Prints the table with this command above it and writes it
to --out. Note the load: other processes on the same cores make every rate an under-estimate.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def make_data(folder: Path, n_images: int, long_side: int):
    """The synthetic set at COCO size under `folder`; returns its train split (a RefDataset)."""
    from vglaw.data import RefDataset, generate_shapes, preprocess
    generate_shapes(folder / "data", dataset="shapes", n_images=n_images, min_size=long_side,
                    max_size=long_side, seed=0)
    preprocess(folder / "data", "shapes", "unc", folder / "cache")
    return RefDataset(folder / "cache", "shapes", "unc", "train")


def _cpu_seconds(tree: dict) -> float:
    """User + system CPU seconds of this process and every child seen so far (worker processes).

    `tree` remembers each child's last reading, so a worker that has exited still counts."""
    import psutil
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            tree[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return sum(tree.values())


def time_loader(ref_ds, tok, *, workers: int, processes: bool, img_size: int, max_len: int,
                batch_size: int, epochs: int, seed: int) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second) from the first batch to the last over
    `epochs` passes (workers 0: main thread). CPU seconds count this process and its children."""
    from vglaw.data.pipeline import RefBatches, build_dataset
    samples, t0, cpu0, tree = 0, None, None, {}
    for epoch in range(epochs):
        kw = dict(img_size=img_size, max_len=max_len, batch_size=batch_size, train=True, seed=seed,
                  epoch=epoch)
        if workers == 0:
            src = RefBatches(ref_ds, tok, **kw)
            batches = (src[b] for b in range(len(src)))
        else:
            if processes:  # (passed only when set: the script also times loaders without the option)
                kw["python_multiprocessing"] = True
            ds = build_dataset(ref_ds, tok, num_parallel_workers=workers, **kw)
            batches = ds.create_tuple_iterator(output_numpy=True, num_epochs=1)
        for batch in batches:
            if t0 is None:  # start-up (tokenisation, forking workers) is not throughput
                t0, cpu0 = time.perf_counter(), _cpu_seconds(tree)
                continue
            samples += len(batch[-1])
        cpu1 = _cpu_seconds(tree)  # before the workers of this pass exit
    return samples / (time.perf_counter() - t0), samples / (cpu1 - cpu0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=80, help="synthetic COCO-sized JPEGs to write")
    p.add_argument("--long_side", type=int, default=640, help="images' long side in pixels (COCO: 640)")
    p.add_argument("--img_size", type=int, default=448, help="canvas side (paper preset: 448)")
    p.add_argument("--max_len", type=int, default=40, help="tokens (paper preset: 40)")
    p.add_argument("--batch_size", type=int, default=8, help="samples per batch (paper recipe: 8)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="worker counts to time (MindSpore allows 1..cores)")
    p.add_argument("--kinds", nargs="+", default=["threads", "processes"], choices=("threads", "processes"))
    p.add_argument("--repeats", type=int, default=3, help="round-robin rounds (median reported)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the data per measurement")
    p.add_argument("--no_main_thread", action="store_true", help="skip the RefBatches-only row")
    p.add_argument("--out", default=None, help="also write the table here (markdown)")
    a = p.parse_args(argv)
    os.environ.setdefault("GLOG_v", "4")

    from vglaw.data.tokenizer import load_tokenizer
    command = "GLOG_v=4 python benchmarks/bench_data.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vglaw_bench_data_") as tmp:
        t = time.perf_counter()
        ref_ds = make_data(Path(tmp), a.images, a.long_side)
        print(f"wrote {a.images} JPEGs ({len(ref_ds)} train expressions) in {time.perf_counter() - t:.1f} s",
              flush=True)
        tok = load_tokenizer()
        configs = [] if a.no_main_thread else [("main thread", 0, False)]
        configs += [(kind, w, kind == "processes") for w in a.workers for kind in a.kinds]
        rates: dict[tuple, list[float]] = {c: [] for c in configs}
        per_cpu: dict[tuple, list[float]] = {c: [] for c in configs}
        for r in range(a.repeats):
            for c in configs:
                rate, cpu_rate = time_loader(ref_ds, tok, workers=c[1], processes=c[2], img_size=a.img_size,
                                             max_len=a.max_len, batch_size=a.batch_size, epochs=a.epochs,
                                             seed=r)
                rates[c].append(rate)
                per_cpu[c].append(cpu_rate)
                print(f"round {r + 1}: {c[0]:>11} x{c[1]}: {rate:7.1f} samples/s, "
                      f"{cpu_rate:6.1f} samples per CPU second; load {os.getloadavg()[0]:.2f}", flush=True)
    load_after = os.getloadavg()

    import vglaw
    lines = [f"    {command}", "",
             f"vglaw from {Path(vglaw.__file__).parent}; "
             f"{os.cpu_count()} cores ({_cpu_name()}); load average (1 min) {load_before[0]:.2f} before, "
             f"{load_after[0]:.2f} after. Train mode, batch {a.batch_size}, canvas {a.img_size}, "
             f"{a.max_len} tokens, {len(ref_ds)} expressions on {a.images} JPEGs with a {a.long_side}-px "
             f"long side; median of {a.repeats} round-robin rounds.", "",
             "| workers | kind | samples/s | per worker | samples per CPU second | CPU ms per sample | "
             "samples/s of each round |",
             "|---|---|---|---|---|---|---|"]
    for c in configs:
        med, cpu = statistics.median(rates[c]), statistics.median(per_cpu[c])
        w = max(c[1], 1)
        lines.append(f"| {c[1] if c[1] else '-'} | {c[0]} | {med:.1f} | {med / w:.1f} | {cpu:.1f} | "
                     f"{1000 / cpu:.1f} | {', '.join(f'{x:.1f}' for x in rates[c])} |")
    lines += ["", "samples/s: wall clock, first batch to last; per worker: samples/s / workers; "
              "samples per CPU second: the same samples over the CPU time of this process and its "
              "worker processes (what a worker does per core it gets, whatever the load)."]
    table = "\n".join(lines)
    print("\n" + table)
    if a.out:
        Path(a.out).write_text(table + "\n")
        print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
