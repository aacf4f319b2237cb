"""`python -m vglaw.train`: the seed's training command, working.

Every flag of the authors' `src/train.py` command keeps its name and meaning; the flags are
generated from `TrainConfig` (one flag per field, same name), so the CLI, notebooks and
`config.json` speak the same vocabulary. Unknown flags and bad values exit with code 2 and a
message listing what is allowed.

    # the seed's refcoco command (GPU/Ascend, 4 ranks; the seed used `mpirun -n 4`)
    msrun --worker_num=4 --local_worker_num=4 --master_port=8118 --join=True python -m vglaw.train \\
        --batch_size=1 --batch_sum=256 --dataset=refcoco --split_by=unc \\
        --experiment_name=mindspore_vglaw_refcoco --short_comment=mindspore_vglaw_refcoco \\
        --law_type=svd --img_size=448 --vit_model=vitdet_b_mrcnn --vit_model_path=model_final_61ccd1.pkl \\
        --translate --lr_lang=1e-5 --lr_visual=1e-5 --lr_base=1e-4 --lr_scheduler=step \\
        --max_epochs=90 --drop_epochs 60 --log_freq=10 --use_mask --mode_name=GRAPH \\
        --save_ckpt_dir=runs --device_target=GPU

    # the CPU recipe on the synthetic set (2 cores, ~10 min)
    python -m vglaw.train --preset tiny --dataset shapes --law_type svd --use_mask --translate \\
        --experiment_name tiny_svd

    # time-to-accuracy: val every 100 updates (train_log.jsonl rows with time and train_time),
    # best.ckpt on val prec@0.5, bit-identical reruns (one CPU kernel thread)
    python -m vglaw.train --preset tiny --dataset shapes --use_mask --eval_every_steps 100 \\
        --select_metric prec@0.5 --deterministic
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
from typing import Sequence

from vglaw.config import BOX_SOURCES, DEVICE_TARGETS, LAW_TYPES, MODES, PRESETS
from vglaw.data.refer import DATASETS, SPLIT_BYS
from vglaw.train.config import (LR_SCHEDULERS, RENAMED_FIELDS, SELECT_METRICS, VIT_MODELS, ConfigError,
                                TrainConfig, resolve_config)

__all__ = ["build_parser", "parse_config", "main"]

CHOICES = {"dataset": tuple(DATASETS), "law_type": LAW_TYPES, "lr_scheduler": LR_SCHEDULERS, "mode_name": MODES,
           "device_target": DEVICE_TARGETS, "vit_model": VIT_MODELS, "preset": tuple(PRESETS),
           "split_by": SPLIT_BYS, "select_metric": SELECT_METRICS, "box_source": BOX_SOURCES}
NARGS = {"drop_epochs": int, "eval_splits": str}
FLAGS = ("resume", "overwrite", "allow_changes", "force")  # store_true only


def _override(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a ModelConfig field), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _help(field: dataclasses.Field) -> str:
    default = field.default if field.default is not dataclasses.MISSING else "{}"
    return f"default: {default}" + (" (None: preset recipe / dataset default)" if default is None else "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vglaw.train", usage="%(prog)s [--flag VALUE ...] (see --help)",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Recipes and field meanings: vglaw/train/config.py")
    for f in dataclasses.fields(TrainConfig):
        name, default = f.name, f.default
        flag = f"--{name}"
        aliases = [f"--{old}" for old, new in RENAMED_FIELDS.items() if new == name]  # the seed's --splitBy
        if name == "model_overrides":
            p.add_argument(flag, nargs="+", type=_override, default=[], metavar="KEY=VALUE",
                           help="ModelConfig overrides, e.g. vit_dim=192 vit_depth=6")
        elif name in FLAGS:
            p.add_argument(flag, action="store_true", help=_help(f))
        elif str(f.type).startswith("bool"):  # bool, or bool | None (None: the recipe's)
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=_help(f))
        elif name in NARGS:
            p.add_argument(flag, nargs="+", type=NARGS[name], default=None, help=_help(f))
        else:
            typ = {"int": int, "float": float}.get(str(f.type).split(" ")[0].split("|")[0].strip(), str)
            if name in ("warmup_epochs", "lr_lang", "lr_visual", "lr_base"):
                typ = float
            p.add_argument(flag, *aliases, dest=name, type=typ, default=default, choices=CHOICES.get(name),
                           help=_help(f) + "".join(f"; also {a}" for a in aliases))
    p.add_argument("--debug", action="store_true", help="print the traceback of an error (also VGLAW_DEBUG=1)")
    return p


def parse_config(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> TrainConfig:
    """argv -> resolved TrainConfig; a bad value exits with code 2 (parser.error)."""
    parser = parser or build_parser()
    ns = parser.parse_args(argv)
    values = vars(ns)
    values.pop("debug", None)
    values["model_overrides"] = dict(values["model_overrides"])
    try:
        return resolve_config(TrainConfig(**values))
    except ConfigError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user error (one line on stderr: bad flag or value, missing or refused
    file, run directory held by another process or by a finished run, refused resume, changed data),
    1 a runtime failure (non-finite loss, anything unexpected). --debug / VGLAW_DEBUG=1: traceback."""
    from vglaw.utils.errors import run_main
    parser = build_parser()
    debug = parser.parse_known_args(argv)[0].debug
    cfg = parse_config(argv, parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("vglaw").setLevel(logging.INFO)
    from vglaw.train.loop import run_training

    def _terminated(signum, frame):  # SIGTERM -> SystemExit, so status.json says "failed"
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminated)

    def body() -> int:
        print(f"run directory: {run_training(cfg)}")
        return 0
    return run_main(parser.prog, body, debug)
