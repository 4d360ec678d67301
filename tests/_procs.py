"""Running a command in its own process group, so a hung one is killed whole by its id."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest


def run_in_own_group(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion; past ``timeout`` kill its whole process group and fail."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[0]} ran for more than {timeout} s:\n{(out + err)[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
