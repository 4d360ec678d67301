"""Run the SageMaker serving stack (sagemaker-inference + Multi Model Server) with our handler.

:func:`start_model_server` is what tests, benchmarks and the ``serve`` console script share: it
writes a private MMS config (inference bound to 127.0.0.1 unless told otherwise, one port for
``/ping`` and ``/invocations`` as in SageMaker; the management API always on 127.0.0.1 and a port
of its own, so whoever reaches the serving port cannot load, rescale or delete models), starts
MMS in its own process group with a private temp dir, waits until every worker has loaded the
model and returns a :class:`ModelServer` handle whose ``stop()`` kills that process group by its
id (MMS spawns a Java frontend and Python workers). A model that cannot be served (``model_fn``
raises: a broken artifact, a bad ``SPOTLIGHT_*`` setting) fails the start with ``model_fn``'s
message (see :mod:`.handler_service`).

The handler module is found the way the toolkit finds it: ``SAGEMAKER_PROGRAM`` (default
``inference.py``) imported from ``<model_dir>/code`` (first on ``PYTHONPATH``); the packaged
``entry_points`` folder comes next, so an image with the package installed serves a model
directory that holds only the artifact.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...contract import content_types

#: the prefix of the stderr line a worker prints when the model cannot be served
#: (:mod:`.handler_service`)
STARTUP_FAILURE = "spotlight-sagemaker: the model cannot be served: "
HANDLER_SERVICE = "spotlight_sagemaker.container.serving.handler_service:handle"
MANAGEMENT_HOST = "127.0.0.1"
_LOADED = "State change WORKER_STARTED -> WORKER_MODEL_LOADED"
_BASE_CONFIG = "enable_envvars_config=true\ndecode_input_request=false\nload_models=ALL\n"


class ModelServerError(RuntimeError):
    """The model server did not come up: the message says why (``model_fn``'s own message when
    the model cannot be served); ``log_tail`` holds the end of the server log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass
