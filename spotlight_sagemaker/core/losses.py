"""Loss functions, as Spotlight defines them, plus full/sampled softmax.

Each returns per-example losses (shape ``[batch]``); the model averages them, weighted by
interaction weights when those are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SPOTLIGHT_LOSSES = ("pointwise", "bpr", "hinge", "adaptive_hinge")
LOSSES = (*SPOTLIGHT_LOSSES, "softmax")


def pointwise(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Spotlight's pointwise loss: ``1 - sigmoid(pos) + sigmoid(neg)``."""
    return (1.0 - torch.sigmoid(pos)) + torch.sigmoid(neg)


def bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Spotlight's BPR loss: ``1 - sigmoid(pos - neg)``."""
    return 1.0 - torch.sigmoid(pos - neg)


def hinge(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Hinge loss ``max(0, 1 - (pos - neg))``."""
    return torch.clamp(neg - pos + 1.0, min=0.0)


def adaptive_hinge(pos: torch.Tensor, negs: torch.Tensor) -> torch.Tensor:
    """Hinge against the highest-scoring of several negatives (``negs``: ``[k, batch]``)."""
    return hinge(pos, negs.max(dim=0).values)


def softmax(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the positive among scored candidates (``logits``: ``[batch, n]``)."""
    return F.cross_entropy(logits, target, reduction="none")
