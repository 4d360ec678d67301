"""Fold-in: a user vector for a supplied history, with the item tables held fixed.

For a visitor the model has never seen, :func:`fold_in` finds the user embedding and bias that
minimise the training objective of the model's own loss over that visitor's items alone, with
every item embedding and bias fixed (they are what the model learned):

- ``softmax``: the mean over the history of ``logsumexp(scores) - score(h)`` over the whole
  catalogue (what the grouped full softmax trains; convex in the user vector);
- ``bpr``, ``hinge``, ``pointwise``: the expectation of the loss over uniform negatives, taken
  over a fixed uniform sample of up to :data:`NEGATIVES` items (Spotlight samples one negative
  per positive); ``adaptive_hinge`` is folded in with the hinge objective (its max over sampled
  negatives has no fixed-sample counterpart);
- plus the L2 penalty of ``l2_rule="per_interaction"``, ``l2 * sqrt(l2_balance) * |p_u|^2`` per
  interaction (the user rows' penalty the model trained with), counted over at least
  :data:`PSEUDO_COUNT` interactions: a history of 3 items is shrunk as if it had 30, towards the
  zero vector, whose scores are the item biases plus the popularity prior. Without it
  (``PSEUDO_COUNT = 0``: exactly the training objective of a user with those items) one or three
  items give an overconfident vector; 30 was chosen on validation users of two datasets
  (``bench/sweep_fold_in.py``, never the bench's test users), where it beat 0 on both. A history
  of 30 items or more gets the training objective itself. Under ``l2_rule="weight_decay"`` the
  same form is used (Adam's decay has no per-user objective to match).

The problem is solved by L-BFGS with a strong-Wolfe line search, for every history of a batch
at once (the objective is a sum of independent per-history terms), from the zero vector: the
result depends only on the model and the history (no randomness beyond the fixed negative
sample, drawn from the model's seed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .config import l2_factors
from .network import BilinearNet

#: the L2 penalty counts at least this many interactions (see the module docstring)
PSEUDO_COUNT = 30.0
#: negatives of the fixed uniform sample used by the pairwise and pointwise objectives
NEGATIVES = 1024
#: history x catalogue cells folded in at once (blocks of histories)
_BLOCK_CELLS = 1 << 23
_MAX_ITER = 200


def fold_in(
    net: BilinearNet,
    hyperparameters: dict,
    histories: Sequence[np.ndarray],
    seed: int = 0,
    pseudo_count: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """User embeddings ``[len(histories), dim]`` and biases ``[len(histories)]`` for histories of
    known item indices (each non-empty, distinct)."""
    dev = net.item_embeddings.device
    dim = net.item_embeddings.shape[1]
    num_items = net.item_embeddings.shape[0]
    out_u = torch.zeros(len(histories), dim, device=dev)
    out_b = torch.zeros(len(histories), device=dev)
    loss = hyperparameters["loss"]
    neg = None
    if loss != "softmax":
        gen = torch.Generator().manual_seed(int(seed) + 7)
        m = min(NEGATIVES, num_items)
        neg = torch.randperm(num_items, generator=gen)[:m].to(dev)
    width = num_items if neg is None else len(neg)
    count = PSEUDO_COUNT if pseudo_count is None else float(pseudo_count)
    lo = 0
    while lo < len(histories):
        hi, cells = lo, 0
        while hi < len(histories) and (
            hi == lo or cells + width * (1 + len(histories[hi])) <= _BLOCK_CELLS
        ):
            cells += width * (1 + len(histories[hi]))
            hi += 1
        u, b = _solve(net, hyperparameters, histories[lo:hi], neg, count)
        out_u[lo:hi], out_b[lo:hi] = u, b
        lo = hi
    return out_u, out_b


def _solve(
    net: BilinearNet,
    hp: dict,
    histories: Sequence[np.ndarray],
    neg: torch.Tensor | None,
    pseudo_count: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    dev = net.item_embeddings.device
    q = net.item_embeddings.detach().float()
    bi = net.item_biases.detach()[:, 0].float()  # training-mode scores: no popularity prior
    sizes = np.array([len(h) for h in histories], dtype=np.int64)
    rows = torch.from_numpy(np.repeat(np.arange(len(histories)), sizes)).to(dev)
    cols = torch.from_numpy(np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])).to(
        dev
    )
    weight = torch.from_numpy(1.0 / np.repeat(sizes, sizes)).float().to(dev)  # mean per history
    # l2 per interaction, counting at least `pseudo_count` interactions: [len(histories)]
    shrink = torch.from_numpy(np.maximum(1.0, pseudo_count / sizes)).float().to(dev)
    l2 = float(hp["l2"]) * l2_factors(hp)[0]  # the user rows' share, as in training
    loss = hp["loss"]
    u = torch.zeros(len(histories), q.shape[1], device=dev, requires_grad=True)
    b = torch.zeros(len(histories), device=dev, requires_grad=True)
    pos_q, pos_b = q[cols], bi[cols]

    def objective() -> torch.Tensor:
        pos = (u[rows] * pos_q).sum(-1) + pos_b + b[rows]
        if loss == "softmax":
            lse = torch.logsumexp(u @ q.T + bi, dim=1)
            per = lse[rows] - pos
        else:
            assert neg is not None
            s_neg = u @ q[neg].T + bi[neg] + b[:, None]  # [histories, negatives]
            if loss == "pointwise":  # E[1 - sig(pos) + sig(neg)]
                per = (1.0 - torch.sigmoid(pos)) + torch.sigmoid(s_neg).mean(1)[rows]
            elif loss == "bpr":
                per = (1.0 - torch.sigmoid(pos[:, None] - s_neg[rows])).mean(1)
            else:  # hinge, adaptive_hinge
                per = torch.clamp(s_neg[rows] - pos[:, None] + 1.0, min=0.0).mean(1)
        return (per * weight).sum() + l2 * (shrink * u.square().sum(1)).sum()

    params = [u, b] if loss == "pointwise" else [u]  # the user bias cancels in the others
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=_MAX_ITER,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = objective()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)
    return u.detach(), b.detach()
