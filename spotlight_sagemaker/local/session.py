"""``EmbeddedLocalSession``: the SDK's ``LocalSession`` without Docker and without AWS.

The SDK's local mode runs the AWS images with Docker Compose and still calls AWS (STS, IAM, S3)
on the way. This session keeps the SDK's local-mode code paths (``local_mode=True``,
``local.local_code=True``: code is read from the staged folder, never uploaded) and swaps the
clients for :class:`~spotlight_sagemaker.local.client.EmbeddedSagemakerClient` and
:class:`~spotlight_sagemaker.local.client.EmbeddedRuntimeClient`, which run jobs and endpoints
on this machine. No AWS credentials are read; SDK telemetry is off (nothing leaves the machine).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import boto3
from sagemaker.config import load_sagemaker_config, validate_sagemaker_config
from sagemaker.exceptions import UnexpectedStatusException
from sagemaker.local import LocalSession
from sagemaker.session import _check_job_status

from .client import EmbeddedRuntimeClient, EmbeddedSagemakerClient
from .paths import LOCAL_BUCKET, bucket_root, default_root, key_path, keys_under, to_path

LOCAL_ROLE = "arn:aws:iam::000000000000:role/spotlight-local"
DEFAULT_REGION = "us-east-1"


class EmbeddedLocalSession(LocalSession):
    """A ``sagemaker.local.LocalSession`` whose jobs and endpoints run in-process tools.

    Example:
        >>> session = EmbeddedLocalSession(root="./spotlight-local")
        >>> est = SpotlightEstimator(instance_type="local", sagemaker_session=session)
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        region: str | None = None,
        sagemaker_config: dict[str, Any] | None = None,
    ) -> None:
        """Create the session.

        Args:
            root: where outputs go by default and what ``s3://spotlight-local/`` means
                (default ``$SPOTLIGHT_LOCAL_DIR`` or ``./spotlight-local``).
            region: the region whose image URIs the SDK computes (default
                ``$AWS_DEFAULT_REGION``/``$AWS_REGION``, else us-east-1); nothing calls AWS.
            sagemaker_config: SDK defaults config (default: the SDK's config files), with
                telemetry turned off.
        """
        self.local_root = Path(root).expanduser().resolve() if root else default_root()
        #: print a training job's log while it runs (``fit(logs=False)`` turns it off)
        self.stream_job_logs = True
        region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        super().__init__(
            boto_session=boto3.Session(region_name=region or DEFAULT_REGION),
            default_bucket=LOCAL_BUCKET,
            sagemaker_config=sagemaker_config,  # type: ignore[arg-type]  # SDK default is None
        )

    def _initialize(  # type: ignore[override]  # same as SDK LocalSession's
        self,
        boto_session: Any,
        sagemaker_client: Any,
        sagemaker_runtime_client: Any,
        **kwargs: Any,
    ) -> None:
        """Set up the local clients; unlike the SDK's, touches no AWS service."""
        self.boto_session = _NoAwsBotoSession(boto_session.region_name)
        self._region_name = boto_session.region_name
        self.sagemaker_client = EmbeddedSagemakerClient(self)
        self.sagemaker_runtime_client = EmbeddedRuntimeClient(self.sagemaker_client)
        self.local_mode = True
        # no S3 client: the overrides below serve the SDK's S3 helpers from local files, and
        # anything else that asks for one is refused (AwsRefused) instead of calling AWS
        self.s3_resource = AwsRefused("s3")  # type: ignore[assignment]  # SDK types it None
        self.s3_client = AwsRefused("s3")  # type: ignore[assignment]  # SDK types it None
        config = kwargs.get("sagemaker_config")
        if config:
            validate_sagemaker_config(config)
        else:
            config = load_sagemaker_config() or {}
        self.sagemaker_config = _telemetry_off(config)
        self._default_bucket_name_override = LOCAL_BUCKET
        self.config = {"local": {"local_code": True}}

    def local_path(self, uri: str) -> Path:
        """The local path behind a ``file://``, ``s3://spotlight-local/...`` URI or plain path.

        Raises:
            ValueError: an ``s3://`` URI of another bucket.
        """
        return to_path(uri, self.local_root, "uri")

    def default_bucket(self) -> str:
        """``spotlight-local``: the name under which the SDK's defaults reach ``local_root``."""
        self._default_bucket = LOCAL_BUCKET  # type: ignore[assignment]  # SDK sets it None
        return LOCAL_BUCKET

    # --- S3, on this machine: the SDK's helpers (S3Uploader, S3Downloader, the notebook's
    # upload_data) call these; with the SDK's own versions they would reach AWS.
    def upload_data(
        self,
        path: str,
        bucket: str | None = None,
        key_prefix: str = "data",
        callback: Any = None,
        extra_args: Any = None,
    ) -> str:
        """Copy a file or folder under ``s3://spotlight-local/<key_prefix>`` (= the local root);
        returns that URI (with the file name for a file), as the SDK's does."""
        root = bucket_root(bucket, self.local_root, "upload_data")
        source = Path(path)
        if not source.exists():
            raise FileNotFoundError(f"upload_data: {path!r} does not exist")
        prefix = key_prefix.strip("/")
        if source.is_dir():
            dest = key_path(root, prefix, "upload_data")
            shutil.copytree(source, dest, dirs_exist_ok=True)
            return f"s3://{LOCAL_BUCKET}/{prefix}"
        key = f"{prefix}/{source.name}" if prefix else source.name
        dest = key_path(root, key, "upload_data")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
        return f"s3://{LOCAL_BUCKET}/{key}"

    def upload_string_as_file_body(
        self, body: str, bucket: str, key: str, kms_key: str | None = None
    ) -> str:
        """Write ``body`` as the local file behind ``s3://spotlight-local/<key>``."""
        dest = key_path(bucket_root(bucket, self.local_root, "upload"), key, "upload")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body, encoding="utf-8")
        return f"s3://{LOCAL_BUCKET}/{key.lstrip('/')}"

    def download_data(
        self, path: str, bucket: str, key_prefix: str = "", extra_args: Any = None
    ) -> list[str]:
        """Copy the local files under ``s3://spotlight-local/<key_prefix>`` into ``path``, laid
        out as the SDK's download lays out S3 objects; returns the copied paths."""
        root = bucket_root(bucket, self.local_root, "download")
        out = []
        for key in keys_under(root, key_prefix):
            tail = os.path.basename(key)
            if not os.path.splitext(key_prefix)[1]:
                tail = os.path.relpath(key, key_prefix)
            dest = Path(path) / tail
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / key, dest)
            out.append(str(dest))
        return out

    def read_s3_file(self, bucket: str, key_prefix: str) -> str:
        """The text of the local file behind ``s3://spotlight-local/<key_prefix>``."""
        source = key_path(bucket_root(bucket, self.local_root, "read"), key_prefix, "read")
        if not source.is_file():
            raise FileNotFoundError(f"s3://{bucket}/{key_prefix}: no such file ({source})")
        return source.read_text(encoding="utf-8")

    def list_s3_files(self, bucket: str, key_prefix: str) -> list[str]:
        """The keys under ``s3://spotlight-local/<key_prefix>`` (files of the local root)."""
        return keys_under(bucket_root(bucket, self.local_root, "list"), key_prefix)

    def expand_role(self, role: str | None) -> str:
        """The role as given (nothing reads it locally), or a placeholder ARN."""
        return role or LOCAL_ROLE

    def account_id(self) -> str:
        """A placeholder account id (no STS call)."""
        return "000000000000"

    def logs_for_job(
        self,
        job_name: str,
        wait: bool = False,
        poll: int = 5,
        log_type: str = "All",
        timeout: int | None = None,
    ) -> None:
        """The log was streamed while the job ran; with ``wait``, raise if the job failed."""
        if wait:
            desc = self.sagemaker_client.describe_training_job(TrainingJobName=job_name)
            _check_job_status(job_name, desc, "TrainingJobStatus")

    def logs_for_transform_job(self, job_name: str, wait: bool = False, poll: int = 10) -> None:
        """As :meth:`logs_for_job`, for transform jobs (the SDK's would call CloudWatch)."""
        if wait:
            self.wait_for_transform_job(job_name)

    # Local jobs and endpoints are finished when their create call returns: check the status at
    # once instead of the SDK's sleep-then-poll loops (30 s before an endpoint's first check).
    def wait_for_job(self, job: str, poll: int = 5) -> dict[str, Any]:
        """DescribeTrainingJob, raising ``UnexpectedStatusException`` if the job failed."""
        desc = self.sagemaker_client.describe_training_job(TrainingJobName=job)
        _check_job_status(job, desc, "TrainingJobStatus")
        return desc

    def wait_for_transform_job(self, job: str, poll: int = 5) -> dict[str, Any]:
        """DescribeTransformJob, raising ``UnexpectedStatusException`` if the job failed."""
        desc = self.sagemaker_client.describe_transform_job(TransformJobName=job)
        _check_job_status(job, desc, "TransformJobStatus")
        return desc

    def wait_for_endpoint(
        self, endpoint: str, poll: int = 30, live_logging: bool = False
    ) -> dict[str, Any]:
        """DescribeEndpoint, raising ``UnexpectedStatusException`` unless it is InService."""
        desc = self.sagemaker_client.describe_endpoint(EndpointName=endpoint)
        status = desc["EndpointStatus"]
        if status != "InService":
            raise UnexpectedStatusException(
                message=f"Error hosting endpoint {endpoint}: {status}. Reason: "
                f"{desc.get('FailureReason')}.",
                allowed_statuses=["InService"],
                actual_status=status,
            )
        return desc


