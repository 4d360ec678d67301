"""Data-parallel core training (2 gloo processes under torchrun) equals one process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _parallel_worker import train
from _procs import run_in_own_group

WORKER = Path(__file__).with_name("_parallel_worker.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")


def run_ranks(tmp_path: Path, hp: dict, first: int | None = None) -> list[dict]:
    """Train with 2 ranks; each rank's parameters and epoch losses."""
    args = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(WORKER)]
    args += [str(tmp_path), json.dumps(hp)] + ([] if first is None else [str(first)])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = run_in_own_group(args, env, tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [dict(np.load(tmp_path / f"rank-{r}.npz")) for r in (0, 1)]


CASES = {
    # the default loss: the full softmax grouped by user (whole users per rank), weighted
    "softmax-grouped": {"use_weights": True},
    # the softmax on shared sampled negatives (drawn alike on every rank), row-sparse
    "softmax-sampled": {"softmax_negatives": 16},
    # a pairwise loss with row-sparse gradients (LazyAdam), its training cut in two calls
    "bpr-sparse": {"loss": "bpr", "sparse": True},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_ranks_train_the_single_process_model(tmp_path, case):
    hp = {"n_iter": 3, "embedding_dim": 8, "batch_size": 64, "random_state": 3, **CASES[case]}
    first = 1 if case == "bpr-sparse" else None
    ranks = run_ranks(tmp_path, hp, first)
    single = train(hp, None, first)
    expected = {k: v.numpy() for k, v in single.copy_parameters().items()}
    for name, value in expected.items():
        # every rank applies the same summed gradient: identical parameters
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])
        np.testing.assert_allclose(ranks[0][name], value, rtol=0, atol=2e-6, err_msg=name)
    losses = [h.loss for h in single.history]
    np.testing.assert_allclose(ranks[0]["losses"], losses, rtol=1e-6)
    assert int(ranks[0]["seed"]) == single.seed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NCCL); none here")
def test_two_ranks_on_gpus_match_one(tmp_path):  # pragma: no cover - GPU machines only
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs for 2 NCCL ranks")
    hp = {"n_iter": 2, "embedding_dim": 8, "batch_size": 64, "random_state": 3, "device": "cuda"}
    ranks = run_ranks(tmp_path, hp)
    for name in ("user_embeddings", "item_embeddings"):
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])
