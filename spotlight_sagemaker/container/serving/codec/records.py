"""What the codec hands over and takes back: request limits, decoded queries, results, and
the model's item ids pre-encoded for the encoders."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

_CSV_SPECIAL = re.compile(r'[",\r\n]')


@dataclass(frozen=True)
class Limits:
    """Request limits, read from the environment at call time (see docs/inference.md)."""

    default_top_n: int = 10
    max_top_n: int = 1000
    max_records: int = 200_000
    max_response_bytes: int = 6_553_500
    max_list_items: int = 10_000

    _ENV = {
        "default_top_n": "SPOTLIGHT_DEFAULT_TOP_N",
        "max_top_n": "SPOTLIGHT_MAX_TOP_N",
        "max_records": "SPOTLIGHT_MAX_RECORDS",
        "max_response_bytes": "SPOTLIGHT_MAX_RESPONSE_BYTES",
        "max_list_items": "SPOTLIGHT_MAX_LIST_ITEMS",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Read ``SPOTLIGHT_*`` overrides; a bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        values = {}
        for name, var in cls._ENV.items():
            raw = env.get(var, "").strip()
            if raw:
                if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
                    raise ValueError(f"{var} must be a positive integer, got {raw!r}")
                values[name] = int(raw)
        limits = cls(**values)
        if limits.default_top_n > limits.max_top_n:
            raise ValueError(
                f"SPOTLIGHT_DEFAULT_TOP_N ({limits.default_top_n}) exceeds "
                f"SPOTLIGHT_MAX_TOP_N ({limits.max_top_n})"
            )
        return limits


#: The list fields of a record, in the order they are validated.
LIST_FIELDS = ("history", "items", "exclude_items", "include_items")


@dataclass(frozen=True)
class RecordLists:
    """The list fields of one record (raw item ids, distinct; None where not given).

    Attributes:
        history: recommend from these items (a user vector folded in from them).
        items: rank exactly these candidates.
        exclude_items: never return these.
        include_items: return only items among these.
    """

    history: list[str] | None = None
    items: list[str] | None = None
    exclude_items: list[str] | None = None
    include_items: list[str] | None = None


@dataclass
class Queries:
    """Decoded records, in input order.

    Attributes:
        ids: raw query id of each record (a user id, or an item id for similar-items records).
        is_item: True where the record asks for items similar to ``item_id``.
        top_n: how many items each record asks for.
        exclude_seen: whether to drop the user's training items (user records only).
        numbers: line number (JSON lines, CSV) or position (JSON list) of each record.
        unit: ``"line"`` or ``"record"``: what ``numbers`` count.
        lists: the list fields of the records that give any (:class:`RecordLists`), by
            record position; a history record without a ``user_id`` has the id ``""``.
    """

    ids: list[str]
    is_item: np.ndarray
    top_n: np.ndarray
    exclude_seen: np.ndarray
    numbers: list[int]
    unit: str = "line"
    lists: dict[int, RecordLists] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def where(self, r: int) -> str:
        """``"line 3"``: where record ``r`` sits in the request, for error messages."""
        return f"{self.unit} {self.numbers[r]}"


@dataclass
class Results:
    """Top-N per record, aligned with :class:`Queries`.

    Attributes:
        queries: the decoded request.
        items: ``[records, K]`` item indices into ``vocab``, best first; only the first
            ``counts[r]`` entries of row ``r`` are meaningful.
        scores: ``[records, K]`` float scores (popularity shares for fallback rows).
        counts: number of items returned for each record.
        known: False where the query id is unknown to the model.
        fallback: True where the popularity fallback answered.
        vocab: the model's item ids, pre-encoded once (:class:`ItemVocab`).
        unknown_items: the candidates (``items``) of a record that the model does not know,
            by record position (reported after the record's ranked items).
    """

    queries: Queries
    items: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    known: np.ndarray
    fallback: np.ndarray
    vocab: ItemVocab
    unknown_items: dict[int, list[str]] = field(default_factory=dict)


class ItemVocab:
    """The model's raw item ids, pre-encoded for the CSV and JSON encoders (built once)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=str)
        self.csv_text = [_csv_field(s) for s in self.ids.tolist()]
        self.csv = np.array([s.encode() for s in self.csv_text] or [b""])
        self.json = np.array([json.dumps(s) for s in self.ids.tolist()] or [""], dtype=object)


def _csv_field(value: str) -> str:
    if _CSV_SPECIAL.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value
