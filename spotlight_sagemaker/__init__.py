"""spotlight-sagemaker: Spotlight-style implicit matrix factorization on Amazon SageMaker.

The core (``spotlight_sagemaker.core``) needs only torch and numpy. The SageMaker SDK classes
are imported lazily, so the training and serving containers can import this package without
the SDK.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .core import (  # noqa: E402
    ArtifactError,
    DataError,
    ImplicitFactorizationModel,
    Interactions,
    evaluate,
    random_train_test_split,
)

_LAZY = {
    "SpotlightEstimator": "estimator",
    "SpotlightModel": "model",
    "SpotlightPredictor": "predictor",
    "SpotlightTransformer": "transformer",
}

__all__ = [
    "ArtifactError",
    "DataError",
    "ImplicitFactorizationModel",
    "Interactions",
    "SpotlightEstimator",
    "SpotlightModel",
    "SpotlightPredictor",
    "SpotlightTransformer",
    "__version__",
    "evaluate",
    "random_train_test_split",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
