"""spotlight-sagemaker: Spotlight-style implicit matrix factorization on Amazon SageMaker.

The core (``spotlight_sagemaker.core``) needs only torch and numpy. The SageMaker SDK classes
are imported lazily, so the training and serving containers can import this package without
the SDK.

``from spotlight_sagemaker import SpotlightEstimator`` (and the other SDK classes) imports the
SDK without turning its v2 -> v3 notice into a warning, so it works under ``python -W error``:
the notice is filtered for that one import only (the SDK still logs it once) and nothing is
set in the environment. ``SAGEMAKER_SUPPRESS_V2_WARNING=1`` silences the SDK's notices
altogether (see docs/sdk.md).
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


#: The start of the notice ``import sagemaker`` warns with (a FutureWarning) in SDK v2.
_SDK_V2_NOTICE = "You are using the SageMaker Python SDK v2"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        import warnings

        with warnings.catch_warnings():
            # the SDK's once-per-process notice at import (it also logs it): not an error of
            # this import under -W error; the filter ends with the import
            warnings.filterwarnings("ignore", message=_SDK_V2_NOTICE, category=FutureWarning)
            module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
