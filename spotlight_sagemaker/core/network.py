"""The bilinear network: user/item embeddings and biases, score = <p_u, q_i> + b_u + b_i.

At scoring time (``eval()`` mode) a fixed per-item prior is added to ``b_i`` (see
``ImplicitFactorizationModel``'s ``popularity_prior``); in ``train()`` mode it is not, so the
training loss only ever sees the learned parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BilinearNet(nn.Module):
    """Spotlight's BilinearNet: embeddings ~ N(0, 1/dim), biases zero.

    Biases are stored as ``[n, 1]`` tables so every lookup is an embedding lookup; with
    ``sparse=True`` those lookups produce row-sparse gradients (see ``optim.LazyAdam``).
    """

    item_prior: torch.Tensor  # a buffer (register_buffer below), not a parameter

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int,
        generator: torch.Generator,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        std = 1.0 / embedding_dim
        self.sparse = sparse
        self.user_embeddings = nn.Parameter(
            torch.empty(num_users, embedding_dim).normal_(0.0, std, generator=generator)
        )
        self.item_embeddings = nn.Parameter(
            torch.empty(num_items, embedding_dim).normal_(0.0, std, generator=generator)
        )
        self.user_biases = nn.Parameter(torch.zeros(num_users, 1))
        self.item_biases = nn.Parameter(torch.zeros(num_items, 1))
        # not a parameter and not in the state dict: derived from training counts on demand
        self.register_buffer("item_prior", torch.zeros(num_items), persistent=False)
        self.eval()

    def set_item_prior(self, prior: torch.Tensor) -> None:
        """The fixed per-item score offset added in ``eval()`` mode (``[num_items]``)."""
        if prior.shape != self.item_prior.shape:
            want = tuple(self.item_prior.shape)
            raise ValueError(f"item prior has shape {tuple(prior.shape)}, want {want}")
        self.item_prior.copy_(prior)

    def _item_bias(self, bias: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        if self.training:
            return bias
        return bias + (self.item_prior if items is None else self.item_prior[items])

    def users(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, biases) rows of ``users``."""
        return (
            F.embedding(users, self.user_embeddings, sparse=self.sparse),
            F.embedding(users, self.user_biases, sparse=self.sparse).squeeze(-1),
        )

    def items(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, biases) rows of ``items`` (any shape)."""
        return (
            F.embedding(items, self.item_embeddings, sparse=self.sparse),
            F.embedding(items, self.item_biases, sparse=self.sparse).squeeze(-1),
        )

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of aligned pairs: ``items`` is ``[batch]`` or ``[k, batch]`` (k per user)."""
        u, bu = self.users(users)
        q, bi = self.items(items)
        bi = self._item_bias(bi, items)
        if q.dim() == u.dim():
            return (u * q).sum(-1) + bu + bi
        # items: [k, batch] -> scores [k, batch] without materialising k copies of u
        return torch.einsum("bd,kbd->kb", u, q) + bu + bi

    def score_against(self, users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """``[len(users), len(items)]`` scores (all items when ``items`` is None)."""
        u, bu = self.users(users)
        q: torch.Tensor
        bi: torch.Tensor
        if items is None:
            q, bi = self.item_embeddings, self.item_biases[:, 0]
        else:
            q, bi = self.items(items)
        return u @ q.T + self._item_bias(bi, items) + bu[:, None]

    def score_vectors(self, users: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
        """``[len(users), num_items]`` scores of user vectors that are not rows of the table
        (folded in from a history): ``users`` ``[b, dim]``, ``biases`` ``[b]``."""
        bi = self._item_bias(self.item_biases[:, 0], None)
        return users @ self.item_embeddings.T + bi + biases[:, None]

    def pair_and_shared(
        self, users: torch.Tensor, items: torch.Tensor, shared: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of (user, item) pairs ``[batch]`` and of every user against ``shared`` items
        ``[batch, len(shared)]``, with one lookup per table."""
        u, bu = self.users(users)
        q, bi = self.items(torch.cat([items, shared]))
        n = len(items)
        pos = (u * q[:n]).sum(-1) + bu + bi[:n]
        return pos, u @ q[n:].T + bi[n:] + bu[:, None]
