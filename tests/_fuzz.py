"""Seeded request fuzzing for the serving handler: valid payloads of every supported shape,
mutated at the byte and at the value level, sent with every kind of Content-Type and Accept.

Used by tests/test_fuzz.py (a few hundred cases through the handler functions, in CI) and by
bench/fuzz_serving.py (thousands, through the real model server).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

BASES: list[tuple[bytes, str]] = [
    (
        b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}',
        "application/jsonlines",
    ),
    (b'[{"user_id": "1", "top_n": 3}, {"item_id": "50", "top_n": 2}]', "application/json"),
    (b'{"user_id": "13", "top_n": 4, "exclude_seen": false}', "application/json"),
    (b"user_id,top_n\n685,5\n302,3\n", "text/csv"),
    (b"685,5\n302\n", "text/csv"),
    (b"item_id,top_n\n50,4\n", "text/csv"),
    (b'{"user_id": "nobody", "top_n": 2}\n{"item_id": "1"}\n', "application/jsonlines"),
    (b'{"user_id": "685", "items": ["50", "172", "zz"]}', "application/jsonlines"),
    (
        b'{"user_id": "685", "top_n": 3, "exclude_items": ["313"], "include_items": ["50", "1"]}',
        "application/jsonlines",
    ),
    (
        b'[{"history": ["50", "172"], "top_n": 3}, {"user_id": "v", "history": [1]}]',
        "application/json",
    ),
    (b"user_id,history,items\nv,50|172,1|2|3\n685,,50|1\n", "text/csv"),
]
CONTENT_TYPES = [
    "application/jsonlines",
    "application/json",
    "text/csv",
    "application/json; charset=utf-8",
    "text/csv; charset=latin-1",
    "application/x-npy",
    "text/plain",
    "",
    "application/jsonlines; q=0.5; foo",
    "TEXT/CSV",
    "application/json;;;",
]
ACCEPTS = [
    "text/csv",
    "application/jsonlines",
    "application/json",
    "*/*",
    "",
    None,
    "application/xml",
    "text/csv;q=0.1, application/json;q=0.9",
    "text/*",
    ";;",
]
SPECIAL = [
    b"\xff",
    b"\x00",
    b'"',
    b"{",
    b"}",
    b"[",
    b"]",
    b"\n",
    b"\r\n",
    b",",
    b"\\",
    b"\xc3",
    b"\xe2\x80\xa8",
    b"\t",
    b" ",
]
VALUES = [
    "0",
    "-1",
    "1e309",
    "NaN",
    "Infinity",
    "true",
    "null",
    "[]",
    "{}",
    '"' + "9" * 5000 + '"',
    "9" * 5000,
    '"x' + "y" * 300 + '"',
    "1.5",
    '"\\u0000"',
    '"\\ud800"',
    '""',
]


def payloads(seed: int, count: int) -> Iterator[tuple[bytes, str | None, str | None]]:
    """``count`` (body, content_type, accept) cases, the same for the same seed."""
    rng = random.Random(seed)
    for _ in range(count):
        body, ctype = rng.choice(BASES)
        kind = rng.randrange(10)
        if kind == 0:  # flip bytes
            b = bytearray(body)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            body = bytes(b)
        elif kind == 1:  # truncate
            body = body[: rng.randrange(len(body) + 1)]
        elif kind == 2:  # insert special bytes
            at = rng.randrange(len(body) + 1)
            body = body[:at] + b"".join(rng.choices(SPECIAL, k=rng.randint(1, 5))) + body[at:]
        elif kind == 3:  # replace a value
            text = body.decode()
            for old in ('"685"', '"5"', "5", "3", '"1"', "685", "false", '"50"'):
                if old in text:
                    text = text.replace(old, rng.choice(VALUES), 1)
                    break
            body = text.encode()
        elif kind == 4:  # deep nesting
            depth = rng.choice([10, 1000, 100_000])
            body = b"[" * depth + body + b"]" * depth
        elif kind == 5:  # huge field or many records
            if rng.random() < 0.5:
                body = b'{"user_id": "' + b"u" * rng.choice([1000, 200_000]) + b'"}'
            else:
                body = body + (b"\n" + body.split(b"\n")[-1]) * rng.choice([10, 5000])
        elif kind == 6:  # a random JSON value
            value = rng.choice([1, "x", None, [1, 2], {"top_n": 3}, {"user_id": ["a"]}, 1.5])
            body = json.dumps(value).encode()
        elif kind == 7:  # random bytes
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        # 8, 9: the body unchanged, only the headers vary
        if rng.random() < 0.3:
            ctype = rng.choice(CONTENT_TYPES)
        accept = rng.choice(ACCEPTS) if rng.random() < 0.4 else "text/csv"
        yield body, ctype, accept
