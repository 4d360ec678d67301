"""``SpotlightEstimator``: train the Spotlight-style recommender as a SageMaker training job.

A thin subclass of the SDK v2 ``Framework`` estimator (as ``sagemaker.sklearn.SKLearn`` is):
it fixes the defaults of :mod:`spotlight_sagemaker.defaults`, checks hyperparameters on the
client, ships ``train.py`` with the package, and builds a :class:`SpotlightModel` on the
inference image. Everything else is the SDK's ``EstimatorBase`` (passed through ``**kwargs``).
"""

from __future__ import annotations

import copy
import inspect
import json
from typing import Any, cast

from sagemaker.estimator import EstimatorBase, Framework
from sagemaker.fw_utils import framework_name_from_image, framework_version_from_tag
from sagemaker.model import (
    CONTAINER_LOG_LEVEL_PARAM_NAME,
    DIR_PARAM_NAME,
    JOB_NAME_PARAM_NAME,
    SAGEMAKER_REGION_PARAM_NAME,
    SCRIPT_PARAM_NAME,
)
from sagemaker.vpc_utils import VPC_CONFIG_DEFAULT

from . import defaults, distribution, staging
from .contract.metric_lines import METRIC_DEFINITIONS, OBJECTIVE_METRIC
from .model import SpotlightModel
from .session import resolve_role, resolve_session
from .transformer import SpotlightTransformer
from .uploads import MODEL_CHANNEL, resolve_inputs, resolve_model_uri

_SCRIPT_MODE_KEYS = (
    SCRIPT_PARAM_NAME,
    DIR_PARAM_NAME,
    CONTAINER_LOG_LEVEL_PARAM_NAME,
    JOB_NAME_PARAM_NAME,
    SAGEMAKER_REGION_PARAM_NAME,
)


def _sdk_arguments() -> set[str]:
    names: set[str] = set()
    for cls in (EstimatorBase, Framework):
        names.update(inspect.signature(cls.__init__).parameters)
    return names - {"self", "kwargs"}


