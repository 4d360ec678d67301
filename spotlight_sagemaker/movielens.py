"""MovieLens 100k for the examples: fetch (checksummed, cached) or read a folder, then prepare.

The example's data is MovieLens 100k with ratings above 2 kept as implicit feedback: a CSV with
the header ``user_id,item_id`` and 82,520 rows, in ``u.data`` order. Titles come from ``u.item``
(Latin-1). Either point at a folder that holds the original files (``u.data``, ``u.item``) or
let :func:`fetch_ml100k` download the archive from GroupLens once, check its SHA-256 and cache it.

Example:
    >>> folder = fetch_ml100k("../shared/data/ml-100k")   # or fetch_ml100k() to download
    >>> prepare_interactions(folder, "ml-100k-gt2.csv")
    82520
"""

from __future__ import annotations

import csv
import hashlib
import os
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from .core.errors import DataError

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
#: SHA-256 of GroupLens' ml-100k.zip (as recorded by tensorflow/datasets' url_checksums).
ML100K_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
RATINGS_FILE = "u.data"
ITEMS_FILE = "u.item"
CACHE_ENV = "SPOTLIGHT_CACHE_DIR"


class ChecksumError(DataError):
    """A downloaded file whose SHA-256 is not the expected one (it is deleted, never used)."""


def default_cache_dir() -> Path:
    """``$SPOTLIGHT_CACHE_DIR``, else ``$XDG_CACHE_HOME/spotlight-sagemaker`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "spotlight-sagemaker"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, *, source: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the SHA-256 ``expected``.

    Args:
        path: the file to check.
        expected: the hex SHA-256 it must have.
        source: the name to report (e.g. the URL it came from; default ``path``).
    """
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"SHA-256 mismatch: expected {expected.lower()}, got {actual} (a corrupted or "
            "changed download; delete it and retry, or pass a folder with the original files)",
            source=source or str(path),
        )


def download_ml100k(
    cache_dir: str | os.PathLike | None = None,
    *,
    url: str = ML100K_URL,
    sha256: str = ML100K_SHA256,
    opener: Callable[[str], object] | None = None,
) -> Path:
    """Download, verify and unpack ``ml-100k.zip`` into ``cache_dir``; reuse a verified cache.

    The archive is written under a temporary name, its SHA-256 checked, then renamed; a
    mismatch deletes it and raises :class:`ChecksumError`, so a bad download is never cached.

    Args:
        cache_dir: where ``ml-100k.zip`` and the ``ml-100k/`` folder live
            (default :func:`default_cache_dir`).
        url: the archive's URL (``file://`` works too).
        sha256: its expected SHA-256.
        opener: a function ``url -> readable response`` (default ``urllib.request.urlopen``).

    Returns:
        The ``ml-100k`` folder with ``u.data`` and ``u.item``.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / "ml-100k"
    archive = cache / "ml-100k.zip"
    stamp = folder / ".sha256"
    if _has_files(folder) and stamp.is_file() and stamp.read_text().strip() == sha256.lower():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    if not (archive.is_file() and sha256_file(archive) == sha256.lower()):
        _download(url, archive, sha256, opener or urllib.request.urlopen)
    _unpack(archive, cache)
    stamp.write_text(sha256.lower() + "\n")
    return folder


def fetch_ml100k(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """The MovieLens 100k folder: ``data_dir`` if given, else the cache (downloading if allowed).

    Raises:
        DataError: ``data_dir`` lacks ``u.data``/``u.item``, or nothing is cached and
            ``download`` is false.
    """
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not _has_files(folder) and _has_files(folder / "ml-100k"):
            folder = folder / "ml-100k"
        if not _has_files(folder):
            raise DataError(
                f"not a MovieLens 100k folder: it needs {RATINGS_FILE} and {ITEMS_FILE}",
                source=str(folder),
            )
        return folder
    cached = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "ml-100k"
    if not download:
        if _has_files(cached):
            return cached
        raise DataError("MovieLens 100k is not cached and download=False", source=str(cached))
    return download_ml100k(cache_dir)


def read_ratings(folder: str | os.PathLike) -> list[tuple[str, str, int]]:
    """``(user_id, item_id, rating)`` rows of ``u.data``, in file order."""
    path = Path(folder) / RATINGS_FILE
    rows: list[tuple[str, str, int]] = []
    try:
        with open(path, encoding="ascii") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 4:
                    raise DataError(
                        f"expected 4 tab-separated fields, found {len(parts)}",
                        source=str(path),
                        line=n,
                    )
                try:
                    rating = int(parts[2])
                except ValueError:
                    raise DataError(
                        f"rating {parts[2]!r} is not an integer", source=str(path), line=n
                    ) from None
                rows.append((parts[0], parts[1], rating))
    except FileNotFoundError:
        raise DataError("no such file", source=str(path)) from None
    except UnicodeDecodeError:
        raise DataError("not an ASCII ratings file", source=str(path)) from None
    if not rows:
        raise DataError("no ratings", source=str(path))
    return rows


def prepare_interactions(
    folder: str | os.PathLike, out_csv: str | os.PathLike, *, min_rating: int = 3
) -> int:
    """Write ratings ``>= min_rating`` (default: above 2) as ``user_id,item_id`` CSV.

    The file is written under a temporary name and renamed. Returns the number of rows.
    """
    rows = [(u, i) for u, i, r in read_ratings(folder) if r >= min_rating]
    out = Path(out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["user_id", "item_id"])
            writer.writerows(rows)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(rows)


def load_titles(folder: str | os.PathLike) -> dict[str, str]:
    """``item_id -> title`` from ``u.item`` (Latin-1, ``|``-separated)."""
    path = Path(folder) / ITEMS_FILE
    titles: dict[str, str] = {}
    try:
        with open(path, encoding="latin-1") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                parts = line.split("|")
                if len(parts) < 2:
                    raise DataError("expected item_id|title|...", source=str(path), line=n)
                titles[parts[0]] = parts[1]
    except FileNotFoundError:
        raise DataError("no such file", source=str(path)) from None
    return titles


def user_history(
    folder: str | os.PathLike, user_id: str | int, n: int = 10
) -> list[tuple[str, str, int]]:
    """A user's ``n`` best-rated ``(item_id, title, rating)``: rating, then item id order."""
    titles = load_titles(folder)
    mine = [(i, r) for u, i, r in read_ratings(folder) if u == str(user_id)]
    mine.sort(key=lambda t: (-t[1], int(t[0]) if t[0].isdigit() else t[0]))
    return [(i, titles.get(i, ""), r) for i, r in mine[:n]]


def _has_files(folder: Path) -> bool:
    return (folder / RATINGS_FILE).is_file() and (folder / ITEMS_FILE).is_file()


def _download(url: str, archive: Path, sha256: str, opener: Callable[[str], object]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".ml-100k.", suffix=".zip.part", dir=archive.parent)
    try:
        with os.fdopen(fd, "wb") as out, opener(url) as response:  # type: ignore[attr-defined]
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        verify_sha256(tmp, sha256, source=url)
        os.replace(tmp, archive)
    except OSError as exc:
        raise DataError(f"download failed: {exc}", source=url) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def _unpack(archive: Path, cache: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (cache / member).resolve()
                if not target.is_relative_to(cache.resolve()):
                    raise DataError(
                        f"archive member {member!r} escapes the cache folder", source=str(archive)
                    )
            zf.extractall(cache)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a zip archive ({exc})", source=str(archive)) from None
    if not _has_files(cache / "ml-100k"):
        raise DataError("archive holds no ml-100k/u.data and u.item", source=str(archive))
