"""Helpers shared by the SDK client tests (moto sessions, artifacts, request capture)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def algorithm_specification() -> dict:
    """The AlgorithmSpecification a default SpotlightEstimator sends in us-east-1."""
    from spotlight_sagemaker.contract.metric_lines import METRIC_DEFINITIONS

    return {
        "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
        "pytorch-training:2.6.0-gpu-py312",
        "TrainingInputMode": "File",
        "MetricDefinitions": METRIC_DEFINITIONS,
        "EnableSageMakerMetricsTimeSeries": True,
    }


def training_channel(s3_uri: str) -> list[dict]:
    """InputDataConfig of a fit() on one S3 prefix."""
    return [
        {
            "ChannelName": "training",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": s3_uri,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
    ]


class _TimeWithoutSleep:
    """The ``time`` module, except that ``sleep`` returns at once."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        return None


def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK polls with sleeps; moto answers at once. Only the SDK's modules lose ``sleep``:
    patching ``time.sleep`` itself also made the model server's readiness wait spin a core."""
    import sagemaker.session
    import sagemaker.utils

    for module in (sagemaker.session, sagemaker.utils):
        monkeypatch.setattr(module, "time", _TimeWithoutSleep())


_LOADER: list[Any] = []


def session(region: str = "us-east-1") -> Any:
    """A sagemaker.Session on a fresh boto3 session (moto must be active for AWS calls).

    The sessions share botocore's data loader, so the service models are parsed once per test
    run instead of once per client.
    """
    import boto3
    import botocore.session
    import sagemaker

    core = botocore.session.get_session()
    if _LOADER:
        core.register_component("data_loader", _LOADER[0])
    else:
        _LOADER.append(core.get_component("data_loader"))
    return sagemaker.Session(boto_session=boto3.Session(botocore_session=core, region_name=region))


def capture(sm_session: Any, operation: str) -> list[dict]:
    """Record the parameters of every ``operation`` call the session's SageMaker client makes."""
    calls: list[dict] = []

    def hook(params: dict, **_: Any) -> None:
        calls.append(params)

    sm_session.sagemaker_client.meta.events.register(
        f"provide-client-params.sagemaker.{operation}", hook
    )
    return calls


def forbid_aws_calls(sm_session: Any) -> list[str]:
    """Make any HTTP request from this session fail; returns the list of attempted operations."""
    attempted: list[str] = []

    def hook(request: Any, **_: Any) -> None:
        attempted.append(request.url)
        raise AssertionError(f"unexpected AWS call: {request.url}")

    sm_session.boto_session.events.register("before-send", hook)
    for client in (sm_session.sagemaker_client, sm_session.s3_client):
        if client is not None:
            client.meta.events.register("before-send", hook)
    return attempted


