"""``SpotlightTuner``: the SDK's ``HyperparameterTuner`` for a :class:`SpotlightEstimator`.

What ``est.tuner(...)`` returns. It differs from the SDK's class in three ways: ``fit()`` takes
local files and folders as ``est.fit()`` does (uploaded to the session's default bucket), the
ranges are checked against the hyperparameters' own rules before any AWS call, and local mode is
refused by name (SageMaker's tuning service has no local equivalent).
"""

from __future__ import annotations

from typing import Any

from sagemaker.tuner import HyperparameterTuner

from . import defaults
from .uploads import MODEL_CHANNEL, resolve_inputs, resolve_model_uri

#: Why local mode has no tuner, and what to do instead.
NO_LOCAL_TUNING = (
    "hyperparameter tuning runs on SageMaker's tuning service, which local mode does not "
    "emulate: tune with an ml.* instance type, or in local mode call est.fit() for each "
    "configuration (metrics.json and describe_training_job() report validation:ndcg@10)"
)


def check_ranges(ranges: dict[str, Any]) -> None:
    """Each range's bounds (or categorical values) must be values the hyperparameter accepts.

    Raises:
        ValueError: an unknown name, a bound or value the hyperparameter refuses, or
            ``min > max``; the message names the hyperparameter.
    """
    unknown = sorted(set(ranges) - set(defaults.HYPERPARAMETER_NAMES))
    if unknown:
        raise ValueError(
            f"hyperparameter_ranges for unknown hyperparameter(s) {unknown}; known: "
            f"{', '.join(defaults.HYPERPARAMETER_NAMES)}"
        )
    for name, spec in ranges.items():
        if hasattr(spec, "values"):  # CategoricalParameter
            candidates = list(spec.values)
        elif hasattr(spec, "min_value") and hasattr(spec, "max_value"):
            candidates = [spec.min_value, spec.max_value]
        else:
            raise ValueError(
                f"hyperparameter_ranges[{name!r}] must be a ContinuousParameter, "
                f"IntegerParameter or CategoricalParameter, got {type(spec).__name__}"
            )
        checked = []
        for value in candidates:
            try:
                checked.append(defaults.check_hyperparameters({name: value})[name])
            except ValueError as exc:
                raise ValueError(f"hyperparameter_ranges[{name!r}]: {exc}") from None
        if not hasattr(spec, "values"):
            low, high = checked
            if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
                raise ValueError(
                    f"hyperparameter_ranges[{name!r}]: min_value {spec.min_value!r} is above "
                    f"max_value {spec.max_value!r}"
                )


class SpotlightTuner(HyperparameterTuner):
    """A ``HyperparameterTuner`` whose ``fit()`` accepts what ``SpotlightEstimator.fit()`` does."""

    def fit(  # same arguments as the SDK's, local paths accepted
        self,
        inputs: Any = None,
        job_name: str | None = None,
        include_cls_metadata: Any = False,
        estimator_kwargs: Any = None,
        wait: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Start the tuning job on an ``s3://`` URI, a local CSV file or folder, or channels
        (local paths are uploaded to ``s3://<default bucket>/<base job name>-tuning/input``)."""
        estimator = self.estimator
        if estimator is None:  # a multi-estimator tuner: the SDK's fit takes dicts of inputs
            return super().fit(inputs, job_name, include_cls_metadata, estimator_kwargs, wait)
        session = estimator.sagemaker_session
        if session.local_mode:
            raise ValueError(NO_LOCAL_TUNING)
        prefix = f"{estimator.base_job_name or defaults.BASE_JOB_NAME}-tuning/input"
        inputs = resolve_inputs(session, inputs, prefix)
        # a local model_uri (the warm start's previous model) is uploaded like the inputs: the
        # tuner builds its training jobs without the estimator's fit()
        estimator.model_uri = resolve_model_uri(
            session, estimator.model_uri, f"{prefix}/{MODEL_CHANNEL}"
        )
        return super().fit(
            inputs,
            job_name=job_name,
            include_cls_metadata=include_cls_metadata,
            estimator_kwargs=estimator_kwargs,
            wait=wait,
            **kwargs,
        )
