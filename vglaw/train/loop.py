"""`run_training(cfg)`: data, model, optimiser, the epoch loop, checkpoints, evaluation.

`run_training` reads as its phases, each a function of this module: `setup_runtime` (config,
device, mode, ranks), `open_run` (claim the run directory, check a resume), `build_training` (data,
model, optimiser, step, the state of last.ckpt, config.json) -> a `Training` record, `train_epochs`
(`train_epoch` + `end_epoch`, with `validate` choosing best.ckpt and `save_last` writing last.ckpt)
and `final_evaluation` (best.ckpt on the eval splits -> metrics.json).

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

__all__ = ["run_training", "prepare_cache", "RunExistsError", "TrainingFailed", "TRAIN_COLUMNS", "Runtime",
           "Training", "setup_runtime", "open_run", "build_training", "train_epochs", "train_epoch",
           "end_epoch", "save_last", "validate", "final_evaluation"]

log = logging.getLogger("vglaw")

TRAIN_COLUMNS = ["image", "input_ids", "attention_mask", "box", "mask"]
RUN_FILES = ("config.json", "train_log.jsonl", "metrics.json", "status.json", "last.ckpt", "best.ckpt")


class RunExistsError(ConfigError):
    """The run directory already holds a run and neither --resume nor --overwrite was given."""


class TrainingFailed(RuntimeError):
    """The run stopped (non-finite loss); status.json says why and which checkpoint is good."""


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
    folder = preprocess(data_root, cfg.dataset, cfg.split_by, cache_dir,
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
    return {s: RefDataset(cache_dir, cfg.dataset, cfg.split_by, s) for s in splits}


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
        pcfg = PretrainConfig(preset=cfg.preset, dataset=cfg.dataset, split_by=cfg.split_by,
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
    cfg, env = setup_runtime(cfg)
    if env.rank < 0:  # msrun's scheduler process: it only coordinated the workers
        return env.run_path
    run = RunDir(env.run_path, writer=env.rank == 0)
    # One writer per run directory, locked before anything is written; msrun's ranks share it.
    lock = RunLock(run.path).acquire() if env.rank == 0 else None
    try:
        t = build_training(cfg, run, env, open_run(cfg, run, env.rank))
        train_epochs(t)
        final_evaluation(t)
        return run.path
    finally:
        if lock is not None:
            lock.release()


# --------------------------------------------------------------------------- phase 1: set up the run

@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where and how this process trains (after `setup_runtime`)."""
    rank: int             # msrun rank (0 alone); -1: msrun's scheduler process
    world: int            # data-parallel workers
    use_jit: bool         # GRAPH mode: the train step and the evaluation forward are compiled
    determinism: dict     # what --deterministic set (config.json `derived`)
    run_path: Path


def setup_runtime(cfg: TrainConfig) -> tuple[TrainConfig, Runtime]:
    """The resolved config (paths checked) and MindSpore set up: device, mode, determinism, ranks."""
    cfg = resolve_config(cfg)
    _check_paths(cfg)
    import mindspore as ms
    from vglaw.train.distributed import init_distributed
    from vglaw.utils import paths

    if cfg.device_target:
        ms.set_device(cfg.device_target)
    use_jit = cfg.mode_name == "GRAPH"
    ms.set_context(mode=ms.GRAPH_MODE if use_jit else ms.PYNATIVE_MODE)
    determinism = _make_deterministic(ms) if cfg.deterministic else {}
    if not cfg.deterministic and _ONE_OP_THREAD:
        log.warning("an earlier --deterministic run in this process left the CPU kernels on one thread")
    rank, world = init_distributed()
    run_path = Path(cfg.save_ckpt_dir or paths.default_runs_dir()) / cfg.experiment_name
    return cfg, Runtime(rank, world, use_jit, determinism, run_path)


def open_run(cfg: TrainConfig, run: RunDir, rank: int) -> dict | None:
    """Claim the run directory: a fresh run clears it (with --overwrite), a resume is checked against
    its config.json before anything is built. Returns that stored config for a resume, else None."""
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
    if rank == 0:
        run.path.mkdir(parents=True, exist_ok=True)
    if not resume:
        return None
    stored = _stored_config(run) or {}
    _check_resume(cfg, stored or None, None)  # fail fast, before the data and the model
    return stored


