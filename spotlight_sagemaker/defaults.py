"""Defaults of the SageMaker client classes, and the checks on what users pass to them.

Every fixed choice of the SDK side lives here: image versions, job names, entry points, the
hyperparameters ``train.py`` accepts, and the Batch Transform settings with the arithmetic that
sizes them. This module imports the SageMaker SDK only inside functions.
"""

from __future__ import annotations

from typing import Any

from .contract import content_types
from .contract.hyperparameters import AUTO, AUTO_PARAMS, ONE_PROCESS, OPTIONS, is_launcher_setting
from .core.config import PARAMS, coerce

#: The AWS PyTorch Deep Learning Containers both sides run on (newest inference image: 2.6.0).
FRAMEWORK_VERSION = "2.6.0"
PY_VERSION = "py312"
#: The name the SDK knows the PyTorch images by.
FRAMEWORK_NAME = "pytorch"

BASE_JOB_NAME = "spotlight"
TRAIN_ENTRY_POINT = "train.py"
INFERENCE_ENTRY_POINT = "inference.py"
LOCAL_INSTANCE_TYPES = ("local", "local_gpu")
#: Role used in local mode, where nothing reads it (the SDK insists on a value).
LOCAL_ROLE = "arn:aws:iam::000000000000:role/spotlight-local"

#: Every hyperparameter name the estimator accepts: the model's (``core.config.PARAMS``) and
#: train.py's job options (``contract.hyperparameters.OPTIONS``: preset, validation_fraction, ...).
HYPERPARAMETER_NAMES: tuple[str, ...] = (*PARAMS, *OPTIONS)

# --- Batch Transform -------------------------------------------------------------------------
#: TorchServe's and Multi Model Server's default response cap (bytes); a larger response kills
#: the worker ("Worker died").
RESPONSE_CAP_BYTES = 6_553_500
#: MaxPayloadInMB counts mebibytes; 1 is the smallest value every container accepts.
MIB = 1024 * 1024
#: The container's default top_n, and the sizes the payload arithmetic assumes.
DEFAULT_TOP_N = 10
#: One request line: ``{"user_id": "685", "top_n": "10"}`` plus its newline.
REQUEST_LINE_BYTES = 35
#: One CSV output row: ``685,1234,0.123456789`` plus its newline (3-4 digit ids).
OUTPUT_ROW_BYTES = 21
TRANSFORM_STRATEGY = "MultiRecord"
TRANSFORM_ASSEMBLE_WITH = "Line"
TRANSFORM_ACCEPT = content_types.DEFAULT_ACCEPT
TRANSFORM_CONTENT_TYPE = content_types.DEFAULT_REQUEST
TRANSFORM_SPLIT_TYPE = "Line"
#: Seconds the model server gives one request; a transform job waits 600 s per request by
#: default (ModelClientConfig.InvocationsTimeoutInSeconds), the server's own default is 60 s.
MODEL_SERVER_TIMEOUT = 600
#: Response cap raised for headroom on the AWS image: TorchServe reads TS_* variables
#: (its config sets enable_envvars_config) and the codec reads SPOTLIGHT_MAX_RESPONSE_BYTES.
#: Not set for custom images (Multi Model Server ignores TS_*; its launcher caps responses
#: above the codec's own limit, which they keep at its default).
RAISED_RESPONSE_BYTES = 32 * MIB
#: The serving codec's default SPOTLIGHT_MAX_RECORDS, and the shortest request line it can get
#: (``{"user_id":"1"}`` and its newline): a transform job's records limit is raised so that a
#: full MaxPayloadInMB request of such lines is never refused for its line count.
DEFAULT_MAX_RECORDS = 200_000
SHORTEST_REQUEST_LINE_BYTES = 16


