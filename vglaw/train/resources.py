"""Resource guard: peak memory and seconds per update of a CPU run, estimated before the model is
built, printed, and a refusal when the memory estimate exceeds what the machine has free.

The estimate is linear in the micro-batch and in the pixels per image, anchored on measurements:

- paper, CPU, GRAPH (benchmarks/RESULTS_model.md, 2-core box): train step 7.5 s at batch 1 after a
  65 s compilation; batch 2 was killed by the OOM killer at 21.5 GB RSS on a 24 GB machine (issue 9),
  so 6 GB + 8 GB per sample (22 GB at batch 2) is a floor, not a ceiling.
- tiny, CPU, GRAPH: train step 0.67 s at batch 8 (RESULTS_model.md), about 1 s per update of
  batch 16 in the workbook runs (README). Peak RSS 2.23 GB (`ru_maxrss` of a `--preset tiny
  --batch_size 16 --max_steps 6 --use_mask` CLI run on 60 synthetic images, val evaluation
  included; 2.0 s per update there, niced beside another training): the estimate, 2.6 GB, is above.
- paper with `--lean_kernels --recompute`, CPU, GRAPH (session 18, `benchmarks/bench_memory.py`,
  RESULTS_model.md): peak RSS 5.22 / 7.25 / 7.79 / 13.31 GB at batch 1 / 2 / 4 / 8, 7.8 s per sample
  at batch 1 and 6.8 at batch 8 after a 75-134 s first step; 5.5 GB + 1.0 GB per sample is above
  every measured point.

GPU/Ascend memory is not estimated (no measurement here); a run there only gets the note.
"""

from __future__ import annotations

import logging
import os

from vglaw.train.config import ConfigError

__all__ = ["MEASURED", "ResourceError", "estimate", "available_memory_gb", "check_resources"]

log = logging.getLogger("vglaw")

# preset -> CPU GRAPH anchors at the preset's own image size: fixed GB, GB per sample, s per sample
# of a train step, first-step compilation s.
MEASURED = {
    "paper": {"fixed_gb": 6.0, "gb_per_sample": 8.0, "s_per_sample": 7.5, "compile_s": 65.0, "img_size": 448},
    "paper_lean": {"fixed_gb": 5.5, "gb_per_sample": 1.0, "s_per_sample": 7.8, "compile_s": 75.0, "img_size": 448},
    "tiny": {"fixed_gb": 1.6, "gb_per_sample": 0.06, "s_per_sample": 0.06, "compile_s": 11.0, "img_size": 128},
}


class ResourceError(ConfigError):
    """The run would need more memory than the machine has free (pass --force to try anyway)."""


def estimate(preset: str, batch_size: int, img_size: int, accum_steps: int, lean: bool = False) -> dict:
    """{"peak_gb", "s_per_update", "compile_s"} of a CPU GRAPH run (None values: no anchor).
    `lean`: with --lean_kernels and --recompute (their own anchor where one was measured)."""
    m = MEASURED.get(f"{preset}_lean" if lean and f"{preset}_lean" in MEASURED else preset)
    if m is None:
        return {"peak_gb": None, "s_per_update": None, "compile_s": None}
    pixels = (img_size / m["img_size"]) ** 2
    per_step = m["s_per_sample"] * pixels * batch_size
    return {"peak_gb": round(m["fixed_gb"] + m["gb_per_sample"] * pixels * batch_size, 1),
            "s_per_update": round(per_step * accum_steps, 1), "compile_s": m["compile_s"]}


def _seconds(v: float) -> str:
    """1920 -> "1920", 0.48 -> "0.5" (not "0": a tiny step at batch 8 printed "about 0 s per update")."""
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def available_memory_gb() -> float | None:
    """MemAvailable of /proc/meminfo (Linux), None elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return None


def check_resources(preset: str, batch_size: int, img_size: int, accum_steps: int, device: str,
                    force: bool = False, available_gb: float | None = None, lean: bool = False) -> dict:
    """Log the estimate; raise ResourceError when a CPU run's peak exceeds the free memory
    (unless `force`). Returns the estimate with `available_gb` (for config.json)."""
    if device != "CPU":
        log.info("resource estimate: none for %s (measured on CPU only)", device)
        return {"device": device}
    est = estimate(preset, batch_size, img_size, accum_steps, lean)
    if available_gb is None:
        available_gb = available_memory_gb()
    est["available_gb"] = None if available_gb is None else round(available_gb, 1)
    if est["peak_gb"] is None:
        return est
    cores = os.cpu_count() or 1
    log.info("resource estimate (%s, batch %d, %d px, CPU): peak about %.1f GB of %s GB free; about "
             "%s s per update (measured on 2 cores; %d here) after a %.0f s first-step compilation",
             preset, batch_size, img_size, est["peak_gb"],
             "?" if available_gb is None else f"{available_gb:.1f}", _seconds(est["s_per_update"]), cores,
             est["compile_s"])
    if preset == "paper":
        log.warning("the paper preset on CPU: expect about %.0f s per update (%.1f h per 100 updates); "
                    "it is meant for GPU/Ascend, the tiny preset for CPU", est["s_per_update"],
                    est["s_per_update"] * 100 / 3600)
    if available_gb is not None and est["peak_gb"] > available_gb:
        if not force:
            raise ResourceError(
                f"preset {preset} at batch {batch_size} and {img_size} px needs about {est['peak_gb']:.1f} GB "
                f"on CPU, {available_gb:.1f} GB are free; lower --batch_size (accumulate to --batch_sum), "
                + ("add --lean_kernels --recompute (about "
                   f"{estimate(preset, batch_size, img_size, accum_steps, True)['peak_gb']:.1f} GB), "
                   if preset == "paper" and not lean else "")
                + "use --preset tiny, or pass --force to try anyway")
        log.warning("--force: starting although about %.1f GB are needed and %.1f GB are free",
                    est["peak_gb"], available_gb)
    return est
