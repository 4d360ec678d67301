"""MovieLens 100k preparation from the shared folder, and the download's checksum handling."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from spotlight_sagemaker import movielens
from spotlight_sagemaker.core import DataError


def _pairs(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["user_id", "item_id"]
        return [tuple(r) for r in reader]


def test_prepare_from_folder_matches_the_seed_file(tmp_path, ml100k_dir, ml100k_csv):
    folder = movielens.fetch_ml100k(ml100k_dir)
    out = tmp_path / "gt2.csv"
    assert movielens.prepare_interactions(folder, out) == 82_520
    assert _pairs(out) == _pairs(ml100k_csv)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_parent_folder_is_accepted(data_dir, ml100k_dir):
    assert movielens.fetch_ml100k(data_dir) == ml100k_dir


def test_titles_are_latin1_and_history_is_best_rated_first(ml100k_dir):
    titles = movielens.load_titles(ml100k_dir)
    assert len(titles) >= 1681  # GroupLens lists 1,682 (267 is "unknown")
    assert titles["1"] == "Toy Story (1995)"
    assert any("\xe9" in t for t in titles.values())  # e.g. "Misérables": decoded as Latin-1
    history = movielens.user_history(ml100k_dir, 302, n=5)
    assert len(history) == 5
    ratings = [r for _, _, r in history]
    assert ratings == sorted(ratings, reverse=True)
    assert all(titles[i] == t for i, t, _ in history)


def test_not_a_movielens_folder(tmp_path):
    with pytest.raises(DataError, match="u.data"):
        movielens.fetch_ml100k(tmp_path)


def test_malformed_ratings_name_the_line(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t5\t0\n1\t3\tfive\t0\n")
    (tmp_path / "u.item").write_text("2|A|x\n")
    with pytest.raises(DataError, match=r"u.data, line 2: rating 'five'"):
        movielens.prepare_interactions(tmp_path, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def _fake_archive() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t4\t881250949\n2\t10\t1\t881250950\n")
        zf.writestr("ml-100k/u.item", "10|Ten (1999)|x\n")
    return buf.getvalue()


def _open_file_url(url: str):
    return open(url.removeprefix("file://"), "rb")  # noqa: SIM115 - the caller closes it


def test_download_verifies_the_checksum_and_caches(tmp_path):
    archive = _fake_archive()
    source = tmp_path / "ml-100k.zip"
    source.write_bytes(archive)
    good = hashlib.sha256(archive).hexdigest()
    cache = tmp_path / "cache"
    calls = []

    def opener(url):
        calls.append(url)
        return open(url.removeprefix("file://"), "rb")

    folder = movielens.download_ml100k(cache, url=f"file://{source}", sha256=good, opener=opener)
    assert folder == cache / "ml-100k"
    assert movielens.prepare_interactions(folder, tmp_path / "x.csv") == 1
    again = movielens.download_ml100k(cache, url=f"file://{source}", sha256=good, opener=opener)
    assert again == folder and len(calls) == 1  # verified cache: no second download


def test_checksum_mismatch_is_a_clear_error_and_nothing_is_cached(tmp_path):
    source = tmp_path / "ml-100k.zip"
    source.write_bytes(_fake_archive())
    cache = tmp_path / "cache"
    with pytest.raises(movielens.ChecksumError, match="SHA-256 mismatch: expected 0+, got"):
        movielens.download_ml100k(
            cache, url=f"file://{source}", sha256="0" * 64, opener=_open_file_url
        )
    assert not (cache / "ml-100k.zip").exists()
    assert not (cache / "ml-100k").exists()
    assert not list(cache.glob(".*part"))


def test_verify_sha256_of_a_local_file(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"spotlight")
    movielens.verify_sha256(f, hashlib.sha256(b"spotlight").hexdigest())
    with pytest.raises(movielens.ChecksumError, match="f.bin"):
        movielens.verify_sha256(f, hashlib.sha256(b"other").hexdigest())


def test_the_pinned_checksum_is_grouplens_ml100k():
    assert movielens.ML100K_URL.endswith("/ml-100k.zip")
    assert len(movielens.ML100K_SHA256) == 64 and int(movielens.ML100K_SHA256, 16) >= 0


def test_no_cache_and_no_download_is_an_error(tmp_path):
    with pytest.raises(DataError, match="download=False"):
        movielens.fetch_ml100k(cache_dir=tmp_path, download=False)
