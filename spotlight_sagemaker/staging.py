"""Build the source directory shipped to the containers.

SageMaker unpacks ``sourcedir.tar.gz`` into ``/opt/ml/code`` (training) and repacks the same
files into ``model.tar.gz:code/`` (serving); only that directory is on the import path there. It
therefore holds the two entry points at its root and this package beside them::

    train.py
    inference.py
    spotlight_sagemaker/   (the package, without _entry_points/ and without caches)

The folder is staged in a fresh temporary directory: the SDK tars directories as they are
(``__pycache__`` included) and refuses source directories under paths such as ``/root`` or
``~/.config``, where an installed package may live. No ``requirements.txt`` is written: the
images already have torch and numpy, and a pip install at start fails under network isolation.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE = "spotlight_sagemaker"
ENTRY_POINTS_PACKAGE = "_entry_points"

#: Directory names never shipped.
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints"}
#: File suffixes never shipped (bytecode, native build leftovers, editor backups).
_SKIP_SUFFIXES = (".pyc", ".pyo", ".so.tmp", ".swp", ".swo", ".orig", ".rej", "~")
_SKIP_NAMES = {".DS_Store", "Thumbs.db"}

_lock = threading.Lock()
_staged: dict[tuple, Path] = {}


def package_dir() -> Path:
    """The installed ``spotlight_sagemaker`` package directory."""
    import spotlight_sagemaker

    return Path(spotlight_sagemaker.__file__).resolve().parent


def entry_points_dir() -> Path:
    """The folder of ``train.py`` and ``inference.py`` (``spotlight_sagemaker._entry_points``).

    Raises:
        FileNotFoundError: the package is installed without its entry points.
    """
    import importlib

    missing = (
        f"{PACKAGE}.{ENTRY_POINTS_PACKAGE} (train.py, inference.py) is not installed: "
        "reinstall spotlight-sagemaker"
    )
    try:
        module = importlib.import_module(f"{PACKAGE}.{ENTRY_POINTS_PACKAGE}")
    except ImportError as err:
        raise FileNotFoundError(missing) from err
    if module.__file__ is None:  # a namespace package (no __init__.py): no entry points
        raise FileNotFoundError(missing)
    return Path(module.__file__).resolve().parent


def _wanted(path: Path) -> bool:
    return not (
        path.name in _SKIP_NAMES
        or path.name.endswith(_SKIP_SUFFIXES)
        or path.name.startswith(".#")
        or path.name.endswith(".egg-info")
    )


def _package_files(root: Path) -> list[Path]:
    """Files of the package, relative to ``root``, without caches, junk and the entry points."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ENTRY_POINTS_PACKAGE or any(p in _SKIP_DIRS for p in rel.parts):
            continue
        if any(p.endswith(".egg-info") for p in rel.parts):
            continue
        if path.is_file() and _wanted(path):
            out.append(rel)
    return out


def _entry_point_files(folder: Path) -> list[Path]:
    return sorted(
        p.relative_to(folder)
        for p in folder.iterdir()
        if p.is_file() and p.suffix == ".py" and p.name != "__init__.py" and _wanted(p)
    )


def _fingerprint(pkg: Path, pkg_files: list[Path], ep: Path, ep_files: list[Path]) -> tuple:
    def stat(p: Path) -> tuple:
        s = p.stat()
        return (str(p), s.st_size, s.st_mtime_ns)

    return tuple(stat(pkg / f) for f in pkg_files) + tuple(stat(ep / f) for f in ep_files)


def source_dir(required: tuple[str, ...] = ("train.py", "inference.py")) -> str:
    """A staged source directory with the entry points and the package (built once per change).

    The directory is reused while the package's files are unchanged and removed when the
    process exits.

    Args:
        required: entry points that must be present.

    Returns:
        The absolute path of the staged directory.

    Raises:
        FileNotFoundError: a required entry point is not installed.
    """
    pkg, ep = package_dir(), entry_points_dir()
    pkg_files, ep_files = _package_files(pkg), _entry_point_files(ep)
    missing = [name for name in required if Path(name) not in ep_files]
    if missing:
        raise FileNotFoundError(
            f"entry point(s) {missing} not found in {ep}: the spotlight_sagemaker installation "
            "is incomplete (reinstall the package)"
        )
    key = _fingerprint(pkg, pkg_files, ep, ep_files)
    with _lock:
        staged = _staged.get(key)
        if staged is not None and staged.is_dir():
            return str(staged)
        staged = Path(tempfile.mkdtemp(prefix="spotlight-sourcedir-"))
        for rel in ep_files:
            shutil.copy2(ep / rel, staged / rel)
        for rel in pkg_files:
            target = staged / PACKAGE / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pkg / rel, target)
        if not _staged:
            atexit.register(_cleanup)
        _staged[key] = staged
        logger.debug("staged %d files for the containers in %s", len(pkg_files), staged)
        return str(staged)


def _cleanup() -> None:
    with _lock:
        for path in _staged.values():
            shutil.rmtree(path, ignore_errors=True)
        _staged.clear()
