#!/usr/bin/env bash
# The README's main job: the MovieLens example end to end on this machine (local mode: no
# Docker, no AWS account). Sets up its own environment, then trains with the package defaults,
# batch-recommends for users 685 and 302 and prints the recommendations with titles.
#
#   SPOTLIGHT_DATA_DIR   MovieLens 100k folder (u.data, u.item) or its parent; default
#                        ../shared/data/ml-100k when present, else download from GroupLens
#                        (SHA-256 checked, cached in ~/.cache/spotlight-sagemaker)
#   OUTPUT_DIR           where results go (default examples/output)
# Extra arguments go to examples/movielens_workflow.py (e.g. --n-iter 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
. "${VENV:-.venv}/bin/activate"
export SAGEMAKER_SUPPRESS_V2_WARNING=1 MPLBACKEND=Agg

data_args=()
if [ -n "${SPOTLIGHT_DATA_DIR:-}" ]; then
  data_args=(--data-dir "$SPOTLIGHT_DATA_DIR")
elif [ -f ../shared/data/ml-100k/u.data ]; then
  data_args=(--data-dir ../shared/data/ml-100k)
fi
exec python examples/movielens_workflow.py --mode local ${data_args[@]+"${data_args[@]}"} \
  --output-dir "${OUTPUT_DIR:-examples/output}" "$@"