def tar_model(folder: Path) -> bytes:
    """model.tar.gz bytes of an artifact folder (files at the archive root, as training writes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(folder.iterdir()):
            tar.add(f, arcname=f.name)
    return buf.getvalue()


def s3_split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def put_model(sm_session: Any, model_data: str, folder: Path) -> None:
    """Upload a real artifact where a (moto) training job says its model is."""
    bucket, key = s3_split(model_data)
    sm_session.boto_session.client("s3").put_object(Bucket=bucket, Key=key, Body=tar_model(folder))


def read_tar(sm_session: Any, uri: str, into: Path) -> list[str]:
    """Download and extract an s3 tarball; returns its member names."""
    bucket, key = s3_split(uri)
    body = sm_session.boto_session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        names = tar.getnames()
        tar.extractall(into, filter="data")
    return names


def estimator_options(est: Any) -> dict:
    """Every option a SpotlightEstimator adds or passes on, for round-trip comparisons."""
    return {
        "role": est.role,
        "instance_type": est.instance_type,
        "count": est.instance_count,
        "volume": est.volume_size,
        "volume_kms": est.volume_kms_key,
        "max_run": est.max_run,
        "input_mode": est.input_mode,
        "output_path": est.output_path,
        "kms": est.output_kms_key,
        "base": est.base_job_name,
        "hps": est.spotlight_hyperparameters,
        "metrics": est.metric_definitions,
        "ckpt": (est.checkpoint_s3_uri, est.checkpoint_local_path),
        "spot": (est.use_spot_instances, est.max_wait),
        "retry": est.max_retry_attempts,
        "env": est.environment,
        "isolation": est.enable_network_isolation(),
        "vpc": est.get_vpc_config(),
        "encrypt": est.encrypt_inter_container_traffic,
        "tags": est.tags,
        "versions": (est.framework_version, est.py_version),
        "image": est.image_uri,
        "entry": est.entry_point,
        "ship": est.ship_code,
        "sm_metrics": est.enable_sagemaker_metrics,
        "profiler": est.disable_profiler,
        "debugger": est.debugger_hook_config,
        "log_level": est.container_log_level,
    }


def sdk_training_job(
    hyperparameters: dict[str, Any], into: Path, **estimator_kwargs: Any
) -> tuple[dict[str, str], Path]:
    """What a default ``SpotlightEstimator(...).fit(s3_uri)`` sends to AWS (under moto);
    ``estimator_kwargs`` are more estimator arguments (e.g. ``distribution``, instance_type).

    Needs AWS test credentials in the environment (the ``aws_env`` fixture).

    Returns:
        The job's ``HyperParameters`` exactly as sent (JSON-encoded strings), and the
        ``sourcedir.tar.gz`` the estimator staged and uploaded, downloaded to ``into``.
    """
    import moto

    from spotlight_sagemaker import SpotlightEstimator

    with moto.mock_aws():
        sm = session()
        created = capture(sm, "CreateTrainingJob")
        est = SpotlightEstimator(
            role=ROLE,
            sagemaker_session=sm,
            hyperparameters=hyperparameters,
            **{"instance_type": "ml.g4dn.xlarge", **estimator_kwargs},
        )
        est.fit(f"s3://{sm.default_bucket()}/training/", wait=False)
        sent = dict(created[0]["HyperParameters"])
        bucket, key = s3_split(json.loads(sent["sagemaker_submit_directory"]))
        body = sm.boto_session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    into.mkdir(parents=True, exist_ok=True)
    tarball = into / "sourcedir.tar.gz"
    tarball.write_bytes(body)
    return sent, tarball


def sdk_served_model(
    artifact: Path,
    into: Path,
    model_kwargs: dict[str, Any] | None = None,
    transformer_kwargs: dict[str, Any] | None = None,
) -> tuple[dict[str, str], dict[str, Any] | None]:
    """What ``SpotlightModel(model.tar.gz, **model_kwargs)`` creates for a Batch Transform job
    (``.transformer(**transformer_kwargs).transform(...)``) or, when ``transformer_kwargs`` is
    None, for an endpoint (``.deploy(...)``), under moto.

    The repacked ``model.tar.gz`` is extracted into ``into`` as SageMaker extracts it
    (artifact at the root, ``code/inference.py`` and the package under ``code/``). Needs AWS
    test credentials in the environment (the ``aws_env`` fixtures).

    Returns:
        The model's container environment, and the transform job's description (None for an
        endpoint).
    """
    import moto

    from spotlight_sagemaker import SpotlightModel

    with moto.mock_aws():
        sm = session()
        client = sm.sagemaker_client
        model_data = f"s3://{sm.default_bucket()}/trained/model.tar.gz"
        put_model(sm, model_data, artifact)
        model = SpotlightModel(model_data, role=ROLE, sagemaker_session=sm, **(model_kwargs or {}))
        job = None
        if transformer_kwargs is None:
            predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large")
            endpoint = client.describe_endpoint(EndpointName=predictor.endpoint_name)
            config = client.describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"]
            )
            model_name = config["ProductionVariants"][0]["ModelName"]
        else:
            transformer = model.transformer(instance_type="ml.m5.xlarge", **transformer_kwargs)
            transformer.transform(f"s3://{sm.default_bucket()}/requests/", wait=False)
            job = client.describe_transform_job(
                TransformJobName=transformer.latest_transform_job.name
            )
            model_name = job["ModelName"]
        container = client.describe_model(ModelName=model_name)["PrimaryContainer"]
        into.mkdir(parents=True, exist_ok=True)
        read_tar(sm, container["ModelDataUrl"], into)
    return dict(container["Environment"]), job
