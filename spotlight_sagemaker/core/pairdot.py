"""Scores of a step's (user, item) pairs, ``<p[row_k], q[col_k]>``, and their gradients.

The softmax loss grouped by user scores every positive of a step's users: thousands of pairs
per step. Gathering both vectors of every pair (``p[rows] * q[cols]``) and scattering their
gradients back moves four ``pairs x dim`` blocks per step; on the CPU that was half of a pass.
Here the pairs are the non-zeros of a ``users x items`` CSR pattern (rows sorted, as the trainer
lists them): the forward pass is one sampled dense-dense product (``torch.sparse.sampled_addmm``)
and the backward pass two sparse-dense products, none of which materialises a ``pairs x dim``
block (measured 5-8x less time than the gathers at 8,192 pairs x 256 dims, one thread).

``pair_dot`` uses them on the CPU; elsewhere, or where a torch build lacks a kernel, the
gather (``index_select``, whose backward is ``index_add_``). Both give the same numbers up to
float rounding (``tests/test_model.py``).
"""

from __future__ import annotations

import warnings

import torch


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]):
    with warnings.catch_warnings():  # "sparse CSR support is in beta": these ops are stable
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


class _SparsePairDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, q, crow, col, row):
        size = (p.shape[0], q.shape[0])
        ctx.save_for_backward(p, q, crow, col, row)
        ones = torch.ones(len(col), dtype=p.dtype, device=p.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = torch.sparse.sampled_addmm(_csr(crow, col, ones, size), p, q.T, beta=0.0)
        return out.values().clone()

    @staticmethod
    def backward(ctx, grad):
        p, q, crow, col, row = ctx.saved_tensors
        grad = grad.contiguous()
        gp = gq = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if ctx.needs_input_grad[0]:
                gp = _csr(crow, col, grad, (p.shape[0], q.shape[0])) @ q
            if ctx.needs_input_grad[1]:  # the transpose: the pairs sorted by item
                order = torch.argsort(col, stable=True)
                counts = torch.bincount(col, minlength=q.shape[0])
                crow_t = torch.zeros(q.shape[0] + 1, dtype=torch.int64, device=col.device)
                torch.cumsum(counts, 0, out=crow_t[1:])
                gq = _csr(crow_t, row[order], grad[order], (q.shape[0], p.shape[0])) @ p
        return gp, gq, None, None, None


_SPARSE_KERNELS = {"cpu": True}  # set to False for a device the first time a kernel is missing


def pair_dot(
    p: torch.Tensor, q: torch.Tensor, crow: torch.Tensor, row: torch.Tensor, col: torch.Tensor
) -> torch.Tensor:
    """``(p[row] * q[col]).sum(-1)``: ``p`` ``[users, d]``, ``q`` ``[items, d]``; ``row``
    sorted, ``crow`` its CSR row pointer (``len(p) + 1`` entries), ``col`` any item indices."""
    if _SPARSE_KERNELS.get(p.device.type, False) and p.dtype == torch.float32:
        try:
            return _SparsePairDot.apply(p, q, crow, col, row)
        except (RuntimeError, NotImplementedError):  # a torch build without the kernels
            _SPARSE_KERNELS[p.device.type] = False
    return (p.index_select(0, row) * q.index_select(0, col)).sum(-1)
