"""The handler service our model server runs (``default_service_handler`` in its config).

It is the SageMaker inference toolkit's :class:`DefaultHandlerService` with three changes, each
for a defect of the stock service under Multi Model Server:

- **start-up fails loudly.** MMS loads a class-based service by calling ``initialize`` and
  *swallows* its exception: the worker counts as READY, ``/ping`` answers 200 and every request
  re-runs ``model_fn`` (re-reading the artifact) only to answer 500. As a *function* entry point
  (``handle(None, context)`` at load time), an exception fails the worker's load instead; the
  first line on stderr starting with :data:`STARTUP_FAILURE` carries ``model_fn``'s message,
  which :func:`.model_server.start_model_server` raises. The model loads once per worker.
- **bytes that are not UTF-8** sent as ``application/json`` or ``text/csv`` (the toolkit decodes
  those before ``input_fn``) are a 400 naming the offset, not a 500 from ``UnicodeDecodeError``.
- **error bodies carry the message only**; the traceback goes to the log.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

from sagemaker_inference import content_types, utils
from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.transformer import Transformer

from .model_server import STARTUP_FAILURE

logger = logging.getLogger("spotlight_sagemaker.serving")


class _Transformer(Transformer):
    @staticmethod
    def handle_error(context: Any, inference_exception: Any, trace: str) -> list[str]:
        logger.warning("request failed (%s):\n%s", inference_exception.status_code, trace)
        context.set_response_status(
            code=inference_exception.status_code,
            phrase=utils.remove_crlf(inference_exception.phrase),
        )
        return [str(inference_exception.message)]


_service: DefaultHandlerService | None = None


def handle(data: list[dict] | None, context: Any) -> list | None:
    """MMS's entry point: ``data is None`` at load time (load the model or fail), else a batch."""
    global _service
    if _service is None:
        service = DefaultHandlerService(transformer=_Transformer())
        try:
            service.initialize(context)
        except Exception as e:
            message = " ".join(str(e).split()) or type(e).__name__
            traceback.print_exc()
            print(f"{STARTUP_FAILURE}{message}", file=sys.stderr, flush=True)
            raise
        _service = service
    if data is None:
        return None
    bad = _undecodable(data, context)
    if bad is not None:
        context.set_response_status(code=400, phrase="Bad Request")
        return [bad]
    return _service.handle(data, context)


def _undecodable(data: list[dict], context: Any) -> str | None:
    """The 400 message for a body the toolkit would fail to decode as UTF-8, else None."""
    for i, item in enumerate(data):
        body = item.get("body")
        if not isinstance(body, (bytes, bytearray)):
            continue
        props = context.request_processor[i].get_request_properties()
        content_type = utils.retrieve_content_type_header(props)
        if content_type in content_types.UTF8_TYPES and not body.isascii():
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as e:
                return f"the {content_type} body is not valid UTF-8 (byte {e.start})"
    return None
