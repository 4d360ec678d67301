"""Data-parallel training over ``torch.distributed``: one model, several processes.

Every process (rank) holds the whole training set, the same seed and the same batch order; in
each step it computes the loss of its share of the global batch, normalised by the global
batch's size (or weight), so that the sum of the ranks' gradients is the single-process
gradient. :meth:`DataParallel.reduce_gradients` sums them (dense gradients in one all-reduce;
row-sparse ones, under ``sparse=True``, by gathering every rank's rows, so that ``LazyAdam``
still moves only the rows the global batch touched), and every rank then applies the same Adam
step: the parameters stay identical without ever being sent again.

Random draws (the samplers' negatives) are made for the whole batch on every rank from the same
generator, then sliced, so they match the single-process run draw for draw. The result equals
single-process training up to floating-point summation order.

This module knows nothing about SageMaker: the caller initialises the process group (train.py
does, from the variables torchrun sets) and passes a :class:`DataParallel` to
``ImplicitFactorizationModel.fit`` / ``fit_partial``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist


class DataParallel:
    """The ranks of an initialised default process group, as the trainer uses them."""

    def __init__(self) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "DataParallel needs an initialised torch.distributed process group "
                "(torch.distributed.init_process_group)"
            )
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes files and scores validation)."""
        return self.rank == 0

    # ------------------------------------------------------------------ shares of a batch
    def share(self, n: int) -> slice:
        """This rank's contiguous slice of ``n`` items cut into near-equal parts."""
        lo, hi = n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size
        return slice(lo, hi)

    def share_by_size(self, sizes: np.ndarray) -> slice:
        """This rank's contiguous run of rows of ``sizes`` interactions, cut so that every rank
        gets near-equal interactions (whole rows: the grouped softmax shares users)."""
        ends = np.cumsum(sizes)
        total = int(ends[-1]) if len(ends) else 0
        targets = total * np.arange(1, self.world_size) / self.world_size
        # searchsorted of increasing targets: the cuts are in [0, len(sizes)] and never decrease
        cuts = [0, *np.searchsorted(ends, targets, side="left").tolist(), len(sizes)]
        return slice(cuts[self.rank], cuts[self.rank + 1])

    # ------------------------------------------------------------------ collectives
    def reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the ranks. Which parameters have a gradient, and
        which of those are row-sparse, follows from the loss and the model alone (an empty share
        still gets zero gradients), so it is the same on every rank; a parameter without one is
        left without one, as a single process leaves it (Adam skips it)."""
        dense = []
        for p in params:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                p.grad = self._gather_sparse(p.grad)
            else:
                dense.append(p.grad)
        if dense:
            flat = torch.cat([g.reshape(-1) for g in dense])
            dist.all_reduce(flat)
            offset = 0
            for g in dense:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def _gather_sparse(self, grad: torch.Tensor) -> torch.Tensor:
        """Every rank's rows of a row-sparse gradient, concatenated (``LazyAdam`` coalesces
        them, summing the rows several ranks touched): O(rows touched) sent, not O(table)."""
        g = grad.coalesce()
        idx, val = g.indices()[0], g.values()
        count = torch.tensor([len(idx)], device=idx.device)
        counts = [torch.zeros_like(count) for _ in range(self.world_size)]
        dist.all_gather(counts, count)
        sizes = [int(c) for c in counts]
        most = max(sizes)
        pad = most - len(idx)
        idx = torch.cat([idx, idx.new_zeros(pad)])
        val = torch.cat([val, val.new_zeros((pad, *val.shape[1:]))])
        all_idx = [torch.empty_like(idx) for _ in range(self.world_size)]
        all_val = [torch.empty_like(val) for _ in range(self.world_size)]
        dist.all_gather(all_idx, idx)
        dist.all_gather(all_val, val)
        rows = torch.cat([i[:s] for i, s in zip(all_idx, sizes, strict=True)])
        vals = torch.cat([v[:s] for v, s in zip(all_val, sizes, strict=True)])
        return torch.sparse_coo_tensor(rows[None], vals, g.shape, check_invariants=False)

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over the ranks (in place, and returned)."""
        dist.all_reduce(value)
        return value

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (any picklable value), on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()

    def sync_state(self, net: torch.nn.Module, optimizer: Any, generator: torch.Generator) -> None:
        """Make every rank start from rank 0's parameters, Adam state and generator state
        (a fresh model initialised from an OS-random seed differs per rank; a resumed one is
        the same checkpoint everywhere, which this makes certain)."""
        for tensor in net.state_dict().values():
            dist.broadcast(tensor, src=0)
        layout = [
            (i, sorted(optimizer.state.get(p, {})))
            for i, p in enumerate(optimizer.param_groups[0]["params"])
        ]
        if self.gather_objects(layout) != [layout] * self.world_size:
            raise RuntimeError("the ranks' optimizer states differ in layout; cannot sync them")
        for p in optimizer.param_groups[0]["params"]:
            for value in optimizer.state.get(p, {}).values():
                dist.broadcast(value, src=0)
        generator.set_state(self.broadcast_object(generator.get_state()))
