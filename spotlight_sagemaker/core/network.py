"""The bilinear network: user/item embeddings and biases, score = <p_u, q_i> + b_u + b_i."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BilinearNet(nn.Module):
    """Spotlight's BilinearNet: embeddings ~ N(0, 1/dim), biases zero."""

    def __init__(
        self, num_users: int, num_items: int, embedding_dim: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        std = 1.0 / embedding_dim
        self.user_embeddings = nn.Parameter(
            torch.empty(num_users, embedding_dim).normal_(0.0, std, generator=generator)
        )
        self.item_embeddings = nn.Parameter(
            torch.empty(num_items, embedding_dim).normal_(0.0, std, generator=generator)
        )
        self.user_biases = nn.Parameter(torch.zeros(num_users))
        self.item_biases = nn.Parameter(torch.zeros(num_items))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of aligned (user, item) pairs; ``items`` may carry leading extra dims."""
        u = F.embedding(users, self.user_embeddings)
        q = F.embedding(items, self.item_embeddings)
        bu = F.embedding(users, self.user_biases[:, None]).squeeze(-1)
        bi = F.embedding(items, self.item_biases[:, None]).squeeze(-1)
        if q.dim() == u.dim():
            return (u * q).sum(-1) + bu + bi
        # items: [k, batch] -> scores [k, batch] without materialising k copies of u
        return torch.einsum("bd,kbd->kb", u, q) + bu + bi

    def score_against(self, users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """``[len(users), len(items)]`` scores (all items when ``items`` is None)."""
        q = self.item_embeddings if items is None else self.item_embeddings[items]
        b = self.item_biases if items is None else self.item_biases[items]
        return self.user_embeddings[users] @ q.T + b + self.user_biases[users, None]
