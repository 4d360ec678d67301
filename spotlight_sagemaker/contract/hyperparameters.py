"""``train.py``'s hyperparameters: the model's (core ``PARAMS``) plus the job options below.

SageMaker passes hyperparameters as ``--name value`` pairs, every value a string (``None`` from
the SDK arrives as an empty string). Names train.py does not know, such as
``_tuning_objective_metric`` under hyperparameter tuning, are ignored and logged; a known name
with a bad value is a :class:`UserError` that names it and the allowed values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import PARAMS, SpotlightError, coerce
from ..core.config import PRESETS
from ..core.interactions import DUPLICATE_POLICIES

RESUME_POLICIES = ("auto", "never")
#: ``n_iter=auto``: the number of epochs is chosen on the job's validation rows (early stopping);
#: ``popularity_prior=auto``: the prior is chosen there too. Either is the default preset's
#: default when the name is not given.
AUTO = "auto"
#: The model hyperparameters ``auto`` applies to, and the option that says it was applied.
AUTO_PARAMS = {"n_iter": "choose_epochs", "popularity_prior": "choose_prior"}
_OFF = ("", "none", "null", "off", "false")


class UserError(SpotlightError, ValueError):
    """A problem the job's author can fix (input data, hyperparameters, channels). Like every
    error the core raises on purpose, a :class:`~spotlight_sagemaker.core.SpotlightError`:
    train.py reports that one family as a user error."""


#: Settings (beside every ``sagemaker_*_enabled`` flag) that make the PyTorch training image
#: start several training processes (torchrun, MPI, SMDDP, XLA).
LAUNCHER_SETTINGS = (
    "sagemaker_mpi_num_of_processes_per_host",
    "sagemaker_mpi_custom_mpi_options",
    "sagemaker_distributed_dataparallel_custom_mpi_options",
    "sagemaker_distribution_instance_groups",
)
#: Why they are refused as hyperparameters (said by the estimator, before any AWS call).
ONE_PROCESS = (
    "set the launch with the estimator's distribution={'torch_distributed': {'enabled': True}} "
    "(the only multi-process launch train.py joins), not as a hyperparameter"
)


def is_launcher_setting(name: str) -> bool:
    """Whether a ``sagemaker_*`` hyperparameter asks the image for a multi-process launch, as
    ``distribution=`` would (``sagemaker_torch_distributed_enabled``, ``sagemaker_mpi_enabled``,
    ...)."""
    return (name.startswith("sagemaker_") and name.endswith("_enabled")) or (
        name in LAUNCHER_SETTINGS
    )


def _choice(name: str, choices: Sequence[str]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise UserError(
                f"hyperparameter {name!r} must be one of {list(choices)}, got {value!r}"
            )
        return v

    return parse


def _number(name: str, kind: type, lo: float, hi: float | None, hi_open: bool = False):
    def parse(value: str) -> Any:
        try:
            f = float(value)
            if kind is int and not f.is_integer():
                raise ValueError
            out = kind(f)
        except (TypeError, ValueError, OverflowError):
            out = None
        ok = out is not None and out >= lo and (hi is None or (out < hi if hi_open else out <= hi))
        if not ok:
            what = "an integer" if kind is int else "a number"
            top = "" if hi is None else f" and {'<' if hi_open else '<='} {hi}"
            raise UserError(f"hyperparameter {name!r} must be {what} >= {lo}{top}, got {value!r}")
        return out

    return parse


def _path_or_off(value: str) -> Path | None:
    return None if value.strip().lower() in _OFF else Path(value)


@dataclass(frozen=True)
class Option:
    """A train.py hyperparameter that is not a model hyperparameter."""

    name: str
    default: str
    help: str
    parse: Callable[[str], Any]


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "preset",
            "default",
            "defaults for every model hyperparameter not given: "
            "'default' (ours) or 'spotlight' (Spotlight 0.1.6's)",
            _choice("preset", PRESETS),
        ),
        Option(
            "validation_fraction",
            "0.1",
            "share of the training rows held out for "
            "validation when there is no validation channel; 0 trains on every row",
            _number("validation_fraction", float, 0.0, 1.0, hi_open=True),
        ),
        Option(
            "validation_seed",
            "0",
            "seed of the hold-out split (fixed, so tuning trials and "
            "a resumed job hold out the same rows)",
            _number("validation_seed", int, 0, 2**32 - 1),
        ),
        Option(
            "max_epochs",
            "200",
            "with n_iter=auto (the default preset's default): the most epochs early stopping "
            "may train",
            _number("max_epochs", int, 1, 100_000),
        ),
        Option(
            "patience",
            "5",
            "with n_iter=auto: stop after this many epochs without a better validation NDCG@10",
            _number("patience", int, 1, 100_000),
        ),
        Option(
            "eval_every",
            "0",
            "also print validation metrics every N epochs (0: only at the end)",
            _number("eval_every", int, 0, None),
        ),
        Option(
            "checkpoint_dir",
            "<base>/checkpoints",
            "where checkpoints go (SageMaker's checkpoint_local_path); 'none' disables "
            "checkpoints; not given: <base>/checkpoints inside a SageMaker job, none outside",
            _path_or_off,
        ),
        Option(
            "checkpoint_interval",
            "60",
            "seconds of training between checkpoints; a model's first and last epochs are "
            "always checkpointed (0: every epoch)",
            _number("checkpoint_interval", float, 0.0, 86_400.0),
        ),
        Option(
            "resume",
            "auto",
            "'auto': continue from a matching checkpoint; 'never': discard "
            "existing checkpoints and start fresh",
            _choice("resume", RESUME_POLICIES),
        ),
        Option(
            "duplicates",
            "error",
            "a repeated (user_id, item_id) row: 'error', 'first' "
            "(keep one) or 'sum' (keep one, summing weights)",
            _choice("duplicates", DUPLICATE_POLICIES),
        ),
    )
}


def _pairs(argv: Sequence[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    pairs: list[tuple[str, str | None]] = []
    stray: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--") and len(tok) > 2:
            key = tok[2:]
            if "=" in key:
                key, value = key.split("=", 1)
                i += 1
            elif i + 1 < len(argv):
                value, i = argv[i + 1], i + 2
            else:
                value, i = None, i + 1
            pairs.append((key.replace("-", "_"), value))
        else:
            stray.append(tok)
            i += 1
    return pairs, stray


def parse_hyperparameters(
    argv: Sequence[str], base_dir: Path, in_job: bool = True
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Split ``--name value`` arguments into model hyperparameters and job options.

    ``checkpoint_dir`` not given is ``<base_dir>/checkpoints`` inside a SageMaker job
    (``in_job``) and None (no checkpoints) outside one, so that a rerun outside SageMaker never
    resumes an earlier run's model unless asked to.

    Returns:
        ``(model_overrides, options, ignored)``: the model hyperparameters given (checked and
        converted), every option (defaults filled in) plus ``choose_epochs`` and
        ``choose_prior`` (whether ``n_iter`` and ``popularity_prior`` are chosen on the
        validation rows), and the ignored names and tokens.

    Raises:
        UserError: a known name without a value or with a bad one.
    """
    pairs, ignored = _pairs(argv)
    said_auto: set[str] = set()
    model: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in pairs:
        if key not in PARAMS and key not in OPTIONS:
            ignored.append(key)
            continue
        if value is None:
            raise UserError(f"hyperparameter {key!r} has no value")
        if key in OPTIONS:
            given[key] = value
            continue
        if key in AUTO_PARAMS and value.strip().lower() == AUTO:
            model.pop(key, None)  # absent from the overrides: the value is chosen
            said_auto.add(key)
            continue
        if value.strip() == "" and PARAMS[key].nullable:
            model[key] = None
            continue
        try:
            model[key] = coerce(key, value)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    options: dict[str, Any] = {}
    for name, opt in OPTIONS.items():
        if name in given:
            options[name] = opt.parse(given[name])
        elif name == "checkpoint_dir":
            options[name] = base_dir / "checkpoints" if in_job else None
        else:
            options[name] = opt.parse(opt.default)
    # name=auto, or the name not given under the default preset: chosen on validation rows
    # (the Spotlight preset keeps Spotlight's fixed values unless told auto)
    for name, flag in AUTO_PARAMS.items():
        options[flag] = name in said_auto or (name not in model and options["preset"] == "default")
    return model, options, ignored