class ModelServer:
    """A running model server; ``stop()`` (or leaving a ``with`` block) kills its process group."""

    pid: int
    host: str
    port: int
    workdir: Path
    log_path: Path
    _proc: subprocess.Popen = field(repr=False)
    management_port: int = 0
    _tee: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def is_running(self) -> bool:
        return self._proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``timeout``; idempotent."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.pid):
                if self._proc.poll() is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(timeout=0.1)
                else:
                    time.sleep(0.1)
                if os.getpid() == 1:  # container init: orphaned MMS processes are ours to reap
                    _reap_children()
            if not _group_alive(self.pid):
                break
        self._proc.poll()
        if self._tee is not None:  # the log pipe ends with the server: let the copy finish
            self._tee.join(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies of our own child still count as "in the group" until reaped by the caller
    return True


def _reap_children() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def free_port(host: str = "127.0.0.1", exclude: tuple[int, ...] = ()) -> int:
    """A TCP port free on ``host`` right now, below 32768 (MMS rejects higher port numbers)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        if port in exclude:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise ModelServerError("no free port found in 20000-32767")


def entry_points_dir() -> Path:
    """The folder holding the packaged ``inference.py`` (``spotlight_sagemaker._entry_points``)."""
    spec = importlib.util.find_spec("spotlight_sagemaker._entry_points")
    if spec is None or not spec.submodule_search_locations:
        raise ModelServerError("spotlight_sagemaker._entry_points is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


#: Multi Model Server's (and TorchServe's) default request and response caps, in bytes.
MMS_DEFAULT_CAP = 6_553_500
#: Headroom of the server's response cap over the codec's (SPOTLIGHT_MAX_RESPONSE_BYTES), so a
#: response the codec lets through is never one that kills the worker.
RESPONSE_CAP_MARGIN = 1024 * 1024


def payload_caps(env: dict[str, str]) -> tuple[int, int]:
    """(request cap, codec response limit) for a server with this environment.

    Requests: ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` MiB (what a transform job sends at most), never
    below the default. Responses: ``SPOTLIGHT_MAX_RESPONSE_BYTES`` when set, else the request
    cap (MultiRecord responses are larger than their requests; the codec answers 413 above it).
    """
    mb = env.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "")
    request = max(MMS_DEFAULT_CAP, int(mb) * 1024 * 1024 if mb.isdigit() else 0)
    response = env.get("SPOTLIGHT_MAX_RESPONSE_BYTES", "")
    return request, int(response) if response.isdigit() else request


def mms_config(
    host: str,
    port: int,
    workers: int | None = None,
    timeout_s: int = 60,
    max_request_bytes: int | None = None,
    management_port: int | None = None,
    max_response_bytes: int | None = None,
) -> str:
    """The MMS properties: inference on ``host:port``, management on 127.0.0.1 only, the
    request cap, and a response cap :data:`RESPONSE_CAP_MARGIN` above ``max_response_bytes``
    (the codec's limit)."""
    if management_port is None or management_port == port:
        raise ValueError("the management API needs a port of its own")
    lines = [
        f"inference_address=http://{host}:{port}",
        f"management_address=http://{MANAGEMENT_HOST}:{management_port}",
        f"default_service_handler={HANDLER_SERVICE}",
        f"default_response_timeout={timeout_s}",
        "vmargs=-XX:-UseContainerSupport",
    ]
    if workers:
        lines.append(f"default_workers_per_model={workers}")
    if max_request_bytes:
        lines.append(f"max_request_size={max_request_bytes}")
    if max_response_bytes:
        lines.append(f"max_response_size={max_response_bytes + RESPONSE_CAP_MARGIN}")
    return _BASE_CONFIG + "\n".join(lines) + "\n"


def start_model_server(
    model_dir: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int | None = 1,
    env: dict[str, str] | None = None,
    startup_timeout: float = 120.0,
    foreground_log: bool = False,
) -> ModelServer:
    """Start MMS serving ``model_dir`` with the SageMaker handler and wait until ``/ping`` is OK.

    Args:
        model_dir: the model as SageMaker extracts it (artifact files, optional ``code/``).
        host: the address to bind (``127.0.0.1`` unless serving a container).
        port: the port for ``/ping`` and ``/invocations`` (default: a free one).
        workers: Python worker processes (None: MMS's default, one per CPU).
        env: extra environment for the server (``SPOTLIGHT_*``, ``SAGEMAKER_*``).
        startup_timeout: seconds to wait for ``/ping``.
        foreground_log: send the server log to this process's stdout instead of a file.

    Raises:
        ModelServerError: the server exited or did not answer ``/ping`` in time.
    """
    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise ValueError(f"model_dir {str(model_dir)!r} is not a directory")
    port = free_port(host) if port is None else int(port)
    management_port = free_port(MANAGEMENT_HOST, exclude=(port,))
    workdir = Path(tempfile.mkdtemp(prefix="spotlight-mms-"))
    child_env = _server_env(model_dir, workdir, workers, env)
    request_cap, response_limit = payload_caps(child_env)
    config = workdir / "mms.properties"
    config.write_text(
        mms_config(
            host,
            port,
            workers,
            int(child_env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "60")),
            request_cap,
            management_port,
            response_limit,
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "mms.model_server",
        "--start",
        "--foreground",
        "--mms-config",
        str(config),
        "--model-store",
        "/",
        "--models",
        f"model={model_dir}",
    ]
    log_path = workdir / "server.log"
    out = open(log_path, "wb")  # noqa: SIM115 - the child (or the tee thread) owns it
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=child_env,
            stdout=subprocess.PIPE if foreground_log else out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except BaseException:
        out.close()
        raise
    tee = None
    if foreground_log:  # the log goes to our stdout and to the file start-up reads
        tee = threading.Thread(target=_tee, args=(proc.stdout, out), daemon=True)
        tee.start()
    else:
        out.close()
    server = ModelServer(proc.pid, host, port, workdir, log_path, proc, management_port, tee)
    try:
        _wait_for_ping(server, startup_timeout, workers or 1)
    except ModelServerError as e:
        tail = server.log_tail()
        server.stop()
        message = str(e)
        if not message.startswith("the model cannot be served"):
            message += f"; log tail:\n{tail}"
        raise ModelServerError(message, tail) from None
    except BaseException:
        server.stop()
        raise
    return server


def _tee(source, sink) -> None:
    with sink:
        for line in iter(source.readline, b""):
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            sink.write(line)
            sink.flush()


def _server_env(
    model_dir: Path, workdir: Path, workers: int | None, extra: dict[str, str] | None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    paths = [str(model_dir / "code"), str(entry_points_dir())]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if not env.get("SAGEMAKER_PROGRAM"):  # the SDK sends "" when the code is in the image
        env["SAGEMAKER_PROGRAM"] = "inference.py"
    env.setdefault("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", content_types.DEFAULT_ACCEPT)
    # the codec's response limit, which the server's response cap then sits above (a bad
    # value is kept: the codec refuses it at start-up, naming it)
    env.setdefault("SPOTLIGHT_MAX_RESPONSE_BYTES", str(payload_caps(env)[1]))
    if "SPOTLIGHT_TORCH_THREADS" not in env:  # MMS runs one worker per CPU unless told
        cpus = os.cpu_count() or 1
        env["SPOTLIGHT_TORCH_THREADS"] = str(max(1, cpus // (workers or cpus)))
    # private temp dir: MMS keeps a global pid file and worker sockets there
    for var in ("TMPDIR", "TEMP"):
        env[var] = str(workdir)
    env["LOG_LOCATION"] = env["METRICS_LOCATION"] = str(workdir / "logs")
    return env


def _wait_for_ping(server: ModelServer, timeout: float, loaded_workers: int) -> None:
    """Wait for ``/ping`` and a READY worker, and for ``loaded_workers`` workers to load the model.

    MMS answers ``/ping`` and reports its worker READY before the worker has run ``model_fn``
    (which imports torch and reads the artifact); the worker's state change to
    ``WORKER_MODEL_LOADED`` in the log marks the real end of start-up, and a worker's
    :data:`STARTUP_FAILURE` line its failure (MMS would retry it forever).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.is_running():
            raise ModelServerError(f"model server exited with code {server._proc.returncode}")
        log = server.log_tail(1 << 22)
        failure = _startup_failure(log)
        if failure is not None:
            raise ModelServerError(f"the model cannot be served: {failure}")
        if (
            _get(server, "/ping")[0] == 200
            and b'"READY"' in _get(server, "/models/model", server.management_port)[1]
            and log.count(_LOADED) >= loaded_workers
        ):
            return
        time.sleep(0.25)
    raise ModelServerError(f"no loaded model behind {server.url}/ping after {timeout:.0f} s")


def _startup_failure(log: str) -> str | None:
    """``model_fn``'s message from a worker's start-up failure line in the MMS log, or None."""
    at = log.find(STARTUP_FAILURE)
    if at < 0:
        return None
    end = log.find("\n", at)
    return log[at + len(STARTUP_FAILURE) : end if end >= 0 else len(log)].strip()


def _get(server: ModelServer, path: str, port: int | None = None) -> tuple[int, bytes]:
    host = server.host if port is None else MANAGEMENT_HOST
    conn = http.client.HTTPConnection(host, port or server.port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    """``spotlight-sagemaker-serve [serve]``: serve like a SageMaker container (0.0.0.0:8080)."""
    base = os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")
    parser = argparse.ArgumentParser(prog="spotlight-sagemaker-serve", description=main.__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve"],
        help="SageMaker starts serving containers with the argument 'serve'",
    )
    parser.add_argument("--model-dir", default=os.path.join(base, "model"))
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "0")) or None,
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=float(os.environ.get("SAGEMAKER_STARTUP_TIMEOUT", "600")),
    )
    args = parser.parse_args(argv)

    def _stop(signum: int, frame: object) -> None:
        # `docker stop` (SIGTERM) may come during start-up too: start_model_server then stops
        # what it started before the exit propagates
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server = start_model_server(
            args.model_dir,
            host=args.host,
            port=args.port,
            workers=args.workers,
            startup_timeout=args.startup_timeout,
            foreground_log=True,
        )
    except (ModelServerError, ValueError) as e:
        print(f"spotlight-sagemaker-serve: {e}", file=sys.stderr)
        return 1
    try:
        print(
            f"spotlight-sagemaker-serve: serving {args.model_dir} on {server.url} "
            f"(pid {server.pid})",
            flush=True,
        )
        return server._proc.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
