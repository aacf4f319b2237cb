"""`run_training(cfg)`: data, model, optimiser, the epoch loop, checkpoints, evaluation.

What the seed's `src/train.py` did wrong and this loop does instead: `--law_type` reaches the
model; the LR schedule is the optimiser's (`vglaw.train.schedule`); best.ckpt is chosen on a
**val** metric, `select_metric` (the seed used testB/test prec@0.5); masks are scored at the
original resolution by `vglaw.eval.evaluate`; the step is compiled (`mindspore.jit`); a run resumes.

Val evaluations (each epoch, every `eval_every_steps` updates, at the end) log a train_log.jsonl
row with `eval: "val"`, the metrics and two clocks: `time`, seconds of the run so far, and
`train_time`, the same without the evaluations. Both continue across a resume (stored in
last.ckpt), so time-to-accuracy reads off the log of an interrupted run too.

Run bookkeeping (issue 9): rank 0 locks the run directory before writing anything
(`state.RunLock`; a second writer is refused), a killed run's "running" status is recorded as
"interrupted", a resume may change only what `bookkeeping.RESUMABLE` allows (else refused, or
recorded in config.json's `resumes` with --allow_changes), config.json records the data
fingerprint of the cache, and `resources.check_resources` runs before the model is built.

Position bookkeeping: an epoch uses `updates_per_epoch * accum` batches of its (seed, epoch)
order (a remainder of fewer than `accum` batches is skipped so every update is complete);
last.ckpt stores (epoch, batches done in it, update step) and a resumed run skips those batches.
A resume is bit-exact (weights, log rows, best.ckpt) with `deterministic` and without dropout and
drop-path: MindSpore's CPU random kernels (Dropout, UniformReal) keep their generator inside the
kernel, out of reach of the RNG state last.ckpt stores, so their masks restart after a resume.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vglaw.train.config import ConfigError, TrainConfig, model_config, resolve_config
from vglaw.train.bookkeeping import changed_fields, format_changes, resume_entry, split_changes
from vglaw.train.state import RunDir, RunLock, load_train_state, rng_state, save_train_state, set_rng_state

__all__ = ["run_training", "prepare_cache", "RunExistsError", "TrainingFailed", "TRAIN_COLUMNS"]

log = logging.getLogger("vglaw")

TRAIN_COLUMNS = ["image", "input_ids", "attention_mask", "box", "mask"]
RUN_FILES = ("config.json", "train_log.jsonl", "metrics.json", "status.json", "last.ckpt", "best.ckpt")


class RunExistsError(ConfigError):
    """The run directory already holds a run and neither --resume nor --overwrite was given."""


class TrainingFailed(RuntimeError):
    """The run stopped (non-finite loss); status.json says why and which checkpoint is good."""


class _BatchRange:
    """Batches [start, stop) of a `RefBatches`, training columns only (resume skips cheaply)."""

    def __init__(self, src, start: int, stop: int):
        self.src, self.start, self.stop = src, start, stop

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.src[self.start + i][:5]


def _versions() -> dict:
    import mindspore as ms
    import vglaw
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"vglaw": vglaw.__version__, "mindspore": ms.__version__, "device": ms.get_context("device_target"),
            "numpy": np.__version__, "python": platform.python_version(), "git_commit": commit}


def prepare_cache(cfg: TrainConfig) -> Path:
    """Generate the synthetic set if needed and build/reuse the cache; returns the cache folder.

    Refuses (DataChangedError) a cache whose source files changed since it was built, unless this
    call generated them, and (ImageCheckError) one whose image scan found bad files.
    """
    from vglaw.utils import paths
    from vglaw.data import preprocess
    from vglaw.data.cache import ImageCheckError, read_manifest
    data_root = Path(cfg.data_root) if cfg.data_root else paths.default_data_root()
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else paths.default_cache_dir()
    # The synthetic set is generated when absent (or when --synthetic_images asks for another
    # size); an existing one is used as it is, whatever parameters made it.
    exists = (data_root / cfg.dataset / "generator.json").is_file()
    generated = cfg.dataset in ("shapes", "shapes_rle") and bool(cfg.synthetic_images or not exists)
    if generated:
        from vglaw.data import ensure_shapes
        kw = {"n_images": cfg.synthetic_images} if cfg.synthetic_images else {}
        ensure_shapes(data_root, dataset=cfg.dataset, **kw)
    # Files changed under an existing cache are refused (01_preprocess rebuilds and checks them);
    # data this call just generated is cached afresh.
    folder = preprocess(data_root, cfg.dataset, cfg.splitBy, cache_dir,
                        on_change="rebuild" if generated else "refuse")
    scan = read_manifest(folder).get("image_scan") or {}
    if scan.get("bad"):  # 01_preprocess found bad images and the files are still the same
        raise ImageCheckError(f"{folder}: 01_preprocess found {len(scan['bad'])} bad image(s) ("
                              + "; ".join(f"{b['file']}: {b['problem']}" for b in scan["bad"][:10])
                              + "); replace them and run 01_preprocess again", scan["bad"])
    return folder


def _prepare_data(cfg: TrainConfig, rank: int):
    """The cache (rank 0 builds it), then {split: RefDataset} of train, val and the eval splits."""
    from vglaw.utils import paths
    from vglaw.data import RefDataset
    from vglaw.train.distributed import barrier
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else paths.default_cache_dir()
    if rank == 0:
        prepare_cache(cfg)
    barrier()
    splits = dict.fromkeys(("train", "val") + tuple(cfg.eval_splits))
    return {s: RefDataset(cache_dir, cfg.dataset, cfg.splitBy, s) for s in splits}


def _init_weights(model, cfg: TrainConfig) -> dict:
    """Pretrained weights as the flags ask; returns what was loaded (for config.json)."""
    from vglaw.models.checkpoint import load_model
    from vglaw.models.weights import load_text_encoder, load_vitdet
    loaded = {}
    if cfg.pretrained_path:
        load_model(model, cfg.pretrained_path, strict=True)
        return {"model": str(cfg.pretrained_path)}
    if cfg.text_encoder_path != "none":
        hf_dir = cfg.text_encoder_path
        if hf_dir is None:
            if model.config.text_hidden == 384:  # all-MiniLM-L6-v2 geometry (the installed default)
                from vglaw.utils.paths import default_text_encoder_dir
                hf_dir = default_text_encoder_dir()
            else:
                log.warning("no --text_encoder_path for a %d-wide BERT: text encoder starts from "
                            "random init", model.config.text_hidden)
        if hf_dir is not None:
            load_text_encoder(model, hf_dir)
            loaded["text_encoder"] = str(hf_dir)
    if cfg.vit_model == "vitdet_b_mrcnn":
        load_vitdet(model, cfg.vit_model_path)
        loaded["backbone"] = str(cfg.vit_model_path)
    elif cfg.vit_model == "vitdet_b_ms":
        from vglaw.models.convert import load_official_backbone
        load_official_backbone(model, cfg.vit_model_path)
        loaded["backbone"] = str(cfg.vit_model_path)
    elif cfg.vit_model == "shapes_pretrained":
        loaded.update(_pretrained_backbone(model, cfg))
    return loaded


def _pretrained_backbone(model, cfg: TrainConfig) -> dict:
    """--vit_model shapes_pretrained: the backbone pretrained on the train-split instances
    (vglaw.train.pretrain), from --vit_model_path or built once and reused under <runs>/pretrain/."""
    from vglaw.utils import paths
    from vglaw.train.pretrain import PretrainConfig, backbone_config, ensure_pretrained, load_pretrained_backbone
    from vglaw.train.distributed import barrier, launched_by_msrun
    path = cfg.vit_model_path
    if not path:
        pcfg = PretrainConfig(preset=cfg.preset, dataset=cfg.dataset, split_by=cfg.splitBy,
                              updates=cfg.pretrain_updates,
                              model_overrides=backbone_config(model.config))
        kw = dict(data_root=Path(cfg.data_root) if cfg.data_root else paths.default_data_root(),
                  cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else paths.default_cache_dir(),
                  runs_dir=Path(cfg.save_ckpt_dir or paths.default_runs_dir()),
                  use_jit=cfg.mode_name == "GRAPH", progress=cfg.progress)
        if launched_by_msrun():
            from mindspore.communication import get_rank
            rank = get_rank()
        else:
            rank = 0
        if rank == 0:  # one rank trains (or finds) it; the others then find it finished
            path = ensure_pretrained(pcfg, **kw)
        barrier()
        if rank != 0:
            path = ensure_pretrained(pcfg, **kw)
    meta = load_pretrained_backbone(model, path)
    status = Path(path).parent / "status.json"
    wall = json.loads(status.read_text()).get("wall_s") if status.is_file() else None
    return {"backbone": str(path), "backbone_pretrain": {
        "data": meta.get("data"), "updates": meta.get("pretrain", {}).get("updates"),
        "final": meta.get("final"), "wall_s": wall}}


def _check_paths(cfg: TrainConfig) -> None:
    for name in ("pretrained_path", "vit_model_path"):
        v = getattr(cfg, name)
        if v and not Path(v).is_file():
            raise ConfigError(f"--{name} {v} does not exist")
    if cfg.text_encoder_path not in (None, "none") and not Path(cfg.text_encoder_path, "vocab.txt").is_file():
        raise ConfigError(f"--text_encoder_path {cfg.text_encoder_path} is not a Hugging Face BERT "
                          "folder (no vocab.txt)")
    if cfg.data_root and not Path(cfg.data_root).is_dir():
        if cfg.dataset not in ("shapes", "shapes_rle"):
            raise ConfigError(f"--data_root {cfg.data_root} does not exist")
        if not cfg.synthetic_images:  # a typo must not grow a synthetic dataset where nobody looks
            raise ConfigError(f"--data_root {cfg.data_root} does not exist; omit it to use (or generate) "
                              f"the synthetic {cfg.dataset} under data/, or give --synthetic_images N to "
                              "generate it there")


def _evaluate(model, ds, tokenizer, cfg, use_jit: bool, forward=None):
    from vglaw.eval.evaluate import evaluate_split
    return evaluate_split(model, ds, tokenizer, img_size=cfg.img_size, max_len=cfg.max_len,
                          batch_size=cfg.eval_batch_size, mask_threshold=cfg.mask_threshold,
                          with_masks=cfg.use_mask, progress=False, use_jit=use_jit, forward=forward)


_ONE_OP_THREAD = False  # this process set MindSpore's CPU kernel threads to 1 (--deterministic)


class _Clock:
    """Seconds of the run so far, resumable; evaluation time is kept apart (`train_time`)."""

    def __init__(self, elapsed: float = 0.0, eval_s: float = 0.0):
        self.t0, self.eval_s = time.time() - elapsed, eval_s

    def now(self) -> float:
        return time.time() - self.t0

    def fields(self) -> dict:
        t = self.now()
        return {"time": round(t, 3), "train_time": round(t - self.eval_s, 3)}

    def state(self) -> dict:
        return {"time": self.now(), "eval_time": self.eval_s}


def _restore_best(best: dict, select_metric: str) -> dict:
    """last.ckpt's best record, re-scored if it was selected on another metric (or is older)."""
    from vglaw.train.config import selection_value
    if best.get("metric") == select_metric:
        return best
    value = selection_value(best["val"], select_metric) if best.get("val") else -1.0
    return dict(best, metric=select_metric, value=value)


