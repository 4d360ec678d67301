"""The package's Adam against torch.optim.Adam, and the import it avoids."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from spotlight_sagemaker.core.optim import Adam, LazyAdam


def _run(make, steps: int = 5, sparse: bool = False, wd: float = 0.0) -> list[torch.Tensor]:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 8, sparse=sparse)
    dense = torch.nn.Parameter(torch.randn(4, 8))
    opt = make([emb.weight, dense], lr=0.05, weight_decay=wd)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(0, 50, (16,), generator=gen)
        loss = (emb(idx) @ dense.T).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return [emb.weight.detach().clone(), dense.detach().clone()]


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_is_torch_fused_adam(wd):
    ours = _run(Adam, wd=wd)
    theirs = _run(lambda p, **kw: torch.optim.Adam(p, fused=True, **kw), wd=wd)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_adam_fallback_matches_the_kernel(monkeypatch):
    fused = _run(Adam, wd=0.01)
    monkeypatch.setattr(Adam, "_fused", False)
    plain = _run(Adam, wd=0.01)
    start = _run(Adam, steps=0)
    for a, b, s in zip(fused, plain, start, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(b, s)  # it did train


def test_lazy_adam_moves_only_touched_rows():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 4, sparse=True)
    before = emb.weight.detach().clone()
    opt = LazyAdam([emb.weight], lr=0.1, weight_decay=0.1)
    emb(torch.tensor([1, 3])).sum().backward()
    opt.step()
    moved = (emb.weight.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert moved == [1, 3]
    assert float(opt.state[emb.weight]["step"]) == 1.0


def test_training_does_not_import_dynamo():
    """torch.optim imports torch._dynamo (1-2 s of CPU) at the first optimiser: we avoid it."""
    code = (
        "import sys\n"
        "from spotlight_sagemaker.core.interactions import Interactions\n"
        "from spotlight_sagemaker.core.factorization import ImplicitFactorizationModel\n"
        "import numpy as np\n"
        "data = Interactions.from_arrays(np.array(['a','b','c']), np.array(['x','y','x']))\n"
        "ImplicitFactorizationModel(n_iter=2, embedding_dim=4).fit(data)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _lazy_run(make, sparse: bool, steps: int = 6) -> torch.Tensor:
    """Rows all touched at every step (with repeats), so lazy and dense Adam agree."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(12, 4, sparse=sparse)
    opt = make([emb.weight], lr=0.05, weight_decay=0.01)
    gen = torch.Generator().manual_seed(3)
    for _ in range(steps):
        idx = torch.cat(
            [torch.randperm(12, generator=gen), torch.randint(0, 12, (5,), generator=gen)]
        )
        loss = emb(idx).square().sum() + emb(idx)[:, 0].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return emb.weight.detach().clone()


def test_lazy_adam_equals_adam_when_every_row_is_touched():
    lazy = _lazy_run(LazyAdam, sparse=True)
    dense = _lazy_run(lambda p, **kw: torch.optim.Adam(p, **kw), sparse=False)
    torch.testing.assert_close(lazy, dense, rtol=1e-5, atol=1e-6)


def test_lazy_adam_fallback_matches_the_kernel(monkeypatch):
    fused = _lazy_run(LazyAdam, sparse=True)
    monkeypatch.setattr(LazyAdam, "_fused", False)
    plain = _lazy_run(LazyAdam, sparse=True)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    assert not torch.equal(plain, _lazy_run(LazyAdam, sparse=True, steps=0))


@pytest.mark.parametrize("second_lookup", [False, True])
def test_lazy_adam_rows_equal_the_sparse_embedding(second_lookup):
    """``LazyAdam.rows`` (a coalesced gradient, the gathered rows reused by the step) trains
    like ``F.embedding(..., sparse=True)``; a second lookup of the table in the same backward
    pass is added to its gradient, not lost."""

    def run(reuse: bool) -> torch.Tensor:
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(30, 8))
        opt = LazyAdam([weight], lr=0.05, weight_decay=0.01)
        gen = torch.Generator().manual_seed(1)
        for _ in range(6):
            idx = torch.unique(torch.randint(0, 30, (12,), generator=gen))
            rows = opt.rows(weight, idx) if reuse else F.embedding(idx, weight, sparse=True)
            loss = rows.square().sum() + rows.sum(-1).exp().mean()
            if second_lookup:
                loss = loss + F.embedding(idx[:3], weight, sparse=True).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return weight.detach().clone()

    torch.testing.assert_close(run(True), run(False), rtol=0, atol=0)
