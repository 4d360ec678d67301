"""``SpotlightModel``: serve a trained ``model.tar.gz`` (from any training run) on SageMaker.

A thin ``PyTorchModel`` subclass: the AWS PyTorch 2.6.0 / py312 inference image, ``inference.py``
and the package repacked into ``model.tar.gz:code/`` (the only folder on the serving import
path), the :class:`SpotlightPredictor` for endpoints and this workload's transform defaults.
"""

from __future__ import annotations

from typing import Any

from sagemaker.pytorch.model import PyTorchModel

from . import defaults, staging
from .predictor import SpotlightPredictor
from .session import is_local, local_session, resolve_role
from .transformer import SpotlightTransformer


class SpotlightModel(PyTorchModel):
    """A trained Spotlight artifact, ready for ``transformer()`` or ``deploy()``.

    Example:
        >>> model = SpotlightModel("s3://bucket/job/output/model.tar.gz", role=role)
        >>> model.transformer(instance_type="ml.m5.xlarge").transform("s3://bucket/requests/")
        >>> predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large")
        >>> predictor.recommend("685", top_n=5)
    """

    def __init__(
        self,
        model_data: Any,
        role: str | None = None,
        entry_point: str | None = None,
        framework_version: str = defaults.FRAMEWORK_VERSION,
        py_version: str = defaults.PY_VERSION,
        image_uri: str | None = None,
        source_dir: str | None = None,
        ship_code: bool = True,
        predictor_cls: Any = SpotlightPredictor,
        sagemaker_session: Any = None,
        **kwargs: Any,
    ):
        """Create the model.

        Args:
            model_data: ``s3://.../model.tar.gz`` (``file://`` in local mode) of a training run.
            role: IAM role ARN; may be omitted inside SageMaker, in local mode, or when the
                SageMaker config file sets one.
            entry_point: serving script inside ``source_dir`` (default ``inference.py``, ours
                unless ``source_dir`` has one).
            framework_version: PyTorch version of the AWS inference image (always passed on:
                the SDK needs it even with ``image_uri``).
            py_version: Python version of the AWS inference image.
            image_uri: a serving image to use instead of the AWS one.
            source_dir: a local folder of your own code, staged together with the package and
                our entry points (your files win for their own names; ``spotlight_sagemaker/``,
                ``train.py`` and ``inference.py`` are added where it has none), so the
                repacked ``model.tar.gz:code/`` always holds the package. An
                ``s3://.../sourcedir.tar.gz`` (or a folder of a ``git_config`` repository) is
                used as given and must hold the package itself. Default: the entry points and
                the package alone.
            ship_code: repack the code into the model (default). ``False`` needs an
                ``image_uri`` with the package baked in (``docker/``).
            predictor_cls: what ``deploy()`` returns.
            sagemaker_session: the SDK session (default: created on first use; local mode
                gets the embedded local session).
            **kwargs: arguments of ``PyTorchModel`` / ``FrameworkModel`` / ``Model``.

        Raises:
            ValueError: versions without an inference image, inconsistent code options (an
                ``entry_point`` that is not in ``source_dir``), no role outside SageMaker
                (checked when a session is given).
            FileNotFoundError: a local ``source_dir`` that is not a folder.
        """
        if image_uri is None:
            defaults.check_framework_version(framework_version, py_version, "inference")
        if not ship_code:
            if image_uri is None:
                raise ValueError(
                    "ship_code=False needs image_uri: a serving image with spotlight_sagemaker "
                    "installed (see docker/); the AWS PyTorch image has no inference.py"
                )
            if entry_point or source_dir:
                raise ValueError("entry_point/source_dir cannot be combined with ship_code=False")
        else:
            entry_point = entry_point or defaults.INFERENCE_ENTRY_POINT
            source_dir = staging.resolve(
                source_dir, entry_point, kwargs.get("git_config"), purpose="serving"
            )
        if role is None and sagemaker_session is not None:
            role = resolve_role(role, sagemaker_session, None, for_model=True)
        # requests without Accept (or with */*) get CSV, the workload's format, not the
        # toolkit's application/json default; the caller's env wins
        kwargs["env"] = {
            **defaults.MODEL_ENV,
            **defaults.workers_env(kwargs.get("model_server_workers"), image_uri is None),
            **(kwargs.get("env") or {}),
        }
        super().__init__(
            model_data,
            role,
            entry_point,
            framework_version=framework_version,
            py_version=py_version,
            image_uri=image_uri,
            source_dir=source_dir,
            predictor_cls=predictor_cls,
            sagemaker_session=sagemaker_session,
            **kwargs,
        )
        self.ship_code = ship_code
        if self.name is None:  # else named after the image
            self._base_name = defaults.BASE_JOB_NAME  # type: ignore[assignment]  # SDK sets it None

    def _init_sagemaker_session_if_does_not_exist(self, instance_type: str | None = None) -> None:
        """Local instance types get the embedded local session (the SDK would pick Docker's)."""
        if self.sagemaker_session is None and is_local(instance_type):
            self.sagemaker_session = local_session(instance_type)
        super()._init_sagemaker_session_if_does_not_exist(instance_type)
        if not self.role:
            self.role = resolve_role(None, self.sagemaker_session, instance_type, for_model=True)

    def prepare_container_def(self, *args: Any, **kwargs: Any) -> dict:
        """The SDK's container definition, without the empty script variables it adds when no
        code is shipped (an empty SAGEMAKER_PROGRAM would make a custom image import "")."""
        container = super().prepare_container_def(*args, **kwargs)
        env = container.get("Environment") or {}
        for key in ("SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY"):
            if env.get(key) == "":
                del env[key]
        return container

    def transformer(  # type: ignore[override]  # workload defaults, rest via kwargs
        self,
        instance_count: int = 1,
        instance_type: str | None = None,
        strategy: str = defaults.TRANSFORM_STRATEGY,
        assemble_with: str = defaults.TRANSFORM_ASSEMBLE_WITH,
        accept: str = defaults.TRANSFORM_ACCEPT,
        max_payload: int | None = None,
        env: dict[str, str] | None = None,
        model_name: Any = None,
        **kwargs: Any,
    ) -> SpotlightTransformer:
        """A Batch Transform job runner with this workload's defaults (see docs/sdk.md).

        In a SageMaker Pipeline (a ``PipelineSession``) the model is created by its own
        ``ModelStep``: pass that step's ``properties.ModelName`` as ``model_name``, and
        ``transform()`` then gives a ``TransformStep``'s arguments (the SDK's own
        ``Model.transformer`` would try to create the model here and fail).

        Raises:
            ValueError: no ``instance_type``, or a pipeline session without ``model_name``.
        """
        if not instance_type:
            raise ValueError(
                "instance_type is required, e.g. 'ml.m5.xlarge' (or 'local' for this machine)"
            )
        settings = defaults.transform_settings(max_payload, env, aws_image=self.image_uri is None)
        from sagemaker.workflow.pipeline_context import PipelineSession

        in_pipeline = isinstance(self.sagemaker_session, PipelineSession)
        if in_pipeline or model_name is not None:
            if model_name is None:
                raise ValueError(
                    "in a pipeline, pass model_name=<ModelStep>.properties.ModelName: the "
                    "model is created by its ModelStep, not by transformer()"
                )
            return SpotlightTransformer(
                model_name,
                instance_count,
                instance_type,
                strategy=strategy,
                assemble_with=assemble_with,
                accept=accept,
                sagemaker_session=self.sagemaker_session,
                **settings,
                **kwargs,
            )
        transformer = super().transformer(
            instance_count,
            instance_type,
            strategy=strategy,
            assemble_with=assemble_with,
            accept=accept,
            **settings,
            **kwargs,
        )
        return SpotlightTransformer.wrap(transformer)
