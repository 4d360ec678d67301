#!/usr/bin/env bash
# The contract benchmark of issue 10 from a fresh clone: set up .venv (scripts/bootstrap.sh,
# which installs the `bench` extra: implicit, scipy), then run bench/bench_contract.py.
# Extra arguments go to it (e.g. `bash scripts/bench.sh --datasets ml-100k-gt2 --runs 1`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
. "${VENV:-.venv}/bin/activate"
export SAGEMAKER_SUPPRESS_V2_WARNING=1
exec python bench/bench_contract.py "$@"
