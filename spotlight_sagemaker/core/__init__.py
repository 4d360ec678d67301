"""The pure recommender core: data, sampling, network, losses, model, evaluation.

Imports neither the SageMaker SDK nor boto3; runs on torch 2.6+ and numpy.
"""

from .config import DEFAULTS, PARAMS, SPOTLIGHT_DEFAULTS, coerce, resolve
from .errors import (
    ArtifactError,
    DataError,
    DivergedError,
    HyperparameterError,
    NotFittedError,
    SpotlightError,
    UnknownIdError,
)
from .evaluation import PopularityModel, evaluate, random_train_test_split
from .factorization import EpochStats, ImplicitFactorizationModel, Recommendation
from .idmap import IdMap
from .interactions import Interactions
from .warm_start import warm_start

__all__ = [
    "DEFAULTS",
    "PARAMS",
    "SPOTLIGHT_DEFAULTS",
    "ArtifactError",
    "DataError",
    "DivergedError",
    "EpochStats",
    "HyperparameterError",
    "IdMap",
    "ImplicitFactorizationModel",
    "Interactions",
    "NotFittedError",
    "PopularityModel",
    "Recommendation",
    "SpotlightError",
    "UnknownIdError",
    "coerce",
    "evaluate",
    "random_train_test_split",
    "resolve",
    "warm_start",
]
