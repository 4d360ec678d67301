"""Run a CreateTrainingJob request on this machine with the real sagemaker-training toolkit.

The request is what the SDK sends to AWS. The job gets a fresh ``/opt/ml`` tree in a temporary
folder (``SAGEMAKER_BASE_DIR``) laid out as the training container's: ``input/config/``
(``hyperparameters.json`` with the SDK's JSON-encoded values, ``inputdataconfig.json``,
``resourceconfig.json``), ``input/data/<channel>/`` (copies of the channel files), ``code/``
(the source directory the SDK names), ``model/``, ``output/``, ``checkpoints/``. The toolkit
(``python -m sagemaker_training.cli.train``) then runs ``python train.py --name value ...`` in
``code/`` exactly as in the image; its log streams to this process's stdout. Afterwards
``model/`` is tarred to ``<output path>/<job>/output/model.tar.gz`` and ``output/data`` to
``output.tar.gz`` beside it, as SageMaker does. A non-zero exit makes the job ``Failed`` with
the failure file's text as its reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from .paths import LocalPathError, copy_files, extract_tar, tar_folder, to_path, to_uri

HOST = "algo-1"
DIR_PARAM = "sagemaker_submit_directory"
FAILURE_REASON_CHARS = 1024
_DEFAULT_MAX_RUNTIME = 86_400


class JobSetupError(ValueError):
    """The job's request cannot run (missing data, empty channel, bad code location)."""


@dataclass
class TrainingResult:
    """What a finished local training job reports (fills DescribeTrainingJob)."""

    status: str
    failure_reason: str | None = None
    model_artifacts: str | None = None
    final_metrics: list[dict[str, Any]] = field(default_factory=list)
    start_time: datetime | None = None
    end_time: datetime | None = None


def run_training_job(
    request: dict[str, Any], root: Path, stream: TextIO | None = None
) -> TrainingResult:
    """Run one CreateTrainingJob request to completion.

    Args:
        request: the CreateTrainingJob parameters (``TrainingJobName``, ``HyperParameters``,
            ``InputDataConfig``, ``OutputDataConfig``, ``ResourceConfig``, ...).
        root: the local mode's root folder (default output location).
        stream: where the job log goes (default ``sys.stdout``).

    Returns:
        The result; a user-side problem (missing or empty channel) is a ``Failed`` result with a
        ``ClientError:`` reason, a failing script an ``AlgorithmError:`` one.
    """
    stream = stream or sys.stdout
    name = request["TrainingJobName"]
    started = datetime.now(timezone.utc)
    if importlib.util.find_spec("sagemaker_training") is None:
        reason = (
            "ClientError: local training jobs run the sagemaker-training toolkit, which is not "
            "installed: pip install 'spotlight-sagemaker[local]'"
        )
        return TrainingResult("Failed", reason, None, [], started, _now())
    base = Path(tempfile.mkdtemp(prefix=f"spotlight-train-{name[:40]}-"))
    try:
        try:
            hyperparameters = _prepare_tree(base, request, root)
        except (JobSetupError, LocalPathError, FileNotFoundError) as exc:
            return TrainingResult("Failed", f"ClientError: {exc}", None, [], started, _now())
        code, metrics, tail = _run_toolkit(base, request, hyperparameters, stream)
        if code != 0:
            reason = _failure_reason(base, code, tail)
            return TrainingResult("Failed", reason, None, metrics, started, _now())
        destination = _output_dir(request, root) / name / "output"
        tar_folder(base / "model", destination / "model.tar.gz")
        if any((base / "output" / "data").iterdir()):
            tar_folder(base / "output" / "data", destination / "output.tar.gz")
        uri = to_uri(destination / "model.tar.gz")
        print(f"Training job {name} completed: model artifacts at {uri}", file=stream, flush=True)
        return TrainingResult("Completed", None, uri, metrics, started, _now())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _output_dir(request: dict[str, Any], root: Path) -> Path:
    uri = (request.get("OutputDataConfig") or {}).get("S3OutputPath") or ""
    return to_path(uri, root, "output_path") if uri else root


