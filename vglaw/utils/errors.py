"""How the CLIs and notebooks report errors: the project's known error classes as one line.

A user error (bad value, missing or refused file, occupied run directory, changed data) is one line
on stderr and exit code 2, like argparse's own messages; a runtime failure (non-finite loss, a bug)
is one line and exit code 1. The traceback is printed only with `--debug` or `VGLAW_DEBUG=1`.
Notebooks show the same line as the failing cell's error (`install_notebook_handler`).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

__all__ = ["UsageExit", "USER_ERROR", "RUNTIME_ERROR", "user_error_classes", "debug_enabled", "exit_code",
           "one_line", "run_main", "install_notebook_handler"]

USER_ERROR, RUNTIME_ERROR = 2, 1
_HINT = " (traceback: --debug or VGLAW_DEBUG=1)"


class UsageExit(SystemExit):
    """A CLI's own check failed: `<prog>: error: <message>` is printed, exit code 2; str() is the message."""

    def __init__(self, prog: str, message: str):
        print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
        super().__init__(USER_ERROR)
        self.message = message

    def __str__(self) -> str:
        return self.message


def user_error_classes() -> tuple[type, ...]:
    """Exceptions a user causes and can fix from the message alone (exit code 2)."""
    from vglaw.data.refer import DataNotFoundError
    from vglaw.models.checkpoint import CheckpointError
    from vglaw.workbook.params import NotebookParameterError
    from vglaw.utils.pickle_safe import UnsafePickleError
    from vglaw.train.config import ConfigError
    # FileNotFoundError: a path the user gave (or a cache not built yet); DataNotFoundError is one
    classes = [ConfigError, FileNotFoundError, DataNotFoundError, CheckpointError, UnsafePickleError,
               NotebookParameterError]
    try:
        from vglaw.train.pretrain import PretrainedBackboneError
        classes.append(PretrainedBackboneError)
    except ImportError:  # pragma: no cover - optional module
        pass
    from vglaw.data.cache import DataChangedError, ImageCheckError
    classes += [DataChangedError, ImageCheckError]
    return tuple(classes)


def debug_enabled(flag: bool = False) -> bool:
    return bool(flag) or os.environ.get("VGLAW_DEBUG", "") not in ("", "0")


def _notebook_error(exc: BaseException) -> tuple[str, str] | None:
    """(ename, evalue) of a failed notebook cell (papermill's PapermillExecutionError), else None."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    return (str(ename), str(evalue)) if ename else None


def exit_code(exc: BaseException) -> int:
    nb = _notebook_error(exc)
    if nb is not None:  # the cell's exception class decides, by name
        return USER_ERROR if nb[0] in {c.__name__ for c in user_error_classes()} else RUNTIME_ERROR
    return USER_ERROR if isinstance(exc, user_error_classes()) else RUNTIME_ERROR


def one_line(exc: BaseException) -> str:
    """The message on one line; exceptions outside the known classes keep their type name; a
    failed notebook cell gives its own exception (`<cell error>: <message>`)."""
    nb = _notebook_error(exc)
    if nb is not None:
        cell = getattr(exc, "exec_count", None)
        return f"notebook cell {cell} raised {nb[0]}: {' '.join(nb[1].split())}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, user_error_classes()):
        text = f"{type(exc).__name__}: {text}"
    return text


def run_main(prog: str, body: Callable[[], int], debug: bool = False) -> int:
    """Call `body()`; any exception becomes `<prog>: error: <one line>` and its exit code."""
    try:
        return body()
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - reported, with its code
        if debug_enabled(debug):
            traceback.print_exc()
        hint = "" if debug_enabled(debug) else _HINT
        print(f"{prog}: error: {one_line(exc)}{hint if exit_code(exc) == RUNTIME_ERROR else ''}",
              file=sys.stderr, flush=True)
        return exit_code(exc)


def install_notebook_handler(shell=None) -> bool:
    """Show known errors as one line in a notebook cell (IPython custom exception handler).

    Returns False outside IPython. With VGLAW_DEBUG=1 the full traceback is kept.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or debug_enabled():
        return False

    def handler(self, etype, value, tb, tb_offset=None):
        stb = [f"{etype.__name__}: {one_line(value)}"]
        self._showtraceback(etype, value, stb)  # the kernel's error message (papermill reports it)
        return stb

    shell.set_custom_exc(user_error_classes(), handler)
    return True

