"""The serving errors: each carries the HTTP status the container answers with."""

from __future__ import annotations


class InferenceError(Exception):
    """A request the container answers with an HTTP error; ``status`` is that code."""

    status = 500
    phrase = "Internal Server Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(InferenceError):
    """Malformed record or payload (400)."""

    status, phrase = 400, "Bad Request"


class PayloadTooLargeError(InferenceError):
    """Too many records in one request, or a response over the size limit (413)."""

    status, phrase = 413, "Payload Too Large"


class UnsupportedContentTypeError(InferenceError):
    """The request's Content-Type is not in ``DECODERS`` (415)."""

    status, phrase = 415, "Unsupported Media Type"


class NotAcceptableError(InferenceError):
    """No type in the request's Accept header is in ``ENCODERS`` (406)."""

    status, phrase = 406, "Not Acceptable"
