"""Where the embedded local mode reads and writes: URIs to local paths, and its root folder.

Jobs read ``file://`` URIs and plain paths. The local session's default bucket is a stand-in
for the root folder: ``s3://spotlight-local/<key>`` means ``<root>/<key>``, so SDK defaults
such as a transformer's ``s3://<default bucket>/<job name>`` output land on this machine. Any
other ``s3://`` URI is an error (the embedded mode never touches AWS).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

ROOT_ENV = "SPOTLIGHT_LOCAL_DIR"
DEFAULT_ROOT = "spotlight-local"
#: The local session's default bucket: a name for the root folder, never an AWS bucket.
LOCAL_BUCKET = "spotlight-local"


class LocalPathError(ValueError):
    """A URI or path the embedded local mode cannot use (names the argument and the value)."""


def default_root() -> Path:
    """``$SPOTLIGHT_LOCAL_DIR``, else ``./spotlight-local`` (relative to the working directory)."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT).expanduser().resolve()


def to_path(uri: str, root: Path, what: str) -> Path:
    """The local path of ``uri``: ``file://...``, ``s3://spotlight-local/...`` or a plain path.

    Raises:
        LocalPathError: an empty value or an ``s3://`` URI of another bucket.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise LocalPathError(f"{what} must be a file:// URI or a local path, got {uri!r}")
    if uri.startswith("file://"):
        return Path(uri[len("file://") :]).expanduser().resolve()
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        if bucket == LOCAL_BUCKET:
            return (root / key).resolve()
        raise LocalPathError(
            f"{what}={uri!r}: the embedded local mode reads and writes local files only; "
            "pass a local path or file:// URI (copy the data from S3 first), run the job on "
            "AWS with an ml.* instance type, or set SPOTLIGHT_LOCAL_MODE=docker for "
            "SageMaker's Docker local mode"
        )
    return Path(uri).expanduser().resolve()


def to_uri(path: Path) -> str:
    """``file://`` URI of an absolute path."""
    return "file://" + str(Path(path).resolve())


def list_files(path: Path, what: str) -> list[Path]:
    """The files at ``path``: the file itself, or every non-hidden file below a folder, sorted.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        LocalPathError: a folder with no files.
    """
    if not path.exists():
        raise FileNotFoundError(f"{what}: {str(path)!r} does not exist")
    if path.is_file():
        return [path]
    files = sorted(
        f
        for f in path.rglob("*")
        if f.is_file() and not any(p.startswith(".") for p in f.relative_to(path).parts)
    )
    if not files:
        raise LocalPathError(f"{what}: folder {str(path)!r} holds no files")
    return files


def copy_files(source: Path, dest: Path, what: str) -> int:
    """Copy a file (into ``dest``) or a folder's files (keeping sub-paths); returns the count."""
    files = list_files(source, what)
    dest.mkdir(parents=True, exist_ok=True)
    base = source if source.is_dir() else source.parent
    for f in files:
        target = dest / f.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    return len(files)


def tar_folder(folder: Path, target: Path) -> None:
    """``tar.gz`` the contents of ``folder`` (entries at the archive root), written atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for entry in sorted(folder.iterdir()):
                tar.add(entry, arcname=entry.name)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def extract_tar(archive: Path, dest: Path) -> None:
    """Extract a ``tar.gz`` into ``dest``, refusing members that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
            return
        root = dest.resolve()
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if not target.is_relative_to(root) or member.issym() or member.islnk():
                raise ValueError(f"{archive}: unsafe archive member {member.name!r}")
        tar.extractall(dest)


def bucket_root(bucket: str | None, root: Path, what: str) -> Path:
    """``root`` for the local bucket (or no bucket); any other bucket is refused.

    Raises:
        LocalPathError: a bucket other than :data:`LOCAL_BUCKET`.
    """
    if bucket in (None, "", LOCAL_BUCKET):
        return root
    raise LocalPathError(
        f"{what}: s3://{bucket}/ is not on this machine; the embedded local mode keeps every "
        f"byte local and calls no AWS service: use the session's default bucket "
        f"({LOCAL_BUCKET}, which means {root}) or local paths, or run on AWS with an ml.* "
        "instance type"
    )


def key_path(root: Path, key: str, what: str) -> Path:
    """``root/key``, refusing a key that would leave ``root``."""
    target = (root / key.lstrip("/")).resolve()
    if not target.is_relative_to(root.resolve()):
        raise LocalPathError(f"{what}: key {key!r} leaves the local root {root}")
    return target


def keys_under(root: Path, prefix: str) -> list[str]:
    """The keys (root-relative POSIX paths of files) that start with ``prefix``, sorted, as
    S3's ListObjects would list them."""
    if not root.is_dir():
        return []
    prefix = prefix.lstrip("/")
    keys = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(k for k in keys if k.startswith(prefix))
