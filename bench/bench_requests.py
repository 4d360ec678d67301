"""Issue 16's two benchmarks in one command, each beside its baseline.

    python bench/bench_requests.py [--quick]

1. ``bench_history.py``: recommendations from a history for users hidden from the default job,
   against popularity (as served, and with the history excluded), on every dataset;
2. ``bench_warm_start.py``: warm start from an older model against training from scratch, per
   epoch, on time-ordered MovieLens 100k.

``--quick``: MovieLens only for the first, one seed for the second. Arguments after ``--`` go to
neither; run the two scripts themselves for their own options.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    history = ["--datasets", "ml-100k-gt2"] if args.quick else []
    warm = ["--seeds", "1"] if args.quick else []
    status = 0
    for title, script, extra in (
        ("Recommendations from a history (bench_history.py)", "bench_history.py", history),
        ("Warm start (bench_warm_start.py)", "bench_warm_start.py", warm),
    ):
        print(f"\n== {title}", flush=True)
        status |= subprocess.run([sys.executable, str(BENCH / script), *extra]).returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
