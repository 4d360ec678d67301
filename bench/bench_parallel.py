"""Data-parallel train.py: 1 vs 2 processes (torchrun, gloo, CPU) on the default job.

``python bench/bench_parallel.py [--runs 2] [--dataset ml-100k-gt2]``: the protocol split of
bench_contract.py (Spotlight's random 80/20, seed 42), train.py with no hyperparameters under
``python`` (1 process) and under ``torchrun --standalone --nproc_per_node 2``, the served top-10
scored by the protocol. Prints NDCG@10, train seconds (metrics.json) and wall seconds per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from bench_contract import list_metrics, served_top10  # noqa: E402

from spotlight_sagemaker.core import Interactions, random_train_test_split  # noqa: E402


def run_job(train: Interactions, work: Path, processes: int) -> tuple[Path, dict, float]:
    base = work / "opt_ml"
    train.to_csv(base / "input" / "data" / "training" / "train.csv")
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base), SM_NUM_GPUS="0", OMP_NUM_THREADS="1")
    script = str(REPO / "entry_points" / "train.py")
    cmd = [sys.executable, script]
    if processes > 1:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, "--standalone", "--nproc_per_node", str(processes), script]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    return base / "model", metrics, wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--dataset", default="ml-100k-gt2")
    args = ap.parse_args()
    full = Interactions.from_csv(REPO.parent / "shared" / "data" / f"{args.dataset}.csv")
    train, test = random_train_test_split(full, 0.2, random_state=42)
    users = sorted(set(test.user_map.ids[test.user_ids].tolist()))
    print(f"{args.dataset}: {len(train)} training rows; {os.cpu_count()} CPUs")
    for processes in (1, 2):
        rows = []
        for r in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
                model_dir, metrics, wall = run_job(train, Path(tmp), processes)
                row = list_metrics(served_top10(model_dir, users), train, test)
                row.update(train_s=metrics["timings"]["train_seconds"], wall_s=wall)
                row["n_iter"] = (metrics["epochs"] or {}).get("n_iter")
                rows.append(row)
                print(
                    f"  {processes} process(es), run {r + 1}: ndcg@10 {row['ndcg@10']:.4f}, "
                    f"n_iter {row['n_iter']}, train {row['train_s']:.1f} s, wall {wall:.1f} s",
                    flush=True,
                )
        nd = [r["ndcg@10"] for r in rows]
        print(
            f"| {processes} | {statistics.mean(nd):.4f} ± {statistics.pstdev(nd):.4f} | "
            f"{statistics.mean(r['train_s'] for r in rows):.1f} | "
            f"{statistics.mean(r['wall_s'] for r in rows):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
