"""Per-pass training cost against catalogue size (issue 15): ours beside one implicit ALS iteration.

    python bench/bench_scale.py [--interactions 5000000] [--items 10000,100000,1000000]
                                [--users 50000] [--threads 1] [--dim 256]
                                [--configs '{"sparse=True": {"sparse": true}}']

Synthetic power-law data (``bench_core.synthetic``: 50,000 users unless ``--users``, the given
number of distinct interactions and items, seed 0). Each cell runs in its own process with
``--threads`` threads, one by default (``torch.set_num_threads``, ``threadpool_limits``, ALS
``num_threads``) and reports wall
and CPU seconds of one pass over the data (our ``n_iter=1``; ALS ``iterations=1``), both at the
same dimension, and the process's peak RSS. The baseline is implicit ALS in the same run; the
ratio column is our CPU seconds over ALS's at the same size, and the growth line compares each
configuration's largest catalogue with its smallest. A cell that exceeds ``--cell-timeout`` is
reported as such, not dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = {"defaults": {}, "sparse=True": {"sparse": True}}


def child(what: str, n: int, items: int, dim: int, kwargs: dict, users: int, threads: int) -> dict:
    sys.path.insert(0, str(REPO / "bench"))
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from bench_core import synthetic

    data = synthetic(n, users=users, items=items)
    if what == "als":
        import implicit
        import scipy.sparse as sp
        from threadpoolctl import threadpool_limits

        m = sp.csr_matrix(
            (np.ones(len(data.user_ids), np.float32), (data.user_ids, data.item_ids)),
            shape=(data.num_users, data.num_items),
        )
        als = implicit.cpu.als.AlternatingLeastSquares(
            factors=dim, iterations=1, num_threads=threads, random_state=0
        )
        with threadpool_limits(threads):
            t, c = time.perf_counter(), time.process_time()
            als.fit(m, show_progress=False)
    else:
        from spotlight_sagemaker.core import ImplicitFactorizationModel

        model = ImplicitFactorizationModel(
            random_state=0, device="cpu", n_iter=1, embedding_dim=dim, **kwargs
        )
        t, c = time.perf_counter(), time.process_time()
        model.fit(data)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall": wall, "cpu": cpu, "peak_mb": peak_mb}


def run_cell(what: str, n: int, items: int, dim: int, kwargs: dict, args) -> dict:
    t = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t)
    spec = [what, n, items, dim, kwargs, args.users, args.threads]
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    timeout = args.cell_timeout
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interactions", type=int, default=5_000_000)
    ap.add_argument("--items", default="10000,100000,1000000")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--configs", default=json.dumps(DEFAULT_CONFIGS))
    ap.add_argument("--cell-timeout", type=float, default=1800.0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return
    sizes = [int(s) for s in args.items.split(",")]
    configs = json.loads(args.configs)
    threads = "one thread" if args.threads == 1 else f"{args.threads} threads"
    print(
        f"{args.interactions:,} interactions, {args.users:,} users, d={args.dim}, "
        f"{threads} per cell\n"
    )
    print("| items | model | wall s | CPU s | CPU / ALS | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    cpu: dict[tuple[str, int], float] = {}
    for items in sizes:
        als = run_cell("als", args.interactions, items, args.dim, {}, args)
        rows = [("implicit ALS, 1 iteration", als)]
        for name, kw in configs.items():
            rows.append(
                (
                    f"ours, {name}",
                    run_cell("ours", args.interactions, items, args.dim, kw, args),
                )
            )
        for name, r in rows:
            if "error" in r:
                print(f"| {items:,} | {name} | {r['error']} | | | |", flush=True)
                continue
            cpu[name, items] = r["cpu"]
            ratio = r["cpu"] / als["cpu"] if "cpu" in als else float("nan")
            print(
                f"| {items:,} | {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {ratio:.1f}x | "
                f"{r['peak_mb']:,.0f} |",
                flush=True,
            )
    if len(sizes) < 2:
        return
    lo, hi = sizes[0], sizes[-1]
    names = ["implicit ALS, 1 iteration"] + [f"ours, {n}" for n in configs]
    print(f"\ngrowth of CPU s per pass, {lo:,} -> {hi:,} items (target for ours: <= 2x):")
    for name in names:
        if (name, lo) in cpu and (name, hi) in cpu:
            print(f"  {name}: {cpu[name, hi] / cpu[name, lo]:.1f}x")
        else:
            print(f"  {name}: not measured (a cell failed or timed out)")


if __name__ == "__main__":
    main()
