"""A SageMaker API client that runs training, transform and hosting on this machine.

:class:`EmbeddedSagemakerClient` answers the boto3 ``sagemaker`` calls the SDK makes
(``create_training_job``, ``describe_training_job``, ``create_model``, ``create_transform_job``,
``create_endpoint_config``, ``create_endpoint``, ``delete_endpoint``, ...) with the same request
and response shapes; :class:`EmbeddedRuntimeClient` answers ``invoke_endpoint``. Jobs run when
they are created (as in the SDK's own local mode) and their failures are recorded as on AWS
(status ``Failed`` with a ``FailureReason``), so the SDK's waiters raise its usual
``UnexpectedStatusException``. Unknown names raise a ``ClientError`` (``ValidationException``).
Resources live in one registry per process; running model servers are stopped at exit.
"""

from __future__ import annotations

import atexit
import copy
import io
import sys
import threading
from typing import Any

from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from . import transform_job
from .endpoint import LocalServer, ServerSetupError, start_local_server
from .paths import LocalPathError
from .training_job import run_training_job

ACCOUNT = "000000000000"
REGION = "local"


def _arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"


def _error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class _Registry:
    """Every local resource of this process, by kind and name."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.items: dict[str, dict[str, dict[str, Any]]] = {
            k: {} for k in ("training", "model", "transform", "endpoint_config", "endpoint")
        }
        self.servers: dict[str, LocalServer] = {}

    def add(self, kind: str, name: str, record: dict[str, Any], operation: str) -> None:
        with self.lock:
            if name in self.items[kind]:
                raise _error(
                    "ValidationException",
                    f"{kind.replace('_', ' ')} name {name!r} is already in use "
                    "(names must be unique)",
                    operation,
                )
            self.items[kind][name] = record

    def get(self, kind: str, name: str, operation: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.items[kind]:
                raise _error(
                    "ValidationException",
                    f"Could not find {kind.replace('_', ' ')} {name!r}",
                    operation,
                )
            return self.items[kind][name]

    def stop_all(self) -> None:
        with self.lock:
            servers, self.servers = list(self.servers.values()), {}
        for server in servers:
            server.stop()


REGISTRY = _Registry()
atexit.register(REGISTRY.stop_all)


class EmbeddedSagemakerClient:
    """The ``sagemaker`` API calls of the SDK, run locally (see the module docstring)."""

    def __init__(self, session: Any) -> None:
        self.sagemaker_session = session

    # ------------------------------------------------------------------ training
    def create_training_job(self, **request: Any) -> dict[str, Any]:
        """Run a training job to completion (the log streams to stdout); never raises for a
        failing job: its status becomes ``Failed`` with the reason."""
        name = request["TrainingJobName"]
        record = copy.deepcopy(request)
        record.update(
            TrainingJobArn=_arn("training-job", name),
            TrainingJobStatus="InProgress",
            SecondaryStatus="Training",
        )
        REGISTRY.add("training", name, record, "CreateTrainingJob")
        session = self.sagemaker_session
        stream = sys.stdout if getattr(session, "stream_job_logs", True) else io.StringIO()
        result = run_training_job(request, session.local_root, stream)
        record.update(
            TrainingJobStatus=result.status,
            SecondaryStatus="Completed" if result.status == "Completed" else "Failed",
            CreationTime=result.start_time,
            TrainingStartTime=result.start_time,
            TrainingEndTime=result.end_time,
            LastModifiedTime=result.end_time,
            ModelArtifacts={"S3ModelArtifacts": result.model_artifacts},
            FinalMetricDataList=result.final_metrics,
        )
        if result.failure_reason:
            record["FailureReason"] = result.failure_reason
        return {"TrainingJobArn": record["TrainingJobArn"]}

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:  # noqa: N803
        """DescribeTrainingJob of a local job."""
        return copy.deepcopy(REGISTRY.get("training", TrainingJobName, "DescribeTrainingJob"))

    def stop_training_job(self, TrainingJobName: str) -> None:  # noqa: N803
        """Local jobs run when created; stopping a finished job does nothing (as on AWS)."""
        REGISTRY.get("training", TrainingJobName, "StopTrainingJob")

    # ------------------------------------------------------------------ models
    def create_model(self, **request: Any) -> dict[str, Any]:
        """Register a model (its container definition; nothing runs yet)."""
        name = request["ModelName"]
        if "PrimaryContainer" not in request:
            containers = request.get("Containers") or []
            if len(containers) != 1:
                raise _error(
                    "ValidationException",
                    "local mode serves exactly one container per model",
                    "CreateModel",
                )
            request = {**request, "PrimaryContainer": containers[0]}
        record = copy.deepcopy(request)
        record.update(ModelArn=_arn("model", name), CreationTime=transform_job.now())
        REGISTRY.add("model", name, record, "CreateModel")
        return {"ModelArn": record["ModelArn"]}

    def describe_model(self, ModelName: str) -> dict[str, Any]:  # noqa: N803
        """DescribeModel of a local model."""
        return copy.deepcopy(REGISTRY.get("model", ModelName, "DescribeModel"))

    def delete_model(self, ModelName: str) -> None:  # noqa: N803
        """Forget a model."""
        REGISTRY.get("model", ModelName, "DeleteModel")
        with REGISTRY.lock:
            REGISTRY.items["model"].pop(ModelName, None)

    # ------------------------------------------------------------------ batch transform
    def create_transform_job(self, **request: Any) -> dict[str, Any]:
        """Run a transform job to completion through a local model server."""
        name = request["TransformJobName"]
        model = REGISTRY.get("model", request["ModelName"], "CreateTransformJob")
        record = copy.deepcopy(request)
        started = transform_job.now()
        record.update(
            TransformJobArn=_arn("transform-job", name),
            TransformJobStatus="InProgress",
            CreationTime=started,
            TransformStartTime=started,
        )
        REGISTRY.add("transform", name, record, "CreateTransformJob")
        root = self.sagemaker_session.local_root
        server = None
        try:
            plan = transform_job.plan_transform(request, root)
            env = transform_job.batch_environment(
                request, (model["PrimaryContainer"].get("Environment") or {})
            )
            instance_type = request["TransformResources"].get("InstanceType", "local")
            server = start_local_server(
                {**model["PrimaryContainer"], "Environment": env}, root, instance_type
            )
            record["ServerPid"] = server.pid  # local extra field: the stopped server's id
            print(
                f"Transform job {name}: model server pid {server.pid} at {server.url}", flush=True
            )
            transform_job.run_transform(plan, server, sys.stdout)
            record["TransformJobStatus"] = "Completed"
        except (
            transform_job.TransformFailed,
            ServerSetupError,
            LocalPathError,
            FileNotFoundError,
            ValueError,
        ) as exc:
            record.update(TransformJobStatus="Failed", FailureReason=str(exc))
            print(f"Transform job {name} failed: {exc}", file=sys.stderr, flush=True)
        finally:
            if server is not None:
                server.stop()
            record["TransformEndTime"] = record["LastModifiedTime"] = transform_job.now()
        return {"TransformJobArn": record["TransformJobArn"]}

    def describe_transform_job(self, TransformJobName: str) -> dict[str, Any]:  # noqa: N803
        """DescribeTransformJob of a local job."""
        return copy.deepcopy(REGISTRY.get("transform", TransformJobName, "DescribeTransformJob"))

    def stop_transform_job(self, TransformJobName: str) -> None:  # noqa: N803
        """Local jobs run when created; nothing to stop."""
        REGISTRY.get("transform", TransformJobName, "StopTransformJob")

    # ------------------------------------------------------------------ endpoints
    def create_endpoint_config(self, **request: Any) -> dict[str, Any]:
        """Register an endpoint configuration."""
        name = request["EndpointConfigName"]
        variants = request.get("ProductionVariants") or []
        if len(variants) != 1:
            raise _error(
                "ValidationException",
                "local mode serves exactly one production variant",
                "CreateEndpointConfig",
            )
        record = copy.deepcopy(request)
        record.update(
            EndpointConfigArn=_arn("endpoint-config", name), CreationTime=transform_job.now()
        )
        REGISTRY.add("endpoint_config", name, record, "CreateEndpointConfig")
        return {"EndpointConfigArn": record["EndpointConfigArn"]}

    def describe_endpoint_config(self, EndpointConfigName: str) -> dict[str, Any]:  # noqa: N803
        """DescribeEndpointConfig of a local configuration."""
        return copy.deepcopy(
            REGISTRY.get("endpoint_config", EndpointConfigName, "DescribeEndpointConfig")
        )

    def delete_endpoint_config(self, EndpointConfigName: str) -> None:  # noqa: N803
        """Forget an endpoint configuration."""
        REGISTRY.get("endpoint_config", EndpointConfigName, "DeleteEndpointConfig")
        with REGISTRY.lock:
            REGISTRY.items["endpoint_config"].pop(EndpointConfigName, None)

    def create_endpoint(self, **request: Any) -> dict[str, Any]:
        """Start a model server on 127.0.0.1 for the configuration's model (``InService``), or
        record ``Failed`` with the reason (e.g. no Java)."""
        name = request["EndpointName"]
        config = REGISTRY.get("endpoint_config", request["EndpointConfigName"], "CreateEndpoint")
        variant = config["ProductionVariants"][0]
        model = REGISTRY.get("model", variant["ModelName"], "CreateEndpoint")
        now = transform_job.now()
        record = copy.deepcopy(request)
        record.update(
            EndpointArn=_arn("endpoint", name),
            EndpointStatus="Creating",
            CreationTime=now,
            LastModifiedTime=now,
            ProductionVariants=[{"VariantName": variant.get("VariantName", "AllTraffic")}],
        )
        REGISTRY.add("endpoint", name, record, "CreateEndpoint")
        try:
            server = start_local_server(
                model["PrimaryContainer"],
                self.sagemaker_session.local_root,
                variant.get("InstanceType", "local"),
            )
        except ServerSetupError as exc:
            record.update(EndpointStatus="Failed", FailureReason=str(exc))
        else:
            with REGISTRY.lock:
                REGISTRY.servers[name] = server
            record.update(EndpointStatus="InService", EndpointUrl=server.url, ServerPid=server.pid)
            print(f"Endpoint {name}: model server pid {server.pid} at {server.url}", flush=True)
        record["LastModifiedTime"] = transform_job.now()
        return {"EndpointArn": record["EndpointArn"]}

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803
        """DescribeEndpoint of a local endpoint."""
        return copy.deepcopy(REGISTRY.get("endpoint", EndpointName, "DescribeEndpoint"))

    def delete_endpoint(self, EndpointName: str) -> None:  # noqa: N803
        """Stop the endpoint's model server (by its process-group id) and forget it."""
        REGISTRY.get("endpoint", EndpointName, "DeleteEndpoint")
        with REGISTRY.lock:
            server = REGISTRY.servers.pop(EndpointName, None)
            REGISTRY.items["endpoint"].pop(EndpointName, None)
        if server is not None:
            server.stop()

    def update_endpoint(self, EndpointName: str, **_: Any) -> None:  # noqa: N803
        """Not available locally: delete the endpoint and deploy again."""
        raise _error(
            "ValidationException",
            "update_endpoint is not supported in local mode; delete the endpoint and deploy again",
            "UpdateEndpoint",
        )

    def server(self, endpoint_name: str) -> LocalServer:
        """The running model server of an endpoint (``ValidationException`` if none)."""
        with REGISTRY.lock:
            server = REGISTRY.servers.get(endpoint_name)
        if server is None:
            raise _error(
                "ValidationException",
                f"Endpoint {endpoint_name} of account {ACCOUNT} not found (local mode).",
                "InvokeEndpoint",
            )
        return server

    def list_tags(self, ResourceArn: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        """Local resources carry no tags."""
        return {"Tags": []}


class EmbeddedRuntimeClient:
    """The ``sagemaker-runtime`` ``invoke_endpoint`` call, against a local endpoint."""

    def __init__(self, client: EmbeddedSagemakerClient) -> None:
        self._client = client

    def invoke_endpoint(
        self,
        Body: Any,  # noqa: N803 - boto3's parameter names
        EndpointName: str,  # noqa: N803
        ContentType: str | None = None,  # noqa: N803
        Accept: str | None = None,  # noqa: N803
        CustomAttributes: str | None = None,  # noqa: N803
        **_: Any,
    ) -> dict[str, Any]:
        """POST to the endpoint's model server; a non-200 answer is a ``ModelError`` as on AWS."""
        server = self._client.server(EndpointName)
        if isinstance(Body, str):
            body = Body.encode("utf-8")
        elif hasattr(Body, "read"):
            body = Body.read()
        else:
            body = bytes(Body)
        headers = (
            {"X-Amzn-SageMaker-Custom-Attributes": CustomAttributes} if CustomAttributes else None
        )
        status, data, content_type = server.invoke(body, ContentType, Accept, 60.0, headers)
        if status != 200:
            kind = "client" if status < 500 else "server"
            text = data.decode("utf-8", errors="replace").strip()
            raise ClientError(
                {
                    "Error": {
                        "Code": "ModelError",
                        "Message": f"Received {kind} error ({status}) from primary with message "
                        f'"{text}". (local endpoint {EndpointName})',
                    },
                    "OriginalStatusCode": status,
                    "OriginalMessage": text,
                },
                "InvokeEndpoint",
            )
        return {
            "Body": StreamingBody(io.BytesIO(data), len(data)),
            "ContentType": content_type or Accept or "application/json",
            "InvokedProductionVariant": "AllTraffic",
        }