def _make_deterministic(ms) -> dict:
    """Bit-identical reruns of one seed; returns what was set (config.json `derived`).

    On CPU the only run-to-run difference is nn.Dropout: MindSpore's CPU Dropout kernel draws its
    mask from one per-kernel generator inside a multi-threaded loop (ParallelLaunchAutoSearch),
    so which thread gets which numbers varies. One CPU kernel thread removes the race (measured:
    identical losses and weights, GRAPH and PYNATIVE). `mindspore.set_deterministic` is MindSpore's
    switch for GPU/Ascend kernels and HCCL (it does not fix the CPU Dropout; untested on devices).
    Both can be set once per process only.
    """
    global _ONE_OP_THREAD
    from mindspore._c_expression import DeviceManagerConf, RuntimeConf
    if not DeviceManagerConf.get_instance().is_deterministic_configured():
        ms.set_deterministic(True)
    if ms.get_context("device_target") != "CPU":
        return {"deterministic": "ON"}
    if not RuntimeConf.get_instance().is_op_threads_num_configured():
        ms.device_context.cpu.op_tuning.threads_num(1)
        _ONE_OP_THREAD = True
    elif not _ONE_OP_THREAD:
        log.warning("--deterministic: the CPU kernel thread count was already set in this process "
                    "(it can be set once); runs are bit-identical only if it is 1")
        return {"deterministic": "ON", "cpu_op_threads": "set before run_training"}
    return {"deterministic": "ON", "cpu_op_threads": 1}


