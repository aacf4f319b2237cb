"""Every command of README.md's fenced bash blocks is run up to the start of its work, so that the
README's examples cannot rot (issue 9: the 02_train example asked for a flag the notebook lacked).

Absolute paths (`/weights/...`, `/data/...`) are replaced by fixtures: a fake weights file, a fake
Hugging Face folder (its vocab.txt), empty data folders. A papermill command runs its notebook's
parameter and configuration cells (the py:percent twin, through the same `resolve_parameters` and
`resolve_config`) and the path checks training makes first; a `python -m vglaw.train` command (also
under msrun) is parsed and path-checked the same way; evaluate / visualize / predict commands are
parsed by their own parsers. `make` targets are checked to exist (they run the whole workbook or
suite, far beyond a unit test).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vglaw.workbook.params import literal_assignments
from vglaw.utils.paths import repo_root

README = repo_root() / "README.md"


def readme_commands() -> list[str]:
    """Commands of the ```bash blocks: comments dropped, `\\` continuations joined."""
    text = README.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                out.append(line)
    return out


@pytest.fixture
def fixtures(tmp_path) -> Path:
    """Where the README's absolute paths are made real."""
    return tmp_path / "fixtures"


def _substitute(args: list[str], root: Path) -> list[str]:
    """`/weights/x.pkl|.ckpt` -> a fake file; `/weights/<folder>` -> a fake Hugging Face folder
    (vocab.txt); `/data/...` -> an empty folder; a trailing `...` (elided flags) is dropped."""
    out = []
    for a in args:
        if a == "...":
            continue
        flag, eq, value = a.partition("=") if a.startswith("--") and "=" in a else ("", "", a)
        if value.startswith(("/weights/", "/data/")):
            path = root / value.lstrip("/")
            if value.startswith("/weights/") and path.suffix in (".pkl", ".ckpt"):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"fake")
            else:
                path.mkdir(parents=True, exist_ok=True)
                if value.startswith("/weights/"):
                    (path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
            value = str(path)
        out.append(f"{flag}{eq}{value}" if eq else value)
    return out


def _papermill_value(text: str):
    from papermill.cli import _resolve_type
    return _resolve_type(text)


def _notebook_config(name: str, params: dict, tmp_path: Path) -> dict:
    """Run the notebook's cells up to its first numbered section (`## 1.`) with `params`."""
    twin = repo_root() / "notebooks" / f"{name}.py"
    cells = re.split(r"^# %%.*$", twin.read_text(encoding="utf-8"), flags=re.M)
    marks = re.findall(r"^# %%.*$", twin.read_text(encoding="utf-8"), flags=re.M)
    declared = None
    ns: dict = {"__file__": str(twin), "__name__": "__readme__"}
    for mark, src in zip(marks, cells[1:]):
        if "[markdown]" in mark:
            if re.search(r"^# ## 1\.", src, flags=re.M):
                break
            continue
        if declared is None:
            declared = literal_assignments(src)
            unknown = sorted(set(params) - set(declared))
            assert not unknown, f"README passes {unknown} to {name}, which has no such parameter"
            exec(compile(src, str(twin), "exec"), ns)
            ns.update(params)
            continue
        exec(compile(src.replace("# %matplotlib inline", ""), str(twin), "exec"), ns)
    return ns


def test_readme_has_the_commands_this_test_knows():
    cmds = readme_commands()
    assert any("papermill notebooks/02_train.ipynb" in c for c in cmds)
    assert any(c.startswith("msrun ") for c in cmds) and any(c.startswith("make ") for c in cmds)


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs_to_its_start(command, fixtures, tmp_path, monkeypatch, capsys):
    args = _substitute(shlex.split(command), fixtures)
    if args[0] == "make":
        makefile = (repo_root() / "Makefile").read_text()
        assert re.search(rf"^{re.escape(args[1])}:", makefile, flags=re.M), f"no make target {args[1]}"
        return
    if args[0].endswith("papermill"):
        nb = repo_root() / args[1]
        assert nb.is_file() and nb.suffix == ".ipynb"
        pairs = [args[i + 1:i + 3] for i, a in enumerate(args) if a == "-p"]
        params = {k: _papermill_value(v) for k, v in pairs}
        monkeypatch.setenv("MPLBACKEND", "Agg")
        ns = _notebook_config(nb.stem, params, tmp_path)
        if "cfg" in ns or "base" in ns:  # a training notebook: its resolved config passes training's checks
            from vglaw.train.loop import _check_paths
            cfg = ns.get("cfg") or ns["base"]
            _check_paths(cfg)
            for k in ("dataset", "preset", "device_target"):
                if k in params:
                    assert getattr(cfg, k) == params[k]
            if nb.stem == "02_train":
                assert cfg.experiment_name == f"train-{params['dataset']}-{params['preset']}-{cfg.law_type}"
        return
    if args[0] == "msrun":
        args = args[args.index("python"):]
    assert args[:2] == ["python", "-m"], command
    module, rest = args[2], args[3:]
    if module == "vglaw.train":
        from vglaw.train.cli import parse_config
        from vglaw.train.loop import _check_paths
        _check_paths(parse_config(rest))
    else:
        import importlib
        mod = importlib.import_module(module)
        if hasattr(mod, "build_parser"):
            mod.build_parser().parse_args(rest)
        else:  # a CLI that builds its parser inside main(): every flag must be one it defines
            source = Path(mod.__file__).read_text()
            for flag in (a.split("=")[0] for a in rest if a.startswith("--")):
                assert f'"{flag}"' in source, f"{module} has no flag {flag}"
