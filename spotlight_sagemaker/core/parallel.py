"""Data-parallel training over ``torch.distributed``: one model, several processes.

Every process (rank) holds the whole training set, the same seed and the same batch order; in
each step it computes the loss of its share of the global batch, normalised by the global
batch's size (or weight), so that the sum of the ranks' gradients is the single-process
gradient. :meth:`DataParallel.reduce_gradients` sums them in one all-reduce (row-sparse
gradients, under ``sparse=True``, over the union of the rows any rank touched, so that
``LazyAdam`` still moves only the rows the global batch touched), and every rank then applies
the same Adam step: the parameters stay identical without ever being sent again.

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
        left without one, as a single process leaves it (Adam skips it).

        Three collectives a step, whatever the number of parameters: the row-sparse gradients'
        row counts and row ids are gathered, every rank forms the union of each parameter's
        rows, and one all-reduce sums a flat buffer holding the dense gradients and each sparse
        gradient's values over that union: O(rows touched by any rank) sent, not O(table), and
        no row sent twice."""
        dense = [p.grad for p in params if p.grad is not None and not p.grad.is_sparse]
        sparse = [p for p in params if p.grad is not None and p.grad.is_sparse]
        coalesced = [p.grad.coalesce() for p in sparse]  # type: ignore[union-attr]
        unions = self._row_unions([g.indices()[0] for g in coalesced]) if sparse else []
        parts = [g.reshape(-1) for g in dense]
        for g, rows in zip(coalesced, unions, strict=True):
            block = g.values().new_zeros((len(rows), *g.values().shape[1:]))
            block.index_copy_(0, torch.searchsorted(rows, g.indices()[0]), g.values())
            parts.append(block.reshape(-1))
        if not parts:
            return
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        offset = 0
        for g in dense:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        for p, g, rows in zip(sparse, coalesced, unions, strict=True):
            shape = (len(rows), *g.values().shape[1:])
            n = int(np.prod(shape))
            vals = flat[offset : offset + n].view(shape)
            offset += n
            p.grad = torch.sparse_coo_tensor(rows[None], vals, g.shape, check_invariants=False)

    def _row_unions(self, ids: list[torch.Tensor]) -> list[torch.Tensor]:
        """For each tensor of row ids (one per sparse parameter, this rank's), the sorted union
        of every rank's, from two all-gathers (the lengths, then the ids, padded)."""
        lengths = torch.tensor([len(i) for i in ids], dtype=torch.int64, device=ids[0].device)
        all_lengths = [torch.empty_like(lengths) for _ in range(self.world_size)]
        dist.all_gather(all_lengths, lengths)
        totals = [int(x.sum()) for x in all_lengths]
        flat = torch.cat(ids)
        flat = torch.cat([flat, flat.new_zeros(max(totals) - len(flat))])
        gathered = [torch.empty_like(flat) for _ in range(self.world_size)]
        dist.all_gather(gathered, flat)
        per_param: list[list[torch.Tensor]] = [[] for _ in ids]
        for rank_ids, rank_lengths in zip(gathered, all_lengths, strict=True):
            start = 0
            for k, n in enumerate(rank_lengths.tolist()):
                per_param[k].append(rank_ids[start : start + n])
                start += n
        return [torch.unique(torch.cat(chunks)) for chunks in per_param]

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
