"""Sessions and roles for the client classes, checked before any AWS call.

``instance_type="local"`` / ``"local_gpu"`` without a session gets the embedded local mode's
session from :func:`spotlight_sagemaker.local.local_session` (or the SDK's Docker
``LocalSession`` when that returns ``None``). Outside SageMaker a missing role is an error that
says what to pass, instead of the SDK's failing AWS call.
"""

from __future__ import annotations

import os
from typing import Any, TypeGuard

from . import defaults

#: Present on SageMaker notebook instances and Studio, where the SDK can look the role up.
_SAGEMAKER_METADATA = "/opt/ml/metadata/resource-metadata.json"


def is_local(instance_type: Any) -> TypeGuard[str]:
    """Whether ``instance_type`` asks for local mode."""
    return isinstance(instance_type, str) and instance_type in defaults.LOCAL_INSTANCE_TYPES


def local_session(instance_type: str) -> Any:
    """The session for local mode: the embedded one, else the SDK's Docker ``LocalSession``.

    Raises:
        ImportError: the package's local mode module is missing (a broken installation).
    """
    try:
        from .local import local_session as embedded
    except ImportError as err:
        raise ImportError(
            "spotlight_sagemaker.local is missing, so instance_type='local' cannot run; "
            "reinstall spotlight-sagemaker or pass sagemaker_session=sagemaker.local.LocalSession()"
        ) from err
    session = embedded(instance_type)
    if session is not None:
        return session
    from sagemaker.local import LocalSession

    return LocalSession()


def resolve_session(session: Any, instance_type: Any) -> Any:
    """``session`` if given, else the local-mode session or a new ``sagemaker.Session()``."""
    if session is not None:
        return session
    if is_local(instance_type):
        return local_session(instance_type)
    from sagemaker.session import Session

    return Session()


def resolve_role(
    role: str | None, session: Any, instance_type: Any, for_model: bool = False
) -> str:
    """The IAM role: given, from the SageMaker config file, looked up inside SageMaker, or (in
    local mode) a placeholder nothing reads.

    Raises:
        ValueError: no role outside SageMaker.
    """
    if role:
        return role
    from sagemaker.config import MODEL_EXECUTION_ROLE_ARN_PATH, TRAINING_JOB_ROLE_ARN_PATH
    from sagemaker.utils import resolve_value_from_config

    path = MODEL_EXECUTION_ROLE_ARN_PATH if for_model else TRAINING_JOB_ROLE_ARN_PATH
    role = resolve_value_from_config(None, path, sagemaker_session=session)
    if role:
        return role
    if is_local(instance_type) or getattr(session, "local_mode", False):
        return defaults.LOCAL_ROLE
    if os.path.exists(_SAGEMAKER_METADATA):
        from sagemaker import get_execution_role

        return get_execution_role(session)
    raise ValueError(
        "role is required outside SageMaker: pass role='arn:aws:iam::<account>:role/<name>' "
        "(an IAM role SageMaker can assume, with access to your S3 data), set "
        "its RoleArn in the SageMaker config file, or use "
        "instance_type='local'"
    )
