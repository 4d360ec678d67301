"""The training loop: minibatches, losses and optimiser steps for one epoch.

Pairwise and pointwise losses (Spotlight's four) iterate over shuffled interactions, one sampled
negative per positive (``num_negative_samples`` for adaptive_hinge). ``softmax`` groups a
step's interactions by user, so each user's logits are computed once per step: against every
item when the catalogue has at most ``softmax_negatives`` items (the exact full softmax, the same
objective as per-interaction softmax at a fraction of the cost), otherwise against
``softmax_negatives`` uniform negatives drawn once per step and shared by its users (a sampled
softmax with the ``log(items / negatives)`` correction), so that a pass costs active users x
negatives x dim whatever the catalogue size.
Every epoch is cut into ``ceil(n / batch_size)`` batches of near-equal size (``balanced_batches``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from . import losses as L
from .config import l2_factors
from .errors import HyperparameterError
from .interactions import Interactions
from .network import BilinearNet
from .optim import Adam, LazyAdam
from .pairdot import pair_dot
from .parallel import DataParallel
from .sampling import NegativeSampler

LossFn = Callable[..., torch.Tensor]
#: One step's per-interaction losses, their weights (or None), and the per-interaction L2
#: penalty's sum ``sum_k w_k (a |p_u_k|^2 + |q_i_k|^2 / a)`` (``a = sqrt(l2_balance)``; None
#: when ``l2`` is 0); under
#: data-parallel training these are this rank's share of the step and the last item is the
#: global step's (interactions, weight sum).
Batch = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]
Global = tuple[int, torch.Tensor | None]
_STEP_MAX_CELLS = 1 << 24  # logits per step (64 MB of float32)
#: the most embedding values one training step may gather (batch x vectors per interaction x
#: embedding_dim), 256 MB of float32: with their gradients and the products, a step's peak
#: stays near 1 GB whatever batch_size, num_negative_samples and embedding_dim say
STEP_MAX_VALUES = 1 << 26
#: the most memory the tables may take with their gradients and Adam state (16 bytes a value)
TABLES_MAX_BYTES = 12 << 30


def softmax_width(hp: dict, num_items: int) -> int:
    """How many items a softmax step scores each of its users against: every item (the exact
    softmax) when the catalogue has at most ``softmax_negatives``, else that many negatives."""
    return min(int(hp["softmax_negatives"]), num_items)


def exact_softmax(hp: dict, num_items: int) -> bool:
    """Whether the softmax loss is the exact full softmax on this catalogue (else sampled)."""
    return hp["loss"] == "softmax" and softmax_width(hp, num_items) >= num_items


def check_memory(hp: dict, num_users: int, num_items: int) -> None:
    """Refuse, before anything is allocated, hyperparameters whose tables or training steps
    would not fit in memory (the bounds are in docs/model.md)."""
    d, batch = hp["embedding_dim"], hp["batch_size"]
    tables = 16 * (num_users + num_items) * (d + 1)
    if tables > TABLES_MAX_BYTES:
        raise HyperparameterError(
            f"{num_users} users + {num_items} items x embedding_dim {d} need about "
            f"{tables / 2**30:.1f} GiB for the tables, their gradients and Adam state, over "
            f"{TABLES_MAX_BYTES >> 30} GiB; lower embedding_dim"
        )
    loss, k = hp["loss"], hp["num_negative_samples"]
    if loss == "softmax":
        if exact_softmax(hp, num_items):
            return  # the full softmax bounds its own steps (_STEP_MAX_CELLS)
        shared = softmax_width(hp, num_items)
        step = (batch + shared) * d
        what = f"(batch_size + {shared} softmax_negatives) x embedding_dim"
    else:
        per = k + 1 if loss == "adaptive_hinge" else 2
        step = batch * per * d
        what = f"batch_size x {per} vectors x embedding_dim"
    if step > STEP_MAX_VALUES:
        raise HyperparameterError(
            f"one training step would gather {step} values ({what}; batch_size {batch}, "
            f"embedding_dim {d}, num_negative_samples {k}), over {STEP_MAX_VALUES}; "
            "lower batch_size, embedding_dim, num_negative_samples or softmax_negatives"
        )


def make_optimizer(params, hyperparameters: dict) -> Adam | LazyAdam:
    """Spotlight's optimiser, Adam (torch's fused kernel where available, see :mod:`.optim`),
    or with ``sparse=True`` a lazy Adam that updates only the rows a batch touches;
    ``weight_decay=l2`` under ``l2_rule="weight_decay"`` (Spotlight's), none under
    ``"per_interaction"`` (the loss carries the penalty, see :class:`Trainer`)."""
    params = list(params)
    decay = hyperparameters["l2"] if hyperparameters.get("l2_rule") == "weight_decay" else 0.0
    kwargs = {"lr": hyperparameters["learning_rate"], "weight_decay": decay}
    return LazyAdam(params, **kwargs) if hyperparameters.get("sparse") else Adam(params, **kwargs)


class Trainer:
    """Runs epochs of one model over one set of interactions."""

    def __init__(
        self,
        net: BilinearNet,
        optimizer: Adam | LazyAdam,
        data: Interactions,
        hyperparameters: dict,
        generator: torch.Generator,
        device: torch.device,
        parallel: DataParallel | None = None,
    ) -> None:
        self.parallel = parallel
        self.net, self.opt, self.hp, self.gen, self.dev = (
            net,
            optimizer,
            hyperparameters,
            generator,
            device,
        )
        self.n = len(data)
        per_interaction = hyperparameters.get("l2_rule") == "per_interaction"
        self.l2 = float(hyperparameters["l2"]) if per_interaction else 0.0
        # the penalty's user and item factors: their product is 1, so l2 is the geometric mean
        self.l2_user, self.l2_item = l2_factors(hyperparameters)
        self.users = torch.from_numpy(data.user_ids).to(device)
        self.items = torch.from_numpy(data.item_ids).to(device)
        self.weights = None
        if hyperparameters["use_weights"] and data.weights is not None:
            self.weights = torch.from_numpy(data.weights.astype(np.float32)).to(device)
        self.sampler = NegativeSampler(
            data.num_items,
            hyperparameters["negative_sampling"],
            generator,
            device,
            data.user_ids,
            data.item_ids,
        )
        self._user_grad: torch.Tensor | None = None  # see _user_rows
        self._user_dirty: torch.Tensor | None = None
        self.grouped = hyperparameters["loss"] == "softmax"
        if self.grouped:
            self._prepare_grouped(data)

    # ------------------------------------------------------------------ one epoch
    def epoch(self, index: int = 0) -> float:
        """Train epoch number ``index`` (0-based, counting every epoch the model has had);
        returns the mean per-interaction loss."""
        if self.parallel is not None:
            return self._parallel_epoch(index, self.parallel)
        self.net.train()
        total = torch.zeros((), device=self.dev)
        batches = self._grouped_batches() if self.grouped else self._interaction_batches()
        self._set_learning_rate(index)
        try:
            for loss_vec, w, penalty in batches:
                denom: float | torch.Tensor
                if w is None:
                    loss = loss_vec.mean()
                    denom = float(len(loss_vec))
                else:
                    denom = w.sum().clamp_min(1e-12)
                    loss = (loss_vec * w).sum() / denom
                if penalty is not None:  # mean over the batch of l2 (a |p_u|^2 + |q_i|^2 / a)
                    loss = loss + self.l2 * penalty / denom
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                total += loss.detach() * len(loss_vec)
        finally:
            self.net.eval()  # scoring mode: adds the item prior (network.py)
        return float(total) / self.n

    def _parallel_epoch(self, index: int, parallel: DataParallel) -> float:
        """:meth:`epoch` on this rank's share of every step: the loss of the share over the
        global step's size (or weight), gradients summed over the ranks before the step (see
        :mod:`.parallel`)."""
        self.net.train()
        total = torch.zeros((), device=self.dev)
        batches = (
            self._grouped_batches(parallel) if self.grouped else self._interaction_batches(parallel)
        )
        self._set_learning_rate(index)
        params = list(self.opt.param_groups[0]["params"])
        try:
            for (loss_vec, w, penalty), (count, weight) in batches:
                denom: float | torch.Tensor
                if w is None or weight is None:
                    denom = float(count)
                    loss = loss_vec.sum() / denom
                else:
                    denom = weight.clamp_min(1e-12)
                    loss = (loss_vec * w).sum() / denom
                if penalty is not None:
                    loss = loss + self.l2 * penalty / denom
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                parallel.reduce_gradients(params)
                self.opt.step()
                total += loss.detach() * count
        finally:
            self.net.eval()
        return float(parallel.sum(total)) / self.n

    def _set_learning_rate(self, index: int) -> None:
        """``lr_decay="linear"``: from ``learning_rate`` down to 5% of it over ``n_iter`` epochs."""
        base = self.hp["learning_rate"]
        if self.hp.get("lr_decay", "none") == "linear" and self.hp["n_iter"] > 0:
            base *= max(0.05, 1.0 - index / self.hp["n_iter"])
        for group in self.opt.param_groups:
            group["lr"] = base

    # ------------------------------------------------------------------ per interaction
    def _penalty(
        self, users: torch.Tensor, items: torch.Tensor, w: torch.Tensor | None
    ) -> torch.Tensor | None:
        """``sum_k w_k (a |p_u_k|^2 + |q_i_k|^2 / a)`` over a batch's interactions (``w_k = 1``
        without weights, ``a = sqrt(l2_balance)``), from one lookup per distinct user and item;
        None when ``l2`` is 0."""
        if not self.l2:
            return None
        total = torch.zeros((), device=self.dev)
        sides = ((users, self.net.users, self.l2_user), (items, self.net.items, self.l2_item))
        for ids, lookup, factor in sides:
            rows, inverse = torch.unique(ids, return_inverse=True)
            mass = torch.zeros(len(rows), device=self.dev)
            mass.index_add_(0, inverse, torch.ones_like(ids, dtype=mass.dtype) if w is None else w)
            emb, _ = lookup(rows)
            total = total + factor * (mass * emb.square().sum(-1)).sum()
        return total

    def _interaction_batches(self, parallel: DataParallel | None = None) -> Iterator:
        loss_fn = self._pair_loss()
        perm = torch.randperm(self.n, generator=self.gen, device=self.dev)
        # ceil(n / batch_size) batches of near-equal size: no small remainder batch whose mean
        # loss would weigh a handful of interactions as much as a full batch
        for idx in torch.tensor_split(perm, -(-self.n // self.hp["batch_size"])):
            u, i = self.users[idx], self.items[idx]
            w = None if self.weights is None else self.weights[idx]
            if parallel is None:
                yield loss_fn(u, i), w, self._penalty(u, i, w)
                continue
            share = parallel.share(len(idx))  # the draws are made for the whole batch
            glob = (len(idx), None if w is None else w.sum())
            ws = None if w is None else w[share]
            yield (loss_fn(u, i, share), ws, self._penalty(u[share], i[share], ws)), glob

    def _pair_loss(self) -> LossFn:
        """The loss of a batch's interactions; with ``share``, of that slice of the batch only
        (every random draw is still made for the whole batch, so all ranks draw alike)."""
        net, sampler, name = self.net, self.sampler, self.hp["loss"]
        everything = slice(None)
        if name in ("pointwise", "bpr", "hinge"):
            fn = getattr(L, name)

            def pairwise(u: torch.Tensor, i: torch.Tensor, share: slice = everything):
                neg = sampler.sample(u)
                s = net(u[share], torch.stack([i[share], neg[share]]))  # one lookup per table
                return fn(s[0], s[1])

            return pairwise
        if name == "adaptive_hinge":
            k = self.hp["num_negative_samples"]

            def adaptive(u: torch.Tensor, i: torch.Tensor, share: slice = everything):
                neg = sampler.sample(u, k)
                s = net(u[share], torch.cat([i[None, share], neg[:, share]]))
                return L.adaptive_hinge(s[0], s[1:])

            return adaptive
        raise AssertionError(f"{name} trains grouped by user")  # softmax: _grouped_batches

    # ------------------------------------------------------------------ grouped by user
    def _prepare_grouped(self, data: Interactions) -> None:
        self.indptr, self.row_items = data.tocsr()  # cached: the model computed it for `seen`
        self.row_weights = None
        if self.weights is not None:
            self.row_weights = self.weights[torch.from_numpy(data.csr_order())]
        self.active = np.flatnonzero(np.diff(self.indptr) > 0)
        # on the training device once, so that a step makes no host-to-device copies
        self.active_dev = torch.from_numpy(self.active).to(self.dev)
        self.indptr_dev = torch.from_numpy(self.indptr).to(self.dev)
        self.row_items_dev = torch.from_numpy(self.row_items).to(self.dev)
        self.num_items = data.num_items
        counts = torch.from_numpy(data.item_counts().astype(np.float64))
        self.pop_cdf = torch.cumsum(counts, 0).to(self.dev)
        self.pop_p = (counts / counts.sum().clamp_min(1)).float().to(self.dev)

    def _grouped_batches(self, parallel: DataParallel | None = None) -> Iterator:
        perm = torch.randperm(len(self.active), generator=self.gen, device=self.dev)
        order = _Order(self.active_dev[perm], self.indptr_dev)
        counts = order.counts_host  # one device-to-host copy per epoch
        width = softmax_width(self.hp, self.num_items)
        exact = width >= self.num_items
        per_step = max(1, min(self.hp["batch_size"], _STEP_MAX_CELLS // width))
        for lo, hi in balanced_batches(counts, self.hp["batch_size"], per_step):
            # the step's negatives are drawn for the whole step, so all ranks draw alike
            cand = None if exact else self._negatives(width)
            if parallel is None:
                yield self._user_step(order, lo, hi, cand)
                continue
            # whole users per rank, near-equal interactions; normalised by the whole step's
            share = parallel.share_by_size(counts[lo:hi])
            glob_w = None
            if self.row_weights is not None:
                glob_w = self.row_weights[order.rows(lo, hi)[3]].sum()
            a, b = lo + share.start, lo + share.stop
            yield self._user_step(order, a, b, cand), (int(counts[lo:hi].sum()), glob_w)

    def _user_rows(self, u: torch.Tensor) -> torch.Tensor:
        """The embeddings of the step's (distinct) users ``u``, for the exact softmax.

        A lookup of a dense table (``sparse=False``) makes autograd allocate and zero a
        table-sized gradient at every step, then fill a few rows of it: at 50k users x 256
        dimensions that is 51 MB a step, which the allocator hands back to the system and takes
        again (page faults included), about a quarter of a pass. Here the rows are looked up
        outside autograd and their gradient is written into one persistent table-sized buffer,
        whose rows of the previous step are zeroed first, and which becomes the table's
        ``.grad``: the same dense gradient, so dense Adam sees exactly what it saw before.
        Under data-parallel training (whose all-reduce writes every rank's rows into the
        gradient) and ``sparse=True`` the ordinary lookup is used."""
        weight = self.net.user_embeddings
        if self.parallel is not None or self.net.sparse:
            return self.net.users(u)[0]
        if self._user_grad is None or self._user_grad.shape != weight.shape:
            self._user_grad = torch.zeros_like(weight)
            self._user_dirty = None
        buf = self._user_grad
        rows = weight.detach().index_select(0, u).requires_grad_()

        def into_buffer(grad: torch.Tensor) -> None:
            if self._user_dirty is not None:
                buf.index_fill_(0, self._user_dirty, 0.0)
            buf.index_copy_(0, u, grad)
            self._user_dirty = u
            weight.grad = buf

        rows.register_hook(into_buffer)
        return rows

    def _item_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings and biases of the items ``rows`` (distinct, sorted) for the sampled
        softmax: under ``sparse=True`` on one process, :meth:`LazyAdam.rows`, the same values
        and gradients as the embedding lookup, whose rows the optimiser's step reuses."""
        if self.parallel is None and isinstance(self.opt, LazyAdam):  # LazyAdam: sparse=True
            q = self.opt.rows(self.net.item_embeddings, rows)
            return q, self.opt.rows(self.net.item_biases, rows)[:, 0]
        return self.net.items(rows)

    def _negatives(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` shared negatives, half uniform and half by training popularity, and each
        one's log importance weight ``-log(count x q(item))``, where ``count x q(item)`` is the
        expected number of draws of the item: the weighted sum of ``exp(score)`` over the draws
        then estimates the sum over the whole catalogue without bias."""
        half = count // 2
        uniform = self.sampler.shared(count - half)
        u = torch.rand(half, generator=self.gen, device=self.dev)
        popular = torch.searchsorted(self.pop_cdf, u * self.pop_cdf[-1]).clamp_(
            max=self.num_items - 1
        )
        cand = torch.cat([uniform, popular])
        expected_draws = (count - half) / self.num_items + half * self.pop_p[cand]
        return cand, -torch.log(expected_draws)

    def _user_step(
        self,
        order: _Order,
        lo: int,
        hi: int,
        cand: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> Batch:
        """The softmax losses of the interactions of ``users[lo:hi]``: over every item
        (``cand`` None), or ``log(exp(s_pos) + Z) - s_pos`` where ``Z`` sums the exponentiated
        scores of the shared negatives of :meth:`_negatives` times their weights (an unbiased
        estimate of the sum over the catalogue, which the exact softmax's log-sum-exp takes)."""
        u, r, crow, pos = order.rows(lo, hi)
        c = self.row_items_dev[pos]
        w = None if self.row_weights is None else self.row_weights[pos]
        if cand is None:
            # one lookup of the step's (distinct) users, shared by the logits and the penalty:
            # each lookup of a dense table costs a table-sized gradient in the backward pass
            # a user's bias adds the same amount to all their logits: it cancels in their
            # softmax, so it is left out (it gets no gradient and stays 0 under this loss)
            p = self._user_rows(u)
            table, bias = self.net.item_embeddings, self.net.item_biases[:, 0]
            logits = torch.addmm(bias, p, table.T)
            loss_vec = softmax_nll(logits, r, c)
            penalty = None
            if self.l2:
                mass = torch.ones(len(c), device=self.dev) if w is None else w
                per_user = torch.zeros(len(u), device=self.dev).index_add_(0, r, mass)
                rows_used, inverse = torch.unique(c, return_inverse=True)
                per_item = torch.zeros(len(rows_used), device=self.dev)
                per_item.index_add_(0, inverse, mass)
                norms = table.index_select(0, rows_used).square().sum(-1)
                penalty = self.l2_user * (per_user * p.square().sum(-1)).sum()
                penalty = penalty + self.l2_item * (per_item * norms).sum()
            return loss_vec, w, penalty
        # one lookup of each distinct user and item the step uses (the users of a step are
        # distinct): under sparse=True the gradients hold those rows once each
        negatives, log_weight = cand
        rows_needed, inverse = torch.unique(torch.cat([c, negatives]), return_inverse=True)
        p = self.net.users(u)[0]  # the user's bias cancels here too (see above)
        q, bi = self._item_rows(rows_needed)
        n = len(c)
        pos_at, neg_at = inverse[:n], inverse[n:]
        pos = pair_dot(p, q, crow, r, pos_at) + bi[pos_at]
        neg = torch.addmm(bi[neg_at], p, q.index_select(0, neg_at).T)
        lse = torch.logsumexp(neg + log_weight, dim=1)
        loss_vec = torch.logaddexp(pos, lse[r]) - pos
        penalty = None
        if self.l2:
            ones = torch.ones(n, device=self.dev)
            per_user = torch.zeros(len(u), device=self.dev).index_add_(
                0, r, ones if w is None else w
            )
            per_item = torch.zeros(len(q), device=self.dev).index_add_(
                0, pos_at, ones if w is None else w
            )
            penalty = self.l2_user * (per_user * p.square().sum(-1)).sum()
            penalty = penalty + self.l2_item * (per_item * q.square().sum(-1)).sum()
        return loss_vec, w, penalty


class _SoftmaxNLL(torch.autograd.Function):
    """``logsumexp(logits[r]) - logits[r, c]`` for interactions ``(r, c)``, whose backward
    writes the gradient of the logits in one pass over them (softmax times each row's summed
    upstream gradient, minus it at the positives) instead of autograd's zero-filled scatter
    plus sum of two logits-sized gradients."""

    @staticmethod
    def forward(ctx, logits, r, c):
        lse = torch.logsumexp(logits, dim=1)
        ctx.save_for_backward(logits, lse, r, c)
        return lse[r] - logits[r, c]

    @staticmethod
    def backward(ctx, grad):
        logits, lse, r, c = ctx.saved_tensors
        per_row = torch.zeros_like(lse).index_add_(0, r, grad)
        g = torch.exp(logits - lse[:, None]).mul_(per_row[:, None])
        g.index_put_((r, c), -grad, accumulate=True)
        return g, None, None


def softmax_nll(logits: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Each interaction's full-softmax loss: ``logsumexp(logits[r]) - logits[r, c]``."""
    return _SoftmaxNLL.apply(logits, r, c)


class _Order:
    """One epoch's order of the active users, on the training device, and each step's rows."""

    def __init__(self, users: torch.Tensor, indptr: torch.Tensor) -> None:
        self.users = users
        self.starts = indptr[users]
        self.counts = indptr[users + 1] - self.starts
        self.counts_host = self.counts.cpu().numpy()

    def rows(self, lo: int, hi: int):
        """For the users ``lo:hi`` of the order: their ids, each interaction's row among them
        (sorted), the CSR row pointer of those rows, and each interaction's position in the
        training CSR (user, then item), all on the device without a host round trip."""
        u, counts = self.users[lo:hi], self.counts[lo:hi]
        total = int(self.counts_host[lo:hi].sum())
        arange = torch.arange(hi - lo, device=u.device)
        r = torch.repeat_interleave(arange, counts, output_size=total)
        crow = torch.zeros(hi - lo + 1, dtype=torch.int64, device=u.device)
        torch.cumsum(counts, 0, out=crow[1:])
        pos = self.starts[lo:hi][r] + (torch.arange(total, device=u.device) - crow[:-1][r])
        return u, r, crow, pos


def balanced_batches(sizes: np.ndarray, batch_size: int, max_rows: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` row ranges cutting rows of ``sizes`` interactions into ``ceil(total /
    batch_size)`` batches of near-equal total size (whole rows, at least one per batch), none
    with more than ``max_rows`` rows.

    Cutting greedily at ``batch_size`` leaves a remainder batch of any size, down to one row,
    whose mean loss then counts as much as a full batch's: a noisy step whose size depends on
    how the data size divides by the batch size.
    """
    ends = np.cumsum(sizes)
    if len(ends) == 0:
        return []
    total = int(ends[-1])
    n_batches = max(1, -(-total // batch_size))
    targets = total * np.arange(1, n_batches) / n_batches
    cuts = np.searchsorted(ends, targets, side="left") + 1
    bounds = np.unique(np.concatenate([[0], cuts, [len(ends)]]))
    out: list[tuple[int, int]] = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        out.extend((a, min(a + max_rows, hi)) for a in range(lo, hi, max_rows))
    return out
