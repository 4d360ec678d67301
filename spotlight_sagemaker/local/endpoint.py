"""The serving container on this machine: a model's ``model.tar.gz`` behind a real model server.

:func:`start_local_server` does what SageMaker does when a serving container starts: it
extracts ``ModelDataUrl`` into a fresh model folder, puts the code there as ``code/`` (already in
the archive after the SDK's repack, else from ``SAGEMAKER_SUBMIT_DIRECTORY``), and starts Multi
Model Server with the SageMaker inference toolkit and our handler
(:func:`spotlight_sagemaker.container.serving.model_server.start_model_server`), bound to
127.0.0.1 on a free port. The
returned :class:`LocalServer` posts to ``/invocations`` and is stopped by its process-group id.
"""

from __future__ import annotations

import http.client
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .paths import LocalPathError, extract_tar, to_path

HOST = "127.0.0.1"


class ServerSetupError(RuntimeError):
    """The model server cannot be started (missing Java, model data or code)."""


class LocalServer:
    """A running local serving container: a model server plus the model folder it serves."""

    def __init__(self, server: Any, workdir: Path) -> None:
        self._server = server
        self._workdir = workdir

    @property
    def pid(self) -> int:
        """Process-group id of the model server."""
        return self._server.pid

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self._server.url

    def invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, str | None]:
        """POST ``body`` to ``/invocations``; returns (HTTP status, body, content type)."""
        sent = dict(headers or {})
        if content_type:
            sent["Content-Type"] = content_type
        if accept:
            sent["Accept"] = accept
        conn = http.client.HTTPConnection(self._server.host, self._server.port, timeout=timeout)
        try:
            conn.request("POST", "/invocations", body=body, headers=sent)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Content-Type")
        finally:
            conn.close()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the model server's log."""
        return self._server.log_tail(chars)

    def stop(self) -> None:
        """Stop the model server (by its process-group id) and delete the model folder."""
        try:
            self._server.stop()
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)


def require_java() -> str:
    """The ``java`` executable, or a :class:`ServerSetupError` that says what to install."""
    java = shutil.which("java")
    if java is None:
        raise ServerSetupError(
            "the local model server (Multi Model Server) needs Java 11 or newer on PATH: "
            "install a JRE (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: "
            "brew install openjdk@17) or set JAVA_HOME and add $JAVA_HOME/bin to PATH"
        )
    return java


def start_local_server(
    primary_container: dict[str, Any],
    root: Path,
    instance_type: str = "local",
) -> LocalServer:
    """Start a model server for ``primary_container`` (CreateModel's container definition).

    Args:
        primary_container: ``ModelDataUrl`` (``file://`` tar.gz or folder) and ``Environment``
            (a transform job passes the model's with its batch settings merged in).
        root: the local mode's root folder (for ``s3://spotlight-local/...`` URIs).
        instance_type: ``"local"`` hides GPUs from the server (a CPU instance).

    Raises:
        ServerSetupError: no Java, no model data, or the server did not start.
    """
    require_java()
    try:
        from spotlight_sagemaker.container.serving.model_server import (
            ModelServerError,
            start_model_server,
        )
    except ImportError as exc:  # sagemaker-inference / multi-model-server not installed
        raise ServerSetupError(
            f"local endpoints and transform jobs need the model server ({exc}): "
            "pip install 'spotlight-sagemaker[local]'"
        ) from None
    env = dict(primary_container.get("Environment") or {})
    if instance_type == "local":
        env["CUDA_VISIBLE_DEVICES"] = ""
    workdir = Path(tempfile.mkdtemp(prefix="spotlight-endpoint-"))
    try:
        model_dir = _prepare_model_dir(primary_container, env, workdir / "model", root)
        env.pop("SAGEMAKER_SUBMIT_DIRECTORY", None)
        workers = env.get("SAGEMAKER_MODEL_SERVER_WORKERS", "")
        server = start_model_server(
            model_dir, host=HOST, workers=int(workers) if workers.isdigit() else 1, env=env
        )
    except (LocalPathError, FileNotFoundError, ValueError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServerSetupError(str(exc)) from None
    except ModelServerError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServerSetupError(str(exc)) from None
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return LocalServer(server, workdir)


def _prepare_model_dir(
    container: dict[str, Any], env: dict[str, str], model_dir: Path, root: Path
) -> Path:
    uri = container.get("ModelDataUrl")
    if not uri:
        raise ValueError("the model has no ModelDataUrl (model_data)")
    source = to_path(uri, root, "model_data")
    if not source.exists():
        raise FileNotFoundError(f"model_data {uri!r} does not exist")
    if source.is_dir():
        shutil.copytree(source, model_dir)
    else:
        try:
            extract_tar(source, model_dir)
        except (OSError, EOFError, ValueError) as exc:
            raise ValueError(f"model_data {uri!r} is not a readable tar.gz ({exc})") from None
    code = model_dir / "code"
    submit = env.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if not code.is_dir() and submit and not submit.startswith("/opt/ml/"):
        src = to_path(submit, root, "SAGEMAKER_SUBMIT_DIRECTORY")
        if src.is_dir():
            shutil.copytree(src, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.is_file():
            extract_tar(src, code)
        else:
            raise FileNotFoundError(f"SAGEMAKER_SUBMIT_DIRECTORY {submit!r} does not exist")
    return model_dir


__all__ = ["LocalServer", "ServerSetupError", "require_java", "start_local_server"]
