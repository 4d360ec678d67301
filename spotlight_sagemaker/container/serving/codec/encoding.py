""":class:`~.records.Results` into response bodies (CSV, JSON lines, JSON), and Accept
negotiation."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np

from ....contract.content_types import CSV, JSON, JSONLINES, media_type
from ....contract.content_types import DEFAULT_ACCEPT as DEFAULT_ACCEPT
from .._fastcsv import SMALL, format_fixed, format_small, joined_rows
from .errors import NotAcceptableError, PayloadTooLargeError
from .records import _CSV_SPECIAL, Limits, Results, _csv_field


def negotiate(accept: str | None, default: str | None = None) -> str:
    """The encoder type for an Accept header (media ranges, q-values, wildcards).

    A missing header or ``*/*`` gives ``default`` (else ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``
    when it names a supported type, else ``text/csv``).

    Raises:
        NotAcceptableError: no acceptable type is supported.
    """
    if default is None:
        env = media_type(os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"))[0]
        default = env if env in ENCODERS else DEFAULT_ACCEPT
    ranges = []
    for pos, part in enumerate((accept or "").split(",")):
        mtype, params = media_type(part)
        if not mtype:
            continue
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        if q > 0:
            ranges.append((-q, pos, mtype))
    if not ranges:
        if accept and accept.strip():
            raise NotAcceptableError(f"unusable Accept {accept!r}; supported: {_supported()}")
        return default
    for _, _, mtype in sorted(ranges):
        if mtype == "*/*":
            return default
        if mtype in ENCODERS:
            return mtype
        if mtype.endswith("/*"):
            prefix = mtype[:-1]
            matches = [t for t in (default, *ENCODERS) if t.startswith(prefix)]
            if matches:
                return matches[0]
    raise NotAcceptableError(f"unsupported Accept {accept!r}; supported: {_supported()}")


def encode(results: Results, accept: str | None, limits: Limits | None = None) -> tuple[bytes, str]:
    """Serialize ``results`` for ``accept``; returns ``(body, content_type)``.

    Raises:
        NotAcceptableError: unsupported Accept.
        PayloadTooLargeError: the body would exceed ``limits.max_response_bytes``.
    """
    limits = limits or Limits.from_env()
    ctype = negotiate(accept)
    body = ENCODERS[ctype](results)
    if len(body) > limits.max_response_bytes:
        raise PayloadTooLargeError(
            f"the response would be {len(body)} bytes, over the limit of "
            f"{limits.max_response_bytes} (SPOTLIGHT_MAX_RESPONSE_BYTES); send fewer records "
            "per request (lower MaxPayloadInMB) or ask for a smaller top_n"
        )
    return body, ctype


def _supported() -> str:
    return ", ".join(ENCODERS)


def _flat(results: Results) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row of each returned item, its item index and score, in output order."""
    k = results.items.shape[1]
    mask = np.arange(k)[None, :] < results.counts[:, None]
    rows = np.repeat(np.arange(len(results.counts)), results.counts)
    return rows, results.items[mask], results.scores[mask]


def _encode_csv(results: Results) -> bytes:
    if results.unknown_items:
        return _encode_csv_reporting(results)
    rows, items, scores = _flat(results)
    if len(rows) == 0:
        return b""
    ids = results.queries.ids
    joined = "\x00".join(ids)
    if _CSV_SPECIAL.search(joined):
        ids = [_csv_field(s) for s in ids]
    if len(rows) <= SMALL:  # single-record requests: plain Python is faster here
        vocab = results.vocab.csv_text
        text = format_small(scores.tolist())
        lines = [
            f"{ids[r]},{vocab[i]},{t}"
            for r, i, t in zip(rows.tolist(), items.tolist(), text, strict=True)
        ]
        return "\n".join(lines).encode()
    query = np.array("\x00".join(ids).encode().split(b"\x00"))  # ids hold no NUL (decode)
    return joined_rows([query[rows], results.vocab.csv[items], format_fixed(scores)], b",")


def _encode_csv_reporting(results: Results) -> bytes:
    """CSV where some records have unknown candidates: each record's ranked rows, then one row
    per unknown candidate with an empty score (``685,nope,``)."""
    ids = [_csv_field(s) for s in results.queries.ids]
    vocab = results.vocab.csv_text
    lines: list[str] = []
    for r, count in enumerate(results.counts.tolist()):
        text = format_small(results.scores[r, :count].tolist())
        lines.extend(
            f"{ids[r]},{vocab[i]},{t}"
            for i, t in zip(results.items[r, :count].tolist(), text, strict=True)
        )
        lines.extend(f"{ids[r]},{_csv_field(u)}," for u in results.unknown_items.get(r, ()))
    return "\n".join(lines).encode()


def _objects(results: Results) -> list[str]:
    q = results.queries
    rows, items, scores = _flat(results)
    item_json = results.vocab.json[items].tolist()
    score_text = format_fixed(scores, as_text=True)
    out, lo = [], 0
    for r, count in enumerate(results.counts.tolist()):
        hi = lo + count
        key = "item_id" if q.is_item[r] else "user_id"
        query = json.dumps(q.ids[r]) if q.ids[r] or r not in q.lists else "null"
        extra = ""
        lists = q.lists.get(r)
        if lists is not None and lists.items is not None:
            extra = f', "unknown_items": {json.dumps(results.unknown_items.get(r, []))}'
        out.append(
            f'{{"{key}": {query}, "items": [{", ".join(item_json[lo:hi])}], '
            f'"scores": [{", ".join(score_text[lo:hi])}], '
            f'"known": {"true" if results.known[r] else "false"}, '
            f'"fallback": {"true" if results.fallback[r] else "false"}{extra}}}'
        )
        lo = hi
    return out


def _encode_jsonlines(results: Results) -> bytes:
    return "\n".join(_objects(results)).encode()


def _encode_json(results: Results) -> bytes:
    return ('{"predictions": [' + ", ".join(_objects(results)) + "]}").encode()


ENCODERS: dict[str, Callable[[Results], bytes]] = {
    CSV: _encode_csv,
    JSONLINES: _encode_jsonlines,
    JSON: _encode_json,
}
