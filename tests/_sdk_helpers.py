"""Helpers shared by the SDK client tests (moto sessions, artifacts, request capture)."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK polls with sleeps; moto answers at once."""
    monkeypatch.setattr(time, "sleep", lambda seconds: None)


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
