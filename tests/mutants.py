"""Planted bugs: does the suite notice when the wiring breaks? (`make mutants`; not part of `make test`)

Each mutant is one text substitution in one package file (`old` must occur exactly once). The
script copies the repository (without .venv, runs, caches, reports) to a temporary folder, plants
one mutant at a time there, runs the tests named for it with that copy first on the import path,
and reports KILLED (some test failed) or SURVIVED (all passed). The working tree is never touched.

    python tests/mutants.py                  # every mutant
    python tests/mutants.py -k eval_rows     # mutants whose name contains a substring
    python tests/mutants.py --list
    python tests/mutants.py --write tests/MUTANTS.md

The first group is the planted bugs issue 14's audit found surviving; the rest are more of the
same kinds (wiring between config, optimiser, loop, evaluation and loaders). A survivor is either a
missing test or an equivalent mutant; tests/MUTANTS.md says which.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL_SKIP = {".venv", ".git", "runs", ".cache", "reports", "notebooks", "benchmarks", "data"}
_ANYWHERE = shutil.ignore_patterns("rank_*", "__pycache__", "*.egg-info", ".pytest_cache")


def _ignore(folder, names):
    skip = set(_ANYWHERE(folder, names))
    if Path(folder) == REPO:
        skip |= TOP_LEVEL_SKIP & set(names)
    return skip


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple  # pytest node ids / files, relative to the repository root
    why: str
    audit: bool = False  # one of the survivors listed in issue 14


EVAL_KNOWN = ("tests/eval/test_evaluate_known.py",)
LAW_BLOCK = ("tests/models/test_law_per_block.py",)
SCHEDULE = ("tests/train/test_schedule_applied.py",)
PICKLES = ("tests/test_pickle_refusals.py",)
ROUTING = ("tests/train/test_config_routing.py",)
SELECTION = ("tests/train/test_selection.py",)
RESUME = ("tests/train/test_run.py::test_sigkill_then_a_stop_then_resumes_match_the_uninterrupted_run",)

MUTANTS = [
    # --- the survivors of issue 14's audit ---
    Mutant("law_per_block_index_ignored", "vglaw/models/vit.py",
           "p_index=0 if (cfg.law_shared or not law) else adaptive.index(i)", "p_index=0",
           LAW_BLOCK, "law_shared=False: every block uses block 0's P/Q", audit=True),
    Mutant("eval_canvas_wrong_threshold", "vglaw/eval/evaluate.py",
           "canvas_inter_union(prob, canvas_mask[i], canvas_threshold)",
           "canvas_inter_union(prob, canvas_mask[i], mask_threshold)",
           EVAL_KNOWN, "canvas protocol scored at the 0.5 mask threshold", audit=True),
    Mutant("lr_cell_cosine_period", "vglaw/train/schedule.py",
           "self.span = float(max(total_steps - warmup_steps, 1))", "self.span = float(max(total_steps, 1))",
           SCHEDULE, "the optimiser's cosine ignores the warmup in its period", audit=True),
    Mutant("resume_adam_moments_not_restored", "vglaw/train/loop.py",
           "meta = load_train_state(run.last, model, opt_state)",
           "meta = load_train_state(run.last, model, {'global_step': opt_state['global_step']})",
           RESUME, "--resume restores weights and step but not AdamW's m and v", audit=True),
    Mutant("eval_rows_reversed_in_batch", "vglaw/eval/evaluate.py",
           "boxes_c, logits = boxes_c[:b], logits[:b, 0]",
           "boxes_c, logits = boxes_c[:b][::-1], logits[:b, 0][::-1]",
           EVAL_KNOWN, "outputs paired with the wrong samples within a batch", audit=True),
    Mutant("vitdet_pkl_plain_pickle", "vglaw/models/weights.py",
           "obj = safe_load(pkl_path, allow_numpy=True)",
           "obj = __import__('pickle').loads(pkl_path.read_bytes())",
           PICKLES, "detectron2 .pkl read with plain pickle (runs code)", audit=True),
    Mutant("mask_binarised_ge", "vglaw/eval/metrics.py",
           "return (np.asarray(prob) > threshold)", "return (np.asarray(prob) >= threshold)",
           EVAL_KNOWN, "a probability exactly at the threshold counts as foreground", audit=True),
    Mutant("loss_l1_giou_swapped", "vglaw/config.py",
           '"loss_l1": "bbox_loss_coef", "loss_giou": "xiou_loss_coef"',
           '"loss_l1": "xiou_loss_coef", "loss_giou": "bbox_loss_coef"',
           ROUTING, "--bbox_loss_coef weights GIoU and --xiou_loss_coef L1", audit=True),
    # --- more of the same kinds ---
    Mutant("eval_rows_from_the_padding_end", "vglaw/eval/evaluate.py",
           "boxes_c, logits = boxes_c[:b], logits[:b, 0]", "boxes_c, logits = boxes_c[-b:], logits[-b:, 0]",
           EVAL_KNOWN, "a partial batch keeps its last rows; equivalent: the padding repeats the "
                       "batch's last sample, so the last b rows hold the same outputs"),
    Mutant("eval_canvas_threshold_constant", "vglaw/eval/metrics.py",
           "CANVAS_THRESHOLD = 0.35", "CANVAS_THRESHOLD = 0.36",
           EVAL_KNOWN, "official canvas threshold off by 0.01"),
    Mutant("eval_oiou_mean_of_ious", "vglaw/eval/metrics.py",
           'out["oiou"] = float(inter.sum() / union.sum())', 'out["oiou"] = float(safe_iou(inter, union).mean())',
           EVAL_KNOWN, "oIoU computed as mIoU"),
    Mutant("law_block_generated_row", "vglaw/models/vit.py",
           "law_index=adaptive.index(i) if law else -1", "law_index=0 if law else -1",
           LAW_BLOCK, "every adaptive block reads the first block's Phi"),
    Mutant("lr_cell_warmup_inclusive", "vglaw/train/schedule.py",
           "factor = ops.select(s < self.warmup_steps, warm, factor)",
           "factor = ops.select(s <= self.warmup_steps, warm, factor)",
           SCHEDULE, "one warmup update too many in the optimiser's cell"),
    Mutant("lr_cell_drop_late", "vglaw/train/schedule.py",
           "factor = ops.select(s >= d, factor * self.drop_rate, factor)",
           "factor = ops.select(s > d, factor * self.drop_rate, factor)",
           SCHEDULE, "the step drop applied one update late"),
    Mutant("group_adamw_one_lr", "vglaw/train/optim.py",
           "self.beta1, self.beta2, self.eps, lrs[i],", "self.beta1, self.beta2, self.eps, lrs[0],",
           SCHEDULE + ("tests/train/test_optim.py",), "GroupAdamW gives every group the first group's LR"),
    Mutant("group_adamw_span_shifted", "vglaw/train/optim.py",
           "gradients[first:end], self.decay_flags", "gradients[max(first - 1, 0):end - 1 if end > 1 else end], self.decay_flags",
           ("tests/train/test_optim.py",), "GroupAdamW pairs each group's parameters with the wrong gradients"),
    Mutant("warmup_epochs_not_scaled", "vglaw/train/optim.py",
           "warmup = int(round((cfg.warmup_epochs or 0.0) * updates_per_epoch))",
           "warmup = int(round(cfg.warmup_epochs or 0.0))",
           SCHEDULE, "--warmup_epochs read as updates"),
    Mutant("drop_epochs_not_scaled", "vglaw/train/optim.py",
           "drop_steps=[e * updates_per_epoch for e in cfg.drop_epochs]", "drop_steps=list(cfg.drop_epochs)",
           SCHEDULE + ROUTING, "--drop_epochs read as updates"),
    Mutant("lr_groups_swapped", "vglaw/train/optim.py",
           'base_lrs={"lang": cfg.lr_lang, "visual": cfg.lr_visual,',
           'base_lrs={"lang": cfg.lr_visual, "visual": cfg.lr_lang,',
           ROUTING, "--lr_lang and --lr_visual swapped"),
    Mutant("weight_decay_not_routed", "vglaw/train/loop.py",
           "build_optimizer(model, schedule, cfg.weight_decay)", "build_optimizer(model, schedule)",
           ROUTING, "--weight_decay ignored (the default 1e-4 used)"),
    Mutant("clip_norm_not_routed", "vglaw/train/loop.py",
           "clip_norm=cfg.clip_norm,", "clip_norm=0.15,", ROUTING, "--clip_norm ignored"),
    Mutant("lean_kernels_not_routed", "vglaw/train/loop.py",
           "    if cfg.lean_kernels:\n        model.set_lean_kernels()\n", "",
           ROUTING, "--lean_kernels ignored"),
    Mutant("clip_never_applied", "vglaw/train/step.py",
           "            if clip > 0:\n", "            if clip < 0:\n",
           ("tests/train/test_step.py::test_clip_norm_scales_the_gradient_to_the_clip",),
           "the train step never clips the gradient"),
    Mutant("accum_sum_not_mean", "vglaw/train/step.py",
           "            scale = 1.0 / self.accum_steps\n", "            scale = 1.0\n",
           ("tests/train/test_step.py::test_accumulation_equals_one_big_batch",),
           "accumulated micro-batch gradients summed instead of averaged"),
    Mutant("accum_buffers_not_zeroed", "vglaw/train/step.py",
           "                return ops.depend(done, hyper_map(zero, accum))\n",
           "                return done\n",
           ("tests/train/test_step.py::test_accumulation_equals_one_big_batch",),
           "the accumulation buffers are not cleared after an update"),
    Mutant("loss_focal_dice_swapped", "vglaw/models/losses.py",
           "return cls(cfg.loss_l1, cfg.loss_giou, cfg.loss_focal, cfg.loss_dice,",
           "return cls(cfg.loss_l1, cfg.loss_giou, cfg.loss_dice, cfg.loss_focal,",
           ROUTING, "focal and dice weights swapped in the loss"),
    Mutant("select_on_a_test_split", "vglaw/train/loop.py",
           'metrics, _ = _evaluate(t.model, t.data["val"], t.tokenizer, cfg, t.env.use_jit)',
           'metrics, _ = _evaluate(t.model, t.data[cfg.eval_splits[-1]], t.tokenizer, cfg, t.env.use_jit)',
           SELECTION, "best.ckpt chosen on the last eval split (testB)"),
    Mutant("select_keeps_the_latest", "vglaw/train/loop.py",
           'if value > t.best["value"]:  # ties keep the earlier checkpoint', "if True:",
           SELECTION, "best.ckpt overwritten at every evaluation"),
    Mutant("final_metrics_not_on_best", "vglaw/train/loop.py",
           "        if run.best.is_file():\n            load_model(model, run.best, strict=True)",
           "        if False:\n            load_model(model, run.best, strict=True)",
           SELECTION, "metrics.json scores the last weights, not best.ckpt"),
    Mutant("refs_plain_pickle", "vglaw/data/refer.py",
           'refs = safe_load(paths["refs"])', 'refs = __import__("pickle").loads(paths["refs"].read_bytes())',
           PICKLES, "refs(<splitBy>).p read with plain pickle"),
    Mutant("refs_allow_numpy", "vglaw/data/refer.py",
           'refs = safe_load(paths["refs"])', 'refs = safe_load(paths["refs"], allow_numpy=True)',
           PICKLES, "refs pickles may carry NumPy globals"),
    Mutant("allow_numpy_ignored", "vglaw/utils/pickle_safe.py",
           "(_NUMPY_GLOBALS if allow_numpy else set())", "_NUMPY_GLOBALS",
           PICKLES, "allow_numpy=False still admits NumPy globals"),
    Mutant("resume_restarts_the_epoch", "vglaw/train/loop.py",
           "t.batches.set_epoch(t.epoch, start=t.batch0, stop=t.used_batches)",
           "t.batches.set_epoch(t.epoch, start=0, stop=t.used_batches)",
           RESUME, "a resumed epoch replays its first batches (data order)"),
    Mutant("resume_rng_not_restored", "vglaw/train/loop.py",
           '    set_rng_state(meta["rng"])\n', "",
           RESUME, "global RNG state not restored (equivalent without dropout: augmentation "
                   "draws from per-sample generators)"),
]


def _plant(copy: Path, m: Mutant) -> str:
    path = copy / m.file
    text = path.read_text()
    n = text.count(m.old)
    if n != 1:
        raise SystemExit(f"mutant {m.name}: the text to replace occurs {n} times in {m.file} "
                         "(the code changed: update the mutant)")
    path.write_text(text.replace(m.old, m.new))
    return text


def _run(copy: Path, tests: tuple, timeout: float) -> tuple[bool, str, float]:
    env = dict(os.environ, GLOG_v="4", PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True, "timeout (counted as killed)", time.time() - t0
    if r.returncode in (4, 5):  # pytest usage error / nothing collected: the mutant list is wrong
        raise SystemExit(f"pytest could not run {' '.join(tests)}:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
    tail = [ln for ln in r.stdout.splitlines() if ln.strip()]
    failed = [ln for ln in tail if ln.startswith(("FAILED", "ERROR"))]
    return r.returncode != 0, (failed[0] if failed else (tail[-1] if tail else r.stderr[-300:])), time.time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only mutants whose name contains this")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--baseline", action="store_true", help="first run every named test unmutated")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--write", type=Path, help="write the result table (markdown) here")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if args.k in m.name]
    if args.list:  # also checks that every mutant still applies
        for m in chosen:
            n = (REPO / m.file).read_text().count(m.old)
            print(f"{m.name:36s} {m.file:26s} {' '.join(m.tests)}" + ("" if n == 1 else f"  STALE ({n} matches)"))
        return 0
    with tempfile.TemporaryDirectory(prefix="vglaw_mutants_") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=_ignore)
        probe = subprocess.run([sys.executable, "-c", "import vglaw; print(vglaw.__file__)"], cwd=copy,
                               env=dict(os.environ, PYTHONPATH=str(copy)), capture_output=True, text=True)
        if not probe.stdout.startswith(str(copy)):
            raise SystemExit(f"the copy's vglaw is not the one imported: {probe.stdout or probe.stderr}")
        if args.baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            failed, detail, dt = _run(copy, tests, args.timeout)
            print(f"baseline ({len(tests)} test targets, {dt:.0f} s): {'FAILED ' + detail if failed else 'passed'}")
            if failed:
                return 1
        rows = []
        for m in chosen:
            original = _plant(copy, m)
            try:
                killed, detail, dt = _run(copy, m.tests, args.timeout)
            finally:
                (copy / m.file).write_text(original)
            rows.append((m, killed, detail, dt))
            print(f"{'KILLED  ' if killed else 'SURVIVED'} {m.name:36s} {dt:6.0f} s  {detail}", flush=True)
    n_killed = sum(k for _, k, _, _ in rows)
    print(f"\n{n_killed} of {len(rows)} killed, {len(rows) - n_killed} survived")
    if args.write:
        lines = ["# Planted bugs (`make mutants`)", "",
                 f"Latest run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                 f"`python tests/mutants.py{' -k ' + args.k if args.k else ''}`: "
                 f"**{n_killed} of {len(rows)} killed**, {len(rows) - n_killed} survived. "
                 "Each mutant is one substitution in a copy of the repository; the tests named run against it.",
                 "", "| mutant | file | planted bug | tests run | result | first failure | s |",
                 "|---|---|---|---|---|---|---|"]
        for m, killed, detail, dt in rows:
            tag = " (issue 14 audit)" if m.audit else ""
            lines.append(f"| `{m.name}`{tag} | `{m.file}` | {m.why} | {'<br>'.join(f'`{t}`' for t in m.tests)} "
                         f"| {'killed' if killed else '**survived**'} | {detail.replace('|', '/')} | {dt:.0f} |")
        survivors = [m for m, killed, _, _ in rows if not killed]
        if survivors:
            lines += ["", "Survivors (each either needs a test or is equivalent: it cannot change a result):", ""]
            lines += [f"- `{m.name}`: {m.why}" for m in survivors]
        lines += ["", f"Total {sum(dt for *_, dt in rows) / 60:.0f} min on this machine "
                      f"({os.cpu_count()} CPUs, shared)."]
        args.write.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