class SpotlightEstimator(Framework):
    """Trains ``train.py`` on the AWS PyTorch 2.6.0 / py312 image (GPU or CPU by instance type).

    Example:
        >>> est = SpotlightEstimator(role=role, instance_type="ml.g4dn.xlarge",
        ...                          loss="bpr", n_iter=20)
        >>> est.fit("s3://bucket/ml-100k-gt2.csv")          # or a local file/folder, or channels
        >>> est.transformer(instance_type="ml.m5.xlarge").transform("s3://bucket/requests/")

    Spotlight hyperparameters (``loss``, ``embedding_dim``, ``n_iter``, ... and train.py's
    ``preset``, ``validation_fraction``, ...: see :data:`defaults.HYPERPARAMETER_NAMES`) may be
    given as keyword arguments and/or in ``hyperparameters``; they are checked here, before
    any AWS call.
    """

    _framework_name = defaults.FRAMEWORK_NAME  # type: ignore[assignment]  # SDK base declares None

    def __init__(
        self,
        role: str | None = None,
        instance_type: str | None = None,
        instance_count: int = 1,
        hyperparameters: dict[str, Any] | None = None,
        framework_version: str = defaults.FRAMEWORK_VERSION,
        py_version: str = defaults.PY_VERSION,
        image_uri: str | None = None,
        ship_code: bool = True,
        entry_point: str | None = None,
        source_dir: str | None = None,
        base_job_name: str = defaults.BASE_JOB_NAME,
        metric_definitions: list[dict[str, str]] | None = None,
        sagemaker_session: Any = None,
        **kwargs: Any,
    ):
        """Create the estimator.

        Args:
            role: IAM role ARN for the job; may be omitted inside SageMaker (notebook, Studio),
                in local mode, or when the SageMaker config file sets one.
            instance_type: e.g. ``"ml.g4dn.xlarge"`` (GPU image) or ``"ml.m5.xlarge"`` (CPU);
                ``"local"`` / ``"local_gpu"`` train on this machine.
            instance_count: 1, or with ``distribution`` the instances of one data-parallel job.
            hyperparameters: Spotlight hyperparameters (merged with keyword arguments).
            framework_version: PyTorch version of the AWS training image.
            py_version: Python version of the AWS training image.
            image_uri: a training image to use instead of the AWS one.
            ship_code: upload ``train.py`` and the package (default). ``False`` needs an
                ``image_uri`` with the package baked in (``docker/``).
            entry_point: training script inside ``source_dir`` (default ``train.py``, ours
                unless ``source_dir`` has one).
            source_dir: a local folder of your own code, staged in a temporary folder together
                with the package and our entry points: its files win for their own names
                (your ``train.py`` replaces ours) and ``spotlight_sagemaker/``, ``train.py``
                and ``inference.py`` are added where it has none, so the job can always import
                the package. An ``s3://.../sourcedir.tar.gz`` (or a folder of a
                ``git_config`` repository) is used as given and must hold the package itself.
                Default: the entry points and the package alone.
            base_job_name: prefix of job names.
            metric_definitions: defaults to
                :data:`spotlight_sagemaker.contract.metric_lines.METRIC_DEFINITIONS`.
            sagemaker_session: the SDK session (default: a new one; in local mode the
                embedded local session).
            **kwargs: Spotlight hyperparameters, or arguments of the SDK's ``EstimatorBase`` /
                ``Framework`` (``checkpoint_s3_uri``, ``use_spot_instances``, ``max_wait``,
                ``output_path``, ``tags``, ``environment``, ...). ``model_uri`` (a previous
                job's ``model_data``, or a local ``model.tar.gz``) warm-starts each job from
                that model through the ``model`` channel.

        Raises:
            ValueError: bad hyperparameters, versions without an image, no role outside
                SageMaker, ``instance_count`` other than 1, inconsistent code options (an
                ``entry_point`` that is not in ``source_dir``), a ``model_channel_name`` other
                than ``model`` with a ``model_uri``.
            TypeError: an unknown keyword argument.
            FileNotFoundError: a local ``source_dir`` that is not a folder.
        """
        hps = dict(hyperparameters or {})
        for name in list(kwargs):
            if name in defaults.HYPERPARAMETER_NAMES:
                if name in hps:
                    raise ValueError(f"hyperparameter {name!r} given twice (argument and dict)")
                hps[name] = kwargs.pop(name)
        hps = defaults.check_hyperparameters(hps)
        dist_spec = kwargs.pop("distribution", None)
        launch = distribution.launcher_hyperparameters(dist_spec, instance_type)
        unknown = sorted(set(kwargs) - _sdk_arguments())
        if unknown:
            raise TypeError(
                f"SpotlightEstimator got unknown argument(s) {unknown}; Spotlight "
                f"hyperparameters are: {', '.join(defaults.HYPERPARAMETER_NAMES)}"
            )
        if instance_type is None and not kwargs.get("instance_groups"):
            raise ValueError(
                "instance_type is required: e.g. 'ml.m5.xlarge' (CPU image), 'ml.g4dn.xlarge' "
                "(GPU image) or 'local' (this machine)"
            )
        if isinstance(instance_count, int) and instance_count != 1 and not launch:
            raise ValueError(
                f"instance_count must be 1 without distribution (train.py then runs as one "
                f"process), got {instance_count}; to train one model on several instances pass "
                f"{distribution.USAGE}"
            )
        groups = kwargs.get("instance_groups") or []
        counts = [getattr(g, "instance_count", None) for g in groups]
        if len(groups) > 1 or (not launch and any(isinstance(c, int) and c != 1 for c in counts)):
            raise ValueError(
                f"instance_groups must be one group (of one instance without distribution), "
                f"got {len(groups)} group(s) with instance counts {counts}"
            )
        hps.update(launch)
        channel = kwargs.get("model_channel_name", MODEL_CHANNEL)
        if kwargs.get("model_uri") is not None and channel != MODEL_CHANNEL:
            raise ValueError(
                f"model_channel_name={channel!r}: train.py warm-starts from the "
                f"'{MODEL_CHANNEL}' channel; leave model_channel_name at its default"
            )
        if image_uri is None:
            defaults.check_framework_version(framework_version, py_version, "training")
        entry_point, source_dir = _code_options(
            ship_code, image_uri, entry_point, source_dir, kwargs.get("git_config")
        )

        session = resolve_session(sagemaker_session, instance_type)
        role = resolve_role(role, session, instance_type)
        if "tags" in kwargs and not kwargs["tags"]:
            del kwargs["tags"]  # attach() passes [] for a job without tags
        kwargs.setdefault("enable_sagemaker_metrics", True)
        kwargs.setdefault("debugger_hook_config", False)
        kwargs.setdefault("disable_profiler", True)
        super().__init__(
            entry_point,  # type: ignore[arg-type]  # SDK accepts None (ship_code=False)
            source_dir,
            hps,
            image_uri=image_uri,
            role=role,
            instance_type=instance_type,
            instance_count=instance_count,
            base_job_name=base_job_name,
            metric_definitions=copy.deepcopy(
                METRIC_DEFINITIONS if metric_definitions is None else metric_definitions
            ),
            sagemaker_session=session,
            **kwargs,
        )
        self.framework_version = framework_version
        self.py_version = py_version
        self.ship_code = ship_code
        self.distribution = dist_spec  # as the SDK's PyTorch estimator keeps it

    @property
    def spotlight_hyperparameters(self) -> dict[str, Any]:
        """The Spotlight hyperparameters set on this estimator (checked values)."""
        return {
            k: v for k, v in self._hyperparameters.items() if k in defaults.HYPERPARAMETER_NAMES
        }

    def set_hyperparameters(self, **kwargs: Any) -> None:
        """Check, then set hyperparameters (same rules as the constructor)."""
        # stored raw like the constructor's (the SDK's version JSON-encodes here and again in
        # hyperparameters(), sending 5 as "\"5\"")
        self._hyperparameters.update(defaults.check_hyperparameters(kwargs))

    def fit(
        self,
        inputs: Any = None,
        wait: bool = True,
        logs: str = "All",
        job_name: str | None = None,
        experiment_config: dict[str, str] | None = None,
    ) -> Any:
        """Train on an ``s3://`` URI, a local CSV file or folder, or a dict of channels.

        A plain string becomes the ``training`` channel; ``validation`` is optional, and a
        ``model`` channel (or the estimator's ``model_uri``: a previous job's ``model_data``)
        warm-starts training from that model (docs/training.md, *Warm start*). Local
        paths, ``model_uri`` included, are uploaded to
        ``s3://<default bucket>/<job name>/input/<channel>`` (logged); in local mode they are
        read in place.

        In local mode the job runs while ``fit`` waits; its log is printed as it runs unless
        ``logs`` is False or ``"None"`` (then only a failure's reason is shown).

        Raises:
            ValueError: no inputs.
            FileNotFoundError: a local path that does not exist.
        """
        job_name = self._get_or_create_name(job_name)
        inputs = resolve_inputs(self.sagemaker_session, inputs, f"{job_name}/input")
        self.model_uri = resolve_model_uri(
            self.sagemaker_session, self.model_uri, f"{job_name}/input/{MODEL_CHANNEL}"
        )
        session: Any = self.sagemaker_session
        quiet = logs is False or logs == "None"
        before = getattr(session, "stream_job_logs", None)
        if before is not None:  # the embedded local session: the job runs inside this call
            session.stream_job_logs = not quiet
        try:
            return super().fit(
                inputs, wait=wait, logs=logs, job_name=job_name, experiment_config=experiment_config
            )
        finally:
            if before is not None:
                session.stream_job_logs = before

    def create_model(
        self,
        model_server_workers: int | None = None,
        role: str | None = None,
        vpc_config_override: Any = VPC_CONFIG_DEFAULT,
        entry_point: str | None = None,
        source_dir: str | None = None,
        dependencies: list[str] | None = None,
        **kwargs: Any,
    ) -> SpotlightModel:
        """A :class:`SpotlightModel` of the trained artifact on the inference image.

        The model runs ``inference.py`` from the code the job trained with on the AWS PyTorch
        inference image (``framework_version``/``py_version``/``image_uri`` in ``kwargs``
        override; the training image is never reused).
        """
        kwargs["name"] = self._get_or_create_name(kwargs.get("name"))
        kwargs.setdefault("enable_network_isolation", self.enable_network_isolation())
        if kwargs.get("ship_code", True):
            source_dir = source_dir or self._shipped_source_dir()
        return SpotlightModel(
            self.model_data,
            role or self.role,
            entry_point=entry_point,
            source_dir=source_dir,
            container_log_level=self.container_log_level,
            code_location=self.code_location,
            model_server_workers=model_server_workers,
            sagemaker_session=self.sagemaker_session,
            vpc_config=self.get_vpc_config(vpc_config_override),
            dependencies=dependencies,
            **kwargs,
        )

    def _shipped_source_dir(self) -> str | None:
        if not self.ship_code:
            return None  # the training image had the code baked in: stage it for serving
        if self.sagemaker_session.local_mode:
            # the SDK types the attribute str | PipelineVariable; this class only sets str/None
            return cast("str | None", self.source_dir)
        uploaded = self.uploaded_code
        return uploaded.s3_prefix if uploaded is not None and uploaded.s3_prefix else None

    def transformer(  # type: ignore[override]  # workload defaults, rest via kwargs
        self,
        instance_count: int = 1,
        instance_type: str | None = None,
        strategy: str = defaults.TRANSFORM_STRATEGY,
        assemble_with: str = defaults.TRANSFORM_ASSEMBLE_WITH,
        accept: str = defaults.TRANSFORM_ACCEPT,
        max_payload: int | None = None,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> SpotlightTransformer:
        """A Batch Transform job runner on the trained model, with this workload's defaults.

        Defaults: MultiRecord batches, AssembleWith Line, Accept ``text/csv``, MaxPayloadInMB
        from :func:`defaults.max_payload_mb` and the server timeout/response cap raised (see
        docs/sdk.md); all overridable. ``transform()`` defaults to JSON lines split by line.
        ``instance_type`` defaults to the estimator's in local mode.
        """
        instance_type = _transform_instance_type(instance_type, self.instance_type)
        transformer = super().transformer(
            instance_count,
            instance_type,
            strategy=strategy,
            assemble_with=assemble_with,
            accept=accept,
            **defaults.transform_settings(max_payload, env),
            **kwargs,
        )
        return SpotlightTransformer.wrap(transformer)

    def tuner(
        self,
        hyperparameter_ranges: dict[str, Any],
        objective_metric_name: str = OBJECTIVE_METRIC,
        **kwargs: Any,
    ) -> Any:
        """A :class:`~spotlight_sagemaker.tuner.SpotlightTuner` (a ``HyperparameterTuner``) on
        this estimator, maximising ``validation:ndcg@10``.

        The SDK's tuner reads metric definitions from its own ``metric_definitions`` argument,
        not from the estimator; this passes the estimator's (override in ``kwargs``). Its
        ``fit()`` takes local paths like :meth:`fit`.

        Raises:
            ValueError: a range for an unknown hyperparameter, a bound or value that
                hyperparameter refuses, or local mode (tuning needs SageMaker's service).
        """
        from .tuner import NO_LOCAL_TUNING, SpotlightTuner, check_ranges

        if self.sagemaker_session.local_mode:
            raise ValueError(NO_LOCAL_TUNING)
        check_ranges(hyperparameter_ranges)
        kwargs.setdefault("metric_definitions", copy.deepcopy(self.metric_definitions))
        return SpotlightTuner(
            self,
            objective_metric_name,
            hyperparameter_ranges,  # type: ignore[arg-type]  # SDK dict keys are invariant
            **kwargs,
        )

    @classmethod
    def _prepare_init_params_from_job_description(
        cls, job_details: dict[str, Any], model_channel_name: str | None = None
    ) -> dict[str, Any]:
        """Map ``describe_training_job`` back to constructor arguments (used by ``attach``)."""
        details = copy.deepcopy(job_details)
        details.setdefault("OutputDataConfig", {}).setdefault("KmsKeyId", None)
        init = super(Framework, cls)._prepare_init_params_from_job_description(
            details, model_channel_name
        )
        hps = {k: _decode(k, v) for k, v in init.pop("hyperparameters").items()}
        init["ship_code"] = SCRIPT_PARAM_NAME in hps
        if init["ship_code"]:
            init["entry_point"] = hps[SCRIPT_PARAM_NAME]
            init["source_dir"] = hps.get(DIR_PARAM_NAME)
        if CONTAINER_LOG_LEVEL_PARAM_NAME in hps:
            init["container_log_level"] = hps[CONTAINER_LOG_LEVEL_PARAM_NAME]
        launch, hps = distribution.from_hyperparameters(hps)
        if launch is not None:
            init["distribution"] = launch
        init["hyperparameters"] = {k: v for k, v in hps.items() if k not in _SCRIPT_MODE_KEYS}
        init["output_kms_key"] = init.get("output_kms_key") or None
        volume_kms_key = (details.get("ResourceConfig") or {}).get("VolumeKmsKeyId")
        if volume_kms_key:  # the SDK's attach drops it
            init["volume_kms_key"] = volume_kms_key

        image_uri = init.pop("image_uri")
        framework, py_version, tag, _ = framework_name_from_image(image_uri)
        if framework and framework.split("-")[0] == defaults.FRAMEWORK_NAME and tag:
            init["framework_version"] = framework_version_from_tag(tag)
            init["py_version"] = py_version
        else:
            init["image_uri"] = image_uri

        spec = details.get("AlgorithmSpecification", {})
        init["metric_definitions"] = spec.get("MetricDefinitions", [])
        if "EnableSageMakerMetricsTimeSeries" in spec:
            init["enable_sagemaker_metrics"] = spec["EnableSageMakerMetricsTimeSeries"]
        checkpoint = details.get("CheckpointConfig") or {}
        if checkpoint.get("S3Uri"):
            init["checkpoint_s3_uri"] = checkpoint["S3Uri"]
            init["checkpoint_local_path"] = checkpoint.get("LocalPath")
        if details.get("Environment"):
            init["environment"] = details["Environment"]
        profiler = details.get("ProfilerConfig") or {}
        init["disable_profiler"] = profiler.get("DisableProfiler", not profiler)
        if details.get("DebuggerHookConfig"):
            init.pop("debugger_hook_config", None)  # let the SDK rebuild its default
        return init


def _decode(name: str, value: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value  # e.g. _tuning_objective_metric is not JSON-encoded


def _code_options(
    ship_code: bool,
    image_uri: str | None,
    entry_point: str | None,
    source_dir: str | None,
    git_config: Any = None,
) -> tuple[str | None, str | None]:
    if not ship_code:
        if image_uri is None:
            raise ValueError(
                "ship_code=False needs image_uri: an image with spotlight_sagemaker installed "
                "(see docker/); the AWS PyTorch image has no train.py of its own"
            )
        if entry_point or source_dir:
            raise ValueError("entry_point/source_dir cannot be combined with ship_code=False")
        return None, None
    entry_point = entry_point or defaults.TRAIN_ENTRY_POINT
    return entry_point, staging.resolve(source_dir, entry_point, git_config)


def _transform_instance_type(instance_type: str | None, fallback: Any) -> str:
    """``fallback`` is the estimator's ``instance_type`` (the SDK allows a PipelineVariable)."""
    if instance_type:
        return instance_type
    if fallback in defaults.LOCAL_INSTANCE_TYPES:
        return fallback
    raise ValueError(
        "instance_type is required for Batch Transform on AWS, e.g. 'ml.m5.xlarge' "
        "(or 'local' to run it on this machine)"
    )
