"""Local mode without Docker or AWS: ``instance_type="local"`` runs everything on this machine.

``SpotlightEstimator(instance_type="local")`` (and ``SpotlightModel``) get their session from
:func:`local_session`: an :class:`EmbeddedLocalSession` whose training jobs run ``train.py``
under the real ``sagemaker-training`` toolkit with a relocated ``/opt/ml``, whose transform jobs
and endpoints run the real handler behind Multi Model Server on 127.0.0.1. Set
``SPOTLIGHT_LOCAL_MODE=docker`` (or pass ``mode="docker"``) to use SageMaker's own Docker local
mode instead. See docs/local-mode.md.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..defaults import LOCAL_INSTANCE_TYPES

if TYPE_CHECKING:
    from .session import EmbeddedLocalSession

MODE_ENV = "SPOTLIGHT_LOCAL_MODE"
MODES = ("embedded", "docker")


def local_mode() -> str:
    """The configured local mode: ``$SPOTLIGHT_LOCAL_MODE`` (``embedded`` or ``docker``).

    Raises:
        ValueError: any other value.
    """
    mode = (os.environ.get(MODE_ENV) or "embedded").strip().lower()
    if mode not in MODES:
        raise ValueError(f"{MODE_ENV} must be one of {list(MODES)}, got {mode!r}")
    return mode


def local_session(
    instance_type: str = "local", *, mode: str | None = None, root: Any = None
) -> EmbeddedLocalSession | None:
    """The session for ``instance_type="local"``/``"local_gpu"``.

    Args:
        instance_type: ``"local"`` (CPU) or ``"local_gpu"``.
        mode: ``"embedded"`` (default: no Docker, no AWS) or ``"docker"`` (SageMaker's Docker
            local mode); default ``$SPOTLIGHT_LOCAL_MODE``.
        root: the embedded mode's output folder (default ``$SPOTLIGHT_LOCAL_DIR`` or
            ``./spotlight-local``).

    Returns:
        An :class:`EmbeddedLocalSession`, or ``None`` for Docker mode (the caller then makes
        the SDK's ``sagemaker.local.LocalSession``).

    Raises:
        ValueError: an instance type that is not local, or an unknown mode.
    """
    if instance_type not in LOCAL_INSTANCE_TYPES:
        raise ValueError(
            f"instance_type must be one of {list(LOCAL_INSTANCE_TYPES)} for local mode, "
            f"got {instance_type!r}"
        )
    if mode is None:
        mode = local_mode()
    elif mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if mode == "docker":
        return None
    from .session import EmbeddedLocalSession

    return EmbeddedLocalSession(root=root)


def __getattr__(name: str) -> Any:
    if name == "EmbeddedLocalSession":
        from .session import EmbeddedLocalSession

        return EmbeddedLocalSession
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LOCAL_INSTANCE_TYPES",
    "MODES",
    "MODE_ENV",
    "EmbeddedLocalSession",
    "local_mode",
    "local_session",
]
