"""One rank of a data-parallel core training run (started by torchrun in test_parallel.py).

``python _parallel_worker.py OUT_DIR HYPERPARAMETERS_JSON [EPOCHS_FIRST]``: every rank builds
the same synthetic interactions (:func:`synthetic`), trains with gloo and writes its parameters
to ``OUT_DIR/rank-<r>.npz``. With EPOCHS_FIRST the training is cut in two ``fit_partial`` calls.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from spotlight_sagemaker.core import ImplicitFactorizationModel, Interactions
from spotlight_sagemaker.core.parallel import DataParallel


def synthetic(seed: int = 0, users: int = 60, items: int = 40, n: int = 900) -> Interactions:
    """Planted-structure interactions with weights (the same on every rank)."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, n)
    i = (u * 7 + rng.integers(0, 6, n)) % items
    pairs = np.unique(np.stack([u, i], 1), axis=0)
    w = rng.uniform(0.5, 2.0, len(pairs))
    return Interactions.from_arrays(
        [f"u{x}" for x in pairs[:, 0]], [f"i{x}" for x in pairs[:, 1]], weights=w
    )


def train(hp: dict, parallel: DataParallel | None, first: int | None = None):
    data = synthetic()
    model = ImplicitFactorizationModel(**hp)
    if first is None:
        model.fit(data, parallel=parallel)
    else:
        model.fit_partial(data, n_iter=first, parallel=parallel)
        model.fit_partial(data, n_iter=hp["n_iter"] - first, parallel=parallel)
    return model


def main() -> None:
    out, hp = Path(sys.argv[1]), json.loads(sys.argv[2])
    first = int(sys.argv[3]) if len(sys.argv) > 3 else None
    torch.set_num_threads(1)
    cuda = hp.get("device") == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=60))
    try:
        parallel = DataParallel()
        model = train(hp, parallel, first)
        params = {k: v.numpy() for k, v in model.copy_parameters().items()}
        losses = np.array([h.loss for h in model.history])
        np.savez(out / f"rank-{parallel.rank}.npz", losses=losses, seed=model.seed, **params)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
