"""Hyperparameters: names, types, allowed values, Spotlight's defaults and ours.

This table is the single source of truth for the core model, ``train.py``'s arguments and the
client-side checks in the estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .losses import LOSSES
from .sampling import SAMPLERS

DEVICES = ("auto", "cpu", "cuda")
L2_RULES = ("weight_decay", "per_interaction")
#: ``l2="auto"`` (per_interaction only): ``L2_AUTO_SCALE / mean interactions per user`` of the
#: data fit on, clipped to ``L2_AUTO_RANGE`` (docs/model.md says how the rule was chosen).
AUTO = "auto"
L2_AUTO_SCALE = 3.0
L2_AUTO_RANGE = (0.02, 0.15)


#: ``sparse="auto"``: row-sparse updates when users x items exceeds this many cells, the size
#: beyond which even the softmax loss trains on sampled negatives (``trainer``), so that a step
#: touches a few rows of large tables and dense Adam's update of every row would dominate.
SPARSE_AUTO_CELLS = 1 << 31


def auto_sparse(num_users: int, num_items: int) -> bool:
    """The ``sparse="auto"`` value for tables of that many users and items."""
    return num_users * num_items > SPARSE_AUTO_CELLS


def auto_l2(num_interactions: int, num_active_users: int) -> float:
    """The ``l2="auto"`` value for data with that many interactions and users with any."""
    per_user = num_interactions / max(num_active_users, 1)
    lo, hi = L2_AUTO_RANGE
    return float(min(max(L2_AUTO_SCALE / max(per_user, 1e-9), lo), hi))


#: ``softmax_negatives="auto"``: every item (the exact softmax) while users x items is at most
#: SPARSE_AUTO_CELLS, this many sampled negatives per step beyond (docs/model.md says why).
SOFTMAX_AUTO_NEGATIVES = 2048


def auto_softmax_negatives(num_users: int, num_items: int) -> int:
    """The ``softmax_negatives="auto"`` value for tables of that many users and items."""
    if num_users * num_items <= SPARSE_AUTO_CELLS:
        return max(num_items, 1)
    return SOFTMAX_AUTO_NEGATIVES


PRESETS = ("default", "spotlight")


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, allowed range or choices, and its meaning."""

    name: str
    type: type
    help: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    nullable: bool = False


PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        Param("loss", str, "training loss", choices=LOSSES),
        Param("embedding_dim", int, "latent dimension", min=1, max=4096),
        Param("n_iter", int, "number of epochs", min=0, max=100_000),
        Param("batch_size", int, "minibatch size", min=1, max=10_000_000),
        Param(
            "l2",
            float,
            "L2 penalty strength (how it applies: l2_rule); 'auto' (per_interaction only): "
            "with the softmax loss 3 / the mean interactions per user of the data fit on, "
            "within 0.02-0.15; 0 with other losses",
            min=0.0,
        ),
        Param(
            "l2_rule",
            str,
            "'weight_decay' (Spotlight: Adam's weight_decay, every row decays at every step, "
            "so its strength grows with steps per epoch) or 'per_interaction' (the loss adds "
            "l2 x the squared norms of the user and item vectors each interaction uses, "
            "averaged like the loss: the same objective whatever the batch or data size)",
            choices=L2_RULES,
        ),
        Param(
            "l2_balance",
            float,
            "l2_rule='per_interaction': how many times the user rows' penalty exceeds the "
            "item rows' (users l2 x sqrt(this), items l2 / sqrt(this): l2 is their geometric "
            "mean; 1 penalises both alike); not used by 'weight_decay'",
            min=1e-6,
            max=1e6,
        ),
        Param("learning_rate", float, "Adam learning rate", min=0.0, min_inclusive=False),
        Param(
            "num_negative_samples",
            int,
            "negatives per positive (adaptive_hinge); the softmax loss uses "
            "softmax_negatives instead",
            min=1,
            max=100_000,
        ),
        Param(
            "softmax_negatives",
            int,
            "softmax loss: each step scores its users against this many uniform negatives "
            "shared by the step (sampled softmax with the log(items / this) correction), or "
            "against every item when the catalogue has at most this many (the exact softmax); "
            "'auto': every item while users x items is at most 2**31 cells, "
            f"{SOFTMAX_AUTO_NEGATIVES} beyond",
            min=1,
            max=2**31 - 1,  # a step's memory is bounded by trainer.check_memory
        ),
        Param(
            "random_state",
            int,
            "seed; None draws one and records it",
            min=0,
            max=2**63 - 1,
            nullable=True,
        ),
        Param(
            "negative_sampling",
            str,
            "'uniform' (Spotlight) or 'unseen' (skip the user's positives)",
            choices=SAMPLERS,
        ),
        Param(
            "lr_decay",
            str,
            "'none' (Spotlight) or 'linear' (learning rate falls linearly "
            "to 5% over n_iter epochs)",
            choices=("none", "linear"),
        ),
        Param(
            "sparse",
            bool,
            "row-sparse gradients and a lazy Adam that updates and "
            "L2-decays only the rows a batch touches (for large tables); 'auto': true when "
            "users x items exceeds 2**31 cells or the softmax samples its negatives",
        ),
        Param(
            "popularity_prior",
            float,
            "added to every item's score as this x log(1 + the item's training count) "
            "at scoring time, never in the training loss (0 = Spotlight's plain scores)",
            min=-100.0,
            max=100.0,
        ),
        Param("use_weights", bool, "weight each interaction's loss by its weight column"),
        Param("device", str, "where to train", choices=DEVICES),
    )
}

