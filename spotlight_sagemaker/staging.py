"""Build the source directory shipped to the containers.

SageMaker unpacks ``sourcedir.tar.gz`` into ``/opt/ml/code`` (training) and repacks the same
files into ``model.tar.gz:code/`` (serving); only that directory is on the import path there. It
therefore holds the two entry points at its root and this package beside them::

    train.py
    inference.py
    spotlight_sagemaker/   (the package, without _entry_points/ and without caches)

A user's own ``source_dir`` folder is staged together with these: its files are copied in
first-level name by name and win over ours (their ``train.py`` replaces ours; a
``spotlight_sagemaker/`` folder of theirs replaces the whole installed package), and whatever of
``train.py``, ``inference.py`` and ``spotlight_sagemaker/`` the folder lacks is added, so that
the archive can always import the package. An ``s3://`` source_dir (a ``sourcedir.tar.gz``) is
used as given.

The folder is staged in the system temp folder under a name derived from its content
(``spotlight-sourcedir-<sha256>``, files with fixed times and modes), so the same code gets the
same path and the same tarball in every process: the SDK's pipeline steps hash that path, and
equal definitions are what makes step caching hit. Staging a folder at all matters because the
SDK tars directories as they are
(``__pycache__`` included) and refuses source directories under paths such as ``/root`` or
``~/.config``, where an installed package may live. No ``requirements.txt`` is written: the
images already have torch and numpy, and a pip install at start fails under network isolation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

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


def _user_files(folder: Path) -> list[Path]:
    """Files of a user's source folder, relative to it, without caches and junk."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(p in _SKIP_DIRS or p.endswith(".egg-info") for p in rel.parts):
            continue
        if path.is_file() and _wanted(path):
            out.append(rel)
    return out


def _fingerprint(*trees: tuple[Path, list[Path]]) -> tuple:
    def stat(p: Path) -> tuple:
        s = p.stat()
        return (str(p), s.st_size, s.st_mtime_ns)

    return tuple((str(root), *(stat(root / f) for f in files)) for root, files in trees)


#: Staged folders per use: the SDK writes its repack scripts into a model's source folder in
#: pipelines, so a model never shares the folder a training step hashes.
PURPOSES = {"training": "spotlight-sourcedir", "serving": "spotlight-servingdir"}


def source_dir(
    user_dir: str | os.PathLike[str] | None = None,
    required: tuple[str, ...] = ("train.py", "inference.py"),
    purpose: str = "training",
) -> str:
    """A staged source directory with the entry points and the package (built once per change).

    The directory is named after its content and kept after exit (another process may ship
    it); this process re-reads the files only when their sizes or times change.

    Args:
        user_dir: a local folder of the user's own code to ship as well. Its files are copied
            as they are (caches and editor leftovers skipped); an entry at its top level
            replaces ours of the same name (``train.py``, ``inference.py``, or the whole
            ``spotlight_sagemaker/`` package), and ours are added where it has none.
        required: entry points that must be present (in ``user_dir`` or installed).
        purpose: ``"training"`` (an estimator's) or ``"serving"`` (a model's): each has its
            own folder.

    Returns:
        The absolute path of the staged directory.

    Raises:
        FileNotFoundError: ``user_dir`` is not a folder, or a required entry point is in
            neither ``user_dir`` nor the installation.
    """
    user: Path | None = None
    user_files: list[Path] = []
    if user_dir is not None:
        user = Path(user_dir).expanduser().resolve()
        if not user.is_dir():
            raise FileNotFoundError(
                f"source_dir {str(user_dir)!r} is not a folder: give a local folder of code or "
                "an s3://.../sourcedir.tar.gz"
            )
        user_files = _user_files(user)
    theirs = {rel.parts[0] for rel in user_files}
    pkg, ep = package_dir(), entry_points_dir()
    pkg_files = [] if PACKAGE in theirs else _package_files(pkg)
    ep_files = [f for f in _entry_point_files(ep) if f.name not in theirs]
    missing = [name for name in required if name not in theirs and Path(name) not in ep_files]
    if missing:
        raise FileNotFoundError(
            f"entry point(s) {missing} not found in {ep}: the spotlight_sagemaker installation "
            "is incomplete (reinstall the package)"
        )
    trees = [(pkg, pkg_files), (ep, ep_files)] + ([(user, user_files)] if user else [])
    key = (purpose, *_fingerprint(*trees))
    with _lock:
        staged = _staged.get(key)
        if staged is not None and staged.is_dir():
            return str(staged)
        # what goes where: the user's files last, so they win for their names
        plan: dict[Path, Path] = {rel: ep / rel for rel in ep_files}
        plan.update({PACKAGE / rel: pkg / rel for rel in pkg_files})
        if user is not None:
            plan.update({rel: user / rel for rel in user_files})
            if PACKAGE in theirs and user not in _staged.values():  # not a folder of ours
                logger.info(
                    "source_dir %s has its own %s/: it is shipped instead of the installed package",
                    user,
                    PACKAGE,
                )
        staged = _materialize(plan, PURPOSES[purpose])
        _staged[key] = staged
        logger.debug("staged %d files for the containers in %s", len(plan), staged)
        return str(staged)


