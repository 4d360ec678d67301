"""Turn what users pass as data (S3 URIs, local files or folders) into what jobs read.

On AWS a local path is uploaded to the session's default bucket (and the log says where); in
local mode it becomes a ``file://`` URI. A path that does not exist fails here, before any AWS
call.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _is_remote(value: str) -> bool:
    return value.lower().startswith(("s3://", "https://"))


def resolve_path(session: Any, data: str, key_prefix: str, what: str) -> str:
    """An S3 (or, in local mode, ``file://``) URI for ``data``.

    Args:
        session: the job's SageMaker session (``local_mode`` tells local from AWS).
        data: an ``s3://`` URI, a ``file://`` URI (local mode only) or a local file/folder.
        key_prefix: where under the default bucket a local path is uploaded.
        what: the argument's name, for error messages (e.g. ``"inputs['training']"``).

    Raises:
        FileNotFoundError: a local path that does not exist.
        ValueError: a ``file://`` URI outside local mode, or an empty value.
    """
    if not isinstance(data, str) or not data.strip():
        raise ValueError(f"{what} must be an s3:// URI or a local path, got {data!r}")
    if _is_remote(data):
        return data
    local_mode = bool(getattr(session, "local_mode", False))
    if data.lower().startswith("file://"):
        if not local_mode:
            raise ValueError(
                f"{what}={data!r}: file:// URIs work only in local mode "
                "(instance_type='local'); pass a plain local path to upload it to S3"
            )
        path = Path(data[len("file://") :])
    else:
        path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what}: local path {str(path)!r} does not exist")
    path = path.resolve()
    if local_mode:
        return "file://" + str(path)
    bucket = session.default_bucket()
    prefix = "/".join(p for p in (session.default_bucket_prefix, key_prefix) if p)
    uri = session.upload_data(str(path), bucket=bucket, key_prefix=prefix)
    if path.is_file():  # upload_data returns the object's URI; the channel reads the prefix
        uri = f"s3://{bucket}/{prefix}"
    logger.info("Uploaded %s (%s) to %s", path, what, uri)
    return uri


def resolve_inputs(session: Any, inputs: Any, key_prefix: str) -> Any:
    """Resolve ``fit()`` inputs: a URI/path, or a dict of channel -> URI/path/TrainingInput.

    Raises:
        ValueError: no inputs, or a channel name that is not a non-empty string.
        FileNotFoundError: a local path that does not exist.
    """
    if inputs is None:
        raise ValueError(
            "inputs is required: an s3:// URI, a local CSV file or folder, or a dict of "
            "channels such as {'training': ..., 'validation': ...}"
        )
    if isinstance(inputs, (str, os.PathLike)):
        return resolve_path(session, os.fspath(inputs), f"{key_prefix}/training", "inputs")
    if isinstance(inputs, dict):
        out = {}
        for channel, value in inputs.items():
            if not isinstance(channel, str) or not channel:
                raise ValueError(f"channel names must be non-empty strings, got {channel!r}")
            if isinstance(value, (str, os.PathLike)):
                value = resolve_path(
                    session, os.fspath(value), f"{key_prefix}/{channel}", f"inputs[{channel!r}]"
                )
            out[channel] = value
        return out
    return inputs  # TrainingInput / FileSystemInput: the SDK checks them


#: The channel train.py warm-starts from (the SDK's default ``model_channel_name``).
MODEL_CHANNEL = "model"


def resolve_model_uri(session: Any, model_uri: Any, key_prefix: str) -> Any:
    """``model_uri`` as a job reads it: an ``s3://`` URI as given; a local ``model.tar.gz`` or
    artifact folder uploaded (on AWS) or made a ``file://`` URI (local mode); None stays None.

    Raises:
        FileNotFoundError: a local path that does not exist.
        ValueError: a ``file://`` URI outside local mode.
    """
    if model_uri is None or not isinstance(model_uri, (str, os.PathLike)):
        return model_uri  # None, or a PipelineVariable: the SDK handles it
    return resolve_path(session, os.fspath(model_uri), key_prefix, "model_uri")
