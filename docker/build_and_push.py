#!/usr/bin/env python3
"""Build the training and serving images and push them to a private Amazon ECR repository.

Run from anywhere; the build context is the repository root (see ``.dockerignore`` there)::

    python docker/build_and_push.py --account 123456789012 --region eu-west-1 \\
        --repository spotlight [--tag 0.1.0] [--image all|training|serving] [--device cpu|gpu]

It creates the repository if it is missing (scan on push), logs Docker in to it and to AWS's
Deep Learning Containers registry (763104351884, where the training base image lives) with one
ECR token from boto3, builds, pushes, and prints the image URIs to pass as ``image_uri=``.
Tags: ``<tag>-training-<device>`` and ``<tag>-serving-cpu``. ``--dry-run`` prints the Docker
commands and calls neither AWS nor Docker. Needs Docker, boto3 and AWS credentials that may
use ECR (``ecr:GetAuthorizationToken``, ``ecr:CreateRepository``, push and pull).
"""

from __future__ import annotations

import argparse
import base64
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = Path(__file__).resolve().parent
#: AWS's account for the Deep Learning Containers (the training image's base).
DLC_ACCOUNT = "763104351884"
IMAGES = ("training", "serving")

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$")


class BuildError(RuntimeError):
    """A Docker or ECR step failed; the message names the step."""


@dataclass(frozen=True)
class Step:
    """One Docker command; ``stdin`` is fed to it (the registry password for ``login``)."""

    argv: tuple[str, ...]
    stdin: str | None = None

    def show(self) -> str:
        """The command as a shell line, with any password kept out."""
        line = shlex.join(self.argv)
        return line + " < (ECR password)" if self.stdin is not None else line


def registry(account: str, region: str) -> str:
    """The ECR registry host of ``account`` in ``region``."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def image_uri(account: str, region: str, repository: str, tag: str, image: str, device: str) -> str:
    """The URI one image is pushed to (``serving`` is always the CPU image)."""
    suffix = f"{image}-{device if image == 'training' else 'cpu'}"
    return f"{registry(account, region)}/{repository}:{tag}-{suffix}"


def _default_tag() -> str:
    init = (REPO_ROOT / "spotlight_sagemaker" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"', init, re.M)
    return found.group(1) if found else "latest"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; bad values exit with status 2 and name the option."""
    p = argparse.ArgumentParser(prog="build_and_push.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--account", required=True, help="12-digit AWS account id of the repository")
    p.add_argument("--region", required=True, help="AWS region, e.g. eu-west-1")
    p.add_argument("--repository", required=True, help="ECR repository name, e.g. spotlight")
    p.add_argument("--tag", default=_default_tag(), help="tag prefix (default: package version)")
    p.add_argument("--image", choices=("all", *IMAGES), default="all", help="what to build")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="training base image variant (the serving image is CPU only)",
    )
    p.add_argument("--profile", default=None, help="AWS profile for boto3 (default chain if unset)")
    p.add_argument("--docker", default="docker", help="Docker CLI to run (default: docker)")
    p.add_argument("--context", type=Path, default=REPO_ROOT, help="build context (repo root)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    checks = (
        ("--account", args.account, _ACCOUNT, "12 digits"),
        ("--region", args.region, _REGION, "like eu-west-1"),
        (
            "--repository",
            args.repository,
            _REPOSITORY,
            "lowercase letters, digits, '.', '_', '-' and '/' between parts",
        ),
        ("--tag", args.tag, _TAG, "letters, digits, '_', '.', '-', at most 101 chars"),
    )
    for name, value, pattern, allowed in checks:
        if not pattern.match(value):
            p.error(f"{name} {value!r} is not valid: expected {allowed}")
    if not (args.context / "setup.py").is_file():
        p.error(f"--context {str(args.context)!r} is not the repository root (no setup.py)")
    return args


def plan(args: argparse.Namespace, password: str) -> list[Step]:
    """The Docker commands, in order: logins, then build and push of each image."""
    images = IMAGES if args.image == "all" else (args.image,)
    ours = registry(args.account, args.region)
    logins = [ours] + ([registry(DLC_ACCOUNT, args.region)] if "training" in images else [])
    steps = [
        Step((args.docker, "login", "--username", "AWS", "--password-stdin", host), password)
        for host in logins
    ]
    for image in images:
        uri = image_uri(args.account, args.region, args.repository, args.tag, image, args.device)
        build = [
            args.docker,
            "build",
            "--file",
            str(DOCKER_DIR / f"Dockerfile.{image}"),
            "--tag",
            uri,
        ]
        if image == "training":
            build += ["--build-arg", f"REGION={args.region}"]
            build += ["--build-arg", f"DEVICE={args.device}"]
        steps += [Step((*build, str(args.context))), Step((args.docker, "push", uri))]
    return steps


def ensure_repository(ecr, account: str, name: str) -> str:
    """Create ECR repository ``name`` in ``account`` unless it exists; returns its URI."""
    try:
        found = ecr.describe_repositories(registryId=account, repositoryNames=[name])
        return found["repositories"][0]["repositoryUri"]
    except ecr.exceptions.RepositoryNotFoundException:
        made = ecr.create_repository(
            registryId=account, repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
        )
        return made["repository"]["repositoryUri"]


def ecr_password(ecr) -> str:
    """The Docker password of an ECR authorization token (valid for 12 hours)."""
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
    if user != "AWS" or not password:
        raise BuildError("ECR returned an authorization token that is not 'AWS:<password>'")
    return password


def run_steps(steps: Sequence[Step]) -> None:
    """Run each command, stopping at the first failure (``BuildError`` names it)."""
    for step in steps:
        print(f"+ {step.show()}", flush=True)
        try:
            done = subprocess.run(step.argv, input=step.stdin, text=True, check=False)
        except FileNotFoundError:
            hint = "install Docker or pass --docker"
            raise BuildError(f"{step.argv[0]!r} not found: {hint}") from None
        if done.returncode != 0:
            raise BuildError(f"exit status {done.returncode} from: {step.show()}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    if args.dry_run:
        for step in plan(args, password="(ECR password)"):
            print(step.show())
        return 0
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        ecr = boto3.Session(profile_name=args.profile, region_name=args.region).client("ecr")
        ensure_repository(ecr, args.account, args.repository)
        password = ecr_password(ecr)
    except (BotoCoreError, ClientError, BuildError) as exc:
        print(f"build_and_push: ECR: {exc}", file=sys.stderr)
        return 1
    try:
        run_steps(plan(args, password))
    except BuildError as exc:
        print(f"build_and_push: {exc}", file=sys.stderr)
        return 1
    images = IMAGES if args.image == "all" else (args.image,)
    for image in images:
        uri = image_uri(args.account, args.region, args.repository, args.tag, image, args.device)
        print(f"{image}: {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
