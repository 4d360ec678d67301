"""inference.py on the AWS PyTorch 2.6.0 inference image's own stack: TorchServe 0.12.0 with
sagemaker-pytorch-inference 2.0.25 (PyPI), Java 17, on 127.0.0.1.

The model folder and the environment are what the SDK creates: ``SpotlightModel(...)`` under
moto repacks the artifact (extracted here as SageMaker extracts it into /opt/ml/model) and sets
the model's environment; a transform job adds its ``Environment`` and the variables the
platform sets in every transform container. The server starts the way the image's entrypoint
starts it for ``serve``: ``SAGEMAKER_MODEL_SERVER_WORKERS`` set to the CPU count, then
``sagemaker_pytorch_serving_container.serving.main()`` (the entrypoint script is part of the
image, not of a package, so :data:`LAUNCHER` repeats those two lines). What differs from the
image, for a test on a shared machine: the toolkit's config file goes to a temporary folder
instead of /etc/sagemaker-ts.properties, /opt/ml is ``SAGEMAKER_BASE_DIR``, and the
inference, management and metrics addresses are set to loopback ports with TorchServe's own
``TS_*`` variables (the toolkit binds 0.0.0.0). Servers are stopped by their process group id;
each test checks that nothing is left behind.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from _request_kinds import REQUESTS, csv_pairs, expected_rows
from _sdk_helpers import sdk_served_model

from spotlight_sagemaker import defaults
from spotlight_sagemaker.core import ImplicitFactorizationModel

pytestmark = pytest.mark.slow

SEED_BATCH = b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}'

#: The serve branch of the 2.6 image's entrypoint, with the config file moved (argv[1]).
LAUNCHER = """
import os, sys
from sagemaker_pytorch_serving_container import torchserve
torchserve.TS_CONFIG_FILE = sys.argv[1]
os.environ["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(os.cpu_count())
from sagemaker_pytorch_serving_container import serving
serving.main()
"""


#: What SageMaker sets in every Batch Transform container, beside the job's Environment.
def platform_transform_env(job: dict) -> dict[str, str]:
    return {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(job["MaxPayloadInMB"]),
        "SAGEMAKER_BATCH_STRATEGY": "MULTI_RECORD"
        if job["BatchStrategy"] == "MultiRecord"
        else "SINGLE_RECORD",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "1",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_members(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True)
    rows = [line.split(None, 3) for line in out.stdout.splitlines()]
    return [r[3] for r in rows if len(r) == 4 and r[1] == str(pgid) and not r[2].startswith("Z")]


@dataclass
class TorchServe:
    proc: subprocess.Popen
    workdir: Path
    port: int
    management_port: int

    @property
    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")

    @property
    def config(self) -> str:
        return (self.workdir / "sagemaker-ts.properties").read_text()

    def request(self, method: str, path: str, body: bytes | None = None, headers=None, port=None):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=300)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        finally:
            conn.close()

    def invoke(self, body: bytes, content_type="application/jsonlines", accept="text/csv"):
        headers = {"Content-Type": content_type, "Accept": accept}
        return self.request("POST", "/invocations", body, headers)

    def described_model(self) -> dict:
        status, _, body = self.request("GET", "/models/model", port=self.management_port)
        assert status == 200, body
        return json.loads(body)[0]

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the toolkit passes it on to TorchServe
            self.proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        deadline = time.monotonic() + 30
        while _group_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _group_members(self.proc.pid)
        if left:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        assert left == [], f"TorchServe processes left behind: {left}"


def start_torchserve(model_dir: Path, env: dict[str, str], workdir: Path) -> TorchServe:
    """Start the image's serving stack on ``<base>/model`` (``model_dir``) with ``env``."""
    assert shutil.which("java"), "TorchServe needs Java 17 (scripts/bootstrap.sh installs it)"
    assert model_dir.name == "model"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "launch.py").write_text(LAUNCHER)
    port, management, metrics = _free_port(), _free_port(), _free_port()
    child_env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", str(workdir)),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(workdir),  # TorchServe's pid file
        **env,
        "SAGEMAKER_BASE_DIR": str(model_dir.parent),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "TS_INFERENCE_ADDRESS": f"http://127.0.0.1:{port}",
        "TS_MANAGEMENT_ADDRESS": f"http://127.0.0.1:{management}",
        "TS_METRICS_ADDRESS": f"http://127.0.0.1:{metrics}",
    }
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(workdir / "launch.py"), str(workdir / "sagemaker-ts.properties")],
            cwd=workdir,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = TorchServe(proc, workdir, port, management)
    deadline = time.monotonic() + 240  # a hang guard: the loop waits for a state, not a time
    try:
        while True:
            assert proc.poll() is None, f"the server exited:\n{server.log[-4000:]}"
            assert time.monotonic() < deadline, f"not ready after 240 s:\n{server.log[-4000:]}"
            try:
                workers = server.described_model()["workers"]
                if workers and all(w["status"] == "READY" for w in workers):
                    return server
            except (OSError, AssertionError, json.JSONDecodeError):
                pass
            time.sleep(0.5)
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="class")
def transform_server(trained_model_dir, aws_env_module, tmp_path_factory):
    """A Batch Transform container: ``.transformer(max_payload=8)``, MultiRecord."""
    base = tmp_path_factory.mktemp("transform")
    model_env, job = sdk_served_model(
        trained_model_dir, base / "opt_ml" / "model", transformer_kwargs={"max_payload": 8}
    )
    env = {**model_env, **job["Environment"], **platform_transform_env(job)}
    server = start_torchserve(base / "opt_ml" / "model", env, base / "run")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def training_items(ml100k_csv) -> dict[str, set[str]]:
    """user id -> the items the served artifact trained on (``trained_model_dir``: every row)."""
    seen: dict[str, set[str]] = defaultdict(set)
    with open(ml100k_csv, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            seen[row["user_id"]].add(row["item_id"])
    return seen


def _many(line: bytes, n: int) -> bytes:
    return b"\n".join([line] * n)


JSONL, CSV = "application/jsonlines", "text/csv"
#: (body, Content-Type, Accept, status, how the body starts)
ERROR_CASES = [
    (b"not json", JSONL, CSV, 400, "line 1: invalid JSON"),
    (b'{"user_id": "685", "top_n": "x"}', JSONL, CSV, 400, "line 1: "),
    (SEED_BATCH, "text/plain", CSV, 415, "unsupported Content-Type 'text/plain'"),
    (SEED_BATCH, JSONL, "image/png", 406, "unsupported Accept 'image/png'"),
    (
        _many(b'{"user_id": "685", "top_n": "1000"}', 5_000),
        JSONL,
        CSV,
        413,
        "the response would be at least",
    ),
]


class TestTransformContainer:
    """One Batch Transform container (the toolkit refuses a second TorchServe beside it)."""

    def test_seed_request_gives_unseen_items(self, transform_server, training_items):
        status, ctype, body = transform_server.invoke(SEED_BATCH)
        assert status == 200, body
        assert ctype.startswith("text/csv")
        rows = [line.split(",") for line in body.decode().splitlines()]
        assert len(rows) == 10
        assert [r[0] for r in rows] == ["685"] * 5 + ["302"] * 5
        for user, item, score in rows:
            assert item not in training_items[user], f"user {user} already has item {item}"
            float(score)
        assert not body.endswith(b"\n")  # AssembleWith=Line adds the newline

    def test_every_request_kind(self, transform_server, trained_model_dir):
        core = ImplicitFactorizationModel.load(trained_model_dir, device="cpu")
        for name, body, ctype in REQUESTS:
            status, _, out = transform_server.invoke(body, content_type=ctype)
            assert status == 200, (name, out)
            assert csv_pairs(out) == expected_rows(core, name), name

    def test_the_response_timeout_and_workers_are_the_ones_the_package_sets(self, transform_server):
        described = transform_server.described_model()
        assert described["responseTimeout"] == defaults.MODEL_SERVER_TIMEOUT == 600
        # no model_server_workers asked: the entrypoint's CPU count stands
        assert described["minWorkers"] == described["maxWorkers"] == os.cpu_count()
        # why the package sets TS_DEFAULT_RESPONSE_TIMEOUT: 2.0.25's generated config has no
        # final newline, so SAGEMAKER_MODEL_SERVER_TIMEOUT's line is glued to the previous one
        assert "enable_model_api=truedefault_response_timeout=600" in transform_server.config

    @pytest.mark.parametrize(("body", "ctype", "accept", "status", "message"), ERROR_CASES)
    def test_errors_carry_their_status_and_the_message_first(
        self, transform_server, body, ctype, accept, status, message
    ):
        got, _, out = transform_server.invoke(body, ctype, accept)
        assert got == status, out[:2000]
        first = out.decode().splitlines()[0]
        assert first.startswith(message) and "Traceback" not in first, out[:2000]
        # the toolkit appends the traceback it handled: it holds no frame of the package's code
        assert "spotlight_sagemaker" not in out.decode(), out[:4000]

    def test_a_7_mb_multirecord_request_succeeds(self, transform_server):
        line = b'{"user_id": "685", "top_n": "1", "exclude_seen": true}'
        n = 7_000_000 // (len(line) + 1) + 1
        body = _many(line, n)
        assert len(body) > 7_000_000 > 6_553_500  # over TorchServe's default request cap
        status, _, out = transform_server.invoke(body)
        assert status == 200, out[:2000]
        rows = out.decode().splitlines()
        assert len(rows) == n and rows[0] == rows[-1] and rows[0].startswith("685,")


def test_an_endpoint_gets_the_workers_it_asks_for(trained_model_dir, aws_env_module, tmp_path):
    """``model_server_workers=1`` on a machine with more CPUs: the entrypoint's CPU count would
    win over SAGEMAKER_MODEL_SERVER_WORKERS; TS_DEFAULT_WORKERS_PER_MODEL wins over both."""
    model_env, job = sdk_served_model(
        trained_model_dir, tmp_path / "opt_ml" / "model", model_kwargs={"model_server_workers": 1}
    )
    assert job is None
    assert model_env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    assert model_env["TS_DEFAULT_WORKERS_PER_MODEL"] == "1"
    server = start_torchserve(tmp_path / "opt_ml" / "model", model_env, tmp_path / "run")
    try:
        described = server.described_model()
        assert len(described["workers"]) == described["minWorkers"] == 1
        assert f"default_workers_per_model={os.cpu_count()}" in server.config
        status, _, out = server.invoke(SEED_BATCH)
        assert status == 200 and len(out.decode().splitlines()) == 10
    finally:
        server.stop()
