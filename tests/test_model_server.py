"""The handler behind a real model server: sagemaker-inference + Multi Model Server on 127.0.0.1.

The model directory is laid out as SageMaker extracts model.tar.gz: artifact files at the root,
``code/inference.py`` and ``code/spotlight_sagemaker/`` beside them. Servers are stopped by their
process group id; each test module checks that nothing is left behind.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import spotlight_sagemaker
from spotlight_sagemaker.container.serving import model_server as serving

pytestmark = pytest.mark.slow

SEED_BATCH = b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}'


def _group_members(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True)
    rows = [line.split(None, 3) for line in out.stdout.splitlines()]
    return [r[3] for r in rows if len(r) == 4 and r[1] == str(pgid) and not r[2].startswith("Z")]


def _sagemaker_model_dir(artifact: Path, dest: Path, with_code: bool = True) -> Path:
    dest.mkdir(parents=True)
    for f in artifact.iterdir():
        shutil.copy2(f, dest / f.name)
    if with_code:
        code = dest / "code"
        code.mkdir()
        shutil.copy2(serving.entry_points_dir() / "inference.py", code / "inference.py")
        shutil.copytree(
            Path(spotlight_sagemaker.__file__).parent,
            code / "spotlight_sagemaker",
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    return dest


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    model_dir = _sagemaker_model_dir(trained_model_dir, tmp_path_factory.mktemp("sm") / "model")
    srv = serving.start_model_server(model_dir, workers=1, startup_timeout=180)
    yield srv
    pid, workdir = srv.pid, srv.workdir
    srv.stop()
    assert _group_members(pid) == [], "model server processes left behind"
    assert not workdir.exists()


def _post(srv, body, content_type="application/jsonlines", accept="text/csv"):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=120)
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    try:
        conn.request("POST", "/invocations", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def test_binds_loopback_and_pings(server):
    assert server.host == "127.0.0.1"
    config = (server.workdir / "mms.properties").read_text()
    assert f"inference_address=http://127.0.0.1:{server.port}" in config
    assert "0.0.0.0" not in config
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/ping")
    assert conn.getresponse().status == 200
    conn.close()


def test_seed_batch_jsonlines_in_csv_out(server):
    status, ctype, body = _post(server, SEED_BATCH)
    assert status == 200 and ctype == "text/csv"
    rows = [line.split(",") for line in body.decode().split("\n")]
    assert len(rows) == 10 and not body.endswith(b"\n")
    assert [r[0] for r in rows] == ["685"] * 5 + ["302"] * 5
    for user in ("685", "302"):
        scores = [float(r[2]) for r in rows if r[0] == user]
        assert scores == sorted(scores, reverse=True)


def test_missing_accept_gives_csv_and_jsonlines_on_request(server):
    status, ctype, body = _post(server, SEED_BATCH, accept=None)
    assert (status, ctype) == (200, "text/csv") and body.count(b"\n") == 9
    status, ctype, body = _post(
        server, SEED_BATCH, "application/json; charset=utf-8", "application/jsonlines"
    )
    assert (status, ctype) == (200, "application/jsonlines")
    assert [json.loads(line)["user_id"] for line in body.decode().split("\n")] == ["685", "302"]


@pytest.mark.parametrize(
    ("body", "ctype", "accept", "status", "fragment"),
    [
        (SEED_BATCH, "text/plain", "text/csv", 415, b"unsupported Content-Type 'text/plain'"),
        (
            SEED_BATCH,
            "application/jsonlines",
            "application/xml",
            406,
            b"unsupported Accept 'application/xml'",
        ),
        (
            b'{"user_id": "685"}\n{"user_id": "302", "top_n": "five"}',
            "application/jsonlines",
            "text/csv",
            400,
            b"line 2: top_n must be a positive integer",
        ),
        (b"", "application/jsonlines", "text/csv", 400, b"empty payload"),
    ],
)
def test_errors_carry_their_status(server, body, ctype, accept, status, fragment):
    got, _, text = _post(server, body, ctype, accept)
    assert got == status
    assert text.startswith(fragment)


def test_concurrent_requests(server):
    bodies = [json.dumps({"user_id": str(u), "top_n": 3}).encode() for u in range(1, 41)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda b: _post(server, b), bodies))
    assert all(status == 200 for status, _, _ in results)
    assert [r[2].split(b",")[0].decode() for r in results] == [str(u) for u in range(1, 41)]


def test_serve_console_script_without_code_dir(trained_model_dir, tmp_path):
    """The `serve` entry point of the serving image: the packaged handler, stopped by SIGTERM."""
    model_dir = _sagemaker_model_dir(trained_model_dir, tmp_path / "model", with_code=False)
    port = serving.free_port()
    exe = Path(sys.executable).with_name("spotlight-sagemaker-serve")
    cmd = [
        str(exe),
        "serve",
        "--model-dir",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--startup-timeout",
        "180",
    ]
    # the SDK sets SAGEMAKER_PROGRAM="" on a model that ships no code
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(tmp_path), "SAGEMAKER_PROGRAM": ""}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    mms_pgid = None
    try:
        deadline = time.monotonic() + 200
        while "spotlight-sagemaker-serve: serving" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        line = next(x for x in log.read_text().splitlines() if "serving" in x)
        assert f"on http://127.0.0.1:{port} (pid " in line, line
        mms_pgid = int(line.rsplit("pid ", 1)[1].rstrip(")"))
        srv = serving.ModelServer(proc.pid, "127.0.0.1", port, tmp_path, log, proc)
        status, ctype, body = _post(srv, SEED_BATCH, accept=None)
        assert (status, ctype) == (200, "text/csv") and body.count(b"\n") == 9
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while _group_members(mms_pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group_members(mms_pgid) == []
    finally:
        for pgid in (proc.pid, mms_pgid):
            if pgid is not None and _group_members(pgid):
                os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)
