#!/usr/bin/env bash
# The project's test command: set up the environment, lint, type-check, run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k artifact`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
. "${VENV:-.venv}/bin/activate"
export SAGEMAKER_SUPPRESS_V2_WARNING=1
export PYTHONDONTWRITEBYTECODE=1
# One torch thread per process: the suite runs model servers and training subprocesses beside
# pytest on a 2-core machine, and oversubscribed OpenMP threads slow everything down many times.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
echo "== ruff" >&2
ruff check .
ruff format --check .
echo "== mypy" >&2
mypy  # files and settings: [tool.mypy] in pyproject.toml
echo "== pytest" >&2
python -m pytest "$@"