def _content_digest(plan: dict[Path, Path]) -> str:
    h = hashlib.sha256()
    for rel in sorted(plan):
        h.update(rel.as_posix().encode() + b"\0")
        h.update(hashlib.sha256(plan[rel].read_bytes()).digest())
    return h.hexdigest()[:24]


#: Every file's modification time in a staged folder, so that its tarball is the same bytes
#: whatever the installation's file times (2020-01-01T00:00:00Z).
_STAGED_MTIME = 1_577_836_800


def _materialize(plan: dict[Path, Path], prefix: str) -> Path:
    """The staged folder for ``plan`` (destination -> source file): named after the content,
    in the system temp folder, so the same code gets the same path in every process (the
    SDK's pipeline step hashes the path and the files; equal definitions then cache). Built
    beside it and renamed into place, so a folder of that name is always complete; kept after
    exit, because another process may be shipping it."""
    final = Path(tempfile.gettempdir()).resolve() / f"{prefix}-{_content_digest(plan)}"
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=final.parent))
    try:
        for rel, source in plan.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            os.chmod(target, 0o644)
            os.utime(target, (_STAGED_MTIME, _STAGED_MTIME))
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:  # another process staged the same content first
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def resolve(
    source_dir_arg: Any, entry_point: str, git_config: Any = None, purpose: str = "training"
) -> Any:
    """What an estimator or model passes to the SDK as ``source_dir``.

    ``None`` is the staged entry points and package; a local folder is staged together with
    them (:func:`source_dir`); an ``s3://`` URI (a ``sourcedir.tar.gz``), a pipeline variable
    or a folder inside a ``git_config`` repository is used as given: the package is then
    shipped only if that code holds it.

    Raises:
        FileNotFoundError: a local ``source_dir`` that is not a folder.
        ValueError: ``entry_point`` is in neither the user's folder nor the shipped entry points.
    """
    if source_dir_arg is None:
        return source_dir(purpose=purpose)
    if (
        git_config
        or not isinstance(source_dir_arg, (str, os.PathLike))
        or str(source_dir_arg).startswith("s3://")
    ):
        return source_dir_arg
    here = Path(source_dir_arg).expanduser().resolve()
    with _lock:
        ours = any(k[0] == purpose and v == here for k, v in _staged.items())
    staged = str(source_dir_arg) if ours else source_dir(source_dir_arg, purpose=purpose)
    if not (Path(staged) / entry_point).is_file():
        raise ValueError(
            f"entry_point {entry_point!r} is not in source_dir {str(source_dir_arg)!r} "
            "(nor one of the shipped entry points train.py, inference.py)"
        )
    return staged