def _telemetry_off(config: dict[str, Any]) -> dict[str, Any]:
    config = dict(config)
    sagemaker = dict(config.get("SageMaker") or {})
    python_sdk = dict(sagemaker.get("PythonSDK") or {})
    modules = dict(python_sdk.get("Modules") or {})
    modules["TelemetryOptOut"] = True
    python_sdk["Modules"] = modules
    sagemaker["PythonSDK"] = python_sdk
    config["SageMaker"] = sagemaker
    config.setdefault("SchemaVersion", "1.0")
    return config


class AwsCallRefused(RuntimeError):
    """Something asked the embedded local session for an AWS client."""


class AwsRefused:
    """Stands where an AWS client would be: any use says that local mode calls no AWS."""

    def __init__(self, service: str) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        raise AwsCallRefused(
            f"the embedded local mode calls no AWS service ({self._service}.{name} was asked "
            "for); local mode reads and writes local files only: run on AWS with an ml.* "
            "instance type for that call"
        )


class _NoAwsBotoSession:
    """The session's ``boto_session``: the region, and refused clients."""

    def __init__(self, region_name: str) -> None:
        self.region_name = region_name

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> AwsRefused:
        return AwsRefused(service_name)

    def resource(self, service_name: str, *args: Any, **kwargs: Any) -> AwsRefused:
        return AwsRefused(service_name)

    def get_credentials(self) -> None:
        return None  # nothing to sign: no request leaves the machine
