"""What the images run, run here, with what the SDK classes send them.

Neither image can be built on these machines (no Docker engine), but their commands can run:
``SpotlightEstimator(image_uri=..., ship_code=False)`` and ``SpotlightModel(image_uri=...,
ship_code=False)`` create their jobs against moto (no code is uploaded, nothing repacked), and
the hyperparameters and environment they send drive the training image's command (the
toolkit's ``train``, with /opt/ml/code laid out as the Dockerfile's COPY lines do) on a
temporary /opt/ml, and the serving image's command (``spotlight-sagemaker-serve serve``) on a
real artifact, bound to 127.0.0.1 and stopped as ``docker stop`` would (SIGTERM), leaving no
process behind.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _dockerfile import (
    DOCKER,
    command_of,
    env_of,
    final_stage,
    load_build_and_push,
    materialize,
    parse_dockerfile,
)
from _procs import run_in_own_group
from _sdk_helpers import ROLE, capture, no_sleep, put_model, session

BIN = Path(sys.executable).parent
ACCOUNT, REGION = "123456789012", "us-east-1"


def _uri(image: str) -> str:
    """The URI docker/build_and_push.py pushes ``image`` to."""
    return load_build_and_push().image_uri(ACCOUNT, REGION, "spotlight", "0.1.0", image, "cpu")


def _s3_keys(sess: Any, bucket: str) -> list[str]:
    listed = sess.boto_session.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def _image_env(instructions: list, stage: str) -> dict[str, str]:
    """The image's ENV on top of this environment, /opt/venv/bin standing for this venv."""
    env = dict(os.environ)
    for key, value in env_of(instructions, stage).items():
        value = value.replace("${PATH}", os.environ.get("PATH", "")).replace("$PATH", "")
        env[key] = value.replace("/opt/venv/bin", str(BIN))
    return env


# --- training ---------------------------------------------------------------------------------


@pytest.fixture
def training_request(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """CreateTrainingJob as SpotlightEstimator sends it for the training image."""
    import moto

    from spotlight_sagemaker import SpotlightEstimator

    no_sleep(monkeypatch)
    with moto.mock_aws():
        sess = session(REGION)
        bucket = sess.default_bucket()
        sess.boto_session.client("s3").put_object(Bucket=bucket, Key="in/a.csv", Body=b"x")
        calls = capture(sess, "CreateTrainingJob")
        est = SpotlightEstimator(
            role=ROLE,
            instance_type="ml.m5.xlarge",
            sagemaker_session=sess,
            image_uri=_uri("training"),
            ship_code=False,
            n_iter=2,
            embedding_dim=8,
            random_state=0,
            device="cpu",
        )
        est.fit(f"s3://{bucket}/in/", wait=False)
        keys = _s3_keys(sess, bucket)
    assert len(calls) == 1
    return {**calls[0], "s3_keys": keys}


def test_estimator_uses_the_training_image_without_code_upload(training_request: dict):
    assert training_request["AlgorithmSpecification"]["TrainingImage"] == _uri("training")
    hps = training_request["HyperParameters"]
    assert not {"sagemaker_program", "sagemaker_submit_directory"} & set(hps), hps
    assert training_request["s3_keys"] == ["in/a.csv"]  # no sourcedir.tar.gz


def _opt_ml(root: Path, rows: list[str], hyperparameters: dict[str, str]) -> Path:
    """A temporary /opt/ml as SageMaker lays it out for one ``training`` channel."""
    base = root / "opt" / "ml"
    config, data = base / "input" / "config", base / "input" / "data" / "training"
    config.mkdir(parents=True)
    data.mkdir(parents=True)
    (data / "part-0.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channel = {
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
    }
    (config / "inputdataconfig.json").write_text(json.dumps({"training": channel}))
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
        )
    )
    return base


