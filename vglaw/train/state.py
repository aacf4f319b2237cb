"""Run directory and resumable training state.

    <save_ckpt_dir>/<experiment_name>/
        config.json          resolved TrainConfig + model config + versions
        train_log.jsonl      one line per `log_freq` updates (step, epoch, losses, lr per group, samples/s,
                             time, train_time) and one per val evaluation (eval: "val", metrics,
                             select_metric/select_value, time, train_time, eval_s)
        status.json          {"state": "running" | "finished" | "failed" | "interrupted", ...}
        .lock                pid, host and start time of the process writing the run (flock'd)
        last.ckpt            model + AdamW moments + update counter + position (meta) -> --resume
        best.ckpt            model only (vglaw.models.checkpoint.save_model), best val `select_metric`
        metrics.json         {split: metrics of best.ckpt}
        predictions_<split>.json

One writer per run directory: `RunLock` holds an exclusive `fcntl.flock` on `.lock` from before
the first write to the end; a second process is refused at once (`RunLockedError`, exit 2). The
kernel drops the lock when its process dies, so a "running" status without a held lock is a
killed run: `read_status` reports it as "interrupted" and the next writer records it so.

Every file is replaced atomically (temporary file in the same folder + os.replace), so a
SIGKILL at any moment leaves the previous version intact. last.ckpt is only written at an
update boundary, so it never holds a half-accumulated gradient.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import socket
import time
from pathlib import Path

import numpy as np

from vglaw.utils.io import write_json_atomic
from vglaw.models.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from vglaw.train.config import ConfigError

__all__ = ["RunDir", "RunLock", "RunLockedError", "lock_holder", "save_train_state", "load_train_state", "rng_state", "set_rng_state"]

TRAIN_STATE_KIND = "vglaw-train-state/1"


class RunLockedError(ConfigError):
    """Another live process writes this run directory."""


def _read_lock(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def lock_holder(run_path) -> dict | None:
    """The lock record ({pid, host, since}) of the process writing `run_path`, None if nobody does."""
    path = Path(run_path) / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_lock(path) or {"pid": "?", "host": "?", "since": "?"}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RunLock:
    """Exclusive, non-blocking lock of one run directory (`<run>/.lock`, holding pid/host/since).

    `acquire` creates the directory if needed and raises RunLockedError naming the holder when
    another live process has it; `release` also removes a directory that holds nothing but the
    lock (a start that failed before writing anything leaves no empty run folder).
    """

    def __init__(self, run_path):
        self.path = Path(run_path)
        self.file = self.path / ".lock"
        self.fd: int | None = None
        self.created_dir = False

    def acquire(self) -> "RunLock":
        self.created_dir = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                h = _read_lock(self.file)
                self._cleanup_dir()
                raise RunLockedError(
                    f"run {self.path.name} is being written by pid {h.get('pid', '?')} on "
                    f"{h.get('host', '?')} since {h.get('since', '?')} ({self.path}); wait for it or "
                    "choose another --experiment_name") from None
            try:  # the file may have been removed by a releasing holder between open and flock
                same = os.stat(self.file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        self.fd = fd
        return self

    def _cleanup_dir(self) -> None:
        if self.created_dir:
            try:
                self.path.rmdir()
            except OSError:  # not empty (the holder wrote files) or already gone
                pass

    def release(self) -> None:
        if self.fd is None:
            return
        if {p.name for p in self.path.iterdir()} <= {".lock"}:
            self.file.unlink(missing_ok=True)
            self._cleanup_dir() if self.created_dir else None
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class RunDir:
    """Paths and atomic writers of one run directory (only rank 0 writes)."""

    def __init__(self, path, writer: bool = True):
        self.path = Path(path)
        self.writer = writer

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def last(self) -> Path:
        return self.path / "last.ckpt"

    @property
    def best(self) -> Path:
        return self.path / "best.ckpt"

    @property
    def log(self) -> Path:
        return self.path / "train_log.jsonl"

    def write_json(self, name: str, obj) -> None:
        if self.writer:
            write_json_atomic(self.path / name, obj)

    def status(self, state: str, **info) -> None:
        self.write_json("status.json", {"state": state, **info})

    def read_status(self) -> dict | None:
        """status.json; a "running" run whose writer holds no lock (killed) reads "interrupted"."""
        return read_status(self.path)

    def mark_interrupted(self) -> dict | None:
        """Record a killed run's status as "interrupted". Call while holding the lock: then any
        "running" status is a dead writer's."""
        try:
            st = json.loads((self.path / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if st.get("state") == "running" and st.get("pid") != os.getpid():
            st = dict(st, state="interrupted", stale_pid=st.get("pid"))
            self.write_json("status.json", st)
        return st

    def append_log(self, record: dict) -> None:
        if not self.writer:
            return
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def truncate_log(self, max_step: int, drop_eval_at: int | None = None) -> None:
        """Keep the log lines of updates <= max_step (after a resume; drops a torn last line).

        drop_eval_at: also drop the val-evaluation rows of this update (an evaluation to redo).
        """
        if not self.writer or not self.log.exists():
            return
        keep = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("step", 0) <= max_step and not (rec.get("eval") and rec.get("step") == drop_eval_at):
                keep.append(line)
        tmp = self.log.with_name(self.log.name + ".tmp")
        tmp.write_text("".join(s + "\n" for s in keep), encoding="utf-8")
        os.replace(tmp, self.log)


def read_status(run_path) -> dict | None:
    """status.json of a run; "running" without a live writer reads as "interrupted" (stale_pid)."""
    run_path = Path(run_path)
    try:
        st = json.loads((run_path / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if st.get("state") == "running" and lock_holder(run_path) is None and not _alive_here(st):
        st = dict(st, state="interrupted", stale_pid=st.get("pid"))
    return st


def _alive_here(status: dict) -> bool:
    """A run written before `.lock` existed: its pid still alive on this host."""
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or (host is not None and host != socket.gethostname()):
        return False
    if host is None:  # old status files have no host and no lock: the pid is all there is
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return pid != os.getpid()
    return False


def rng_state() -> dict:
    """Python, NumPy and MindSpore global RNG states (JSON-able)."""
    import mindspore as ms
    py = random.getstate()
    npy = np.random.get_state()
    return {"python": [py[0], list(py[1]), py[2]],
            "numpy": [npy[0], npy[1].tolist(), int(npy[2]), int(npy[3]), float(npy[4])],
            "mindspore": ms.get_rng_state().asnumpy().tolist()}


def set_rng_state(state: dict) -> None:
    import mindspore as ms
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    ms.set_rng_state(ms.Tensor(np.asarray(state["mindspore"], dtype=np.uint8)))


def save_train_state(path, model, opt_state: dict, meta: dict) -> Path:
    """Atomically write model parameters + optimiser state + `meta` (position, best, RNG)."""
    import dataclasses
    params = {name: p for name, p in model.parameters_and_names()}
    clash = set(params) & set(opt_state)
    if clash:
        raise ValueError(f"optimiser state names clash with model parameters: {sorted(clash)[:5]}")
    params.update(opt_state)
    meta = dict(meta, kind=TRAIN_STATE_KIND, config=json.loads(json.dumps(dataclasses.asdict(model.config))))
    return save_checkpoint(path, params, meta)


def load_train_state(path, model, opt_state: dict) -> dict:
    """Load `save_train_state`'s file into model and optimiser state; returns its meta.

    Refuses (CheckpointError) a file of another kind, another model config, or missing entries.
    """
    import dataclasses
    from mindspore import Tensor
    arrays, meta = read_checkpoint(path)
    if meta.get("kind") != TRAIN_STATE_KIND:
        raise CheckpointError(f"{path} is not a training state written by vglaw.train (kind "
                              f"{meta.get('kind')!r}); --resume needs the run's last.ckpt")
    ours = json.loads(json.dumps(dataclasses.asdict(model.config)))
    if meta.get("config") != ours:
        diff = sorted(k for k in set(ours) | set(meta.get("config", {}))
                      if ours.get(k) != meta.get("config", {}).get(k))
        raise CheckpointError(f"{path} was written by a run with another model config (fields {diff}); "
                              "resume with the same flags")
    targets = {name: p for name, p in model.parameters_and_names()}
    targets.update(opt_state)
    missing = sorted(set(targets) - set(arrays))
    if missing:
        raise CheckpointError(f"{path} lacks {len(missing)} entries, e.g. {missing[:5]}")
    for name, p in targets.items():
        a = arrays[name]
        if tuple(a.shape) != tuple(p.shape):
            raise CheckpointError(f"{path}: {name} has shape {a.shape}, expected {tuple(p.shape)}")
        p.set_data(Tensor(a, dtype=p.dtype))
    return meta
