"""Batched top-N over a dense score block, with each user's seen items masked out."""

from __future__ import annotations

import numpy as np
import torch


def seen_coordinates(
    indptr: np.ndarray, indices: np.ndarray, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) pairs of the seen items of ``users`` (rows are positions in ``users``)."""
    starts = indptr[users]
    counts = indptr[users + 1] - starts
    total = int(counts.sum())
    rows = np.repeat(np.arange(len(users), dtype=np.int64), counts)
    if total == 0:
        return rows, np.empty(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    cols = indices[np.arange(total, dtype=np.int64) + offsets]
    return rows, cols


def mask_seen(
    scores: torch.Tensor, indptr: np.ndarray, indices: np.ndarray, users: np.ndarray
) -> None:
    """Set the scores of seen items to -inf, in place."""
    rows, cols = seen_coordinates(indptr, indices, users)
    if len(rows):
        scores[
            torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)
        ] = float("-inf")


def top_k(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row, best first: (indices int64, scores float32) as numpy.

    Entries that are -inf (masked) come back with index -1.
    """
    k = min(k, scores.shape[1])
    top_vals, top_idx = torch.topk(scores, k, dim=1, largest=True, sorted=True)
    vals = top_vals.float().cpu().numpy()
    idx = top_idx.cpu().numpy().astype(np.int64)
    idx[~np.isfinite(vals)] = -1
    return idx, vals