def _run_training_image(root: Path, base: Path, job_env: dict[str, str]):
    instructions = parse_dockerfile(DOCKER / "Dockerfile.training")
    final = final_stage(instructions)
    # The DLC's entry point, for SageMaker's `docker run <image> train`, runs the toolkit's
    # `train` command (start_with_right_hostname.sh first fixes the hostname; not needed here).
    assert command_of(instructions) == ["bash", "-m", "start_with_right_hostname.sh", "train"]
    assert materialize(instructions, final, root) == [Path("/opt/ml/code/train.py")]
    env = _image_env(instructions, final)
    assert env["SAGEMAKER_PROGRAM"] == "train.py"
    # the DLC base image's ENV names its PyTorch launcher (installed here from PyPI)
    env.setdefault("SAGEMAKER_TRAINING_MODULE", "sagemaker_pytorch_container.training:main")
    env.update(job_env)
    env.update(SAGEMAKER_BASE_DIR=str(base), SM_STUDIO_LOCAL_MODE="true")  # no DNS wait
    train = BIN / "train"
    assert train.is_file(), "the sagemaker-training toolkit's `train` command is missing"
    # the toolkit runs `python train.py` as a child: a hung job is killed as a whole group
    return run_in_own_group([str(train)], env, root)


@pytest.mark.slow
def test_training_image_command_trains_what_the_estimator_asks(
    tmp_path: Path, ml100k_csv: Path, training_request: dict
):
    from spotlight_sagemaker.core import ImplicitFactorizationModel

    rows = ml100k_csv.read_text(encoding="utf-8").splitlines()[:8001]
    base = _opt_ml(tmp_path, rows, training_request["HyperParameters"])
    done = _run_training_image(tmp_path, base, training_request.get("Environment", {}))
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "Imported framework sagemaker_pytorch_container.training" in log
    assert "train.py --device cpu --embedding_dim 8 --n_iter 2 --random_state 0" in log
    assert re.search(r"^epoch=2 loss=", log, re.M)
    assert (base / "output" / "success").is_file()
    assert not (base / "output" / "failure").exists()
    model = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert model.epochs_trained == 2 and model.hyperparameters["embedding_dim"] == 8
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_trained"] == 2
    assert len(model.recommend("685", n=5).item_ids) == 5


@pytest.mark.slow
def test_training_image_command_reports_a_user_error(tmp_path: Path, ml100k_csv: Path):
    rows = ml100k_csv.read_text(encoding="utf-8").splitlines()[:2001]
    base = _opt_ml(tmp_path, rows, {"n_iter": "1", "loss": '"no-such-loss"'})
    done = _run_training_image(tmp_path, base, {})
    assert done.returncode != 0
    failure = (base / "output" / "failure").read_text(encoding="utf-8")
    assert "loss" in failure and "no-such-loss" in failure and "\n" not in failure.strip()
    assert not (base / "model").exists() or not any((base / "model").iterdir())


# --- serving ----------------------------------------------------------------------------------


@pytest.fixture
def serving_requests(aws_env: str, monkeypatch: pytest.MonkeyPatch, trained_model_dir: Path):
    """CreateModel and CreateTransformJob as SpotlightModel sends them for the serving image."""
    import moto

    from spotlight_sagemaker import SpotlightModel

    no_sleep(monkeypatch)
    with moto.mock_aws():
        sess = session(REGION)
        bucket = sess.default_bucket()
        model_data = f"s3://{bucket}/job/output/model.tar.gz"
        put_model(sess, model_data, trained_model_dir)
        sess.boto_session.client("s3").put_object(Bucket=bucket, Key="req/a.jsonl", Body=b"{}")
        models, jobs = capture(sess, "CreateModel"), capture(sess, "CreateTransformJob")
        model = SpotlightModel(
            model_data,
            role=ROLE,
            image_uri=_uri("serving"),
            ship_code=False,
            sagemaker_session=sess,
        )
        transformer = model.transformer(
            instance_type="ml.m5.xlarge", output_path=f"s3://{bucket}/out/"
        )
        transformer.transform(
            f"s3://{bucket}/req/",
            content_type="application/jsonlines",
            split_type="Line",
            wait=False,
        )
        keys = _s3_keys(sess, bucket)
    assert len(models) == 1 and len(jobs) == 1
    return {"model": models[0], "job": jobs[0], "model_data": model_data, "s3_keys": keys}


