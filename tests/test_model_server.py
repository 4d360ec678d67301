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
from _request_kinds import REQUESTS, csv_pairs, expected_rows

import spotlight_sagemaker
from spotlight_sagemaker.container.serving import model_server as serving
from spotlight_sagemaker.core import ImplicitFactorizationModel

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


@pytest.mark.parametrize(("name", "body", "ctype"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_every_request_kind_through_the_server(server, trained_model_dir, name, body, ctype):
    core = ImplicitFactorizationModel.load(trained_model_dir, device="cpu")
    status, answered, out = _post(server, body, content_type=ctype)
    assert status == 200, out
    assert answered == "text/csv"
    assert csv_pairs(out) == expected_rows(core, name)


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
        line = next(
            x for x in log.read_text().splitlines() if x.startswith("spotlight-sagemaker-serve:")
        )
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


# ---------------------------------------------------------------------- hardening
def test_the_inference_port_answers_only_ping_and_invocations(server):
    """The management API used to share the inference address: anyone reaching the serving port
    could rescale, delete, or register a model whose handler runs arbitrary code."""
    config = (server.workdir / "mms.properties").read_text()
    assert server.management_port not in (0, server.port)
    assert f"management_address=http://127.0.0.1:{server.management_port}" in config
    for method, path in [
        ("GET", "/models"),
        ("GET", "/models/model"),
        ("PUT", "/models/model?min_worker=3"),
        ("POST", f"/models?url={server.workdir}&handler=os:system"),
        ("DELETE", "/models/model"),
    ]:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request(method, path)
        assert conn.getresponse().status == 404, (method, path)
        conn.close()
    status, _, _ = _post(server, SEED_BATCH)
    assert status == 200  # the model is still there, with one worker


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b'{"user_id": "68\xff5"}', "application/json"),
        (b"685,5\n\xc3\x28,1\n", "text/csv"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"user_id": "685", "top_n": ' + b"9" * 5000 + b"}", "application/jsonlines"),
        (b"x" * 200_000 + b",5\n", "text/csv"),
        (b'"68\n5",5\n', "text/csv"),
    ],
    ids=["utf8-json", "utf8-csv", "deep-json", "huge-int", "huge-csv-field", "multiline-csv"],
)
def test_client_errors_are_4xx_without_traceback(server, body, ctype):
    status, _, text = _post(server, body, ctype)
    assert 400 <= status < 500, (status, text[:300])
    assert b"Traceback" not in text and b".py" not in text and len(text) < 500, text[:300]


def _left_behind(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line]


def _unservable_cases():
    import numpy as np
    from _artifacts import rewrite_arrays

    def nan(src, dst):
        return rewrite_arrays(src, dst, lambda a: a["user_embeddings"].fill(np.nan))

    def shapes(src, dst):
        return rewrite_arrays(src, dst, lambda a: a.update(item_biases=a["item_biases"][:-3]))

    def truncated(src, dst):
        shutil.copytree(src, dst)
        npz = dst / "spotlight-model.npz"
        npz.write_bytes(npz.read_bytes()[:1000])
        return dst

    def no_config(src, dst):
        shutil.copytree(src, dst)
        (dst / "spotlight-model.json").unlink()
        return dst

    def garbage_config(src, dst):
        shutil.copytree(src, dst)
        (dst / "spotlight-model.json").write_text('{"format": ')
        return dst

    def copy(src, dst):
        return shutil.copytree(src, dst)

    return [
        ("nan-weights", nan, {}, "non-finite user_embeddings"),
        ("bad-shapes", shapes, {}, "item_biases has shape"),
        ("truncated-npz", truncated, {}, "does not match its checksum"),
        ("no-config", no_config, {}, "not found"),
        ("garbage-config", garbage_config, {}, "not valid JSON"),
        ("unknown-user", copy, {"SPOTLIGHT_UNKNOWN_USER": "bogus"}, "SPOTLIGHT_UNKNOWN_USER"),
        ("unknown-item", copy, {"SPOTLIGHT_UNKNOWN_ITEM": "bogus"}, "SPOTLIGHT_UNKNOWN_ITEM"),
        ("max-top-n", copy, {"SPOTLIGHT_MAX_TOP_N": "abc"}, "SPOTLIGHT_MAX_TOP_N"),
        ("default-top-n", copy, {"SPOTLIGHT_DEFAULT_TOP_N": "0"}, "SPOTLIGHT_DEFAULT_TOP_N"),
        ("max-records", copy, {"SPOTLIGHT_MAX_RECORDS": "-5"}, "SPOTLIGHT_MAX_RECORDS"),
        (
            "max-response",
            copy,
            {"SPOTLIGHT_MAX_RESPONSE_BYTES": "1e6"},
            "SPOTLIGHT_MAX_RESPONSE_BYTES",
        ),
        (
            "default-over-max",
            copy,
            {"SPOTLIGHT_DEFAULT_TOP_N": "50", "SPOTLIGHT_MAX_TOP_N": "10"},
            "exceeds SPOTLIGHT_MAX_TOP_N",
        ),
        ("device", copy, {"SPOTLIGHT_DEVICE": "tpu"}, "tpu"),
        (
            "cuda-without-gpu",
            copy,
            {"SPOTLIGHT_DEVICE": "cuda", "CUDA_VISIBLE_DEVICES": ""},
            "cuda",
        ),
        ("threads", copy, {"SPOTLIGHT_TORCH_THREADS": "0"}, "SPOTLIGHT_TORCH_THREADS"),
    ]


@pytest.mark.parametrize(
    ("make", "env", "fragment"),
    [c[1:] for c in _unservable_cases()],
    ids=[c[0] for c in _unservable_cases()],
)
def test_a_model_that_cannot_be_served_fails_the_start(
    trained_model_dir, tmp_path, make, env, fragment
):
    """Multi Model Server swallowed model_fn's exception: /ping said 200, the model READY, and
    every request re-read the artifact to answer 500. Now the start fails with the message."""
    artifact = make(trained_model_dir, tmp_path / "artifact")
    model_dir = _sagemaker_model_dir(artifact, tmp_path / "model")
    try:
        started = serving.start_model_server(model_dir, workers=1, env=env, startup_timeout=180)
    except serving.ModelServerError as exc:
        message = str(exc)
    else:  # a server that should not have started is stopped, not left behind
        started.stop()
        pytest.fail("the model server started")
    assert message.startswith("the model cannot be served: "), message[:2000]
    assert fragment in message
    assert "Traceback" not in message
    assert _left_behind(str(model_dir)) == []


def test_serve_console_script_fails_to_start_with_model_fn_message(trained_model_dir, tmp_path):
    """The serving image's command exits 1 (the container fails its start, no healthy /ping)."""
    import numpy as np
    from _artifacts import rewrite_arrays

    broken = rewrite_arrays(
        trained_model_dir, tmp_path / "a", lambda a: a["item_biases"].fill(np.inf)
    )
    model_dir = _sagemaker_model_dir(broken, tmp_path / "model", with_code=False)
    exe = Path(sys.executable).with_name("spotlight-sagemaker-serve")
    cmd = [str(exe), "serve", "--model-dir", str(model_dir), "--host", "127.0.0.1"]
    cmd += ["--port", str(serving.free_port()), "--workers", "1", "--startup-timeout", "180"]
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(tmp_path), "SAGEMAKER_PROGRAM": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("spotlight-sagemaker-serve: the model cannot be served: ")
    assert "non-finite item_biases" in last
    assert _left_behind(str(model_dir)) == []
