"""A restricted unpickler: pickles are programs, so we run only the harmless part of them.

`refs(<splitBy>).p` files are Python-2 pickles of plain lists/dicts (DESIGN §4.1); detectron2 weight
files are pickles of NumPy arrays (DESIGN §3.1). Anything else a pickle asks for (a function to call,
a class to build) is refused before it runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["UnsafePickleError", "safe_load", "safe_loads"]

# The globals a NumPy array pickle needs, under NumPy 1.x and 2.x module names.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Protocol 5 rebuilds an array from its out-of-band buffer.
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    # Protocol <= 2 stores an array's raw bytes as `_codecs.encode(text, "latin1")`: a pure function.
    ("_codecs", "encode"),
}
# Plain containers that some pickles (protocol 0-2 from Python 2) reference as globals.
_PLAIN_GLOBALS = {
    ("collections", "OrderedDict"),
    ("__builtin__", "set"), ("builtins", "set"),
    ("__builtin__", "frozenset"), ("builtins", "frozenset"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global that is not on the allow-list (it could run code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, *, allow_numpy: bool, source: str):
        # latin1 decodes Python-2 `str` byte strings one to one (the refer pickles are py2).
        super().__init__(file, encoding="latin1")
        self._allowed = _PLAIN_GLOBALS | (_NUMPY_GLOBALS if allow_numpy else set())
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        allowed = "plain containers and scalars" + (" and NumPy arrays" if self._allowed & _NUMPY_GLOBALS else "")
        raise UnsafePickleError(
            f"{self._source}: refused to unpickle global {module}.{name} (a pickle that references "
            f"it could run code). Only {allowed} are allowed; is this really the file you meant?")


def safe_loads(data: bytes, *, allow_numpy: bool = False, source: str = "<bytes>") -> Any:
    """Unpickle `data`, allowing only plain containers/scalars (and NumPy arrays if asked)."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), allow_numpy=allow_numpy, source=source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or corrupt files raise many different types
        raise pickle.UnpicklingError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def safe_load(path: str | Path, *, allow_numpy: bool = False) -> Any:
    """Read a pickle file through the restricted unpickler."""
    path = Path(path)
    return safe_loads(path.read_bytes(), allow_numpy=allow_numpy, source=str(path))
