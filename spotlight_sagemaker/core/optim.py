"""Adam, dense (``Adam``) and row-lazy (``LazyAdam``, for ``sparse=True``).

Both keep Adam's moments per parameter under ``state[param]`` (``exp_avg``, ``exp_avg_sq``,
``step``: what checkpoints store) and the learning rate in ``param_groups[0]["lr"]``, the slice
of the ``torch.optim.Optimizer`` interface the trainer and the artifacts use. They do not derive
from ``torch.optim.Optimizer``: constructing the first one of a process imports
``torch._dynamo``, which takes 1-2 s of CPU (more than training a small model for a dozen
epochs), for features (compiled steps, hooks) we do not use.

``Adam`` is ``torch.optim.Adam`` with ``fused=True``: the same kernel (``torch._fused_adam_``,
CPU since torch 2.4, CUDA), so the same numbers; where the kernel is missing it falls back to the
same update written out (equal up to rounding). ``weight_decay`` is Adam's coupled L2 (added to
the gradient), as Spotlight uses it.

``LazyAdam``: dense Adam (Spotlight's choice) updates and L2-decays every row of every table at
every step, which dominates training time once the tables are large (millions of rows). For a
row-sparse gradient ``LazyAdam`` updates only the rows the batch touched; the L2 term
(``weight_decay``) is added to those rows' gradients only. Dense gradients (e.g. the item table
under the full softmax) get the ordinary Adam update. Bias correction uses the optimiser's
global step, as ``torch.optim.SparseAdam`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class _Adam:
    """Parameters, their Adam state and one learning rate."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = [
            {"params": params, "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        ]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.detach_().zero_()

    def _state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """This parameter's state, created at its first step; ``step`` on the parameter's device
        (the fused kernel wants it there; checkpoints restore it on the CPU)."""
        state = self.state.get(p)
        if not state:
            state = self.state[p] = {
                "step": torch.zeros((), dtype=torch.float32, device=p.device),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        elif state["step"].device != p.device:
            state["step"] = state["step"].to(p.device, torch.float32)
        return state


def _dense_update(
    p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], group: dict[str, Any]
) -> None:
    """Adam's update of a whole tensor (``state["step"]`` already counts this step)."""
    lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    t = float(state["step"])
    m, v = state["exp_avg"], state["exp_avg_sq"]
    if wd:
        g = g.add(p, alpha=wd)
    m.mul_(b1).add_(g, alpha=1.0 - b1)
    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
    p.addcdiv_(m, (v / (1.0 - b2**t)).sqrt_().add_(eps), value=-lr / (1.0 - b1**t))


class Adam(_Adam):
    """``torch.optim.Adam(fused=True)`` without ``torch.optim`` (see the module docstring)."""

    _fused = hasattr(torch, "_fused_adam_")

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p)
                state["step"] += 1
                if Adam._fused and not p.grad.is_sparse:
                    try:
                        b1, b2 = group["betas"]
                        torch._fused_adam_(
                            [p],
                            [p.grad],
                            [state["exp_avg"]],
                            [state["exp_avg_sq"]],
                            [],
                            [state["step"]],
                            lr=group["lr"],
                            beta1=b1,
                            beta2=b2,
                            weight_decay=group["weight_decay"],
                            eps=group["eps"],
                            amsgrad=False,
                            maximize=False,
                        )
                        continue
                    except (RuntimeError, NotImplementedError):  # no kernel for this device
                        Adam._fused = False
                grad = p.grad.to_dense() if p.grad.is_sparse else p.grad
                _dense_update(p, grad, state, group)


class LazyAdam(_Adam):
    """Adam that updates only the rows present in a sparse gradient."""

    _fused = hasattr(torch, "_fused_adam_")

    def __init__(self, params: Iterable[torch.nn.Parameter], **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: per parameter, the row-sparse gradient :meth:`rows` made and the rows it gathered
        self._gathered: dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] = {}

    def rows(self, p: torch.nn.Parameter, idx: torch.Tensor) -> torch.Tensor:
        """The rows ``idx`` of ``p`` for one step's forward pass: the values of
        ``F.embedding(idx, p, sparse=True)``, for ``idx`` distinct and sorted (as
        ``torch.unique`` returns them), and the same gradient, made cheaper.

        The gradient of the returned rows becomes ``p``'s row-sparse gradient as it is, marked
        coalesced (the embedding's backward copies it and ``step`` would sort it again), and the
        next :meth:`step` updates the rows gathered here in place and writes them back instead
        of gathering them again: three passes over a step's rows fewer, on the step's largest
        blocks (the item rows of the sampled softmax). ``p`` must not change between this call
        and the step, as in any training step."""
        rows = p.detach().index_select(0, idx)
        leaf = rows.detach().requires_grad_()  # the same storage as rows

        def into_grad(grad: torch.Tensor) -> None:
            g = torch.sparse_coo_tensor(
                idx[None], grad, p.shape, is_coalesced=True, check_invariants=False
            )
            self._gathered[p] = (g, rows)
            # another gradient of p in this backward pass is added (and step gathers again)
            p.grad = g if p.grad is None else p.grad + g

        leaf.register_hook(into_grad)
        return leaf

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p)
                state["step"] += 1
                if not p.grad.is_sparse:
                    _dense_update(p, p.grad, state, group)
                    continue
                g = p.grad.coalesce()  # itself when already coalesced, as rows makes it
                # the rows gathered by `rows` serve only if the gradient is still the one made
                # there (not summed with another, not added to in place)
                gathered = self._gathered.get(p)
                rows = gathered[1] if gathered is not None and gathered[0] is g else None
                _rows_update(p, g.indices()[0], g.values(), state, group, rows)
        self._gathered.clear()


def _rows_update(
    p: torch.Tensor,
    idx: torch.Tensor,
    val: torch.Tensor,
    state: dict[str, torch.Tensor],
    group: dict[str, Any],
    rows: torch.Tensor | None = None,
) -> None:
    """Adam's update of the (distinct) rows ``idx`` of ``p`` whose gradient is ``val``: the
    rows of the parameter and of both moments are gathered (``index_select``), updated by the
    fused kernel in one pass where it exists, and written back (``index_copy_``): a fraction of
    the time of advanced indexing and of a chain of elementwise passes. ``rows``: the rows of
    ``p`` already gathered (``p[idx]``, updated in place), else they are gathered here."""
    rows = p.index_select(0, idx) if rows is None else rows
    m_rows = state["exp_avg"].index_select(0, idx)
    v_rows = state["exp_avg_sq"].index_select(0, idx)
    if LazyAdam._fused:
        b1, b2 = group["betas"]
        try:
            torch._fused_adam_(
                [rows],
                [val],
                [m_rows],
                [v_rows],
                [],
                [state["step"]],
                lr=group["lr"],
                beta1=b1,
                beta2=b2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                amsgrad=False,
                maximize=False,
            )
        except (RuntimeError, NotImplementedError):  # no kernel for this device
            LazyAdam._fused = False
            rows = p.index_select(0, idx)  # the kernel may have written part of them
            m_rows = state["exp_avg"].index_select(0, idx)
            v_rows = state["exp_avg_sq"].index_select(0, idx)
    if not LazyAdam._fused:
        row_state = {"step": state["step"], "exp_avg": m_rows, "exp_avg_sq": v_rows}
        _dense_update(rows, val, row_state, group)
    p.index_copy_(0, idx, rows)
    state["exp_avg"].index_copy_(0, idx, m_rows)
    state["exp_avg_sq"].index_copy_(0, idx, v_rows)