# --------------------------------------------------------------------------- phase 2: build

@dataclasses.dataclass
class Training:
    """What the phases share: the run, what was built, and where training stands."""
    cfg: TrainConfig
    run: RunDir
    env: Runtime
    data: dict                # {split: RefDataset}: train, val and the eval splits
    tokenizer: object
    model: object
    trainer: object           # vglaw.train.step.TrainStep
    schedule: object          # vglaw.train.optim.Schedule
    opt_state: dict           # AdamW moments + step, what last.ckpt stores
    batches: object           # RefBatches of the train split: tokenised once, re-ordered per epoch
    used_batches: int         # micro-batches an epoch uses (whole updates only)
    total_updates: int
    clock: "_Clock" = None
    epoch: int = 0            # position: epoch, micro-batches done in it, optimiser updates
    batch0: int = 0
    update: int = 0
    # best: the val evaluation best.ckpt holds; "val_prec@0.5" stays for readers of older runs
    best: dict = dataclasses.field(default_factory=dict)
    pending_eval: int | bool = False   # epoch of a val evaluation last.ckpt still owes, else False
    sums: dict = dataclasses.field(default_factory=dict)  # loss sums since the last log row
    n_parts: int = 0


def build_training(cfg: TrainConfig, run: RunDir, env: Runtime, stored: dict | None) -> Training:
    """Data, model, optimiser and step; the state of last.ckpt on a resume; config.json written."""
    import mindspore as ms
    from vglaw.data.pipeline import RefBatches
    from vglaw.data.tokenizer import load_tokenizer
    from vglaw.models import VGLAW
    from vglaw.models.losses import GroundingLoss
    from vglaw.train.optim import Schedule, build_optimizer, optimizer_state
    from vglaw.train.resources import check_resources
    from vglaw.train.step import TrainStep
    from vglaw.utils.malloc import release_freed_pages

    world, use_jit, resume = env.world, env.use_jit, stored is not None
    resources = check_resources(cfg.preset, cfg.batch_size, cfg.img_size,
                                max(cfg.batch_sum // (cfg.batch_size * world), 1),
                                ms.get_context("device_target"), force=cfg.force,
                                lean=cfg.lean_kernels and cfg.recompute)
    data = _prepare_data(cfg, env.rank)
    manifest = data["train"].manifest
    data_record = {"cache": str(data["train"].folder), "fingerprint": manifest.get("fingerprint"),
                   "content": manifest.get("content"), "image_scan": manifest.get("image_scan")}
    changes = _check_resume(cfg, stored or None, data_record["fingerprint"]) if resume else {}
    tokenizer = load_tokenizer(cfg.text_encoder_path if cfg.text_encoder_path not in (None, "none") else None)
    ms.set_seed(cfg.seed)  # same on every rank: identical initial weights
    np.random.seed(cfg.seed)
    model = VGLAW(model_config(cfg))
    loaded = _init_weights(model, cfg)
    if cfg.recompute:
        model.set_recompute()
    if cfg.lean_kernels:
        model.set_lean_kernels()
        release_freed_pages()  # jemalloc (when preloaded): the compile's freed pages do not add to the peak
    if cfg.freeze_word_embeddings:
        for name, p in model.text_encoder.parameters_and_names():
            if "word_embeddings" in name:
                p.requires_grad = False

    sizes = _epoch_sizes(cfg, len(data["train"]), world)
    schedule = Schedule.from_config(cfg, sizes["updates_per_epoch"])
    optimizer, group_of = build_optimizer(model, schedule, cfg.weight_decay)
    loss_fn = GroundingLoss.from_config(model.config)
    trainer = TrainStep(model, loss_fn, optimizer, accum_steps=sizes["accum_steps"], clip_norm=cfg.clip_norm,
                        world=world, use_jit=use_jit, lean_clip=cfg.lean_kernels)
    batches = RefBatches(data["train"], tokenizer, img_size=cfg.img_size, max_len=cfg.max_len,
                         batch_size=cfg.batch_size, train=True, translate=cfg.translate, seed=cfg.seed,
                         num_shards=world if world > 1 else None, shard_id=env.rank if world > 1 else None,
                         drop_remainder=True)
    t = Training(cfg, run, env, data, tokenizer, model, trainer, schedule, optimizer_state(optimizer), batches,
                 sizes["batches_per_epoch_used"], sizes["total_updates"],
                 best={"metric": cfg.select_metric, "value": -1.0, "val_prec@0.5": -1.0, "epoch": None,
                       "step": None})
    clock_state = _restore(t, optimizer) if resume else {}
    t.clock = _Clock(clock_state.get("time", 0.0), clock_state.get("eval_time", 0.0))

    info = dict(sizes, loaded_weights=loaded, determinism=env.determinism, resources=resources,
                warmup_steps=schedule.kw["warmup_steps"], drop_steps=list(schedule.kw["drop_steps"]))
    _write_config(t, info, data_record, stored, changes)
    run.status("running", pid=os.getpid(), host=socket.gethostname(), step=t.update,
               total_updates=t.total_updates, epoch=t.epoch, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return t


def _epoch_sizes(cfg: TrainConfig, n_train: int, world: int) -> dict:
    """Micro-batches per epoch, accumulation, updates (config.json `derived`)."""
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
    total_updates = cfg.max_epochs * updates_per_epoch
    if cfg.max_steps is not None:
        total_updates = min(total_updates, cfg.max_steps)
    return {"updates_per_epoch": updates_per_epoch, "accum_steps": accum, "world_size": world,
            "train_expressions": n_train, "batches_per_epoch_used": updates_per_epoch * accum,
            "total_updates": total_updates}


def _restore(t: Training, optimizer) -> dict:
    """Weights, AdamW state, position, best record, RNG and log window of last.ckpt; returns its clocks."""
    run, model, opt_state = t.run, t.model, t.opt_state
    meta = load_train_state(run.last, model, opt_state)
    t.epoch, t.batch0, t.update = meta["epoch"], meta["batches_done"], meta["update_step"]
    t.best, t.pending_eval = _restore_best(meta["best"], t.cfg.select_metric), meta.get("pending_eval", False)
    set_rng_state(meta["rng"])
    if int(optimizer.global_step.asnumpy().reshape(-1)[0]) != t.update:
        raise RuntimeError(f"{run.last}: optimiser step {optimizer.global_step} != update {t.update}")
    # A loss row averages the updates since the previous row (within the epoch); last.ckpt keeps
    # that window, so a resumed run writes the rows an uninterrupted one would.
    window = meta.get("log_window", {})
    t.sums, t.n_parts = dict(window.get("sums", {})), int(window.get("n", 0))
    # a pending evaluation is redone: drop its row if the killed run had written it
    run.truncate_log(t.update, drop_eval_at=t.update if t.pending_eval is not False else None)
    log.info("resumed %s at epoch %d, batch %d, update %d", run.last, t.epoch, t.batch0, t.update)
    return meta.get("clock", {})  # absent in checkpoints of older versions: clocks restart


def _write_config(t: Training, info: dict, data_record: dict, stored: dict | None, changes: dict) -> None:
    """config.json: the settings in effect from now on; a resume appends what it changed."""
    command = " ".join([Path(sys.executable).name] + sys.argv)
    config_json = {"train": dataclasses.asdict(t.cfg), "model": dataclasses.asdict(t.model.config),
                   "derived": info, "data": data_record, "versions": _versions(), "command": command}
    if stored:
        config_json = dict(stored, train=config_json["train"], derived=info, data=data_record,
                           resumes=list(stored.get("resumes", [])) + [
                               resume_entry(t.update, changes, t.cfg.allow_changes, command)])
    t.run.write_json("config.json", config_json)


# --------------------------------------------------------------------------- phase 3: train

def train_epochs(t: Training) -> None:
    """Epochs until max_epochs or max_steps; status.json says why if anything stops them."""
    from vglaw.train.step import NonFiniteLossError
    try:
        if t.pending_eval is not False:  # killed between last.ckpt and the val evaluation
            validate(t, int(t.pending_eval))
            save_last(t, t.epoch, t.batch0, False)
        while t.epoch < t.cfg.max_epochs and t.update < t.total_updates:
            done = train_epoch(t)
            end_epoch(t, done)
    except NonFiniteLossError as exc:
        good = str(t.run.last) if t.run.last.is_file() else None
        msg = (f"training stopped at update {t.update} (epoch {t.epoch}): {exc}. The last good checkpoint "
               f"is {good or 'none (no checkpoint was written yet)'}; lower the learning rates or "
               "check the data, then --resume")
        t.run.status("failed", error=msg, step=t.update, last_good_checkpoint=good)
        raise TrainingFailed(msg) from exc
    except BaseException as exc:  # anything else (incl. Ctrl-C): say so in status.json, keep last.ckpt
        t.run.status("failed", error=f"{type(exc).__name__}: {exc}"[:2000], step=t.update,
                     last_good_checkpoint=str(t.run.last) if t.run.last.is_file() else None)
        raise


def train_epoch(t: Training) -> int:
    """The rest of epoch `t.epoch` from micro-batch `t.batch0` (or up to max_steps): steps, loss rows,
    step-wise val evaluations and checkpoints. Returns the micro-batches of the epoch done."""
    from vglaw.data.pipeline import as_dataset
    from vglaw.train.optim import group_lrs
    cfg, world = t.cfg, t.env.world
    t.batches.set_epoch(t.epoch, start=t.batch0, stop=t.used_batches)
    ds = as_dataset(t.batches, num_parallel_workers=cfg.num_workers).project(TRAIN_COLUMNS)
    t.model.set_train(True)
    progress = None
    if t.env.rank == 0 and cfg.progress:
        from tqdm import tqdm  # plain text bars: tqdm.auto needs ipywidgets in notebooks
        progress = tqdm(total=t.used_batches, initial=t.batch0, desc=f"epoch {t.epoch}", leave=False,
                        dynamic_ncols=True)
    done = t.batch0
    t_log, samples = time.time(), 0
    for cols in ds.create_tuple_iterator(num_epochs=1):
        parts, stepped = t.trainer.step(cols)
        done += 1
        samples += cfg.batch_size * world
        t.n_parts += 1
        for k, v in parts.items():
            t.sums[k] = t.sums.get(k, 0.0) + v
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{parts['loss']:.3f}", step=t.update)
        if not stepped:
            continue
        t.update += 1
        if t.update % cfg.log_freq == 0 or t.update == t.total_updates:
            dt = time.time() - t_log
            t.run.append_log({"step": t.update, "epoch": t.epoch, **{k: v / t.n_parts for k, v in t.sums.items()},
                              "lr": group_lrs(t.schedule, t.update - 1), "samples_per_s": samples / max(dt, 1e-9),
                              **t.clock.fields()})
            t.sums, t.n_parts, t_log, samples = {}, 0, time.time(), 0
        # epoch ends and the last update are evaluated by end_epoch, once
        if (cfg.eval_every_steps and t.update % cfg.eval_every_steps == 0 and done < t.used_batches
                and t.update < t.total_updates):
            t_eval = time.time()
            save_last(t, t.epoch, done, t.epoch)  # a kill during the evaluation redoes it on --resume
            validate(t, t.epoch)
            save_last(t, t.epoch, done, False)
            t_log += time.time() - t_eval  # samples_per_s measures training only
        elif cfg.ckpt_every and t.update % cfg.ckpt_every == 0 and done < t.used_batches:
            save_last(t, t.epoch, done, False)
        if t.update >= t.total_updates:
            break
    if progress is not None:
        progress.close()
    t.trainer.discard_partial()
    return done


def end_epoch(t: Training, done: int) -> None:
    """After `train_epoch`: last.ckpt at the new position, and the val evaluation that is due."""
    cfg = t.cfg
    if done < t.used_batches:  # stopped by max_steps inside the epoch
        t.batch0 = done
        save_last(t, t.epoch, done, t.epoch)
        validate(t, t.epoch)
        save_last(t, t.epoch, done, False)
        return
    t.sums, t.n_parts = {}, 0  # each epoch's rows start afresh
    want_eval = (t.update >= t.total_updates or (cfg.eval_every and (t.epoch + 1) % cfg.eval_every == 0)
                 or (cfg.eval_every_steps and t.update % cfg.eval_every_steps == 0))
    t.epoch, t.batch0 = t.epoch + 1, 0
    save_last(t, t.epoch, 0, t.epoch - 1 if want_eval else False)
    if want_eval:
        validate(t, t.epoch - 1)
        save_last(t, t.epoch, 0, False)


def save_last(t: Training, epoch: int, done: int, pending: int | bool) -> None:
    """last.ckpt (rank 0): weights, AdamW state and the position after `done` micro-batches of `epoch`;
    `pending`: the epoch whose val evaluation is still owed (a kill during it redoes it)."""
    if t.env.rank == 0:
        save_train_state(t.run.last, t.model, t.opt_state, {
            "epoch": epoch, "batches_done": done, "update_step": t.update, "best": t.best,
            "pending_eval": pending, "clock": t.clock.state(), "log_window": {"sums": t.sums, "n": t.n_parts},
            "rng": rng_state(), "train_config": dataclasses.asdict(t.cfg)})


# --------------------------------------------------------------------------- phase 4: validate and select

def validate(t: Training, epoch: int) -> None:
    """Score the current weights on val (rank 0); best.ckpt keeps the best `select_metric` so far."""
    from vglaw.models.checkpoint import save_model
    from vglaw.train.config import selection_value
    from vglaw.train.distributed import barrier
    cfg, update = t.cfg, t.update
    if t.env.rank == 0:
        stamp, t0 = t.clock.fields(), time.time()  # the clocks when the weights were reached
        metrics, _ = _evaluate(t.model, t.data["val"], t.tokenizer, cfg, t.env.use_jit)
        value = selection_value(metrics, cfg.select_metric)
        if value > t.best["value"]:  # ties keep the earlier checkpoint
            t.best = {"metric": cfg.select_metric, "value": value, "val_prec@0.5": metrics["prec@0.5"],
                      "epoch": epoch, "step": update, "val": metrics}
            save_model(t.model, t.run.best, meta={"epoch": epoch, "step": update, "val": metrics,
                                                  "selected_on": f"val {cfg.select_metric}",
                                                  "select_metric": cfg.select_metric, "select_value": value})
        dt = time.time() - t0
        t.clock.eval_s += dt
        t.run.append_log({"step": update, "epoch": epoch, "eval": "val",
                          **{k: metrics[k] for k in metrics if k.startswith(("prec@", "miou", "box_miou", "oiou", "head_"))},
                          "select_metric": cfg.select_metric, "select_value": value, **stamp,
                          "eval_s": round(dt, 3)})
        log.info("update %d (epoch %d) val: prec@0.5 %.4f miou %s, %s %.4f (best %.4f at update %s)",
                 update, epoch, metrics["prec@0.5"], metrics.get("miou"), cfg.select_metric, value,
                 t.best["value"], t.best["step"])
        t.model.set_train(True)
    barrier()


# --------------------------------------------------------------------------- phase 5: final evaluation

def final_evaluation(t: Training) -> None:
    """best.ckpt on every eval split -> predictions_<split>.json, metrics.json; status "finished"."""
    from vglaw.eval.evaluate import make_forward
    from vglaw.models.checkpoint import load_model
    from vglaw.train.distributed import barrier
    run, model, best = t.run, t.model, t.best
    # data-parallel ranks must hold identical weights (same init, same averaged updates)
    checksum = float(sum(float(np.abs(p.asnumpy()).astype(np.float64).sum()) for p in model.get_parameters()))
    log.info("rank %d of %d: final parameter checksum %.12e", t.env.rank, t.env.world, checksum)
    if t.env.rank == 0:
        if run.best.is_file():
            load_model(model, run.best, strict=True)
        metrics_all = {}
        fwd = make_forward(model, use_jit=t.env.use_jit)
        for split in t.cfg.eval_splits:
            metrics, preds = _evaluate(model, t.data[split], t.tokenizer, t.cfg, t.env.use_jit, forward=fwd)
            metrics_all[split] = metrics
            run.write_json(f"predictions_{split}.json", preds)
            log.info("best.ckpt on %s: prec@0.5 %.4f miou %s", split, metrics["prec@0.5"], metrics.get("miou"))
        run.write_json("metrics.json", metrics_all)
        run.status("finished", step=t.update, total_updates=t.total_updates, epochs=t.epoch,
                   best_epoch=best["epoch"], best_step=best["step"], best_val_prec50=best["val_prec@0.5"],
                   best_metric=best["metric"], best_value=best["value"],
                   checkpoint_for_metrics="best.ckpt" if run.best.is_file() else "last.ckpt",
                   wall_s=round(t.clock.now(), 1), eval_s=round(t.clock.eval_s, 1))
    barrier()


# --------------------------------------------------------------------------- resume checks

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
