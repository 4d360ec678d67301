"""Importing the SDK classes under ``python -W error`` without SAGEMAKER_SUPPRESS_V2_WARNING."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import os, warnings
import spotlight_sagemaker
from spotlight_sagemaker import SpotlightEstimator, SpotlightModel, SpotlightPredictor
from spotlight_sagemaker import SpotlightTransformer
import sagemaker
assert "SAGEMAKER_SUPPRESS_V2_WARNING" not in os.environ, "the environment was changed"
ours = [f for f in warnings.filters if f[1] is not None and "SageMaker Python SDK" in f[1].pattern]
assert ours == [], f"a warning filter stayed: {ours}"
try:  # the same notice from the user's own code is still an error: nothing filters it now
    warnings.warn("You are using the SageMaker Python SDK v2, ...", FutureWarning)
except FutureWarning:
    print("still an error")
"""


def _run(*flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SAGEMAKER_SUPPRESS_V2_WARNING"}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, *flags, "-c", PROBE], capture_output=True, text=True, env=env, check=False
    )


def test_the_sdk_classes_import_under_w_error_without_the_variable():
    run = _run("-W", "error")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "still an error"
    assert "SageMakerV2DeprecationWarning" not in run.stderr


def test_the_package_without_the_sdk_classes_imports_no_sdk():
    code = "import sys, spotlight_sagemaker; print('sagemaker' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "SAGEMAKER_SUPPRESS_V2_WARNING"}
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, env=env
    )
    assert (run.returncode, run.stdout.splitlines()[-1]) == (0, "False"), run.stderr
