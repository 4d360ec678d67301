"""Implicit-feedback interactions: reading, validating and indexing (user, item) pairs.

Sources: a CSV file, a folder of CSV files (``.csv`` and ``.csv.gz``), a pandas DataFrame, or
arrays. The header must name ``user_id`` and ``item_id``; ``weight`` (or ``rating``) and
``timestamp`` are optional. Every problem is a :class:`DataError` naming the file, line or column.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .idmap import IdMap

USER_COLUMN = "user_id"
ITEM_COLUMN = "item_id"
WEIGHT_COLUMNS = ("weight", "rating")
TIMESTAMP_COLUMN = "timestamp"
#: the longest id accepted (characters): ids are kept in fixed-width arrays as wide as the
#: longest one, so a single 10,000-character id made MovieLens 100k training take 9.7 GB
MAX_ID_LENGTH = 256
DUPLICATE_POLICIES = ("error", "first", "sum")
CSV_SUFFIXES = (".csv", ".csv.gz")


@dataclass(frozen=True)
class Interactions:
    """Indexed (user, item) pairs with optional weights and timestamps.

    Attributes:
        user_ids: int64 user indices into ``user_map``.
        item_ids: int64 item indices into ``item_map``.
        weights: float32 weights or ``None``.
        timestamps: float64 timestamps or ``None``.
        user_map: the raw user ids, in index order.
        item_map: the raw item ids, in index order.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_map: IdMap
    item_map: IdMap
    weights: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    _csr: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        if len(self.item_ids) != n:
            raise DataError("user_ids and item_ids have different lengths")
        for name in ("weights", "timestamps"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise DataError(f"{name} has {len(arr)} values for {n} interactions")

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def num_users(self) -> int:
        return len(self.user_map)

    @property
    def num_items(self) -> int:
        return len(self.item_map)

    def __repr__(self) -> str:
        return (
            f"<Interactions: {len(self):,} interactions, {self.num_users:,} users, "
            f"{self.num_items:,} items>"
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        user_ids: Sequence[Any] | np.ndarray,
        item_ids: Sequence[Any] | np.ndarray,
        weights: Sequence[float] | np.ndarray | None = None,
        timestamps: Sequence[float] | np.ndarray | None = None,
        *,
        user_map: IdMap | None = None,
        item_map: IdMap | None = None,
        duplicates: str = "error",
        source: str = "arrays",
        _locate: Callable[[int], str] | None = None,
    ) -> Interactions:
        """Build from raw ids (any type; compared as strings).

        Args:
            user_ids: raw user ids, one per interaction.
            item_ids: raw item ids, one per interaction.
            weights: optional positive weights (ratings, counts).
            timestamps: optional numeric timestamps.
            user_map: use this vocabulary instead of building one; unknown ids are an error.
            item_map: as ``user_map``, for items.
            duplicates: what to do with a repeated (user, item) pair: ``"error"`` (default),
                ``"first"`` (keep the first) or ``"sum"`` (keep one, summing weights).
            source: a name for error messages.
            _locate: maps a row number to a "file, line N" description (used by from_csv).
        """
        where = _locate or (lambda n: f"row {n}")
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
        users = _as_id_strings(user_ids, USER_COLUMN, source)
        items = _as_id_strings(item_ids, ITEM_COLUMN, source)
        if len(users) != len(items):
            raise DataError(f"{len(users)} user ids but {len(items)} item ids", source=source)
        if len(users) == 0:
            raise DataError("no interactions (empty input)", source=source)
        w = _as_numeric(weights, "weight", source, np.float32)
        if w is not None and (not np.all(np.isfinite(w)) or np.any(w < 0)):
            bad = int(np.flatnonzero(~np.isfinite(w) | (w < 0))[0])
            raise DataError(f"weight must be finite and >= 0 ({where(bad)})", source=source)
        t = _as_numeric(timestamps, TIMESTAMP_COLUMN, source, np.float64)
        umap = user_map if user_map is not None else IdMap(users)
        imap = item_map if item_map is not None else IdMap(items)
        uidx = _index(umap, users, USER_COLUMN, source, where)
        iidx = _index(imap, items, ITEM_COLUMN, source, where)
        uidx, iidx, w, t = _dedupe(uidx, iidx, w, t, imap, duplicates, source, users, items, where)
        return cls(uidx, iidx, umap, imap, w, t)

    @classmethod
    def from_indices(
        cls,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        num_users: int | None = None,
        num_items: int | None = None,
        weights: np.ndarray | None = None,
    ) -> Interactions:
        """Build from integer indices; raw ids are the indices as strings ("0", "1", ...).

        The fast path for large synthetic or pre-indexed data: no string handling per row.
        Pairs must be unique (not checked, for speed).
        """
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        if u.ndim != 1 or i.shape != u.shape or len(u) == 0:
            raise DataError("user_idx and item_idx must be non-empty 1-d arrays of equal length")
        if u.min() < 0 or i.min() < 0:
            raise DataError("indices must be >= 0")
        nu = int(u.max()) + 1 if num_users is None else int(num_users)
        ni = int(i.max()) + 1 if num_items is None else int(num_items)
        if u.max() >= nu or i.max() >= ni:
            raise DataError("an index is >= num_users/num_items")
        w = None if weights is None else np.asarray(weights, dtype=np.float32)
        return cls(u, i, IdMap.range(nu), IdMap.range(ni), w)

    @classmethod
    def from_dataframe(
        cls,
        df: Any,
        *,
        user_col: str = USER_COLUMN,
        item_col: str = ITEM_COLUMN,
        weight_col: str | None = None,
        timestamp_col: str | None = None,
        **kwargs: Any,
    ) -> Interactions:
        """Build from a pandas DataFrame; weight/timestamp columns are found by name if present."""
        cols = {str(c).strip().lower(): c for c in df.columns}
        for want in (user_col, item_col):
            if want.lower() not in cols:
                raise DataError(
                    f"missing column; the columns are {list(df.columns)}",
                    source="DataFrame",
                    column=want,
                )
        if weight_col is None:
            weight_col = next((cols[c] for c in WEIGHT_COLUMNS if c in cols), None)
        if timestamp_col is None:
            timestamp_col = cols.get(TIMESTAMP_COLUMN)
        return cls.from_arrays(
            df[cols[user_col.lower()]].to_numpy(),
            df[cols[item_col.lower()]].to_numpy(),
            None if weight_col is None else df[weight_col].to_numpy(),
            None if timestamp_col is None else df[timestamp_col].to_numpy(),
            source="DataFrame",
            **kwargs,
        )

    @classmethod
    def from_csv(cls, path: str | os.PathLike, **kwargs: Any) -> Interactions:
        """Read one CSV file or every ``.csv``/``.csv.gz`` file of a folder (sorted by name)."""
        files = list_csv_files(path)
        users: list[str] = []
        items: list[str] = []
        weights: list[float] = []
        stamps: list[float] = []
        has_w = has_t = None
        line_of: list[int] = []
        file_starts: list[int] = []
        for f in files:
            u, i, lines, w, t = _read_csv_file(f)
            file_starts.append(len(users))
            line_of += lines
            if has_w is None:
                has_w, has_t = w is not None, t is not None
            elif (w is not None) != has_w or (t is not None) != has_t:
                raise DataError(
                    "columns differ from the first file's (weight/timestamp)", source=str(f)
                )
            users += u
            items += i
            if w is not None:
                weights += w
            if t is not None:
                stamps += t

        def locate(row: int) -> str:
            f = int(np.searchsorted(file_starts, row, side="right")) - 1
            return f"{files[f]} line {line_of[row]}"

        return cls.from_arrays(
            users,
            items,
            weights if has_w else None,
            stamps if has_t else None,
            source=str(path),
            _locate=locate,
            **kwargs,
        )

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write ``user_id,item_id`` rows (raw ids, in row order) to ``path``, as
        :meth:`from_csv` reads them (parent folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["user_id", "item_id"])
            writer.writerows(
                zip(
                    self.user_map.ids[self.user_ids].tolist(),
                    self.item_map.ids[self.item_ids].tolist(),
                    strict=True,
                )
            )

    # ------------------------------------------------------------------ derived views
    def subset(self, rows: np.ndarray) -> Interactions:
        """The interactions at ``rows``, with the same vocabularies."""
        return Interactions(
            self.user_ids[rows],
            self.item_ids[rows],
            self.user_map,
            self.item_map,
            None if self.weights is None else self.weights[rows],
            None if self.timestamps is None else self.timestamps[rows],
        )

    def tocsr(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, indices) of the user x item matrix; indices sorted within each row."""
        if "csr" not in self._csr:
            if self.num_users * self.num_items < 1 << 62:  # one int64 key: 1.7x faster
                key = self.user_ids.astype(np.int64) * self.num_items + self.item_ids
                order = np.argsort(key, kind="stable")  # the order lexsort gives, ties alike
            else:
                order = np.lexsort((self.item_ids, self.user_ids))
            counts = np.bincount(self.user_ids, minlength=self.num_users)
            indptr = np.zeros(self.num_users + 1, dtype=np.int64)
            np.cumsum(counts, out=indptr[1:])
            self._csr["csr"] = (indptr, self.item_ids[order].astype(np.int64))
            self._csr["order"] = order
        return self._csr["csr"]

    def csr_order(self) -> np.ndarray:
        """The permutation of the interactions that :meth:`tocsr` lists them in (by user, then
        item): ``tocsr()[1] == item_ids[csr_order()]``."""
        self.tocsr()
        return self._csr["order"]

    def item_counts(self) -> np.ndarray:
        """Number of interactions per item index."""
        return np.bincount(self.item_ids, minlength=self.num_items).astype(np.int64)


# ---------------------------------------------------------------------- helpers
def list_csv_files(path: str | os.PathLike) -> list[Path]:
    """The CSV files at ``path`` (a file, or a folder searched recursively)."""
    p = Path(path)
    if not p.exists():
        raise DataError("no such file or folder", source=str(p))
    if p.is_file():
        return [p]
    candidates = [
        f
        for f in p.rglob("*")
        if f.name.lower().endswith(CSV_SUFFIXES) and not f.name.startswith(".")
    ]
    broken = sorted(f for f in candidates if f.is_symlink() and not f.exists())
    if broken:
        raise DataError("a broken symbolic link (its target does not exist)", source=str(broken[0]))
    files = sorted(f for f in candidates if f.is_file())
    if not files:
        raise DataError("folder holds no .csv or .csv.gz files", source=str(p))
    return files


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - returned to caller


def _float(value: str, source: str, line: int, column: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataError(
            f"value {value!r} is not a number", source=source, line=line, column=column
        ) from None


def _read_csv_file(
    path: Path,
) -> tuple[list[str], list[str], list[int], list[float] | None, list[float] | None]:
    src = str(path)
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(
                    "file is empty (expected a header user_id,item_id)", source=src
                ) from None
            cols = [h.strip().lower() for h in header]
            for want in (USER_COLUMN, ITEM_COLUMN):
                if want not in cols:
                    raise DataError(
                        f"missing column in the header line {header!r}",
                        source=src,
                        line=1,
                        column=want,
                    )
            ui, ii = cols.index(USER_COLUMN), cols.index(ITEM_COLUMN)
            wi = next((cols.index(c) for c in WEIGHT_COLUMNS if c in cols), None)
            ti = cols.index(TIMESTAMP_COLUMN) if TIMESTAMP_COLUMN in cols else None
            width = len(cols)
            users: list[str] = []
            items: list[str] = []
            lines: list[int] = []
            weights: list[float] | None = [] if wi is not None else None
            stamps: list[float] | None = [] if ti is not None else None
            end = reader.line_num
            for row in reader:
                start, end = end + 1, reader.line_num  # a quoted field may span lines
                if len(row) != width:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue  # blank line
                    if end > start and any("\n" in f or "\r" in f for f in row):
                        raise DataError(
                            "a quoted field starts on this line and does not end on it "
                            "(an unterminated quote?)",
                            source=src,
                            line=start,
                        )
                    raise DataError(
                        f"expected {width} fields, found {len(row)}",
                        source=src,
                        line=reader.line_num,
                    )
                u, i = row[ui].strip(), row[ii].strip()
                if not u or not i:
                    raise DataError(
                        "blank id",
                        source=src,
                        line=reader.line_num,
                        column=USER_COLUMN if not u else ITEM_COLUMN,
                    )
                if len(u) > MAX_ID_LENGTH or len(i) > MAX_ID_LENGTH:
                    raise DataError(
                        f"an id of {max(len(u), len(i))} characters; ids may have at most "
                        f"{MAX_ID_LENGTH}",
                        source=src,
                        line=start,
                        column=USER_COLUMN if len(u) > MAX_ID_LENGTH else ITEM_COLUMN,
                    )
                if "\0" in u or "\0" in i or "\n" in u or "\n" in i:
                    raise DataError(
                        "an id holding a NUL byte or a line break",
                        source=src,
                        line=start,
                        column=USER_COLUMN if "\0" in u or "\n" in u else ITEM_COLUMN,
                    )
                users.append(u)
                items.append(i)
                lines.append(reader.line_num)
                if weights is not None and wi is not None:
                    weights.append(_float(row[wi], src, reader.line_num, cols[wi]))
                if stamps is not None and ti is not None:
                    stamps.append(_float(row[ti], src, reader.line_num, TIMESTAMP_COLUMN))
    except UnicodeDecodeError as exc:
        raise DataError(f"not a UTF-8 text CSV file ({exc.reason})", source=src) from None
    except (csv.Error, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot be read as CSV: {exc}", source=src) from None
    if not users:
        raise DataError("file has a header but no rows", source=src)
    return users, items, lines, weights, stamps


def _as_id_strings(values: Any, column: str, source: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"ids must be one-dimensional, got shape {arr.shape}", source=source)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DataError(
                f"NaN id at row {int(np.flatnonzero(bad)[0])}", source=source, column=column
            )
        if np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
    if arr.dtype.kind == "O":
        for n, v in enumerate(arr):
            if v is None or (isinstance(v, float) and v != v):
                raise DataError(f"missing (NaN/None) id at row {n}", source=source, column=column)
    if arr.dtype.kind == "O":
        long = next((n for n, v in enumerate(arr) if len(str(v)) > MAX_ID_LENGTH), None)
        if long is not None:
            raise DataError(
                f"an id of more than {MAX_ID_LENGTH} characters at row {long}",
                source=source,
                column=column,
            )
    out = arr.astype(str)
    if out.dtype.kind == "U" and out.dtype.itemsize // 4 > MAX_ID_LENGTH:
        long = int(np.flatnonzero(np.char.str_len(out) > MAX_ID_LENGTH)[0])
        raise DataError(
            f"an id of more than {MAX_ID_LENGTH} characters at row {long}",
            source=source,
            column=column,
        )
    if out.dtype.kind == "U":
        width = out.dtype.itemsize // 4
        codes = out.view(np.uint32).reshape(len(out), width) if width else None
        # a NUL before a string's last character (numpy drops trailing NULs)
        nul = (
            ((codes == 0) & (np.arange(width) < np.char.str_len(out)[:, None])).any(axis=1)
            if codes is not None and len(out)
            else np.zeros(len(out), dtype=bool)
        )
        if nul.any():
            raise DataError(
                f"an id holding a NUL byte at row {int(np.flatnonzero(nul)[0])}",
                source=source,
                column=column,
            )
        out = np.char.strip(out)
        blank = out == ""
        if blank.any():
            raise DataError(
                f"blank id at row {int(np.flatnonzero(blank)[0])}", source=source, column=column
            )
    return out


def _as_numeric(values: Any, column: str, source: str, dtype: type) -> np.ndarray | None:
    if values is None:
        return None
    try:
        arr: np.ndarray = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError):
        raise DataError("values are not numbers", source=source, column=column) from None
    if arr.ndim != 1:
        raise DataError(
            f"must be one-dimensional, got shape {arr.shape}", source=source, column=column
        )
    return arr


def _index(idmap: IdMap, raws: np.ndarray, column: str, source: str, where) -> np.ndarray:
    idx = idmap.lookup(raws)
    if (idx < 0).any():
        n = int(np.flatnonzero(idx < 0)[0])
        raise DataError(
            f"id {str(raws[n])!r} is not in the given vocabulary ({where(n)})",
            source=source,
            column=column,
        )
    return idx


def _dedupe(uidx, iidx, w, t, imap, policy, source, users, items, where):
    key = uidx * max(len(imap), 1) + iidx
    _, first, inverse, counts = np.unique(
        key, return_index=True, return_inverse=True, return_counts=True
    )
    if len(first) == len(key):
        return uidx, iidx, w, t
    if policy == "error":
        dup_rows = np.flatnonzero(counts[inverse] > 1)
        a, b = dup_rows[0], dup_rows[1:][inverse[dup_rows[1:]] == inverse[dup_rows[0]]][0]
        raise DataError(
            f"duplicate interaction user_id={str(users[a])!r}, item_id={str(items[a])!r} at "
            f"{where(int(a))} and {where(int(b))} ({len(key) - len(first)} duplicates in all); "
            "pass duplicates='first' or 'sum' to merge them",
            source=source,
        )
    keep = np.sort(first)
    if w is not None and policy == "sum":
        summed = np.bincount(inverse, weights=w).astype(np.float32)
        w = summed[inverse[keep]]
    elif w is not None:
        w = w[keep]
    return uidx[keep], iidx[keep], w, None if t is None else t[keep]
