"""Parameter cells for the workbook's notebooks: validated, typed, and loud about typos.

Each notebook's first code cell (tagged `parameters`) holds typed literals; papermill injects a cell
of overrides after it (`-p dataset refcoco+`). Papermill only *warns* about a name the notebook does
not declare, so a misspelt `-p datset refcoco` would silently train on the default. The cell after
the parameters calls `resolve_parameters(globals())`, which reads the kernel's input history,
finds the declared parameters and every override, and fails on unknown names or wrong types.
"""

from __future__ import annotations

import ast
import difflib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

__all__ = ["NotebookParameterError", "resolve_parameters", "literal_assignments"]


class NotebookParameterError(ValueError):
    """An injected parameter is unknown or has the wrong type."""


def literal_assignments(source: str) -> dict[str, Any] | None:
    """`{name: value}` if `source` is only `name = <literal>` lines (comments allowed), else None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        else:
            return None
        try:
            out[target] = ast.literal_eval(value)
        except ValueError:
            return None
    return out or None


def _declared_from_history(history: list[str]) -> tuple[dict[str, Any], set[str]]:
    """(defaults of the parameters cell, names assigned by later literal-only cells)."""
    declared: dict[str, Any] | None = None
    overridden: set[str] = set()
    for source in history:
        found = literal_assignments(source)
        if found is None:
            continue
        if declared is None:
            declared = found
        else:
            overridden |= set(found)
    if declared is None:
        raise NotebookParameterError("No parameters cell found: the first code cell of a workbook notebook "
                                     "must hold only `name = <literal>` lines (tagged `parameters`).")
    return declared, overridden


def _declared_from_percent_script(path: Path) -> dict[str, Any]:
    """The `# %% tags=["parameters"]` cell of a jupytext py:percent twin run as a plain script."""
    lines = path.read_text(encoding="utf-8").splitlines()
    cell: list[str] | None = None
    for line in lines:
        if line.startswith("# %%"):
            if cell is not None:
                break
            if "parameters" in line:
                cell = []
            continue
        if cell is not None:
            cell.append(line)
    found = literal_assignments("\n".join(cell or []))
    if not found:
        raise NotebookParameterError(f"{path}: no `# %% tags=[\"parameters\"]` cell of literal assignments.")
    return found


def _check_type(name: str, value: Any, default: Any) -> Any:
    if default is None:  # a None default accepts any value
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise NotebookParameterError(
            f"Parameter {name!r} must be {type(default).__name__} (default {default!r}); got "
            f"{type(value).__name__} {value!r}.")
    return value


def resolve_parameters(namespace: Mapping[str, Any]) -> SimpleNamespace:
    """Validate the notebook's parameters; call as `P = resolve_parameters(globals())`.

    Raises NotebookParameterError naming an unknown (e.g. misspelt) parameter and listing the
    allowed ones, or naming a parameter whose type differs from its default's.
    """
    history = namespace.get("In")
    if isinstance(history, list):  # IPython kernel (JupyterLab, papermill); the last entry is this cell
        declared, overridden = _declared_from_history([str(s) for s in history[:-1]])
    elif namespace.get("__file__"):  # the py:percent twin run as a plain script
        declared, overridden = _declared_from_percent_script(Path(namespace["__file__"])), set()
    else:
        raise NotebookParameterError("resolve_parameters needs an IPython kernel or a py:percent script.")
    unknown = sorted(overridden - set(declared))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, declared, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise NotebookParameterError(
            f"Unknown notebook parameter(s): {', '.join(hints)}. Allowed parameters: "
            f"{', '.join(sorted(declared))}.")
    values = {name: _check_type(name, namespace.get(name, default), default) for name, default in declared.items()}
    return SimpleNamespace(**values)
