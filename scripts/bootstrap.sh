#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with everything the tests, the example
# and the benchmarks need. Idempotent: a stamp keyed on setup.py skips work already done.
#
#   VENV=.venv          where the environment lives
#   PYTHON=python3      interpreter used to create it
#   TORCH_SPEC=...      torch requirement installed first (default: torch==2.13.0, the CPU wheel
#                       these machines carry; an unpinned torch pulls a multi-GB CUDA build)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

stamp="$VENV/.spotlight-installed-$(cat setup.py scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing dependencies into $VENV" >&2
  python -m pip install -q --disable-pip-version-check --upgrade pip
  python -c "import torch" 2>/dev/null || python -m pip install -q "$TORCH_SPEC"
  python -m pip install -q --disable-pip-version-check -e ".[test,bench]"
  rm -f "$VENV"/.spotlight-installed-*
  touch "$stamp"
fi

# The model server (Multi Model Server) runs on Java; install a JRE when none is there.
if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing a Java runtime for the model server" >&2
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "bootstrap: warning: no java on PATH; model-server tests will be skipped" >&2
  fi
fi
