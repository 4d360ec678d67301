"""Spotlight's random split and the ranking metrics of the project's evaluation protocol.

For each user with at least one test item: score all items, exclude the user's train items,
rank. precision@k = hits/k; recall@k = hits/|test|; NDCG@k with binary relevance and ideal DCG
over min(k, |test|); MRR = mean over the user's test items of 1/rank among all non-train items
(ties averaged), then mean over users; coverage@k = distinct items in all top-k lists / items.
Works for any model with ``score_users(user_indices) -> [users, items]`` scores.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .interactions import Interactions
from .ranking import seen_coordinates


class Scorer(Protocol):
    def score_users(self, user_idx: np.ndarray) -> np.ndarray: ...


def random_train_test_split(
    interactions: Interactions, test_percentage: float = 0.2, random_state: int | None = None
) -> tuple[Interactions, Interactions]:
    """Spotlight's split: shuffle rows with ``RandomState(random_state)``; the first
    ``int((1 - test_percentage) * n)`` rows train, the rest test. Vocabularies are shared."""
    if not 0.0 < test_percentage < 1.0:
        raise ValueError(f"test_percentage must be in (0, 1), got {test_percentage}")
    rng = np.random.RandomState(random_state)
    rows = np.arange(len(interactions))
    rng.shuffle(rows)
    cut = int((1.0 - test_percentage) * len(interactions))
    return interactions.subset(rows[:cut]), interactions.subset(rows[cut:])


class PopularityModel:
    """Scores every item by its number of training interactions (the baseline)."""

    def __init__(self, train: Interactions) -> None:
        self.counts = train.item_counts().astype(np.float32)

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(user_idx), len(self.counts))).copy()


def evaluate(
    model: Scorer,
    test: Interactions,
    train: Interactions | None = None,
    k: int = 10,
    block: int = 1024,
) -> dict[str, float]:
    """precision@k, recall@k, ndcg@k, mrr and coverage@k of ``model`` on ``test``.

    ``train`` items are excluded from each user's ranking (pass ``None`` to keep them).
    """
    t_indptr, t_items = test.tocsr()
    users = np.flatnonzero(np.diff(t_indptr) > 0)
    if len(users) == 0:
        raise ValueError("the test set has no interactions")
    n_items = test.num_items
    tr = train.tocsr() if train is not None else None
    sums = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "mrr": 0.0}
    covered = np.zeros(n_items, dtype=bool)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for lo in range(0, len(users), block):
        batch = users[lo : lo + block]
        scores = np.asarray(model.score_users(batch), dtype=np.float64)
        if tr is not None:
            rows, cols = seen_coordinates(tr[0], tr[1], batch)
            scores[rows, cols] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        covered[top[np.isfinite(np.take_along_axis(scores, top, 1))]] = True
        t_rows, t_cols = seen_coordinates(t_indptr, t_items, batch)
        relevant = np.zeros_like(scores, dtype=bool)
        relevant[t_rows, t_cols] = True
        if tr is not None:  # a test item also in train cannot be recommended: not relevant
            relevant[rows, cols] = False
        n_rel = relevant.sum(1)
        # a non-finite score is no recommendation (NaN would sort anywhere)
        hits = np.take_along_axis(relevant, top, 1) & np.isfinite(
            np.take_along_axis(scores, top, 1)
        )
        n_hits = hits.sum(1)
        sums["precision"] += float((n_hits / k).sum())
        sums["recall"] += float((n_hits / np.maximum(n_rel, 1)).sum())
        dcg = (hits * discounts).sum(1)
        ideal = np.cumsum(discounts)[np.clip(np.minimum(n_rel, k) - 1, 0, k - 1)]
        sums["ndcg"] += float(np.where(n_rel > 0, dcg / ideal, 0.0).sum())
        sums["mrr"] += _mrr(scores, t_rows, t_cols, relevant)
    n = len(users)
    return {
        f"precision@{k}": sums["precision"] / n,
        f"recall@{k}": sums["recall"] / n,
        f"ndcg@{k}": sums["ndcg"] / n,
        "mrr": sums["mrr"] / n,
        f"coverage@{k}": float(covered.sum()) / n_items,
        "users": float(n),
    }


class NdcgAtK:
    """NDCG@k of a model on ``test`` with the model's own training items excluded: the
    ``ndcg@k`` of :func:`evaluate` with ``train`` = what the model was fitted on, computed on
    the model's device from its top-k alone (no full ranking). The relevance is prepared once,
    so calling it after every epoch costs one top-k scoring of the test users.

    ``seen`` is the model's ``(indptr, indices)`` of training items; the model passed to
    ``__call__`` needs ``recommend_indices`` (an ``ImplicitFactorizationModel``).
    """

    def __init__(
        self, test: Interactions, seen: tuple[np.ndarray, np.ndarray] | None, k: int = 10
    ) -> None:
        t_indptr, t_items = test.tocsr()
        self.users = np.flatnonzero(np.diff(t_indptr) > 0)
        if len(self.users) == 0:
            raise ValueError("the test set has no interactions")
        self.k, self.n_items = k, max(test.num_items, 1)
        t_rows, t_cols = seen_coordinates(t_indptr, t_items, self.users)
        keys = t_rows * self.n_items + t_cols
        if seen is not None:  # a test item the model trained on cannot be recommended
            s_rows, s_cols = seen_coordinates(seen[0], seen[1], self.users)
            keys = np.setdiff1d(keys, s_rows * self.n_items + s_cols)
        self.keys = np.sort(keys)
        n_rel = np.bincount(self.keys // self.n_items, minlength=len(self.users))
        ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
        self.ideal = ideal[np.clip(np.minimum(n_rel, k) - 1, 0, k - 1)]
        self.has_relevant = n_rel > 0
        self.discounts = 1.0 / np.log2(np.arange(2, k + 2))

    def __call__(self, model: Any) -> float:
        top, _ = model.recommend_indices(self.users, self.k, exclude_seen=True)
        if len(self.keys) == 0:
            return 0.0
        want = np.arange(len(self.users))[:, None] * self.n_items + top
        pos = np.minimum(np.searchsorted(self.keys, want), len(self.keys) - 1)
        hits = (top >= 0) & (self.keys[pos] == want)
        dcg = (hits * self.discounts[: top.shape[1]]).sum(1)
        return float(np.where(self.has_relevant, dcg / self.ideal, 0.0).sum() / len(self.users))


def ndcg_at_k(model: Any, test: Interactions, k: int = 10) -> float:
    """:class:`NdcgAtK` of ``model`` on ``test`` (relevance prepared for this one call)."""
    return NdcgAtK(test, model.seen, k)(model)


def _mrr(scores: np.ndarray, t_rows: np.ndarray, t_cols: np.ndarray, relevant: np.ndarray) -> float:
    """Sum over users of mean 1/rank (ties averaged) of their test items among non-train items."""
    keep = relevant[t_rows, t_cols]
    t_rows, t_cols = t_rows[keep], t_cols[keep]
    if len(t_rows) == 0:
        return 0.0
    s = scores[t_rows, t_cols][:, None]
    row_scores = scores[t_rows]
    finite = np.isfinite(row_scores)
    greater = ((row_scores > s) & finite).sum(1)
    ties = ((row_scores == s) & finite).sum(1)
    rank = greater + (ties + 1) / 2.0
    # a test item without a finite score ranks after every finite one (NaN compares false to
    # everything: it would get rank 0.5, an MRR above 1)
    unscored = ~np.isfinite(s[:, 0])
    rank[unscored] = finite[unscored].sum(1) + 1.0
    per_item = 1.0 / rank
    totals = np.bincount(t_rows, weights=per_item, minlength=scores.shape[0])
    counts = np.bincount(t_rows, minlength=scores.shape[0])
    return float((totals[counts > 0] / counts[counts > 0]).sum())