def test_model_uses_the_serving_image_without_code_upload(serving_requests: dict):
    container = serving_requests["model"]["PrimaryContainer"]
    assert container["Image"] == _uri("serving")
    assert container["ModelDataUrl"] == serving_requests["model_data"]  # not repacked
    assert serving_requests["s3_keys"] == ["job/output/model.tar.gz", "req/a.jsonl"]


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _request(port: int, method: str, path: str, body: bytes = b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _wait_for_ping(proc: subprocess.Popen, port: int, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tail = log.read_text()[-4000:]
        assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{tail}"
        try:
            if _request(port, "GET", "/ping")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no /ping answer in {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_serving_image_command_serves_the_model_the_sdk_describes(
    tmp_path: Path, trained_model_dir: Path, serving_requests: dict
):
    import psutil

    from spotlight_sagemaker.container.serving.model_server import free_port

    instructions = parse_dockerfile(DOCKER / "Dockerfile.serving")
    command = command_of(instructions)
    assert command == ["spotlight-sagemaker-serve", "serve"]
    assert (BIN / command[0]).is_file(), f"console script {command[0]} is not installed"
    env = _image_env(instructions, final_stage(instructions))
    assert env["PATH"].split(os.pathsep)[0] == str(BIN)
    # the container's environment, as SageMaker sets it from the model and the transform job
    env.update(serving_requests["model"]["PrimaryContainer"].get("Environment", {}))
    env.update(serving_requests["job"].get("Environment", {}))
    base = tmp_path / "opt" / "ml"  # SageMaker extracts model.tar.gz into /opt/ml/model
    shutil.copytree(trained_model_dir, base / "model")
    port = free_port()  # given as SageMaker gives it to images with this label
    labels = [i.args for i in instructions if i.cmd == "LABEL"]
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in labels
    # one worker (SageMaker sets this from model_server_workers): two cores, and one is enough
    env.update(
        SAGEMAKER_BASE_DIR=str(base),
        SAGEMAKER_BIND_TO_PORT=str(port),
        SAGEMAKER_MODEL_SERVER_WORKERS="1",
    )
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        # `docker run <image> serve` plus the one argument a test needs: bind to loopback only
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    spawned: list = []
    try:
        _wait_for_ping(proc, port, log)
        body = b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}\n'
        status, text = _request(
            port,
            "POST",
            "/invocations",
            body,
            {"Content-Type": "application/jsonlines", "Accept": "text/csv"},
        )
        assert status == 200, text
        rows = [line.split(",") for line in text.splitlines()]
        assert [r[0] for r in rows] == ["685"] * 5 + ["302"] * 5
        for user in ("685", "302"):
            scores = [float(r[2]) for r in rows if r[0] == user]
            assert scores == sorted(scores, reverse=True)
        status, text = _request(
            port,
            "POST",
            "/invocations",
            b'{"top_n": "5"}\n',
            {"Content-Type": "application/jsonlines", "Accept": "text/csv"},
        )
        assert status == 400, text
        spawned = _descendants(proc.pid)  # MMS's Java frontend and its Python workers
        names = [" ".join(p.cmdline()) for p in spawned]
        assert any("java" in p.name() for p in spawned), names
        assert any("model_service_worker" in name for name in names), names
        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends
        assert proc.wait(timeout=60) == 0, log.read_text()[-4000:]
        gone, alive = psutil.wait_procs(spawned, timeout=30)
        assert not alive, f"left behind: {[p.pid for p in alive]}"
        serving_this_model = [  # anything started later and orphaned would name the model dir
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if str(base / "model") in " ".join(p.info["cmdline"] or [])
        ]
        assert not serving_this_model, f"left behind: {serving_this_model}"
        with pytest.raises(OSError):
            _request(port, "GET", "/ping")
    finally:
        _kill_tree(proc, spawned)


def _kill_tree(proc: subprocess.Popen, known: list) -> None:
    """Kill by PID whatever the test started and is still running: ``serve``, the process
    groups of its descendants (MMS runs in a session of its own), and any known descendant."""
    import psutil

    procs = {p.pid: p for p in [*known, *_descendants(proc.pid)]}
    own = os.getpgrp()
    for pid in list(procs):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group != own:
                os.killpg(group, signal.SIGKILL)
    for p in procs.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