def _prepare_tree(base: Path, request: dict[str, Any], root: Path) -> dict[str, str]:
    """Lay out the /opt/ml tree; returns the hyperparameters as written."""
    config = base / "input" / "config"
    for sub in (
        config,
        base / "input" / "data",
        base / "model",
        base / "output" / "data",
        base / "checkpoints",
        base / "code",
    ):
        sub.mkdir(parents=True, exist_ok=True)
    hyperparameters = dict(request.get("HyperParameters") or {})
    if DIR_PARAM in hyperparameters:
        _stage_code(json.loads(hyperparameters[DIR_PARAM]), base / "code", root)
        hyperparameters[DIR_PARAM] = json.dumps(str(base / "code"))
    channels = {}
    for channel in request.get("InputDataConfig") or []:
        cname = channel["ChannelName"]
        source = channel.get("DataSource") or {}
        uri = (source.get("S3DataSource") or {}).get("S3Uri") or (
            source.get("FileDataSource") or {}
        ).get("FileUri")
        if not uri:
            raise JobSetupError(f"channel {cname!r} has no S3Uri/FileUri")
        path = to_path(uri, root, f"channel {cname!r}")
        try:
            copy_files(path, base / "input" / "data" / cname, f"channel {cname!r}")
        except LocalPathError as exc:
            raise JobSetupError(str(exc)) from None
        channels[cname] = {
            "TrainingInputMode": channel.get(
                "InputMode",
                request.get("AlgorithmSpecification", {}).get("TrainingInputMode", "File"),
            ),
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
        if channel.get("ContentType"):
            channels[cname]["ContentType"] = channel["ContentType"]
    instance_type = (request.get("ResourceConfig") or {}).get("InstanceType", "local")
    resource = {
        "current_host": HOST,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [HOST],
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": instance_type,
                "hosts": [HOST],
            }
        ],
        "network_interface_name": "eth0",
    }
    for fname, content in (
        ("hyperparameters.json", hyperparameters),
        ("inputdataconfig.json", channels),
        ("resourceconfig.json", resource),
    ):
        (config / fname).write_text(json.dumps(content, indent=1))
    return hyperparameters


def _stage_code(location: str, dest: Path, root: Path) -> None:
    path = to_path(location, root, "source_dir")
    if not path.exists():
        raise JobSetupError(f"source_dir {location!r} does not exist")
    if path.is_dir():
        shutil.copytree(
            path, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    else:
        extract_tar(path, dest)


def _environment(base: Path, request: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env.update(request.get("Environment") or {})
    name = request["TrainingJobName"]
    env.update(
        SAGEMAKER_BASE_DIR=str(base),
        SM_STUDIO_LOCAL_MODE="true",
        TRAINING_JOB_NAME=name,
        TRAINING_JOB_ARN=f"arn:aws:sagemaker:local:000000000000:training-job/{name}",
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1"))
    if (request.get("ResourceConfig") or {}).get("InstanceType", "local") == "local":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU instance, as the CPU image would be
    return env


def _run_toolkit(
    base: Path, request: dict[str, Any], hyperparameters: dict[str, str], stream: TextIO
) -> tuple[int, list[dict[str, Any]], deque]:
    """Run the toolkit, stream its log, parse metrics; returns (exit code, metrics, log tail)."""
    definitions = (request.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
    latest: dict[str, dict[str, Any]] = {}
    tail: deque = deque(maxlen=60)
    limit = (request.get("StoppingCondition") or {}).get(
        "MaxRuntimeInSeconds", _DEFAULT_MAX_RUNTIME
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagemaker_training.cli.train"],
        cwd=base / "code",
        env=_environment(base, request),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    timer = threading.Timer(float(limit), _stop_group, args=(proc,))
    timer.daemon = True
    timer.start()
    try:
        for line in proc.stdout or ():
            stream.write(line)
            stream.flush()
            tail.append(line.rstrip("\n"))
            for mname, pattern in patterns:
                match = pattern.search(line)
                if match and match.groups():
                    try:
                        value = float(match.group(1))
                    except ValueError:
                        continue
                    latest[mname] = {"MetricName": mname, "Value": value, "Timestamp": _now()}
        code = proc.wait()
    except BaseException:
        _stop_group(proc)
        raise
    finally:
        timer.cancel()
    if code != 0 and getattr(proc, "_spotlight_stopped", False):
        tail.append(f"the job was stopped after MaxRuntimeInSeconds={limit}")
    return code, list(latest.values()), tail


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the job's process group, SIGKILL it 10 s later if still there."""
    if proc.poll() is not None:
        return
    proc._spotlight_stopped = True  # type: ignore[attr-defined]
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _failure_reason(base: Path, code: int, tail: deque) -> str:
    """``AlgorithmError: <failure file>``, plus the script's own error lines from the log when
    the toolkit replaced the script's reason with its generic ExecuteUserScriptError."""
    failure = base / "output" / "failure"
    text = failure.read_text(errors="replace").strip() if failure.is_file() else ""
    if not text or "ExecuteUserScriptError" in text:
        errors = [
            line.strip()
            for line in tail
            if ("Error" in line or "failed" in line) and "sagemaker-training-toolkit" not in line
        ]
        if errors:
            text = " | ".join(errors[-3:]) + ("\n" + text if text else "")
    if not text:
        text = f"training exited with code {code}; last log lines:\n" + "\n".join(list(tail)[-5:])
    return ("AlgorithmError: " + text)[:FAILURE_REASON_CHARS]