def run_training(cfg: TrainConfig) -> Path:
    """Train as `cfg` says; returns the run directory (see vglaw.train.state for its files).

    Raises ConfigError for bad values/paths, RunExistsError for an occupied run directory,
    TrainingFailed when the loss turns non-finite (the last good checkpoint is kept).
    """
    cfg = resolve_config(cfg)
    _check_paths(cfg)
    import mindspore as ms
    from vglaw.utils import paths
    from vglaw.train.distributed import init_distributed

    if cfg.device_target:
        ms.set_device(cfg.device_target)
    use_jit = cfg.mode_name == "GRAPH"
    ms.set_context(mode=ms.GRAPH_MODE if use_jit else ms.PYNATIVE_MODE)
    determinism = _make_deterministic(ms) if cfg.deterministic else {}
    if not cfg.deterministic and _ONE_OP_THREAD:
        log.warning("an earlier --deterministic run in this process left the CPU kernels on one thread")
    rank, world = init_distributed()
    run_path = Path(cfg.save_ckpt_dir or paths.default_runs_dir()) / cfg.experiment_name
    if rank < 0:  # msrun's scheduler process: it only coordinated the workers
        return run_path
    run = RunDir(run_path, writer=rank == 0)
    # One writer per run directory, locked before anything is written; msrun's ranks share it
    # (only rank 0 writes).
    lock = RunLock(run.path).acquire() if rank == 0 else None
    try:
        return _train(cfg, run, rank, world, use_jit, determinism)
    finally:
        if lock is not None:
            lock.release()


