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
from ...core.queries import IndexQuery
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
        special = np.zeros(count, dtype=bool)  # records with lists: answered by model.answer
        special[list(queries.lists)] = True
        found = {}
        for is_item in (False, True):
            rows = np.flatnonzero((queries.is_item == is_item) & ~special)
            if len(rows) == 0:
                continue
            idx = self._lookup(m.item_map if is_item else m.user_map, queries.ids, rows)
            missing = rows[idx < 0]
            known[missing] = False
            if len(missing):
                fallback[missing] = self._unknown(queries, missing, is_item)
            found[is_item] = rows[idx >= 0], idx[idx >= 0]
        listed = self._index_queries(queries, known, fallback) if special.any() else None
        self._check_size(queries, (known | fallback) & ~special, k, listed)
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
        plain_fallback = fallback & ~special
        if plain_fallback.any():
            pop_i, pop_s = self.popular[0][:k], self.popular[1][:k]
            items[plain_fallback, : len(pop_i)] = pop_i
            scores[plain_fallback, : len(pop_i)] = pop_s
        counts = np.minimum((items >= 0).sum(axis=1), queries.top_n)
        unknown_items: dict[int, list[str]] = {}
        if listed is not None:
            answered, index_queries, unknown_items = listed
            if answered:
                try:
                    top_i, top_s, top_c = m.answer(index_queries)
                except DivergedError as e:
                    raise codec.InferenceError(str(e)) from None
                items[answered, : top_i.shape[1]] = top_i
                scores[answered, : top_i.shape[1]] = top_s
                counts[answered] = top_c
        if not np.isfinite(scores[np.arange(k)[None, :] < counts[:, None]]).all():
            raise codec.InferenceError("the model produced non-finite scores")
        return codec.Results(
            queries, items, scores, counts, known, fallback, self.vocab, unknown_items
        )

    def _index_queries(
        self, queries: codec.Queries, known: np.ndarray, fallback: np.ndarray
    ) -> tuple[list[int], list[IndexQuery], dict[int, list[str]]]:
        """The records with list fields as the core's :class:`IndexQuery` (rows answered, their
        queries) and each record's unknown candidates; sets ``known``/``fallback`` for them.

        Raises:
            BadRequestError: a history record whose user_id the model knows, or an unknown id
                under an ``error`` policy.
        """
        m = self.model
        user_map, item_map = m.user_map, m.item_map
        assert user_map is not None and item_map is not None
        listed = np.fromiter(queries.lists, dtype=np.int64, count=len(queries.lists))
        index = np.full(len(listed), -1, dtype=np.int64)
        named = np.array([bool(queries.ids[r]) for r in listed], dtype=bool)
        for is_item, id_map in ((False, user_map), (True, item_map)):
            sel = np.flatnonzero(named & (queries.is_item[listed] == is_item))
            if len(sel):  # each distinct id looked up once, as for the other records
                index[sel] = self._lookup(id_map, queries.ids, listed[sel])
        known[listed] = index >= 0
        rows: list[int] = []
        out: list[IndexQuery] = []
        unknown_items: dict[int, list[str]] = {}
        missing: dict[bool, list[int]] = {False: [], True: []}  # rows for the unknown policy
        filters: dict[int, tuple[np.ndarray | None, ...]] = {}
        for r, at in zip(listed.tolist(), index.tolist(), strict=True):
            lists, is_item = queries.lists[r], bool(queries.is_item[r])
            filters[r] = (
                self._items(lists.items, r, queries, unknown_items),
                self._items(lists.exclude_items, r, queries, None),
                self._items(lists.include_items, r, queries, None),
            )
            n, flag = int(queries.top_n[r]), bool(queries.exclude_seen[r])
            if lists.history is not None:
                if at >= 0:
                    raise codec.BadRequestError(
                        f"{queries.where(r)}: user_id {queries.ids[r]!r} is known to the "
                        "model; give either a known user_id or a history (for a user the model "
                        "does not know), not both"
                    )
                hist = self._items(lists.history, r, queries, None)
                if hist is not None and len(hist):
                    rows.append(r)
                    out.append(IndexQuery("history", n, -1, hist, flag, *filters[r]))
                    continue
                if self.unknown[False] == "error":
                    raise codec.BadRequestError(
                        f"{queries.where(r)}: no item of the history is known to the model "
                        "(SPOTLIGHT_UNKNOWN_USER=error)"
                    )
            elif at >= 0:
                rows.append(r)
                out.append(
                    IndexQuery("item" if is_item else "user", n, at, None, flag, *filters[r])
                )
                continue
            missing[is_item].append(r)  # an unknown id, or a history of no known item
        for is_item, unknown_rows in missing.items():
            if unknown_rows and self._unknown(queries, np.array(unknown_rows), is_item):
                fallback[unknown_rows] = True
                rows.extend(unknown_rows)
                out.extend(
                    IndexQuery("popular", int(queries.top_n[r]), -1, None, True, *filters[r])
                    for r in unknown_rows
                )
        return rows, out, unknown_items

    def _items(
        self,
        raws: list[str] | None,
        r: int,
        queries: codec.Queries,
        unknown: dict[int, list[str]] | None,
    ) -> np.ndarray | None:
        """Known item indices of a list field (None when not given); unknown candidates are
        recorded in ``unknown`` (or refused under SPOTLIGHT_UNKNOWN_ITEM=error), unknown ids
        of the other lists are left out (nothing to score, filter or fold in)."""
        if raws is None:
            return None
        item_map = self.model.item_map
        assert item_map is not None
        idx = item_map.lookup(raws)
        if unknown is not None and (idx < 0).any():
            missing = [raw for raw, i in zip(raws, idx.tolist(), strict=True) if i < 0]
            if self.unknown[True] == "error":
                raise codec.BadRequestError(
                    f"{queries.where(r)}: unknown item_id {missing[0]!r} in items "
                    "(SPOTLIGHT_UNKNOWN_ITEM=error)"
                )
            unknown[r] = missing
        return idx[idx >= 0]

    def _check_size(
        self,
        queries: codec.Queries,
        answered: np.ndarray,
        k: int,
        listed: tuple[list[int], list[IndexQuery], dict[int, list[str]]] | None = None,
    ) -> None:
        """413 before any scoring when the response must exceed SPOTLIGHT_MAX_RESPONSE_BYTES
        (a lower bound: every CSV row holds the query id, an item id and a 6-decimal score),
        or when the records x largest top_n table would (mixing one large top_n into many
        small ones): memory stays bounded by the response limit, whatever the request."""
        limits = codec.Limits.from_env()
        n_out = np.where(answered, np.minimum(queries.top_n, self.num_items), 0)
        if listed is not None:  # filtered records may get no item; unknown candidates get rows
            for r, missing in listed[2].items():
                n_out[r] = len(missing)
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
