"""The metric lines ``train.py`` prints and the regexes SageMaker reads them with.

SageMaker applies each ``metric_definitions`` regex to every log line of a training job and
takes group 1 as a float; hyperparameter tuning optimises one of these names. The formats and
the regexes live here, side by side, so they cannot drift: ``train.py`` prints with the
``format_*`` functions and the SDK side passes :data:`METRIC_DEFINITIONS` to the estimator.

Lines::

    epoch=3 loss=0.123456 seconds=0.410 throughput=160000
    validation:ndcg@10=0.381200 validation:precision@10=0.300000 ... users=943
    epoch=5 validation:ndcg@10=0.350000 ...          (intermediate, with ``eval_every``)

This module imports nothing but the standard library (it runs in the training container).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

#: A decimal or scientific float, as Python's ``float()`` and SageMaker both read it.
FLOAT = r"([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"

#: The validation metrics, in the order they are printed (keys of ``core.evaluate``).
VALIDATION_METRICS = ("ndcg@10", "precision@10", "recall@10", "mrr", "coverage@10")

#: The metric to maximise in hyperparameter tuning.
OBJECTIVE_METRIC = "validation:ndcg@10"

METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": "train:loss", "Regex": r"epoch=[0-9]+ loss=" + FLOAT},
    {"Name": "train:throughput", "Regex": r"epoch=[0-9]+ loss=\S+ seconds=\S+ throughput=" + FLOAT},
    {"Name": "train:epoch_seconds", "Regex": r"epoch=[0-9]+ loss=\S+ seconds=" + FLOAT},
    *(
        {"Name": f"validation:{name}", "Regex": re.escape(f"validation:{name}=") + FLOAT}
        for name in VALIDATION_METRICS
    ),
]


def _number(value: float, digits: int) -> str:
    value = float(value)
    if not math.isfinite(value):  # nan/inf cannot match FLOAT: SageMaker skips the point
        return str(value)
    return f"{value:.{digits}f}"


def format_epoch_line(epoch: int, loss: float, seconds: float, throughput: float) -> str:
    """The one line printed after each training epoch.

    Args:
        epoch: 1-based epoch number (counts across a resumed run).
        loss: mean training loss of the epoch.
        seconds: wall time of the epoch.
        throughput: interactions per second.
    """
    return (
        f"epoch={int(epoch)} loss={_number(loss, 6)} seconds={_number(seconds, 3)} "
        f"throughput={_number(throughput, 0)}"
    )


def format_validation_line(metrics: Mapping[str, float], epoch: int | None = None) -> str:
    """The validation metrics on one line (``epoch=N`` first for an intermediate evaluation).

    Args:
        metrics: the dict of ``core.evaluate`` (``ndcg@10``, ``precision@10``, ...).
        epoch: the epoch of an intermediate evaluation; ``None`` for the final one.

    Raises:
        ValueError: ``metrics`` lacks one of :data:`VALIDATION_METRICS`.
    """
    missing = [m for m in VALIDATION_METRICS if m not in metrics]
    if missing:
        raise ValueError(f"metrics lacks {missing}; it must hold {list(VALIDATION_METRICS)}")
    parts = [f"validation:{m}={_number(metrics[m], 6)}" for m in VALIDATION_METRICS]
    if "users" in metrics:
        parts.append(f"users={int(metrics['users'])}")
    line = " ".join(parts)
    return line if epoch is None else f"epoch={int(epoch)} {line}"


def parse_metric_lines(lines: Iterable[str]) -> dict[str, list[float]]:
    """Apply :data:`METRIC_DEFINITIONS` to log lines as SageMaker does (first match per line).

    Returns:
        Metric name -> values in log order (names without a match are absent).
    """
    compiled = [(d["Name"], re.compile(d["Regex"])) for d in METRIC_DEFINITIONS]
    out: dict[str, list[float]] = {}
    for line in lines:
        for name, regex in compiled:
            match = regex.search(line)
            if match:
                out.setdefault(name, []).append(float(match.group(1)))
    return out
