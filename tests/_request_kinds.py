"""One request of every kind (candidates, filters, history) and what the core says it must
answer: shared by the tests that send them through a real model server."""

from __future__ import annotations

import json

from spotlight_sagemaker.core import ImplicitFactorizationModel

JSONL, CSV = "application/jsonlines", "text/csv"

#: (name, body, Content-Type)
REQUESTS = [
    ("candidates", b'{"user_id": "685", "items": ["50", "zz", "172", "1"]}', JSONL),
    (
        "filters",
        b'{"user_id": "685", "top_n": 3, "exclude_items": ["313"], '
        b'"include_items": ["313", "50", "1", "2", "3"]}',
        JSONL,
    ),
    ("history", b"history,top_n\n50|172|181,4", CSV),
    (
        "mixed",
        b'{"user_id": "685", "top_n": 2}\n{"user_id": "v1", "history": ["50"], "top_n": 2}',
        JSONL,
    ),
]


def expected_rows(core: ImplicitFactorizationModel, name: str) -> list[tuple[str, str]]:
    """(query id, item id) of each CSV row the request must get, in order."""
    if name == "candidates":
        rec = core.recommend("685", items=["50", "zz", "172", "1"])
        return [("685", i) for i in [*rec.item_ids, *rec.unknown_items]]
    if name == "filters":
        rec = core.recommend(
            "685", 3, exclude_items=["313"], include_items=["313", "50", "1", "2", "3"]
        )
        return [("685", i) for i in rec.item_ids]
    if name == "history":
        return [("", i) for i in core.recommend_from_history(["50", "172", "181"], 4).item_ids]
    assert name == "mixed"
    return [("685", i) for i in core.recommend("685", 2).item_ids] + [
        ("v1", i) for i in core.recommend_from_history(["50"], 2).item_ids
    ]


def csv_pairs(body: bytes) -> list[tuple[str, str]]:
    return [tuple(line.split(",")[:2]) for line in body.decode().splitlines()]  # type: ignore[misc]


__all__ = ["CSV", "JSONL", "REQUESTS", "csv_pairs", "expected_rows", "json"]
