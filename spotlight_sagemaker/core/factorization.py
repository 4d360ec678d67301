"""ImplicitFactorizationModel: Spotlight's implicit matrix factorization, rebuilt.

Same vocabulary as Spotlight (losses, hyperparameter names and meanings; ``preset="spotlight"``
reproduces its defaults) with its defects fixed: no batch-of-one crash, seeded runs are
reproducible, ``fit`` starts fresh (``fit_partial`` continues), batched top-N, a pickle-free
artifact that a CPU loads whatever trained it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from .config import (
    AUTO,
    SPARSE_AUTO_CELLS,
    auto_l2,
    auto_softmax_negatives,
    auto_sparse,
    coerce,
    resolve,
)
from .errors import DivergedError, NotFittedError, UnknownIdError
from .foldin import fold_in
from .idmap import IdMap
from .interactions import Interactions
from .network import BilinearNet
from .optim import Adam, LazyAdam
from .parallel import DataParallel
from .queries import IndexQuery, answer
from .ranking import mask_seen, top_k
from .trainer import Trainer, check_memory, make_optimizer

logger = logging.getLogger("spotlight_sagemaker")
#: the logger of the one line per epoch (an adapter that prints its own per-epoch line, like
#: train.py, leaves this logger out of its handler)
EPOCH_LOGGER = "spotlight_sagemaker.epochs"
epoch_logger = logging.getLogger(EPOCH_LOGGER)

#: What to do with an id the model has never seen, here and in serving
#: (``SPOTLIGHT_UNKNOWN_USER``/``_ITEM``): the popularity fallback, leave it out, or an error.
UNKNOWN_POLICIES = ("fallback", "skip", "error")
#: Older spellings still accepted.
_UNKNOWN_ALIASES = {"popular": "fallback"}
_SCORE_BLOCK_CELLS = 1 << 23  # users x items scored at once in recommend()


@dataclass(frozen=True)
class EpochStats:
    """What one epoch did; handed to the ``callback`` of ``fit``."""

    epoch: int
    loss: float
    seconds: float
    interactions_per_second: float


class Recommendation(NamedTuple):
    """Top-N for one query id: raw item ids, best first, and their scores.

    ``fallback`` is True where the popularity fallback answered; ``unknown_items`` lists the
    candidates (``items=``) the model does not know, which it cannot score.
    """

    query_id: str
    item_ids: list[str]
    scores: list[float]
    fallback: bool = False
    unknown_items: tuple[str, ...] = ()


def _distinct(raws: list[str], name: str) -> list[str]:
    """``raws`` unchanged; a ValueError naming the first id given twice."""
    seen: set[str] = set()
    for r in raws:
        if r in seen:
            raise ValueError(f"{name} holds {r!r} more than once")
        seen.add(r)
    return raws


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(device)


class ImplicitFactorizationModel:
    """Implicit-feedback matrix factorization (score = dot product + biases).

    Args:
        preset: ``"default"`` (ours, chosen by a validation sweep) or ``"spotlight"``
            (Spotlight 0.1.6's exact defaults) for every argument not given.
        **hyperparameters: ``loss`` (pointwise, bpr, hinge, adaptive_hinge, softmax),
            ``embedding_dim``, ``n_iter``, ``batch_size``, ``l2``, ``learning_rate``,
            ``num_negative_samples``, ``random_state``, ``negative_sampling``
            (uniform, unseen), ``lr_decay``, ``sparse``, ``popularity_prior`` (scores add
            this x log(1 + the item's training count); 0 gives Spotlight's plain dot product
            + biases), ``use_weights``, ``device`` (auto, cpu, cuda). Strings are
            accepted and converted; bad names or values raise ``ValueError``.
    """

    def __init__(self, preset: str = "default", **hyperparameters: Any) -> None:
        self.preset = preset
        self.hyperparameters = resolve(preset, **hyperparameters)
        self.device = resolve_device(self.hyperparameters["device"])
        self.seed: int | None = None
        self.epochs_trained = 0
        self.history: list[EpochStats] = []
        self.metrics: dict[str, Any] = {}
        self.user_map: IdMap | None = None
        self.item_map: IdMap | None = None
        self.seen: tuple[np.ndarray, np.ndarray] | None = None
        self.item_counts: np.ndarray | None = None
        self._net: BilinearNet | None = None
        self._opt: Adam | LazyAdam | None = None
        self._gen: torch.Generator | None = None

    def __getattr__(self, name: str) -> Any:
        hp = self.__dict__.get("hyperparameters")
        if hp is not None and name in hp:
            return hp[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        state = f"{self.epochs_trained} epochs" if self._net is not None else "unfitted"
        return f"<ImplicitFactorizationModel {self.hyperparameters['loss']}, {state}>"

    @property
    def is_fitted(self) -> bool:
        return self._net is not None

    @property
    def num_users(self) -> int:
        return len(self._require().user_embeddings)

    @property
    def num_items(self) -> int:
        return len(self._require().item_embeddings)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        interactions: Interactions,
        *,
        callback: Callable[[EpochStats], bool | None] | None = None,
        parallel: DataParallel | None = None,
    ) -> ImplicitFactorizationModel:
        """Train from scratch for ``n_iter`` epochs (any previous state is discarded).

        ``callback`` gets each epoch's :class:`EpochStats`; when it returns ``True``, training
        stops after that epoch. ``parallel`` trains data-parallel with the other ranks of a
        ``torch.distributed`` process group (:mod:`.parallel`).
        """
        self._initialise(interactions)
        return self.fit_partial(interactions, callback=callback, parallel=parallel)

    def fit_partial(
        self,
        interactions: Interactions,
        n_iter: int | None = None,
        *,
        callback: Callable[[EpochStats], bool | None] | None = None,
        parallel: DataParallel | None = None,
    ) -> ImplicitFactorizationModel:
        """Continue training for ``n_iter`` more epochs (default: the ``n_iter`` hyperparameter).

        On an unfitted model this initialises it first. ``interactions`` must use the same id
        vocabularies the model was initialised with. With ``parallel`` every rank passes the
        same interactions and callback decisions; they start from rank 0's state and end with
        identical parameters (:mod:`.parallel`).
        """
        if not isinstance(interactions, Interactions):
            raise TypeError(f"interactions must be an Interactions, got {type(interactions)!r}")
        if self._net is None:
            self._initialise(interactions)
        elif interactions.user_map != self.user_map or interactions.item_map != self.item_map:
            raise ValueError(
                "interactions use other user/item vocabularies than the model; build them with "
                "user_map=model.user_map, item_map=model.item_map"
            )
        self._remember_training_data(interactions)
        epochs = self.hyperparameters["n_iter"] if n_iter is None else int(n_iter)
        if epochs < 0:
            raise ValueError(f"n_iter must be >= 0, got {n_iter}")
        self._train(interactions, epochs, callback, parallel)
        return self

    def _initialise(self, interactions: Interactions) -> None:
        if not isinstance(interactions, Interactions):
            raise TypeError(f"interactions must be an Interactions, got {type(interactions)!r}")
        if len(interactions) == 0:
            raise ValueError("cannot fit on empty interactions")
        self._resolve_auto(interactions)
        check_memory(self.hyperparameters, interactions.num_users, interactions.num_items)
        seed = self.hyperparameters["random_state"]
        self.seed = int.from_bytes(os.urandom(7), "little") if seed is None else int(seed)
        init_gen = torch.Generator().manual_seed(self.seed)
        self._net = BilinearNet(
            interactions.num_users,
            interactions.num_items,
            self.hyperparameters["embedding_dim"],
            init_gen,
            sparse=self.hyperparameters["sparse"],
        ).to(self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(self.seed + 1)
        self._opt = make_optimizer(self._net.parameters(), self.hyperparameters)
        self.user_map, self.item_map = interactions.user_map, interactions.item_map
        self.epochs_trained = 0
        self.history = []
        self.metrics = {}
        logger.info(
            "initialised %d users x %d items, dim %d, on %s (seed %d)",
            interactions.num_users,
            interactions.num_items,
            self.hyperparameters["embedding_dim"],
            self.device,
            self.seed,
        )

    def _resolve_auto(self, interactions: Interactions) -> None:
        """``l2``, ``sparse`` and ``softmax_negatives`` "auto": the values for this data (kept
        "auto" for the next fit; ``hyperparameters`` and the artifact hold the values used)."""
        users, items = interactions.num_users, interactions.num_items
        cells = users * items
        if self.hyperparameters["softmax_negatives"] == AUTO:
            self._auto_negatives = True
        if self.__dict__.get("_auto_negatives"):
            k = auto_softmax_negatives(users, items)
            self.hyperparameters["softmax_negatives"] = k
            if self.hyperparameters["loss"] == "softmax":
                logger.info(
                    "softmax_negatives=auto: %s for %d users x %d items (%s the %d-cell threshold)",
                    "every item (the exact softmax)" if k >= items else f"{k} sampled negatives",
                    users,
                    items,
                    "over" if cells > SPARSE_AUTO_CELLS else "under",
                    SPARSE_AUTO_CELLS,
                )
        if self.hyperparameters["sparse"] == AUTO:
            self._auto_sparse = True
        if self.__dict__.get("_auto_sparse"):
            sampled = (
                self.hyperparameters["loss"] == "softmax"
                and self.hyperparameters["softmax_negatives"] < items
            )
            self.hyperparameters["sparse"] = auto_sparse(users, items) or sampled
            logger.info(
                "sparse=auto: %s for %d users x %d items (%s the %d-cell threshold%s)",
                self.hyperparameters["sparse"],
                users,
                items,
                "over" if cells > SPARSE_AUTO_CELLS else "under",
                SPARSE_AUTO_CELLS,
                "; the softmax samples its negatives" if sampled else "",
            )
        if self.hyperparameters["l2"] == AUTO:
            self._auto_l2 = True
        if self.__dict__.get("_auto_l2"):
            if self.hyperparameters["loss"] != "softmax":  # the rule was chosen for softmax
                self.hyperparameters["l2"] = 0.0
                logger.info("l2=auto: 0 (the rule is defined for the softmax loss; give l2)")
                return
            active = int((np.bincount(interactions.user_ids) > 0).sum())
            self.hyperparameters["l2"] = auto_l2(len(interactions), active)
            logger.info(
                "l2=auto: %.4g for %.1f interactions per user",
                self.hyperparameters["l2"],
                len(interactions) / max(active, 1),
            )

    def _remember_training_data(self, interactions: Interactions) -> None:
        self.seen = interactions.tocsr()
        self.item_counts = interactions.item_counts()
        self._apply_popularity_prior()

    def set_popularity_prior(self, value: float) -> ImplicitFactorizationModel:
        """Change ``popularity_prior`` on a trained model (no retraining: the prior is never part
        of the training loss), e.g. to tune it on a validation set."""
        self.hyperparameters["popularity_prior"] = coerce("popularity_prior", value)
        if self._net is not None:
            self._apply_popularity_prior()
        return self

    def _apply_popularity_prior(self) -> None:
        """Scores get ``popularity_prior * log(1 + training count)`` per item (eval mode only)."""
        c = self.hyperparameters["popularity_prior"]
        if self.item_counts is None:
            raise NotFittedError("the model has no training statistics")
        prior = (c * np.log1p(self.item_counts.astype(np.float64))).astype(np.float32)
        self._require().set_item_prior(torch.from_numpy(prior).to(self.device))

    def _train(
        self,
        data: Interactions,
        epochs: int,
        callback: Callable[[EpochStats], bool | None] | None,
        parallel: DataParallel | None = None,
    ) -> None:
        net, opt, gen = self._require(), self._opt, self._gen
        assert opt is not None and gen is not None, "fit() builds the optimizer with the net"
        if parallel is not None:  # rank 0's seed and state (an OS-random seed differs per rank)
            self.seed = parallel.broadcast_object(self.seed)
            parallel.sync_state(net, opt, gen)
        trainer = Trainer(net, opt, data, self.hyperparameters, gen, self.device, parallel)
        n = len(data)
        for _ in range(epochs):
            start = time.perf_counter()
            loss = trainer.epoch(self.epochs_trained)
            secs = time.perf_counter() - start
            self._check_finite(self.epochs_trained + 1, loss)
            self.epochs_trained += 1
            stats = EpochStats(self.epochs_trained, loss, secs, n / max(secs, 1e-9))
            self.history.append(stats)
            epoch_logger.info(
                "epoch %d loss %.6f time %.3fs throughput %.0f interactions/s",
                stats.epoch,
                stats.loss,
                stats.seconds,
                stats.interactions_per_second,
            )
            if callback is not None and callback(stats):
                break  # the callback asked to stop (e.g. early stopping)

    def _check_finite(self, epoch: int, loss: float) -> None:
        """Stop at the first epoch whose loss or parameters are not finite (a diverged model
        would otherwise train on, be checkpointed and served as NaN scores)."""
        bad = None if math.isfinite(loss) else f"the loss is {loss}"
        if bad is None:
            for name, param in self._require().named_parameters():
                # the sum reads the table once and allocates nothing the size of it (a mask
                # or a float64 copy of a 1M-row table took seconds of page faults); it is not
                # finite when a value is not, or when values reach ~1e30: diverged either way
                if not math.isfinite(float(param.detach().sum())):
                    bad = f"{name} holds non-finite values"
                    break
        if bad is not None:
            lr = self.hyperparameters["learning_rate"]
            raise DivergedError(
                f"training diverged in epoch {epoch}: {bad}; use a smaller learning_rate "
                f"(it is {lr:g}) or a larger l2"
            )

    def copy_parameters(self) -> dict[str, torch.Tensor]:
        """A detached copy of the embeddings and biases (e.g. to keep the best epoch's)."""
        return {k: v.detach().clone() for k, v in self._require().state_dict().items()}

    def load_parameters(self, params: dict[str, torch.Tensor]) -> None:
        """Put back parameters from :meth:`copy_parameters` (the optimizer state is kept)."""
        self._require().load_state_dict(params)

    # ------------------------------------------------------------------ scoring
    def _require(self) -> BilinearNet:
        if self._net is None:
            raise NotFittedError("the model is not fitted: call fit() or load() first")
        return self._net

    def _map(self, kind: str) -> IdMap:
        """The user or item id map of a fitted model."""
        found = self.user_map if kind == "user_id" else self.item_map
        if found is None:
            raise NotFittedError("the model is not fitted: call fit() or load() first")
        return found

    @torch.no_grad()
    def predict(
        self, user_ids: int | Sequence[int] | np.ndarray, item_ids: Sequence[int] | None = None
    ) -> np.ndarray:
        """Scores by index, as Spotlight: one user -> all items (or ``item_ids``); aligned
        arrays of users and items -> one score per pair."""
        net = self._require()
        users = np.atleast_1d(np.asarray(user_ids, dtype=np.int64))
        if item_ids is None:
            if users.size != 1:
                raise ValueError("predict(users) without item_ids takes exactly one user")
            return self.score_users(users)[0]
        items = np.asarray(item_ids, dtype=np.int64)
        if users.size == 1:
            users = np.repeat(users, len(items))
        u = torch.from_numpy(users).to(self.device)
        i = torch.from_numpy(items).to(self.device)
        return net(u, i).float().cpu().numpy()

    @torch.no_grad()
    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        """``[len(user_idx), num_items]`` scores (float32) for user indices."""
        net = self._require()
        u = torch.from_numpy(np.asarray(user_idx, dtype=np.int64)).to(self.device)
        return net.score_against(u, None).float().cpu().numpy()

    @torch.no_grad()
    def recommend_indices(
        self, user_idx: np.ndarray, n: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item indices and scores for known user indices (``-1`` pads short rows)."""
        net = self._require()
        user_idx = np.asarray(user_idx, dtype=np.int64)
        k = min(max(int(n), 0), self.num_items)
        out_i = np.full((len(user_idx), k), -1, dtype=np.int64)
        out_s = np.full((len(user_idx), k), -np.inf, dtype=np.float32)
        if k == 0 or len(user_idx) == 0:
            return out_i, out_s
        block = max(1, _SCORE_BLOCK_CELLS // self.num_items)
        for lo in range(0, len(user_idx), block):
            users = user_idx[lo : lo + block]
            scores = net.score_against(torch.from_numpy(users).to(self.device), None)
            if exclude_seen and self.seen is not None:
                mask_seen(scores, self.seen[0], self.seen[1], users)
            out_i[lo : lo + len(users)], out_s[lo : lo + len(users)] = top_k(scores, k)
        return out_i, out_s

    @torch.no_grad()
    def recommend_batch(
        self, user_idx: np.ndarray, n: int | np.ndarray, exclude_seen: bool | np.ndarray = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top items for a batch of records of known user indices, each record with its own
        ``n`` and ``exclude_seen`` (arrays, or one value for all). Each distinct user is scored
        once per ``exclude_seen`` group, at that group's largest ``n``.

        Returns:
            ``(items, scores, counts)``: ``(records, max n)`` arrays, rows padded with -1, and
            how many items each record gets (``n``, or fewer when the user has seen nearly
            every item).

        Raises:
            DivergedError: a score is not finite (a row would otherwise come back short).
        """
        self._require()
        user_idx = np.asarray(user_idx, dtype=np.int64)
        n = np.broadcast_to(np.asarray(n, dtype=np.int64), user_idx.shape)
        exclude = np.broadcast_to(np.asarray(exclude_seen, dtype=bool), user_idx.shape)
        k = min(int(n.max()), self.num_items) if len(n) else 0
        items = np.full((len(user_idx), k), -1, dtype=np.int64)
        scores = np.zeros((len(user_idx), k), dtype=np.float32)
        seen_counts = (
            np.diff(self.seen[0]) if self.seen is not None else np.zeros(self.num_users, np.int64)
        )
        for flag in (True, False):
            rows = np.flatnonzero(exclude == flag)
            if len(rows) == 0:
                continue
            uniq, inverse = np.unique(user_idx[rows], return_inverse=True)
            m = min(int(n[rows].max()), self.num_items)
            top_i, top_s = self.recommend_indices(uniq, m, flag)
            available = self.num_items - (seen_counts[uniq] if flag else 0)
            if ((top_i >= 0).sum(axis=1) < np.minimum(m, available)).any():
                raise DivergedError("the model produced non-finite scores")
            items[rows, :m] = top_i[inverse]
            scores[rows, :m] = top_s[inverse]
        counts = np.minimum((items >= 0).sum(axis=1), n)
        return items, scores, counts

    @torch.no_grad()
    def similar_indices(self, item_idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items closest to each known item index by cosine similarity of the item
        embeddings (the item itself excluded); each distinct item computed once, rows padded
        with -1."""
        net = self._require()
        item_idx = np.asarray(item_idx, dtype=np.int64)
        k = min(max(int(n), 0), self.num_items - 1)
        uniq, inverse = np.unique(item_idx, return_inverse=True)
        out_i = np.full((len(uniq), max(k, 0)), -1, dtype=np.int64)
        out_s = np.full((len(uniq), max(k, 0)), -np.inf, dtype=np.float32)
        if k > 0 and len(uniq):
            emb = torch.nn.functional.normalize(net.item_embeddings, dim=1)
            block = max(1, _SCORE_BLOCK_CELLS // self.num_items)
            for lo in range(0, len(uniq), block):
                q = torch.from_numpy(uniq[lo : lo + block]).to(self.device)
                sims = emb[q] @ emb.T
                sims[torch.arange(len(q), device=self.device), q] = float("-inf")
                out_i[lo : lo + len(q)], out_s[lo : lo + len(q)] = top_k(sims, k)
        return out_i[inverse], out_s[inverse]

    @torch.no_grad()
    def fold_in_indices(self, histories: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """User vectors ``[len(histories), dim]`` and biases for histories of known item
        indices, the item tables fixed (the training objective for that one user; see
        :mod:`.foldin`)."""
        hists = [np.asarray(h, dtype=np.int64) for h in histories]
        if any(len(h) == 0 for h in hists):
            raise ValueError("every history needs at least one known item")
        return fold_in(self._require(), self.hyperparameters, hists, seed=self.seed or 0)

    def answer(self, queries: Sequence[IndexQuery]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Index-level requests with filters, candidates and histories (:mod:`.queries`):
        ``(items, scores, counts)`` as :meth:`recommend_batch` returns them."""
        return answer(self, queries)

    def recommend(
        self,
        user_ids: str | int | Sequence[str | int],
        n: int | None = None,
        exclude_seen: bool | None = None,
        unknown: str = "fallback",
        *,
        items: Sequence[str | int] | None = None,
        exclude_items: Sequence[str | int] | None = None,
        include_items: Sequence[str | int] | None = None,
    ) -> Recommendation | list[Recommendation] | None:
        """Top-``n`` raw item ids and scores for one raw user id or a batch of them.

        Args:
            user_ids: one raw id (returns one Recommendation, or None when skipped) or a
                sequence (returns a list).
            n: how many items per user (fewer when the user has seen nearly every item, or the
                filters leave fewer); default 10, or every candidate with ``items``.
            exclude_seen: drop the items the user interacted with in training; default True,
                False with ``items`` (the caller chose the list).
            unknown: for users the model has never seen: ``"fallback"`` (most popular items,
                flagged ``fallback=True``, score = share of training interactions; also
                spelled ``"popular"``), ``"skip"`` (left out of the result) or ``"error"``
                (raise UnknownIdError).
            items: rank exactly these candidates (those the model does not know come back in
                ``unknown_items``).
            exclude_items: never return these items.
            include_items: return only items among these.

        Raises:
            ValueError: a bad ``n``, an empty or duplicated ``items``/``include_items``.
        """
        self._require()
        lists = items is not None or exclude_items is not None or include_items is not None
        if n is None:
            n = len(items) if items is not None else 10
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if exclude_seen is None:
            exclude_seen = items is None
        unknown = _UNKNOWN_ALIASES.get(unknown, unknown)
        single, raws, idx, known = self._lookup(user_ids, self._map("user_id"), unknown, "user_id")
        if not lists:
            top_i, top_s = self.recommend_indices(idx[known], n, exclude_seen)
            return self._assemble(single, raws, known, top_i, top_s, unknown, n)
        filters = self._filters(items, exclude_items, include_items)
        queries = [
            IndexQuery(
                "user" if ok else "popular", int(n), int(i), None, bool(exclude_seen), *filters[:3]
            )
            for i, ok in zip(idx.tolist(), known.tolist(), strict=True)
            if ok or unknown == "fallback"
        ]
        return self._answered(single, raws, known | (unknown == "fallback"), queries, filters[3])

    def recommend_from_history(
        self,
        history: Sequence[str | int],
        n: int = 10,
        *,
        exclude_history: bool = True,
        unknown: str = "fallback",
        items: Sequence[str | int] | None = None,
        exclude_items: Sequence[str | int] | None = None,
        include_items: Sequence[str | int] | None = None,
        query_id: str = "",
    ) -> Recommendation | None:
        """Top-``n`` for a visitor the model has never seen, from the items they interacted
        with: a user vector is folded in from ``history`` with the item tables fixed (the
        training objective for that one user, :mod:`.foldin`), then scored like a known user.

        Args:
            history: raw item ids (distinct); ids the model does not know are ignored.
            exclude_history: drop the history's items from the result (default True).
            unknown: when no history item is known: ``"fallback"`` (popular items, flagged),
                ``"skip"`` (returns None) or ``"error"`` (raise UnknownIdError).
            items, exclude_items, include_items: as in :meth:`recommend`.
            query_id: the id the result carries (e.g. a session id).
        """
        self._require()
        if isinstance(history, (str, bytes, int)) or not len(history):
            raise ValueError("history must be a non-empty sequence of item ids")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        unknown = _UNKNOWN_ALIASES.get(unknown, unknown)
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
        raws = _distinct([str(h) for h in history], "history")
        idx = self._map("item_id").lookup(raws)
        hist = idx[idx >= 0]
        filters = self._filters(items, exclude_items, include_items)
        if len(hist) == 0:
            if unknown == "error":
                raise UnknownIdError(f"no item of the history is known to the model: {raws[:5]}")
            if unknown == "skip":
                return None
            query = IndexQuery("popular", int(n), -1, None, True, *filters[:3])
        else:
            query = IndexQuery("history", int(n), -1, hist, bool(exclude_history), *filters[:3])
        out = self._answered(False, [query_id], np.array([True]), [query], filters[3])
        assert isinstance(out, list)
        return out[0]

    def _filters(
        self,
        items: Sequence[str | int] | None,
        exclude_items: Sequence[str | int] | None,
        include_items: Sequence[str | int] | None,
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, tuple[str, ...]]:
        """(candidates, exclude, include) as known item indices, and the unknown candidates."""
        item_map = self._map("item_id")
        out: list[np.ndarray | None] = []
        unknown_candidates: tuple[str, ...] = ()
        for name, values in (
            ("items", items),
            ("exclude_items", exclude_items),
            ("include_items", include_items),
        ):
            if values is None:
                out.append(None)
                continue
            if isinstance(values, (str, bytes, int)):
                raise ValueError(f"{name} must be a sequence of item ids, got {values!r}")
            raws = _distinct([str(v) for v in values], name)
            if not raws and name != "exclude_items":
                raise ValueError(f"{name} must hold at least one item id")
            idx = item_map.lookup(raws)
            if name == "items":
                unknown_candidates = tuple(
                    r for r, i in zip(raws, idx.tolist(), strict=True) if i < 0
                )
            out.append(idx[idx >= 0])
        return out[0], out[1], out[2], unknown_candidates

    def _answered(
        self,
        single: bool,
        raws: list[str],
        answered: np.ndarray,
        queries: list[IndexQuery],
        unknown_items: tuple[str, ...],
    ) -> Recommendation | list[Recommendation] | None:
        """Recommendations in query order for the ``answered`` ids (one query each)."""
        top_i, top_s, counts = self.answer(queries) if queries else (None, None, None)
        ids = self._map("item_id").ids
        out: list[Recommendation] = []
        row = 0
        for raw, ok in zip(raws, answered.tolist(), strict=True):
            if not ok:
                continue
            assert top_i is not None and top_s is not None and counts is not None
            c = int(counts[row])
            out.append(
                Recommendation(
                    raw,
                    ids[top_i[row, :c]].tolist(),
                    top_s[row, :c].tolist(),
                    queries[row].kind == "popular",
                    unknown_items,
                )
            )
            row += 1
        if single:
            return out[0] if out else None
        return out

    def _lookup(
        self, ids: Any, id_map: IdMap, unknown: str, kind: str
    ) -> tuple[bool, list[str], np.ndarray, np.ndarray]:
        """(single?, raw ids, indices, known mask) of one raw id or a sequence of them."""
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
        single = isinstance(ids, (str, int, np.integer))
        raws = [str(ids)] if single else [str(i) for i in ids]
        idx = id_map.lookup(raws)
        known = idx >= 0
        if unknown == "error" and not known.all():
            raise UnknownIdError(f"unknown {kind} {raws[int(np.flatnonzero(~known)[0])]!r}")
        return single, raws, idx, known

    def _assemble(
        self,
        single: bool,
        raws: list[str],
        known: np.ndarray,
        top_i: np.ndarray,
        top_s: np.ndarray,
        unknown: str,
        n: int,
    ) -> Recommendation | list[Recommendation] | None:
        """Recommendations in query order: top rows for known ids, the popularity fallback (or
        nothing) for unknown ones."""
        ids = self._map("item_id").ids
        out: list[Recommendation] = []
        rows = iter(range(len(top_i)))
        for raw, ok in zip(raws, known, strict=True):
            if ok:
                row = next(rows)
                keep = top_i[row] >= 0
                out.append(
                    Recommendation(raw, ids[top_i[row][keep]].tolist(), top_s[row][keep].tolist())
                )
            elif unknown == "fallback":
                out.append(self._popular(raw, n))
        if single:
            return out[0] if out else None
        return out

    def popular_items(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most-interacted items (indices) and their share of training interactions."""
        counts = self.item_counts
        if counts is None:
            raise NotFittedError("the model has no training statistics")
        order = np.lexsort((np.arange(len(counts)), -counts))[: max(int(n), 0)]
        return order, (counts[order] / max(int(counts.sum()), 1)).astype(np.float32)

    def _popular(self, raw: str, n: int) -> Recommendation:
        order, share = self.popular_items(n)
        return Recommendation(raw, self._map("item_id").ids[order].tolist(), share.tolist(), True)

    @torch.no_grad()
    def similar_items(
        self, item_ids: str | int | Sequence[str | int], n: int = 10, unknown: str = "skip"
    ) -> Recommendation | list[Recommendation] | None:
        """Items closest by cosine similarity of item embeddings (the item itself excluded).

        ``unknown`` is ``"skip"`` (default), ``"fallback"`` or ``"error"``, as in ``recommend``.
        """
        self._require()
        unknown = _UNKNOWN_ALIASES.get(unknown, unknown)
        single, raws, idx, known = self._lookup(item_ids, self._map("item_id"), unknown, "item_id")
        top_i, top_s = self.similar_indices(idx[known], n)
        return self._assemble(single, raws, known, top_i, top_s, unknown, n)

    # ------------------------------------------------------------------ persistence
    def save(
        self,
        path: str | os.PathLike,
        *,
        include_optimizer: bool = False,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        """Write the pickle-free artifact (JSON + npz) into the folder ``path``.

        Args:
            include_optimizer: also the optimizer and RNG state, to resume training.
            checkpoint: JSON-able state of the caller's training run, written in the config's
                own ``checkpoint`` field (read back with ``artifact.read_config``), never into
                ``metrics``.
        """
        from .artifact import save_model

        save_model(self, path, include_optimizer=include_optimizer, checkpoint=checkpoint)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> ImplicitFactorizationModel:
        """Read an artifact written by :meth:`save`, onto ``device``."""
        from .artifact import load_model

        return load_model(path, device=device)