#: Spotlight 0.1.6's ImplicitFactorizationModel() defaults.
SPOTLIGHT_DEFAULTS: dict[str, Any] = {
    "loss": "pointwise",
    "embedding_dim": 32,
    "n_iter": 10,
    "batch_size": 256,
    "l2": 0.0,
    "l2_rule": "weight_decay",
    "l2_balance": 1.0,
    "learning_rate": 1e-2,
    "num_negative_samples": 5,
    "softmax_negatives": AUTO,
    "random_state": None,
    "negative_sampling": "uniform",
    "lr_decay": "none",
    "sparse": False,
    "popularity_prior": 0.0,
    "use_weights": False,
    "device": "auto",
}

#: Our defaults, chosen by validation sweeps (bench/sweep.py; never on the test split): the
#: softmax loss beat the tuned pairwise losses on validation NDCG@10 at a fraction of the time;
#: dimension, batch, epochs and the popularity prior were then chosen on three validation cuts.
DEFAULTS: dict[str, Any] = {
    "loss": "softmax",
    "embedding_dim": 256,
    "n_iter": 45,
    "batch_size": 8192,
    "l2": AUTO,
    "l2_rule": "per_interaction",
    "l2_balance": 16.0,
    "learning_rate": 5e-3,
    "num_negative_samples": 5,
    "softmax_negatives": AUTO,
    "random_state": None,
    "negative_sampling": "uniform",
    "lr_decay": "none",
    "sparse": AUTO,
    "popularity_prior": 0.3,
    "use_weights": False,
    "device": "auto",
}

#: Hyperparameters that accept ``"auto"`` in the core (resolved from the data at fit time).
AUTO_NAMES = ("l2", "sparse", "softmax_negatives")

PRESET_DEFAULTS = {"default": DEFAULTS, "spotlight": SPOTLIGHT_DEFAULTS}


def l2_factors(hyperparameters: dict[str, Any]) -> tuple[float, float]:
    """The user and item rows' factors on ``l2`` of the per-interaction penalty:
    ``sqrt(l2_balance)`` and its inverse under ``l2_rule="per_interaction"``, else (1, 1)."""
    if hyperparameters.get("l2_rule") != "per_interaction":
        return 1.0, 1.0
    user = math.sqrt(float(hyperparameters.get("l2_balance", 1.0)))
    return user, 1.0 / user


def coerce(name: str, value: Any) -> Any:
    """Check and convert one hyperparameter (strings accepted, as SageMaker sends them).

    Raises:
        ValueError: unknown name, or a value of the wrong type or outside the allowed range.
    """
    if name not in PARAMS:
        raise ValueError(f"unknown hyperparameter {name!r}; known: {', '.join(PARAMS)}")
    p = PARAMS[name]
    if name in AUTO_NAMES and isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    is_null = isinstance(value, str) and value.strip().lower() in ("none", "null")
    if value is None or (is_null and (p.nullable or p.choices is None)):
        if p.nullable:
            return None
        raise ValueError(f"hyperparameter {name!r} must not be None")
    try:
        out = _convert(p, value)
    except (TypeError, ValueError):
        raise ValueError(f"hyperparameter {name!r} must be {_describe(p)}, got {value!r}") from None
    if p.choices is not None and out not in p.choices:
        raise ValueError(f"hyperparameter {name!r} must be one of {list(p.choices)}, got {value!r}")
    too_low = p.min is not None and (out < p.min if p.min_inclusive else out <= p.min)
    too_high = p.max is not None and out > p.max
    if too_low or too_high:
        raise ValueError(f"hyperparameter {name!r} must be {_describe(p)}, got {value!r}")
    return out


def _convert(p: Param, value: Any) -> Any:
    if p.type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "0", "no"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError
    if isinstance(value, bool):
        raise TypeError
    if p.type is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(value, str):
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return int(f)
        return int(value)
    if p.type is float:
        f = float(value)
        if f != f or f in (float("inf"), float("-inf")):
            raise ValueError
        return f
    if not isinstance(value, str):
        raise TypeError
    return value.strip().lower()


def _describe(p: Param) -> str:
    if p.choices:
        return f"one of {list(p.choices)}"
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[p.type]
    lo = "" if p.min is None else (f" >= {p.min}" if p.min_inclusive else f" > {p.min}")
    hi = "" if p.max is None else f" <= {p.max}"
    return kind + lo + (" and" if lo and hi else "") + hi


def resolve(preset: str = "default", **overrides: Any) -> dict[str, Any]:
    """The full hyperparameter set: a preset's defaults updated with checked overrides."""
    if preset not in PRESET_DEFAULTS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    params = dict(PRESET_DEFAULTS[preset])
    for k, v in overrides.items():
        params[k] = coerce(k, v)
    if params["l2"] == AUTO and params["l2_rule"] != "per_interaction":
        raise ValueError(
            "l2='auto' is defined for l2_rule='per_interaction' only; give a number for "
            f"l2_rule={params['l2_rule']!r}"
        )
    return params
