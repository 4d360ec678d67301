"""``SpotlightEstimator(distribution=...)``: what is accepted and what the image is sent.

train.py trains data-parallel when the PyTorch training image starts it with torchrun, which
it does for ``distribution={"torch_distributed": {"enabled": True}}`` (the hyperparameter
``sagemaker_torch_distributed_enabled``): one process per GPU of every instance, else one per
instance, or ``processes_per_host`` (sent as ``sagemaker_mpi_num_of_processes_per_host``, the
setting the image's torchrun launcher reads). The other launchers (``mpi``, ``smdistributed``,
``pytorchddp``, ``pytorchxla``, ...) start train.py under MPI or XLA, which it does not join:
they are refused here, before any AWS call.
"""

from __future__ import annotations

from typing import Any

TORCH_DISTRIBUTED = "torch_distributed"
ENABLED_PARAM = "sagemaker_torch_distributed_enabled"
PROCESSES_PARAM = "sagemaker_mpi_num_of_processes_per_host"
INSTANCE_TYPE_PARAM = "sagemaker_instance_type"
#: the launcher hyperparameters this module sets (and :func:`from_hyperparameters` reads back)
PARAMS = (ENABLED_PARAM, PROCESSES_PARAM, INSTANCE_TYPE_PARAM)
USAGE = "distribution={'torch_distributed': {'enabled': True}} (optionally 'processes_per_host')"


def launcher_hyperparameters(
    distribution: dict[str, Any] | None, instance_type: Any
) -> dict[str, Any]:
    """The hyperparameters that ask the image for a torchrun launch (none without
    ``distribution``).

    Raises:
        ValueError: any other strategy or key, or a bad ``processes_per_host``.
    """
    if not distribution:
        return {}
    if not isinstance(distribution, dict) or set(distribution) != {TORCH_DISTRIBUTED}:
        raise ValueError(
            f"distribution={distribution!r}: train.py trains data-parallel only under "
            f"torchrun: {USAGE}; mpi, smdistributed, pytorchddp and the other launchers are "
            "not supported"
        )
    spec = distribution[TORCH_DISTRIBUTED]
    unknown = set(spec) - {"enabled", "processes_per_host"} if isinstance(spec, dict) else None
    if unknown is None or unknown:
        raise ValueError(
            f"distribution['torch_distributed']={spec!r}: the keys are 'enabled' and "
            "'processes_per_host'"
        )
    if spec.get("enabled") is not True:
        raise ValueError(f"distribution={distribution!r}: {USAGE}, or no distribution")
    out: dict[str, Any] = {ENABLED_PARAM: True}
    if isinstance(instance_type, str):
        out[INSTANCE_TYPE_PARAM] = instance_type
    if "processes_per_host" in spec:
        n = spec["processes_per_host"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(
                f"distribution['torch_distributed']['processes_per_host'] must be an integer "
                f">= 1, got {n!r}"
            )
        out[PROCESSES_PARAM] = n
    return out


def from_hyperparameters(hps: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A job's ``distribution`` (None without one) and its other hyperparameters (``attach``)."""
    rest = {k: v for k, v in hps.items() if k not in PARAMS}
    if hps.get(ENABLED_PARAM) not in (True, "true", "True"):
        return None, rest
    spec: dict[str, Any] = {"enabled": True}
    if PROCESSES_PARAM in hps:
        spec["processes_per_host"] = int(hps[PROCESSES_PARAM])
    return {TORCH_DISTRIBUTED: spec}, rest
