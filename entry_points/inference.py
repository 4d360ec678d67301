"""SageMaker inference handler: top-N recommendations from a spotlight-sagemaker artifact.

The four functions the inference toolkit calls (``model_fn``, ``input_fn``, ``predict_fn``,
``output_fn``) are thin adapters, like ``train.py``: content types live in
:mod:`spotlight_sagemaker.container.serving.codec`, the served model and its policies in
:mod:`spotlight_sagemaker.container.serving.served_model`, recommendation itself in
:mod:`spotlight_sagemaker.core`. Every request is answered with one batched top-N per distinct
user, never one user at a time.

Environment (read when the model loads): ``SPOTLIGHT_UNKNOWN_USER`` and ``SPOTLIGHT_UNKNOWN_ITEM``
(``fallback`` | ``skip`` | ``error``; default ``fallback``: the most popular items),
``SPOTLIGHT_DEVICE`` (``auto`` | ``cpu`` | ``cuda``), ``SPOTLIGHT_TORCH_THREADS`` (CPU threads per
worker; the ``serve`` launcher sets cores / workers). Request limits: see ``codec.Limits``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from sagemaker_inference.errors import BaseInferenceToolkitError

from spotlight_sagemaker.container.serving import codec
from spotlight_sagemaker.container.serving.served_model import ServedModel

logger = logging.getLogger("spotlight_sagemaker.inference")


class HandlerError(BaseInferenceToolkitError):
    """A codec error as the toolkit's error type, so the response carries its HTTP status."""

    def __init__(self, error: codec.InferenceError) -> None:
        super().__init__(error.status, error.message, error.phrase)


def _http_errors(func: Callable) -> Callable:
    """The one place where typed serving errors become toolkit errors (HTTP responses)."""

    @functools.wraps(func)
    def wrapper(*args: Any) -> Any:
        try:
            return func(*args)
        except codec.InferenceError as e:
            error = HandlerError(e)
        # raised outside the except block, without the codec's frames: the AWS image's toolkit
        # appends the traceback it is handling to the error body, which then stays short
        raise error

    # the toolkit inspects each handler's signature on every request: answer from a cache
    wrapper.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]  # read by inspect
    return wrapper


def model_fn(model_dir: str) -> ServedModel:
    """Load the artifact at the root of ``model_dir`` (GPU when present, else CPU)."""
    served = ServedModel.from_env(model_dir)
    m = served.model
    logger.info(
        "serving %d users x %d items on %s; unknown users: %s, unknown items: %s",
        m.num_users,
        m.num_items,
        m.device,
        served.unknown[False],
        served.unknown[True],
    )
    return served


@_http_errors
def input_fn(input_data: str | bytes | bytearray, content_type: str) -> codec.Queries:
    """Decode JSON lines / JSON / CSV records (see docs/inference.md)."""
    return codec.decode(input_data, content_type)


@_http_errors
def predict_fn(data: codec.Queries, model: ServedModel) -> codec.Results:
    """Batched top-N for all records of the request."""
    return model.recommend(data)


@_http_errors
def output_fn(prediction: codec.Results, accept: str | None) -> tuple[bytes, str]:
    """Encode for ``accept``; returns ``(body, content_type)``."""
    return codec.encode(prediction, accept)
