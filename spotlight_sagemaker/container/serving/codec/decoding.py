"""Request bodies (JSON lines, JSON, CSV) into :class:`~.records.Queries`."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import numpy as np

from ....contract.content_types import CSV, JSON, JSONLINES, media_type
from .errors import BadRequestError, PayloadTooLargeError, UnsupportedContentTypeError
from .records import LIST_FIELDS, Limits, Queries, RecordLists

_RECORD_KEYS = frozenset(("user_id", "item_id", "top_n", "exclude_seen", *LIST_FIELDS))
#: CSV cells of list fields hold ids separated by this (as Amazon Personalize's CSVs do)
LIST_SEPARATOR = "|"
_USER_KEYS = frozenset(("user_id", "top_n", "exclude_seen"))
_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def decode(
    body: str | bytes | bytearray | memoryview,
    content_type: str | None,
    limits: Limits | None = None,
) -> Queries:
    """Parse a request body of ``content_type`` into :class:`Queries`.

    Raises:
        UnsupportedContentTypeError: the type (or its charset) is not supported.
        BadRequestError: the payload or a record is malformed; the message names the record.
        PayloadTooLargeError: more than ``limits.max_records`` records.
    """
    limits = limits or Limits.from_env()
    mtype, params = media_type(content_type)
    decoder = DECODERS.get(mtype)
    if decoder is None:
        raise UnsupportedContentTypeError(
            f"unsupported Content-Type {content_type!r}; supported: {', '.join(DECODERS)}"
        )
    charset = params.get("charset", "utf-8")
    if charset not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise UnsupportedContentTypeError(f"unsupported charset {charset!r}; send UTF-8")
    text = _text(body)
    if mtype != JSON:  # one record per line: count before parsing any
        _check_line_count(text, limits.max_records, header=mtype == CSV)
    numbers, records, unit = decoder(text)
    if not records:
        raise BadRequestError("empty payload: the request holds no records")
    if len(records) > limits.max_records:
        raise PayloadTooLargeError(
            f"{len(records)} records in one request; the limit is {limits.max_records} "
            "(SPOTLIGHT_MAX_RECORDS): send smaller requests (lower MaxPayloadInMB)"
        )
    return _queries(numbers, records, unit, limits)


def _check_line_count(text: str, max_records: int, header: bool) -> None:
    """413 when a line-per-record body holds more non-blank lines than ``max_records`` (plus a
    CSV header), found before any record is parsed; lines are counted only near the limit."""
    most = max_records + header
    if text.count("\n") < most:
        return
    lines = sum(1 for line in text.splitlines() if line and not line.isspace())
    if lines > most:
        raise PayloadTooLargeError(
            f"{lines - header} or more records in one request; the limit is {max_records} "
            "(SPOTLIGHT_MAX_RECORDS): send smaller requests (lower MaxPayloadInMB)"
        )


def _text(body: str | bytes | bytearray | memoryview) -> str:
    if isinstance(body, str):
        return body.removeprefix("\ufeff")
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            return bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise BadRequestError(f"body is not valid UTF-8 (byte {e.start})") from None
    raise BadRequestError(f"request body of type {type(body).__name__} cannot be decoded")


def _nonblank(text: str) -> tuple[list[str], list[int]]:
    lines, numbers = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if line and not line.isspace():
            lines.append(line)
            numbers.append(n)
    return lines, numbers


Decoded = tuple[list[int], list[Any], str]  # record numbers, parsed records, "line"/"record"


def _decode_jsonlines(text: str) -> Decoded:
    body = text.strip()
    if not body:
        return [], [], "line"
    if "\r" not in body and "\n\n" not in body:  # fast path: one parse for the whole request
        try:
            values = json.loads("[" + body.replace("\n", ",") + "]")
        except (ValueError, RecursionError):
            values = None
        if values is not None and len(values) == body.count("\n") + 1:
            first = text[: len(text) - len(text.lstrip())].count("\n") + 1
            return list(range(first, first + len(values))), values, "line"
    lines, numbers = _nonblank(text)
    values = []
    for n, line in zip(numbers, lines, strict=True):
        try:
            values.append(json.loads(line))
        except ValueError as e:
            raise BadRequestError(f"line {n}: invalid JSON ({e})") from None
        except RecursionError:
            raise BadRequestError(f"line {n}: JSON nested too deeply") from None
    return numbers, values, "line"


def _decode_json(text: str) -> Decoded:
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadRequestError("invalid JSON: nested too deeply") from None
    except ValueError as e:
        if not text.strip():
            return [], [], "record"
        if "Extra data" in str(e):
            return _decode_jsonlines(text)
        raise BadRequestError(f"invalid JSON ({e})") from None
    if isinstance(value, list):
        return list(range(1, len(value) + 1)), value, "record"
    if isinstance(value, dict):
        return [1], [value], "record"
    raise BadRequestError(
        f"expected a JSON object, a list of objects or JSON lines, got {type(value).__name__}"
    )


def _decode_csv(text: str) -> Decoded:
    lines, numbers = _nonblank(text)
    reader = csv.reader(lines, strict=True)
    try:
        rows = list(reader)
    except csv.Error as e:
        n = numbers[min(max(reader.line_num, 1), len(numbers)) - 1]
        raise BadRequestError(f"line {n}: malformed CSV ({e})") from None
    if len(rows) != len(lines):  # a quoted field ran on past the end of its line
        n = next((n for n, line in zip(numbers, lines, strict=True) if line.count('"') % 2), 1)
        raise BadRequestError(f"line {n}: a quoted CSV field does not end on its line")
    columns = ["user_id", "top_n"]
    if rows and rows[0] and rows[0][0].strip() in _RECORD_KEYS:
        columns = [c.strip() for c in rows[0]]
        unknown = [c for c in columns if c not in _RECORD_KEYS]
        if unknown or len(set(columns)) != len(columns):
            raise BadRequestError(
                f"line {numbers[0]}: bad CSV header {columns}; allowed columns: "
                f"{', '.join(sorted(_RECORD_KEYS))}"
            )
        rows, numbers = rows[1:], numbers[1:]
    values = []
    listed = [c for c in columns if c in LIST_FIELDS]
    for n, row in zip(numbers, rows, strict=True):
        if len(row) > len(columns):
            raise BadRequestError(
                f"line {n}: {len(row)} fields, expected at most {len(columns)} "
                f"({','.join(columns)})"
            )
        fields = zip(columns, (v.strip() for v in row), strict=False)
        record: dict[str, Any] = {c: v for c, v in fields if v}
        for name in listed:  # a list cell: ids joined with "|" (an empty cell: not given)
            if name in record:
                record[name] = [v.strip() for v in record[name].split(LIST_SEPARATOR)]
        values.append(record)
    return numbers, values, "line"


def _queries(numbers: list[int], records: list[Any], unit: str, limits: Limits) -> Queries:
    """Validate records: a bulk path for uniform user records, else one record at a time."""
    fast = _uniform_user_records(numbers, records, unit, limits)
    return fast if fast is not None else _each_record(numbers, records, unit, limits)


def _uniform_user_records(
    numbers: list[int], records: list[Any], unit: str, limits: Limits
) -> Queries | None:
    """Bulk validation (C-level maps and sets) when every record is a dict with the same
    user-record keys and plain values; None sends the request to the per-record loop, which
    also produces the error messages."""
    if set(map(type, records)) != {dict}:
        return None
    shapes = set(map(tuple, records))
    if len(shapes) != 1:
        return None
    keys = next(iter(shapes))
    if "user_id" not in keys or not set(keys) <= _USER_KEYS:
        return None
    ids = list(map(itemgetter("user_id"), records))
    if set(map(type, ids)) != {str} or min(map(len, ids)) == 0:
        return None
    joined = "".join(ids)
    if "\x00" in joined or not (joined.isascii() or _utf8_encodable(joined)):
        return None
    count = len(records)
    if "top_n" in keys:
        raw = list(map(itemgetter("top_n"), records))
        if not set(map(type, raw)) <= {str, int}:
            return None
        table = {}
        for value in set(raw):  # once per distinct value, with the per-record loop's rules
            try:
                table[value] = _top_n(value, "", limits)
            except BadRequestError:
                return None  # the per-record loop names the record
        if len(table) == 1:
            top_n = np.full(count, next(iter(table.values())), dtype=np.int64)
        else:
            top_n = np.fromiter(map(table.__getitem__, raw), dtype=np.int64, count=count)
    else:
        top_n = np.full(count, limits.default_top_n, dtype=np.int64)
    exclude = np.ones(count, dtype=bool)
    if "exclude_seen" in keys:
        flags = list(map(itemgetter("exclude_seen"), records))
        if set(map(type, flags)) != {bool}:
            return None
        exclude = np.array(flags, dtype=bool)
    return Queries(ids, np.zeros(count, dtype=bool), top_n, exclude, numbers, unit)


def _each_record(numbers: list[int], records: list[Any], unit: str, limits: Limits) -> Queries:
    ids: list[str] = []
    top_n: list[int] = []
    items: list[int] = []
    exclude: dict[int, bool] = {}
    lists: dict[int, RecordLists] = {}
    cache: dict[str, int] = {}
    default, max_n = limits.default_top_n, limits.max_top_n
    allowed = _RECORD_KEYS

    def where(r: int) -> str:
        return f"{unit} {numbers[r]}"

    for r, rec in enumerate(records):
        if type(rec) is not dict:
            raise BadRequestError(
                f'{where(r)}: expected a JSON object like {{"user_id": "685", "top_n": 5}}'
                f", got {type(rec).__name__}"
            )
        if "item_id" in rec or not rec.keys() <= allowed:
            _check_keys(rec, where(r))
        raw = rec.get("user_id")
        if raw is None:
            raw = rec.get("item_id")
            if raw is None and "history" not in rec:
                raise BadRequestError(f'{where(r)}: missing "user_id" (or "item_id", or "history")')
            if raw is not None:
                items.append(r)
        if raw is None:
            raw = ""  # an anonymous visitor, known by their history alone
        elif type(raw) is not str or not raw or "\x00" in raw or not raw.isascii():
            raw = _query_id(raw, where(r), "item_id" if "item_id" in rec else "user_id")
        ids.append(raw)
        n = rec.get("top_n", default)
        if not rec.keys().isdisjoint(LIST_FIELDS):
            lists[r] = _record_lists(rec, where(r), limits)
            candidates = lists[r].items
            if candidates is not None:  # the caller chose the list: all of it, seen or not
                exclude[r] = False
                if "top_n" not in rec:
                    top_n.append(len(candidates))  # (bounded by SPOTLIGHT_MAX_LIST_ITEMS)
                    if "exclude_seen" in rec:
                        exclude[r] = _flag(rec["exclude_seen"], where(r))
                    continue
        if type(n) is int and 0 < n <= max_n:
            top_n.append(n)
        elif type(n) is str and n in cache:
            top_n.append(cache[n])
        else:
            top_n.append(_top_n(n, where(r), limits))
            if type(n) is str:
                cache[n] = top_n[-1]
        if "exclude_seen" in rec:
            exclude[r] = _flag(rec["exclude_seen"], where(r))
    is_item = np.zeros(len(ids), dtype=bool)
    is_item[items] = True
    exclude_seen = np.ones(len(ids), dtype=bool)
    if exclude:
        exclude_seen[list(exclude)] = list(exclude.values())
    return Queries(
        ids, is_item, np.array(top_n, dtype=np.int64), exclude_seen, numbers, unit, lists
    )


def _record_lists(rec: dict, where: str, limits: Limits) -> RecordLists:
    """The record's list fields, validated: lists (CSV: ``|``-joined) of distinct ids, at most
    ``limits.max_list_items`` each; only ``exclude_items`` may be empty."""
    out: dict[str, list[str]] = {}
    for name in LIST_FIELDS:
        if name not in rec:
            continue
        value = rec[name]
        if type(value) is not list:
            raise BadRequestError(
                f"{where}: {name} must be a list of item ids, got {type(value).__name__} "
                f"{_short(value)}"
            )
        if len(value) > limits.max_list_items:
            raise BadRequestError(
                f"{where}: {name} holds {len(value)} ids, over the limit of "
                f"{limits.max_list_items} (SPOTLIGHT_MAX_LIST_ITEMS)"
            )
        if not value and name != "exclude_items":
            raise BadRequestError(f"{where}: {name} is empty; give at least one item id")
        ids = [
            v
            if type(v) is str and v and v.isascii() and "\x00" not in v
            else _query_id(v, where, f"every id in {name}")
            for v in value
        ]
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                raise BadRequestError(f"{where}: {name} holds {i!r} more than once")
            seen.add(i)
        out[name] = ids
    return RecordLists(**out)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_keys(rec: dict, where: str) -> None:
    unknown = sorted(set(rec) - _RECORD_KEYS)
    if unknown:
        raise BadRequestError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(sorted(_RECORD_KEYS))}"
        )
    if "user_id" in rec and "item_id" in rec:
        raise BadRequestError(f'{where}: give either "user_id" or "item_id", not both')
    if "item_id" in rec and "history" in rec:
        raise BadRequestError(f'{where}: give either "item_id" or "history", not both')
    if "item_id" in rec and "exclude_seen" in rec:
        raise BadRequestError(
            f'{where}: "exclude_seen" applies to user_id and history records only'
        )


def _utf8_encodable(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's ``"\\ud800"``), which no response
    could carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _query_id(raw: object, where: str, key: str) -> str:
    if type(raw) is str:
        if raw and "\x00" not in raw and (raw.isascii() or _utf8_encodable(raw)):
            return raw
        raise BadRequestError(
            f"{where}: {key} must be a non-empty string without NUL or unpaired surrogates"
        )
    if type(raw) is int:
        return str(raw)
    raise BadRequestError(
        f"{where}: {key} must be a string or an integer, got {type(raw).__name__} {raw!r}"
    )


def _top_n(value: object, where: str, limits: Limits) -> int:
    if type(value) is int:
        n = value
    elif type(value) is str and value.strip().isascii() and value.strip().isdigit():
        n = int(value)
    else:
        raise BadRequestError(
            f"{where}: top_n must be a positive integer (number or string), got {value!r}"
        )
    if n < 1:
        raise BadRequestError(f"{where}: top_n must be at least 1, got {n}")
    if n > limits.max_top_n:
        raise BadRequestError(
            f"{where}: top_n {n} exceeds the maximum {limits.max_top_n} (SPOTLIGHT_MAX_TOP_N)"
        )
    return n


def _flag(value: object, where: str) -> bool:
    if type(value) is bool:
        return value
    if type(value) is str and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    raise BadRequestError(f"{where}: exclude_seen must be true or false, got {value!r}")


Decoder = Callable[[str], Decoded]
DECODERS: dict[str, Decoder] = {
    JSONLINES: _decode_jsonlines,
    JSON: _decode_json,
    CSV: _decode_csv,
}