def max_payload_mb(
    top_n: int = DEFAULT_TOP_N,
    request_line_bytes: int = REQUEST_LINE_BYTES,
    output_row_bytes: int = OUTPUT_ROW_BYTES,
    response_cap_bytes: int = RESPONSE_CAP_BYTES,
) -> int:
    """The largest MaxPayloadInMB whose responses stay under the model server's response cap.

    A MultiRecord request of ``P`` MiB holds ``P * MIB / request_line_bytes`` records; each
    becomes ``top_n`` CSV rows, so the response is ``P * MIB * fan_out`` bytes with
    ``fan_out = top_n * output_row_bytes / request_line_bytes``. Hence
    ``P = floor(response_cap_bytes / (MIB * fan_out))``, at least 1 (the smallest payload
    SageMaker accepts) and at most 100 (its maximum).

    Args:
        top_n: recommendations per request line.
        request_line_bytes: bytes of one input line, newline included.
        output_row_bytes: bytes of one output CSV row, newline included.
        response_cap_bytes: the model server's response cap.

    Raises:
        ValueError: a non-positive size.
    """
    for name, value in (
        ("top_n", top_n),
        ("request_line_bytes", request_line_bytes),
        ("output_row_bytes", output_row_bytes),
        ("response_cap_bytes", response_cap_bytes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    fan_out = top_n * output_row_bytes / request_line_bytes
    return int(max(1, min(100, response_cap_bytes // (MIB * fan_out))))


#: CreateTransformJob accepts at most this many Environment entries.
MAX_TRANSFORM_ENV = 16


#: Environment every SpotlightModel sets (the caller's ``env`` overrides it).
MODEL_ENV: dict[str, str] = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": content_types.DEFAULT_ACCEPT}


def workers_env(model_server_workers: Any, aws_image: bool) -> dict[str, str]:
    """TorchServe's own setting for ``model_server_workers`` on the AWS image, whose
    entrypoint overwrites ``SAGEMAKER_MODEL_SERVER_WORKERS`` (the SDK's) with the CPU count;
    TorchServe's ``TS_*`` variables override its config. Nothing when not given."""
    if not aws_image or model_server_workers in (None, ""):
        return {}
    return {"TS_DEFAULT_WORKERS_PER_MODEL": str(model_server_workers)}


def transform_env(
    env: dict[str, str] | None = None, aws_image: bool = True, max_payload: int = 1
) -> dict[str, str]:
    """Environment of a transform job: these defaults updated with ``env`` (the caller wins).

    - ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` = 600 s (Multi Model Server) and, on the AWS image,
      ``TS_DEFAULT_RESPONSE_TIMEOUT`` = 600 s: sagemaker-pytorch-inference 2.0.25 loses the
      former (its TorchServe config has no final newline), TorchServe reads ``TS_*``.
    - On the AWS image, ``TS_MAX_REQUEST_SIZE`` = ``max_payload`` MiB (2.0.25 does not pass
      the job's ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` on; TorchServe refuses larger requests with an
      empty 413) and the response caps of TorchServe and the codec raised to
      :data:`RAISED_RESPONSE_BYTES`.
    - ``SPOTLIGHT_MAX_RECORDS`` = as many of the shortest request lines as ``max_payload``
      holds, when that is above the codec's default.

    Args:
        env: the caller's variables.
        aws_image: the model runs on the AWS PyTorch image (TorchServe), whose limits can be
            raised; custom images keep theirs.
        max_payload: the job's MaxPayloadInMB.

    Raises:
        ValueError: more than :data:`MAX_TRANSFORM_ENV` entries.
    """
    out = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(MODEL_SERVER_TIMEOUT)}
    if aws_image:
        out["TS_DEFAULT_RESPONSE_TIMEOUT"] = str(MODEL_SERVER_TIMEOUT)
        out["TS_MAX_REQUEST_SIZE"] = str(max(RESPONSE_CAP_BYTES, max_payload * MIB))
        out["TS_MAX_RESPONSE_SIZE"] = str(RAISED_RESPONSE_BYTES)
        out["SPOTLIGHT_MAX_RESPONSE_BYTES"] = str(RAISED_RESPONSE_BYTES)
    records = max_payload * MIB // SHORTEST_REQUEST_LINE_BYTES
    if records > DEFAULT_MAX_RECORDS:
        out["SPOTLIGHT_MAX_RECORDS"] = str(records)
    out.update(env or {})
    if len(out) > MAX_TRANSFORM_ENV:
        raise ValueError(
            f"env: a transform job holds at most {MAX_TRANSFORM_ENV} environment variables, "
            f"this one would have {len(out)} ({', '.join(sorted(out))})"
        )
    return out


def transform_settings(
    max_payload: int | None, env: dict[str, str] | None, aws_image: bool = True
) -> dict[str, Any]:
    """``max_payload`` and ``env`` of a transformer: :func:`max_payload_mb` when not given,
    and :func:`transform_env` for that payload."""
    payload = max_payload_mb() if max_payload is None else max_payload
    return {"max_payload": payload, "env": transform_env(env, aws_image, payload)}


# --- Hyperparameters -------------------------------------------------------------------------
def _is_pipeline_variable(value: Any) -> bool:
    try:
        from sagemaker.workflow import is_pipeline_variable
    except ImportError:  # pragma: no cover - the SDK side always has it
        return False
    return is_pipeline_variable(value)


def _check_option(name: str, value: Any) -> Any:
    """Check a train.py option with train.py's own parser; keep the value as given."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = ""
    else:
        text = str(value)
    try:
        OPTIONS[name].parse(text)
    except ValueError as err:
        raise ValueError(str(err)) from None
    return value.strip() if isinstance(value, str) else value


def check_hyperparameters(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Check names, types and ranges of hyperparameters before anything reaches AWS.

    Keys starting with ``_`` or ``sagemaker_`` (set by the SDK or the tuner) pass unchecked,
    and so do pipeline variables (resolved only when the pipeline runs), except the settings
    that launch several training processes (``sagemaker_torch_distributed_enabled`` and the
    other ``sagemaker_*_enabled`` flags): train.py trains in one process.

    Args:
        hyperparameters: name -> value (strings accepted, as SageMaker sends them).

    Returns:
        The same names with converted values (``"5"`` -> ``5``, ``"BPR"`` -> ``"bpr"``).

    Raises:
        ValueError: an unknown name (the message lists the known ones), a bad value (the
            message names the hyperparameter and its allowed values), or a multi-process
            launch setting.
        TypeError: a name that is not a string.
    """
    out: dict[str, Any] = {}
    for name, value in hyperparameters.items():
        if not isinstance(name, str):
            raise TypeError(f"hyperparameter names must be strings, got {name!r}")
        if is_launcher_setting(name):
            raise ValueError(
                f"hyperparameter {name!r} asks the training image to start several processes; "
                f"{ONE_PROCESS}: remove it"
            )
        if name.startswith(("_", "sagemaker_")) or _is_pipeline_variable(value):
            out[name] = value
        elif name in AUTO_PARAMS and isinstance(value, str) and value.strip().lower() == AUTO:
            out[name] = AUTO  # chosen by train.py on the job's validation rows
        elif name in PARAMS:
            out[name] = coerce(name, value)
        elif name in OPTIONS:
            out[name] = _check_option(name, value)
        else:
            raise ValueError(
                f"unknown hyperparameter {name!r}; known: {', '.join(HYPERPARAMETER_NAMES)}"
            )
    return out


def check_framework_version(framework_version: str, py_version: str, scope: str) -> None:
    """Fail before any AWS call when no AWS PyTorch image exists for these versions.

    Args:
        framework_version: e.g. ``"2.6.0"`` (aliases such as ``"2.6"`` are accepted).
        py_version: e.g. ``"py312"``.
        scope: ``"training"`` or ``"inference"``.

    Raises:
        ValueError: the version or the Python version has no image; the message lists those
            that do.
    """
    from sagemaker import image_uris

    config = image_uris.config_for_framework(FRAMEWORK_NAME)[scope]
    versions = config["versions"]
    full = config.get("version_aliases", {}).get(framework_version, framework_version)
    if full not in versions:
        raise ValueError(
            f"framework_version {framework_version!r} has no AWS PyTorch {scope} image; "
            f"available: {', '.join(versions)} (default {FRAMEWORK_VERSION!r})"
        )
    py_versions = versions[full].get("py_versions", [])
    if py_version not in py_versions:
        raise ValueError(
            f"py_version {py_version!r} has no AWS PyTorch {scope} image for framework_version "
            f"{framework_version!r}; available: {', '.join(py_versions)}"
        )
