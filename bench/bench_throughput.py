"""Data-parallel training throughput: one process against two gloo ranks (torchrun), same data.

    python bench/bench_throughput.py [--interactions 5000000] [--items 100000] [--users 50000]
                                     [--dim 256] [--epochs 1] [--configs '{"defaults": {}}']

Synthetic power-law data (``bench_core.synthetic``, seed 0). For each configuration of the core
model, ``--epochs`` epochs of training (``fit``; initialisation and the CSR build included, as a
job pays them) run three ways, each in fresh processes on this machine's cores: one process with
one torch thread, one process with as many threads as cores, and ``torchrun --standalone
--nproc_per_node 2`` (gloo, one thread per rank, every rank building the same data and training
on its share of each step). It prints wall seconds, interactions per second and the speed-up over
the single process with all cores (the baseline a user compares with), plus the ranks' epoch loss
next to the single process's (data-parallel training computes the same steps).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def worker(spec: dict, out: str | None) -> None:
    """Train once; with torchrun, as one rank of a gloo group. Prints or writes a JSON line."""
    sys.path.insert(0, str(REPO / "bench"))
    import torch

    torch.set_num_threads(spec["threads"])
    from bench_core import synthetic

    from spotlight_sagemaker.core import ImplicitFactorizationModel

    parallel = None
    if "RANK" in os.environ:
        import torch.distributed as dist

        from spotlight_sagemaker.core.parallel import DataParallel

        dist.init_process_group("gloo", timeout=timedelta(seconds=600))
        parallel = DataParallel()
    data = synthetic(spec["n"], users=spec["users"], items=spec["items"])
    model = ImplicitFactorizationModel(
        random_state=0,
        device="cpu",
        n_iter=spec["epochs"],
        embedding_dim=spec["dim"],
        **spec["kwargs"],
    )
    t, c = time.perf_counter(), time.process_time()
    model.fit(data, parallel=parallel)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    result = {"wall": wall, "cpu": cpu, "loss": model.history[-1].loss, "n": len(data)}
    if parallel is None:
        print(json.dumps(result))
        return
    import torch.distributed as dist

    results = parallel.gather_objects(result)
    if parallel.is_main and out:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def run(spec: dict, processes: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    if processes == 1:
        cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ranks.json"
        cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes), __file__]
        cmd += ["--worker", json.dumps(spec), "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        ranks = json.loads(out.read_text())
    return {
        "wall": max(r["wall"] for r in ranks),
        "cpu": sum(r["cpu"] for r in ranks),
        "loss": ranks[0]["loss"],
        "n": ranks[0]["n"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interactions", type=int, default=5_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--configs", default=json.dumps({"defaults": {}}))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker), args.out)
        return
    cores = os.cpu_count() or 1
    print(
        f"{args.interactions:,} interactions, {args.users:,} users, {args.items:,} items, "
        f"d={args.dim}, {args.epochs} epoch(s), {cores} cores\n"
    )
    print("| config | how | wall s | CPU s | interactions/s | speed-up | epoch loss |")
    print("|---|---|---|---|---|---|---|")
    for name, kwargs in json.loads(args.configs).items():
        base = {
            "n": args.interactions,
            "users": args.users,
            "items": args.items,
            "dim": args.dim,
            "epochs": args.epochs,
            "kwargs": kwargs,
        }
        cells = [
            ("1 process, 1 thread", {**base, "threads": 1}, 1),
            (f"1 process, {cores} threads", {**base, "threads": cores}, 1),
            ("2 ranks (torchrun, gloo), 1 thread each", {**base, "threads": 1}, 2),
        ]
        results = [(label, run(spec, procs)) for label, spec, procs in cells]
        ref = results[1][1]["wall"]
        for label, r in results:
            rate = r["n"] * args.epochs / r["wall"]
            print(
                f"| {name} | {label} | {r['wall']:.2f} | {r['cpu']:.2f} | {rate:,.0f} | "
                f"{ref / r['wall']:.2f}x | {r['loss']:.6f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
