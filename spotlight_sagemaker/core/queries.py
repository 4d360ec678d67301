"""Recommendation requests beyond "top N for a known user", at the index level.

One :class:`IndexQuery` per record: whose scores (a known user, a known item's neighbours, a
user vector folded in from a history, or popularity), how many items, and which items may be
returned (the user's training items or the history dropped, items excluded, only some included,
or exactly a list of candidates). :func:`answer` scores a batch of them in blocks of at most
2**23 cells and returns the same ``(items, scores, counts)`` tables as
``ImplicitFactorizationModel.recommend_batch``; serving and the core's ``recommend`` are built
on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import DivergedError
from .ranking import seen_coordinates, top_k

if TYPE_CHECKING:
    from .factorization import ImplicitFactorizationModel
    from .network import BilinearNet

KINDS = ("user", "item", "history", "popular")
_BLOCK_CELLS = 1 << 23


@dataclass(frozen=True)
class IndexQuery:
    """One request in item and user indices.

    Attributes:
        kind: ``"user"`` (``index`` is a known user), ``"item"`` (items similar to the known
            item ``index``, cosine similarity, the item itself never returned), ``"history"``
            (a user vector folded in from ``history``, see :mod:`.foldin`) or ``"popular"``
            (the most interacted items, scored by their share of training interactions).
        n: how many items at most.
        exclude_seen: drop the user's training items (``"user"``) or the history
            (``"history"``).
        candidates: return only these items, ranked (None: the whole catalogue).
        exclude: never return these items.
        include: return only items among these (combined with ``candidates``: both).
    """

    kind: str
    n: int
    index: int = -1
    history: np.ndarray | None = None
    exclude_seen: bool = True
    candidates: np.ndarray | None = None
    exclude: np.ndarray | None = None
    include: np.ndarray | None = None


@torch.no_grad()
def answer(
    model: ImplicitFactorizationModel, queries: Sequence[IndexQuery]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(items, scores, counts)``: ``[len(queries), max n]`` item indices (best first, -1 pads)
    and scores, and how many items each query gets (its ``n``, or fewer when its filters leave
    fewer items).

    Raises:
        DivergedError: a score that could be returned is not finite.
    """
    net = model._require()
    num_items = model.num_items
    count = len(queries)
    k = min(max((q.n for q in queries), default=0), num_items)
    items = np.full((count, k), -1, dtype=np.int64)
    scores = np.zeros((count, k), dtype=np.float32)
    counts = np.zeros(count, dtype=np.int64)
    if k == 0:
        return items, scores, counts
    folded = [r for r, q in enumerate(queries) if q.kind == "history"]
    folded_at = {r: pos for pos, r in enumerate(folded)}
    histories = [queries[r].history for r in folded]
    if any(h is None for h in histories):
        raise ValueError("a query of kind 'history' needs its history")
    vecs = model.fold_in_indices(histories) if folded else None  # type: ignore[arg-type]
    share = _share_by_item(model) if any(q.kind == "popular" for q in queries) else None
    block = max(1, _BLOCK_CELLS // num_items)
    dev = model.device
    for lo in range(0, count, block):
        part = list(range(lo, min(lo + block, count)))
        s = torch.empty(len(part), num_items, device=dev)
        by_kind: dict[str, list[int]] = {kind: [] for kind in KINDS}
        for pos, r in enumerate(part):
            if queries[r].kind not in by_kind:
                raise ValueError(f"query kind must be one of {KINDS}, got {queries[r].kind!r}")
            by_kind[queries[r].kind].append(pos)
        _score(net, queries, part, by_kind, s, folded_at, vecs, share)
        allowed = _allowed(model, queries, part, dev)
        if not bool(torch.isfinite(s[allowed]).all()):
            raise DivergedError("the model produced non-finite scores")
        s[~allowed] = float("-inf")
        n = np.array([queries[r].n for r in part], dtype=np.int64)
        available = allowed.sum(dim=1).cpu().numpy()
        kb = min(int(n.max()), num_items)
        pop = by_kind["popular"]
        if len(pop) < len(part):
            top_i, top_s = top_k(s, kb)
            items[lo : lo + len(part), :kb] = top_i
            scores[lo : lo + len(part), :kb] = top_s
        if pop:  # popularity in the model's stable order (count, then index), filtered
            assert share is not None
            order = share[1]
            ok = allowed[pop].cpu().numpy()[:, order]
            for row, pos in enumerate(pop):
                keep = order[ok[row]][:kb]
                items[lo + pos, :kb] = -1
                items[lo + pos, : len(keep)] = keep
                scores[lo + pos, : len(keep)] = share[0][keep]
        counts[lo : lo + len(part)] = np.minimum(n, available)
    items[np.arange(k)[None, :] >= counts[:, None]] = -1
    return items, scores, counts


def _share_by_item(model: ImplicitFactorizationModel) -> tuple[np.ndarray, np.ndarray]:
    """Each item's share of training interactions (the fallback's score), by item index, and
    the items in the model's popularity order (``popular_items``)."""
    order, share = model.popular_items(model.num_items)
    by_item = np.empty(model.num_items, dtype=np.float32)
    by_item[order] = share
    return by_item, order


def _score(
    net: BilinearNet,
    queries: Sequence[IndexQuery],
    part: list[int],
    by_kind: dict[str, list[int]],
    s: torch.Tensor,
    folded_at: dict[int, int],
    vecs: tuple[torch.Tensor, torch.Tensor] | None,
    share: tuple[np.ndarray, np.ndarray] | None,
) -> None:
    """Fill ``s`` (``[len(part), num_items]``) with each query's scores over the catalogue."""
    dev = s.device
    if by_kind["user"]:
        pos = by_kind["user"]
        users = torch.tensor([queries[part[p]].index for p in pos], device=dev)
        s[pos] = net.score_against(users, None).float()
    if by_kind["item"]:
        pos = by_kind["item"]
        idx = torch.tensor([queries[part[p]].index for p in pos], device=dev)
        emb = torch.nn.functional.normalize(net.item_embeddings, dim=1)
        sims = emb[idx] @ emb.T
        s[pos] = sims.float()
    if by_kind["history"]:
        pos = by_kind["history"]
        assert vecs is not None
        rows = torch.tensor([folded_at[part[p]] for p in pos], device=dev)
        s[pos] = net.score_vectors(vecs[0][rows], vecs[1][rows]).float()
    if by_kind["popular"]:
        assert share is not None
        s[by_kind["popular"]] = torch.from_numpy(share[0]).to(dev)


def _allowed(
    model: ImplicitFactorizationModel,
    queries: Sequence[IndexQuery],
    part: list[int],
    dev: torch.device,
) -> torch.Tensor:
    """``[len(part), num_items]`` True where a query may return the item."""
    num_items = model.num_items
    allowed = torch.ones(len(part), num_items, dtype=torch.bool, device=dev)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []

    def drop(pos: int, items: np.ndarray) -> None:
        rows.append(np.full(len(items), pos, dtype=np.int64))
        cols.append(np.asarray(items, dtype=np.int64))

    users = [
        (p, queries[r].index)
        for p, r in enumerate(part)
        if queries[r].kind == "user" and queries[r].exclude_seen
    ]
    if users and model.seen is not None:
        pos = np.array([p for p, _ in users], dtype=np.int64)
        r_idx, c_idx = seen_coordinates(
            model.seen[0], model.seen[1], np.array([u for _, u in users], dtype=np.int64)
        )
        rows.append(pos[r_idx])
        cols.append(c_idx)
    for p, r in enumerate(part):
        q = queries[r]
        if q.kind == "item":
            drop(p, np.array([q.index]))
        if q.kind == "history" and q.exclude_seen and q.history is not None:
            drop(p, q.history)
        if q.exclude is not None and len(q.exclude):
            drop(p, q.exclude)
    if rows:
        rr = torch.from_numpy(np.concatenate(rows)).to(dev)
        cc = torch.from_numpy(np.concatenate(cols)).to(dev)
        allowed[rr, cc] = False
    for p, r in enumerate(part):
        q = queries[r]
        for only in (q.candidates, q.include):
            if only is not None:
                keep = torch.zeros(num_items, dtype=torch.bool, device=dev)
                keep[torch.from_numpy(np.asarray(only, dtype=np.int64)).to(dev)] = True
                allowed[p] &= keep
    return allowed
