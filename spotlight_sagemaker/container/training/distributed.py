"""train.py under ``distribution={"torch_distributed": {"enabled": True}}``: the process group.

The PyTorch training image starts train.py with torchrun (``--nnodes`` = instances,
``--nproc_per_node`` = GPUs per instance, else 1 or ``sagemaker_mpi_num_of_processes_per_host``),
which sets ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``.
:func:`start` joins the group (gloo for CPU tensors, NCCL for CUDA ones, each rank on GPU
``LOCAL_RANK``) with a timeout, so that a rank waiting for a dead one fails instead of hanging.
MPI launches (``mpi``, ``smdistributed``, ``pytorchddp``) are refused. What every rank does
then is in :mod:`.job` and :mod:`spotlight_sagemaker.core.parallel`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ...contract.hyperparameters import UserError
from ...core.parallel import DataParallel

logger = logging.getLogger("spotlight_sagemaker.container.training.distributed")

#: seconds a rank waits in a collective (e.g. while rank 0 scores validation) before failing;
#: the environment variable of that name overrides it
TIMEOUT_VARIABLE = "SPOTLIGHT_DIST_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 1800.0
SUPPORTED = "distribution={'torch_distributed': {'enabled': True}} (torchrun)"


def refuse_mpi(processes: int, launched_by: str) -> UserError:
    """The error for a launch train.py does not join (MPI's variables, no torchrun's)."""
    return UserError(
        f"train.py was started by MPI as {processes} processes ({launched_by}={processes}: "
        "distribution mpi, smdistributed or pytorchddp); data-parallel training supports "
        f"only {SUPPORTED}"
    )


def start(environ: Mapping[str, str]) -> DataParallel:
    """Join the process group torchrun described in the environment."""
    try:
        seconds = float(environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT_SECONDS)
    except ValueError:
        raise UserError(f"{TIMEOUT_VARIABLE} must be a number of seconds") from None
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(environ.get("LOCAL_RANK") or 0) % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, timeout=timedelta(seconds=seconds))
    parallel = DataParallel()
    logger.info(
        "data-parallel training: rank %d of %d (%s, timeout %.0f s)",
        parallel.rank,
        parallel.world_size,
        backend,
        seconds,
    )
    return parallel


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_same(parallel: DataParallel | None, value: Any, what: str) -> None:
    """Fail clearly unless every rank holds the same ``value`` (small and picklable)."""
    if parallel is None:
        return
    values = parallel.gather_objects(value)
    if any(v != values[0] for v in values):
        raise UserError(
            f"the ranks of this data-parallel job differ in {what} (rank 0: {values[0]!r}, "
            f"others: {sorted({repr(v) for v in values[1:]})}); every rank must read the same "
            "training channel and checkpoints"
        )
