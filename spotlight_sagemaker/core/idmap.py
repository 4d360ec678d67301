"""Mapping between the opaque string ids users send and contiguous integer indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _sort_key_numeric(ids: Sequence[str]) -> bool:
    return all(s.lstrip("-").isdigit() for s in ids)


class IdMap:
    """An ordered, immutable vocabulary of raw string ids.

    Ids are sorted ascending: numerically when every id is an integer literal (so ``"2"`` comes
    before ``"10"``, matching MovieLens order), lexicographically otherwise.
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str], *, presorted: bool = False) -> None:
        unique = list(dict.fromkeys(str(i) for i in ids))
        if not presorted:
            if _sort_key_numeric(unique):
                unique.sort(key=int)
            else:
                unique.sort()
        self._ids = np.asarray(unique, dtype=str) if unique else np.empty(0, dtype=str)
        self._index = {s: n for n, s in enumerate(unique)}

    @property
    def ids(self) -> np.ndarray:
        """The raw ids, position = index."""
        return self._ids

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, raw: object) -> bool:
        return str(raw) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:  # pragma: no cover - IdMaps are not used as dict keys
        return hash(tuple(self._ids.tolist()))

    def __repr__(self) -> str:
        return f"IdMap({len(self)} ids)"

    def get(self, raw: object, default: int = -1) -> int:
        """Index of ``raw`` or ``default`` when unknown."""
        return self._index.get(str(raw), default)

    def lookup(self, raws: Iterable[object]) -> np.ndarray:
        """Indices of many raw ids (``-1`` for unknown ones) as an int64 array."""
        get = self._index.get
        return np.fromiter((get(str(r), -1) for r in raws), dtype=np.int64)

    def to_list(self) -> list[str]:
        return self._ids.tolist()

    @classmethod
    def range(cls, n: int) -> IdMap:
        """The ids "0" .. str(n - 1), in that order."""
        out = cls.__new__(cls)
        out._ids = np.arange(n).astype(str)
        out._index = {s: k for k, s in enumerate(out._ids.tolist())}
        return out

    @classmethod
    def from_list(cls, ids: Sequence[str]) -> IdMap:
        """Rebuild a map in exactly the given order (used when loading an artifact)."""
        out = cls(ids, presorted=True)
        if len(out) != len(ids):
            raise ValueError("id list contains duplicates")
        return out
