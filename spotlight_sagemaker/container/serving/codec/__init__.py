"""Every content type the serving container speaks, table-driven.

Requests are decoded into :class:`Queries` (one entry per record, in input order;
:mod:`.decoding`); the served model turns them into :class:`Results`; results are encoded for
the negotiated ``Accept`` type (:mod:`.encoding`). ``DECODERS`` and ``ENCODERS`` are the only
place that says which content types are supported: their keys (the names come from
:mod:`spotlight_sagemaker.contract.content_types`, which the client side imports too).
Errors carry their HTTP status (:mod:`.errors`) and do not depend on ``sagemaker_inference``;
``entry_points/inference.py`` converts them to the toolkit's error type in one place. Nothing
here unpickles a request body. Import from this package, not from its modules.
"""

from __future__ import annotations

from ....contract.content_types import media_type
from .decoding import DECODERS, Decoded, Decoder, decode
from .encoding import DEFAULT_ACCEPT, ENCODERS, encode, negotiate
from .errors import (
    BadRequestError,
    InferenceError,
    NotAcceptableError,
    PayloadTooLargeError,
    UnsupportedContentTypeError,
)
from .records import LIST_FIELDS, ItemVocab, Limits, Queries, RecordLists, Results

__all__ = [
    "DECODERS",
    "DEFAULT_ACCEPT",
    "ENCODERS",
    "BadRequestError",
    "Decoded",
    "Decoder",
    "InferenceError",
    "ItemVocab",
    "LIST_FIELDS",
    "Limits",
    "NotAcceptableError",
    "PayloadTooLargeError",
    "Queries",
    "RecordLists",
    "Results",
    "UnsupportedContentTypeError",
    "decode",
    "encode",
    "media_type",
    "negotiate",
]
