"""The model as the serving container holds it: the core model plus serving's policies.

:class:`ServedModel` answers decoded :class:`~.codec.Queries` with :class:`~.codec.Results`:
it looks the ids up once per distinct id, applies the unknown-id policies
(``SPOTLIGHT_UNKNOWN_USER`` / ``SPOTLIGHT_UNKNOWN_ITEM``), refuses responses over the size
limits before scoring, and asks the core for the top items (``recommend_batch``,
``similar_indices``, ``popular_items``). ``entry_points/inference.py`` wraps it in the toolkit's
four handler functions.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ...core import DivergedError, ImplicitFactorizationModel
from ...core.factorization import UNKNOWN_POLICIES
from . import codec

logger = logging.getLogger("spotlight_sagemaker.inference")


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
        items = model.item_map
        if items is None:
            raise ValueError("the model is not fitted: nothing to serve")
        self.vocab = codec.ItemVocab(items.ids)
        self.min_item_len = min((len(i) for i in items.to_list()), default=1)
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
