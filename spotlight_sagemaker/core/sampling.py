"""Negative sampling: uniform over all items (Spotlight), or avoiding the user's positives.

The "unseen" sampler resamples the draws that hit a positive (up to a few rounds). It looks
positives up in a users x items bitmap when that has at most 2**25 cells (32 MB), and otherwise
in one sorted int64 key array of the training pairs (``user * num_items + item``), so its memory
grows with the number of interactions and is never more than 32 MB beyond them.
"""

from __future__ import annotations

import numpy as np
import torch

SAMPLERS = ("uniform", "unseen")
_RESAMPLE_ROUNDS = 8
_DENSE_MASK_MAX_CELLS = 1 << 25  # users x items up to this use a bitmap (<= 32 MB) for lookups


class NegativeSampler:
    """Draws item indices as negatives for a batch of users."""

    def __init__(
        self,
        num_items: int,
        mode: str,
        generator: torch.Generator,
        device: torch.device,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
    ) -> None:
        if mode not in SAMPLERS:
            raise ValueError(f"negative_sampling must be one of {SAMPLERS}, got {mode!r}")
        self.num_items = num_items
        self.mode = mode
        self.generator = generator
        self.device = device
        self._keys: torch.Tensor | None = None
        self._dense: torch.Tensor | None = None
        if mode == "unseen":
            if user_ids is None or item_ids is None:
                raise ValueError("the 'unseen' sampler needs the training interactions")
            keys = np.unique(user_ids.astype(np.int64) * num_items + item_ids.astype(np.int64))
            cells = (int(user_ids.max()) + 1) * num_items if len(keys) else 0
            if cells <= _DENSE_MASK_MAX_CELLS:
                dense = torch.zeros(cells, dtype=torch.bool)
                dense[torch.from_numpy(keys)] = True
                self._dense = dense.to(device)
            else:  # sorted keys: memory linear in the number of interactions
                self._keys = torch.from_numpy(keys).to(device)

    def _draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(0, self.num_items, shape, generator=self.generator, device=self.device)

    def sample(self, users: torch.Tensor, per_user: int | None = None) -> torch.Tensor:
        """Negatives for ``users``: shape ``[batch]`` or ``[per_user, batch]``."""
        shape = (len(users),) if per_user is None else (per_user, len(users))
        items = self._draw(shape)
        if self._keys is None and self._dense is None:
            return items
        base = users.to(torch.int64) * self.num_items
        for _ in range(_RESAMPLE_ROUNDS):
            hit = self._is_positive(base, items)
            if not bool(hit.any()):
                break
            items = torch.where(hit, self._draw(shape), items)
        return items

    def shared(self, count: int) -> torch.Tensor:
        """``count`` uniform negatives shared by a whole batch (sampled softmax)."""
        return self._draw((count,))

    def _is_positive(self, base: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = base + items
        if self._dense is not None:
            return self._dense[keys]
        sorted_keys = self._keys
        assert sorted_keys is not None  # only called when _dense or _keys is set
        if len(sorted_keys) == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        pos = torch.searchsorted(sorted_keys, keys).clamp_(max=len(sorted_keys) - 1)
        return sorted_keys[pos] == keys
