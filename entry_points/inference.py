"""SageMaker inference handler: top-N recommendations from a spotlight-sagemaker artifact.

The four functions the inference toolkit calls (``model_fn``, ``input_fn``, ``predict_fn``,
``output_fn``) are thin adapters: content types live in
:mod:`spotlight_sagemaker.container.serving.codec`, the model in :mod:`spotlight_sagemaker.core`.
Every request is answered with one batched top-N per distinct user (one matrix product and
top-k), never one user at a time.

Environment (read when the model loads): ``SPOTLIGHT_UNKNOWN_USER`` and ``SPOTLIGHT_UNKNOWN_ITEM``
(``fallback`` | ``skip`` | ``error``; default ``fallback``: the most popular items),
``SPOTLIGHT_DEVICE`` (``auto`` | ``cpu`` | ``cuda``), ``SPOTLIGHT_TORCH_THREADS`` (CPU threads per
worker; the ``serve`` launcher sets cores / workers). Request limits: see ``codec.Limits``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sagemaker_inference.errors import BaseInferenceToolkitError

from spotlight_sagemaker.container.serving import codec
from spotlight_sagemaker.core import DivergedError, ImplicitFactorizationModel

logger = logging.getLogger("spotlight_sagemaker.inference")

UNKNOWN_POLICIES = ("fallback", "skip", "error")


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
    wrapper.__signature__ = inspect.signature(func)
    return wrapper


class ServedModel:
    """The loaded model plus what serving needs: encoded vocabulary, policies and counters."""

    def __init__(
        self,
        model: ImplicitFactorizationModel,
        unknown_user: str = "fallback",
        unknown_item: str = "fallback",
    ) -> None:
        for name, value in (("unknown_user", unknown_user), ("unknown_item", unknown_item)):
            if value not in UNKNOWN_POLICIES:
                raise ValueError(f"{name} must be one of {UNKNOWN_POLICIES}, got {value!r}")
        self.model = model
        self.num_items = model.num_items
        self.unknown = {False: unknown_user, True: unknown_item}
        self.vocab = codec.ItemVocab(model.item_map.ids)
        self.min_item_len = min((len(i) for i in model.item_map.to_list()), default=1)
        self.popular = model.popular_items(model.num_items)
        # (loading refuses non-finite parameters; predict_fn refuses non-finite scores)
        self.unknown_seen = {False: 0, True: 0}

    @classmethod
    def from_env(cls, model_dir: str, environ: dict[str, str] | None = None) -> ServedModel:
        env = os.environ if environ is None else environ
        codec.Limits.from_env(env)  # fail at start-up, not on the first request
        policies = {}
        for kind in ("USER", "ITEM"):
            var = f"SPOTLIGHT_UNKNOWN_{kind}"
            policies[kind] = env.get(var, "fallback").strip().lower() or "fallback"
            if policies[kind] not in UNKNOWN_POLICIES:
                raise ValueError(f"{var} must be one of {UNKNOWN_POLICIES}, got {env[var]!r}")
        device = env.get("SPOTLIGHT_DEVICE", "auto").strip().lower() or "auto"
        threads = env.get("SPOTLIGHT_TORCH_THREADS", "").strip()
        if threads:
            if not (threads.isdigit() and int(threads) > 0):
                raise ValueError(
                    f"SPOTLIGHT_TORCH_THREADS must be a positive integer, got {threads!r}"
                )
            torch.set_num_threads(int(threads))
        model = ImplicitFactorizationModel.load(model_dir, device=device)
        return cls(model, policies["USER"], policies["ITEM"])

    def recommend(self, queries: codec.Queries) -> codec.Results:
        """Top-N for every record, in one batched top-k per (exclude_seen) group."""
        m = self.model
        count = len(queries)
        k = min(int(queries.top_n.max()), self.num_items)
        known = np.ones(count, dtype=bool)
        fallback = np.zeros(count, dtype=bool)
        found = {}
        for is_item in (False, True):
            rows = np.flatnonzero(queries.is_item == is_item)
            if len(rows) == 0:
                continue
            idx = self._lookup(m.item_map if is_item else m.user_map, queries.ids, rows)
            missing = rows[idx < 0]
            known[missing] = False
            if len(missing):
                fallback[missing] = self._unknown(queries, missing, is_item)
            found[is_item] = rows[idx >= 0], idx[idx >= 0]
        self._check_size(queries, known | fallback, k)
        items = np.full((count, k), -1, dtype=np.int64)
        scores = np.zeros((count, k), dtype=np.float32)
        for is_item, (rows, idx) in found.items():
            if len(rows) == 0:
                continue
            if is_item:
                top_i, top_s = m.similar_indices(idx, int(queries.top_n[rows].max()))
            else:
                try:
                    top_i, top_s, _ = m.recommend_batch(
                        idx, queries.top_n[rows], queries.exclude_seen[rows]
                    )
                except DivergedError as e:  # never answer short in silence
                    raise codec.InferenceError(str(e)) from None
            items[rows, : top_i.shape[1]] = top_i
            scores[rows, : top_i.shape[1]] = top_s
        if fallback.any():
            pop_i, pop_s = self.popular[0][:k], self.popular[1][:k]
            items[fallback, : len(pop_i)] = pop_i
            scores[fallback, : len(pop_i)] = pop_s
        counts = np.minimum((items >= 0).sum(axis=1), queries.top_n)
        if not np.isfinite(scores[np.arange(k)[None, :] < counts[:, None]]).all():
            raise codec.InferenceError("the model produced non-finite scores")
        return codec.Results(queries, items, scores, counts, known, fallback, self.vocab)

    def _check_size(self, queries: codec.Queries, answered: np.ndarray, k: int) -> None:
        """413 before any scoring when the response must exceed SPOTLIGHT_MAX_RESPONSE_BYTES
        (a lower bound: every CSV row holds the query id, an item id and a 6-decimal score),
        or when the records x largest top_n table would (mixing one large top_n into many
        small ones): memory stays bounded by the response limit, whatever the request."""
        limits = codec.Limits.from_env()
        n_out = np.where(answered, np.minimum(queries.top_n, self.num_items), 0)
        id_len = np.fromiter(map(len, queries.ids), dtype=np.int64, count=len(queries))
        least = int((n_out * (id_len + self.min_item_len + 9)).sum())
        if least > limits.max_response_bytes:
            raise codec.PayloadTooLargeError(
                f"the response would be at least {least} bytes ({int(n_out.sum())} rows), over "
                f"the limit of {limits.max_response_bytes} (SPOTLIGHT_MAX_RESPONSE_BYTES); send "
                "fewer records per request (lower MaxPayloadInMB) or ask for a smaller top_n"
            )
        cells = len(queries) * k
        if cells > 2 * limits.max_response_bytes:
            raise codec.PayloadTooLargeError(
                f"{len(queries)} records x top_n {k} (the largest in the request) = {cells} "
                f"result cells, over {2 * limits.max_response_bytes} (2 x "
                "SPOTLIGHT_MAX_RESPONSE_BYTES); send records with a large top_n in requests "
                "of their own"
            )

    @staticmethod
    def _lookup(id_map, ids: list[str], rows: np.ndarray) -> np.ndarray:
        """Indices of ``ids[rows]`` (-1 unknown), looking each distinct id up once."""
        sub = ids if len(rows) == len(ids) else [ids[r] for r in rows]
        distinct = dict.fromkeys(sub)
        for pos, raw in enumerate(distinct):
            distinct[raw] = pos
        inverse = np.fromiter(map(distinct.__getitem__, sub), dtype=np.int64, count=len(sub))
        return id_map.lookup(distinct)[inverse]

    def _unknown(self, queries: codec.Queries, rows: np.ndarray, is_item: bool) -> bool:
        policy, key = self.unknown[is_item], "item_id" if is_item else "user_id"
        self.unknown_seen[is_item] += len(rows)
        if policy == "error":
            r = int(rows[0])
            raise codec.BadRequestError(
                f"{queries.where(r)}: unknown {key} {queries.ids[r]!r} "
                f"(SPOTLIGHT_UNKNOWN_{key[:4].upper()}=error)"
            )
        logger.info(
            "%d record(s) with an unknown %s in this request (%s); %d since start",
            len(rows),
            key,
            "popularity fallback" if policy == "fallback" else "skipped",
            self.unknown_seen[is_item],
        )
        return policy == "fallback"


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
