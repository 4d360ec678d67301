"""A lazy Adam for row-sparse gradients (``sparse=True``).

Dense Adam (Spotlight's choice) updates and L2-decays every row of every table at every step,
which dominates training time once the tables are large (millions of rows). ``LazyAdam`` keeps
Adam's moments per row but, for a row-sparse gradient, updates only the rows the batch touched;
the L2 term (``weight_decay``) is added to those rows' gradients only. Dense gradients (e.g. the
item table under the full softmax) get the ordinary Adam update. Bias correction uses the
optimiser's global step, as ``torch.optim.SparseAdam`` does.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class LazyAdam(torch.optim.Optimizer):
    """Adam that updates only the rows present in a sparse gradient."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - the torch.optim contract
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = (
                group["lr"],
                group["betas"],
                group["eps"],
                group["weight_decay"],
            )
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(())
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                step_size = lr / (1.0 - b1**t)
                correction2 = 1.0 - b2**t
                if p.grad.is_sparse:
                    g = p.grad.coalesce()
                    idx, val = g.indices()[0], g.values()
                    if wd:
                        val = val + wd * p[idx]
                    m_rows = m[idx].mul_(b1).add_(val, alpha=1.0 - b1)
                    v_rows = v[idx].mul_(b2).addcmul_(val, val, value=1.0 - b2)
                    m[idx] = m_rows
                    v[idx] = v_rows
                    denom = (v_rows / correction2).sqrt_().add_(eps)
                    p.index_add_(0, idx, m_rows.div_(denom).mul_(-step_size))
                else:
                    g = p.grad if not wd else p.grad.add(p, alpha=wd)
                    m.mul_(b1).add_(g, alpha=1.0 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                    p.addcdiv_(m, (v / correction2).sqrt_().add_(eps), value=-step_size)