def _stored_config(run: RunDir) -> dict | None:
    try:
        return json.loads((run / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _check_resume(cfg: TrainConfig, stored: dict | None, fingerprint: str | None) -> dict:
    """The changes of this resume ({field: [stored, requested]}); refuses computation changes
    unless allow_changes (vglaw.train.bookkeeping)."""
    if stored is None:
        log.warning("--resume: no config.json in the run directory; settings cannot be compared")
        return {}
    changes = changed_fields(stored.get("train", {}), json.loads(json.dumps(dataclasses.asdict(cfg))))
    old_fp = (stored.get("data") or {}).get("fingerprint")
    if old_fp is not None and fingerprint is not None and old_fp != fingerprint:
        changes["data_fingerprint"] = [old_fp, fingerprint]
    _, refused = split_changes(changes, cfg.lr_scheduler)
    if refused and not cfg.allow_changes:
        raise ConfigError(f"--resume of {cfg.experiment_name} would change what the run computes: "
                          f"{format_changes(refused)}; resume with the stored values, or pass "
                          "--allow_changes to apply them from the resumed update (recorded in "
                          "config.json 'resumes')")
    return changes


def _train(cfg: TrainConfig, run: RunDir, rank: int, world: int, use_jit: bool, determinism: dict) -> Path:
    import mindspore as ms
    from vglaw.data.pipeline import RefBatches
    from vglaw.data.tokenizer import load_tokenizer
    from vglaw.models.losses import GroundingLoss
    from vglaw.models import VGLAW
    from vglaw.models.checkpoint import load_model, save_model
    from vglaw.train.distributed import barrier
    from vglaw.train.optim import Schedule, build_optimizer, group_lrs, optimizer_state
    from vglaw.train.step import NonFiniteLossError, TrainStep

    if rank == 0:
        run.mark_interrupted()  # a killed run's "running" status is recorded as "interrupted"
    resume = cfg.resume and run.last.is_file()
    if cfg.resume and not resume:
        log.warning("--resume: %s has no last.ckpt yet; starting from scratch", run.path)
    if not resume and rank == 0 and any((run / f).exists() for f in RUN_FILES):
        if not cfg.overwrite:
            st = (run.read_status() or {}).get("state", "unknown")
            raise RunExistsError(f"run directory {run.path} already holds a run (state {st}); pass "
                                 "--resume to continue it, --overwrite to start again, or another "
                                 "--experiment_name")
        for f in list(RUN_FILES) + [p.name for p in run.path.glob("predictions_*.json")]:
            (run / f).unlink(missing_ok=True)
    stored = _stored_config(run) if resume else None
    if resume:
        _check_resume(cfg, stored, None)  # fail fast, before the data and the model
    if rank == 0:
        run.path.mkdir(parents=True, exist_ok=True)
    from vglaw.train.resources import check_resources
    resources = check_resources(cfg.preset, cfg.batch_size, cfg.img_size,
                                max(cfg.batch_sum // (cfg.batch_size * world), 1),
                                ms.get_context("device_target"), force=cfg.force)

    data = _prepare_data(cfg, rank)
    manifest = data["train"].manifest
    data_record = {"cache": str(data["train"].folder), "fingerprint": manifest.get("fingerprint"),
                   "image_scan": manifest.get("image_scan")}
    changes = _check_resume(cfg, stored, data_record["fingerprint"]) if resume else {}
    tokenizer = load_tokenizer(cfg.text_encoder_path if cfg.text_encoder_path not in (None, "none") else None)
    ms.set_seed(cfg.seed)  # same on every rank: identical initial weights
    np.random.seed(cfg.seed)
    model = VGLAW(model_config(cfg))
    loaded = _init_weights(model, cfg)
    if cfg.freeze_word_embeddings:
        for name, p in model.text_encoder.parameters_and_names():
            if "word_embeddings" in name:
                p.requires_grad = False

    # --- sizes: micro-batches per epoch, accumulation, updates ---
    n_train = len(data["train"])
    per_rank = math.ceil(n_train / world)
    batches_per_epoch = per_rank // cfg.batch_size
    if cfg.batch_sum % (cfg.batch_size * world):
        raise ConfigError(f"batch_sum {cfg.batch_sum} must be a multiple of batch_size x workers "
                          f"= {cfg.batch_size} x {world}")
    accum = cfg.batch_sum // (cfg.batch_size * world)
    updates_per_epoch = batches_per_epoch // accum
    if updates_per_epoch < 1:
        raise ConfigError(f"the train split has {n_train} expressions: too few for one update of "
                          f"batch_sum {cfg.batch_sum}")
    used_batches = updates_per_epoch * accum
    total_updates = cfg.max_epochs * updates_per_epoch
    if cfg.max_steps is not None:
        total_updates = min(total_updates, cfg.max_steps)

    schedule = Schedule.from_config(cfg, updates_per_epoch)
    optimizer, group_of = build_optimizer(model, schedule, cfg.weight_decay)
    loss_fn = GroundingLoss.from_config(model.config)
    trainer = TrainStep(model, loss_fn, optimizer, accum_steps=accum, clip_norm=cfg.clip_norm,
                        world=world, use_jit=use_jit)
    opt_state = optimizer_state(optimizer)

    epoch, batch0, update = 0, 0, 0
    # best: the val evaluation best.ckpt holds; "val_prec@0.5" stays for readers of older runs
    best = {"metric": cfg.select_metric, "value": -1.0, "val_prec@0.5": -1.0, "epoch": None, "step": None}
    pending_eval = False
    clock_state = {}
    if resume:
        meta = load_train_state(run.last, model, opt_state)
        epoch, batch0, update = meta["epoch"], meta["batches_done"], meta["update_step"]
        best, pending_eval = _restore_best(meta["best"], cfg.select_metric), meta.get("pending_eval", False)
        clock_state = meta.get("clock", {})  # absent in checkpoints of older versions: clocks restart
        set_rng_state(meta["rng"])
        if int(optimizer.global_step.asnumpy().reshape(-1)[0]) != update:
            raise RuntimeError(f"{run.last}: optimiser step {optimizer.global_step} != update {update}")
        # a pending evaluation is redone below: drop its row if the killed run had written it
        run.truncate_log(update, drop_eval_at=update if pending_eval is not False else None)
        log.info("resumed %s at epoch %d, batch %d, update %d", run.last, epoch, batch0, update)
    info = {"updates_per_epoch": updates_per_epoch, "accum_steps": accum, "world_size": world,
            "train_expressions": n_train, "batches_per_epoch_used": used_batches,
            "total_updates": total_updates, "warmup_steps": schedule.kw["warmup_steps"],
            "drop_steps": list(schedule.kw["drop_steps"]), "loaded_weights": loaded,
            "determinism": determinism, "resources": resources}
    command = " ".join([Path(sys.executable).name] + sys.argv)
    config_json = {"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(model.config),
                   "derived": info, "data": data_record, "versions": _versions(), "command": command}
    if resume and stored is not None:  # the settings in effect from now on, and what this resume changed
        config_json = dict(stored, train=config_json["train"], derived=info, data=data_record,
                           resumes=list(stored.get("resumes", [])) + [
                               resume_entry(update, changes, cfg.allow_changes, command)])
    run.write_json("config.json", config_json)
    clock = _Clock(clock_state.get("time", 0.0), clock_state.get("eval_time", 0.0))
    run.status("running", pid=os.getpid(), host=socket.gethostname(), step=update, total_updates=total_updates, epoch=epoch,
               started=time.strftime("%Y-%m-%dT%H:%M:%S"))

    def save_last(ep, done, pending):
        if rank == 0:
            save_train_state(run.last, model, opt_state, {
                "epoch": ep, "batches_done": done, "update_step": update, "best": best,
                "pending_eval": pending, "clock": clock.state(), "log_window": {"sums": sums, "n": n_parts},
                "rng": rng_state(),
                "train_config": dataclasses.asdict(cfg)})

    def eval_val(ep):
        nonlocal best
        if rank == 0:
            from vglaw.train.config import selection_value
            stamp, t0 = clock.fields(), time.time()  # the clocks when the weights were reached
            metrics, _ = _evaluate(model, data["val"], tokenizer, cfg, use_jit)
            value = selection_value(metrics, cfg.select_metric)
            if value > best["value"]:  # ties keep the earlier checkpoint
                best = {"metric": cfg.select_metric, "value": value, "val_prec@0.5": metrics["prec@0.5"],
                        "epoch": ep, "step": update, "val": metrics}
                save_model(model, run.best, meta={"epoch": ep, "step": update, "val": metrics,
                                                  "selected_on": f"val {cfg.select_metric}",
                                                  "select_metric": cfg.select_metric, "select_value": value})
            dt = time.time() - t0
            clock.eval_s += dt
            run.append_log({"step": update, "epoch": ep, "eval": "val",
                            **{k: metrics[k] for k in metrics if k.startswith(("prec@", "miou", "box_miou", "oiou"))},
                            "select_metric": cfg.select_metric, "select_value": value, **stamp,
                            "eval_s": round(dt, 3)})
            log.info("update %d (epoch %d) val: prec@0.5 %.4f miou %s, %s %.4f (best %.4f at update %s)",
                     update, ep, metrics["prec@0.5"], metrics.get("miou"), cfg.select_metric, value,
                     best["value"], best["step"])
            model.set_train(True)
        barrier()

    def fail(exc: Exception):
        good = str(run.last) if run.last.is_file() else None
        msg = (f"training stopped at update {update} (epoch {epoch}): {exc}. The last good checkpoint "
               f"is {good or 'none (no checkpoint was written yet)'}; lower the learning rates or "
               "check the data, then --resume")
        run.status("failed", error=msg, step=update, last_good_checkpoint=good)
        raise TrainingFailed(msg) from exc

    # A loss row averages the updates since the previous row (within the epoch); last.ckpt keeps
    # that window, so a resumed run writes the rows an uninterrupted one would.
    window = meta.get("log_window", {}) if resume else {}
    sums, n_parts = dict(window.get("sums", {})), int(window.get("n", 0))
    try:
        if pending_eval is not False:  # killed between last.ckpt and the val evaluation
            eval_val(int(pending_eval))
            save_last(epoch, batch0, False)
        progress = None
        while epoch < cfg.max_epochs and update < total_updates:
            src = RefBatches(data["train"], tokenizer, img_size=cfg.img_size, max_len=cfg.max_len,
                             batch_size=cfg.batch_size, train=True, translate=cfg.translate, seed=cfg.seed,
                             epoch=epoch, num_shards=world if world > 1 else None,
                             shard_id=rank if world > 1 else None, drop_remainder=True)
            import mindspore.dataset as msds
            ds = msds.GeneratorDataset(_BatchRange(src, batch0, used_batches), column_names=TRAIN_COLUMNS,
                                       shuffle=False, num_parallel_workers=cfg.num_workers,
                                       python_multiprocessing=False)
            model.set_train(True)
            if rank == 0 and cfg.progress:
                from tqdm import tqdm  # plain text bars: tqdm.auto needs ipywidgets in notebooks
                progress = tqdm(total=used_batches, initial=batch0, desc=f"epoch {epoch}", leave=False,
                                dynamic_ncols=True)
            done = batch0
            t_log, samples = time.time(), 0
            for cols in ds.create_tuple_iterator(num_epochs=1):
                parts, stepped = trainer.step(cols)
                done += 1
                samples += cfg.batch_size * world
                n_parts += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{parts['loss']:.3f}", step=update)
                if not stepped:
                    continue
                update += 1
                if update % cfg.log_freq == 0 or update == total_updates:
                    dt = time.time() - t_log
                    run.append_log({"step": update, "epoch": epoch, **{k: v / n_parts for k, v in sums.items()},
                                    "lr": group_lrs(schedule, update - 1), "samples_per_s": samples / max(dt, 1e-9),
                                    **clock.fields()})
                    sums, n_parts, t_log, samples = {}, 0, time.time(), 0
                # epoch ends and the last update are evaluated below, once
                if (cfg.eval_every_steps and update % cfg.eval_every_steps == 0 and done < used_batches
                        and update < total_updates):
                    t_eval = time.time()
                    save_last(epoch, done, epoch)  # a kill during the evaluation redoes it on --resume
                    eval_val(epoch)
                    save_last(epoch, done, False)
                    t_log += time.time() - t_eval  # samples_per_s measures training only
                elif cfg.ckpt_every and update % cfg.ckpt_every == 0 and done < used_batches:
                    save_last(epoch, done, False)
                if update >= total_updates:
                    break
            if progress is not None:
                progress.close()
            trainer.discard_partial()
            finished_epoch = done >= used_batches
            if finished_epoch:
                sums, n_parts = {}, 0  # each epoch's rows start afresh
            last_round = update >= total_updates
            want_eval = (last_round or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)
                         or (cfg.eval_every_steps and update % cfg.eval_every_steps == 0))
            if finished_epoch:
                epoch, batch0 = epoch + 1, 0
                save_last(epoch, 0, epoch - 1 if want_eval else False)
                if want_eval:
                    eval_val(epoch - 1)
                    save_last(epoch, 0, False)
            else:  # stopped by max_steps inside the epoch
                batch0 = done
                save_last(epoch, done, epoch)
                eval_val(epoch)
                save_last(epoch, done, False)
    except NonFiniteLossError as exc:
        fail(exc)
    except BaseException as exc:  # anything else (incl. Ctrl-C): say so in status.json, keep last.ckpt
        run.status("failed", error=f"{type(exc).__name__}: {exc}"[:2000], step=update,
                   last_good_checkpoint=str(run.last) if run.last.is_file() else None)
        raise

    # data-parallel ranks must hold identical weights (same init, same averaged updates)
    checksum = float(sum(float(np.abs(p.asnumpy()).astype(np.float64).sum()) for p in model.get_parameters()))
    log.info("rank %d of %d: final parameter checksum %.12e", rank, world, checksum)

    # --- final evaluation of best.ckpt on the eval splits ---
    if rank == 0:
        if run.best.is_file():
            load_model(model, run.best, strict=True)
        metrics_all = {}
        from vglaw.eval.evaluate import make_forward
        fwd = make_forward(model, use_jit=use_jit)
        for split in cfg.eval_splits:
            metrics, preds = _evaluate(model, data[split], tokenizer, cfg, use_jit, forward=fwd)
            metrics_all[split] = metrics
            run.write_json(f"predictions_{split}.json", preds)
            log.info("best.ckpt on %s: prec@0.5 %.4f miou %s", split, metrics["prec@0.5"], metrics.get("miou"))
        run.write_json("metrics.json", metrics_all)
        run.status("finished", step=update, total_updates=total_updates, epochs=epoch,
                   best_epoch=best["epoch"], best_step=best["step"], best_val_prec50=best["val_prec@0.5"],
                   best_metric=best["metric"], best_value=best["value"],
                   checkpoint_for_metrics="best.ckpt" if run.best.is_file() else "last.ckpt",
                   wall_s=round(clock.now(), 1), eval_s=round(clock.eval_s, 1))
    barrier()
    return run.path
