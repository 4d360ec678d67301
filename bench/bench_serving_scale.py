"""Serving at scale: top-N for users of a 1M-user x 1M-item model through inference.py's handler.

    python bench/bench_serving_scale.py [--users 1000000] [--items 1000000] [--dim 256]
                                        [--scored 512] [--request 64] [--top-n 10]

Builds a model of that size (``fit`` with ``n_iter=0`` on two synthetic interactions per user:
random vectors, which cost what trained ones cost) and saves its artifact. A fresh process then
loads it with ``inference.model_fn`` and sends ``--scored`` users, ``--request`` JSON-lines
records per request, through ``input_fn`` -> ``predict_fn`` -> ``output_fn`` (CSV), checking
that every answer holds ``top_n`` rows. It prints the RSS once the model is loaded (the
baseline, same process, same run) and the peak RSS while scoring (Linux's VmHWM, reset after
loading): the difference is the scoring's own memory (blocks of 2**23 scores, independent of
how many users are scored), then users per second and the time all users would take.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak since the last reset) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Restart VmHWM at the current RSS (Linux: 5 > /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def build(out: Path, users: int, items: int, dim: int) -> None:
    from spotlight_sagemaker.core import ImplicitFactorizationModel, Interactions

    rng = np.random.default_rng(0)
    first = rng.integers(0, items, users)
    first[: min(users, items)] = np.arange(min(users, items))  # every item appears (users >= items)
    second = (first + 1 + rng.integers(0, items - 1, users)) % items  # never the first
    u = np.repeat(np.arange(users), 2)
    i = np.stack([first, second], 1).reshape(-1)
    data = Interactions.from_indices(u, i, users, items)
    model = ImplicitFactorizationModel(random_state=0, device="cpu", n_iter=0, embedding_dim=dim)
    model.fit(data)
    model.save(out)


def serve(model_dir: Path, scored: int, request: int, top_n: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from spotlight_sagemaker._entry_points import inference

    t = time.perf_counter()
    served = inference.model_fn(str(model_dir))
    load_s = time.perf_counter() - t
    loaded_mb = _peak_mb()
    resident_mb = _status_mb("VmRSS")
    reset = _reset_peak()
    ids = served.model.user_map.ids
    rng = np.random.default_rng(1)
    picks = ids[rng.choice(len(ids), scored, replace=False)]
    rows = 0
    t, c = time.perf_counter(), time.process_time()
    for lo in range(0, scored, request):
        body = "\n".join(
            json.dumps({"user_id": str(x), "top_n": str(top_n)}) for x in picks[lo : lo + request]
        ).encode()
        out, _ = inference.output_fn(
            inference.predict_fn(inference.input_fn(body, "application/jsonlines"), served),
            "text/csv",
        )
        lines = out.decode().strip().splitlines() if isinstance(out, bytes) else out.splitlines()
        assert len(lines) == top_n * len(picks[lo : lo + request]), len(lines)
        rows += len(lines)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "load_s": load_s,
        "loaded_mb": loaded_mb,
        "peak_mb": _peak_mb(),
        "resident_mb": resident_mb,
        "scoring_peak_mb": _status_mb("VmHWM") if reset else float("nan"),
        "wall": wall,
        "cpu": cpu,
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--scored", type=int, default=512)
    ap.add_argument("--request", type=int, default=64)
    ap.add_argument("--top-n", type=int, default=10)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, spec = json.loads(args.child)
        if kind == "build":
            build(Path(spec["out"]), spec["users"], spec["items"], spec["dim"])
        else:
            print(json.dumps(serve(Path(spec["out"]), spec["scored"], spec["request"], spec["n"])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        spec = {"out": str(out), "users": args.users, "items": args.items, "dim": args.dim}
        spec |= {"scored": args.scored, "request": args.request, "n": args.top_n}
        for kind in ("build", "serve"):
            cmd = [sys.executable, __file__, "--child", json.dumps([kind, spec])]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
        artifact_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
        r = json.loads(proc.stdout.strip().splitlines()[-1])
    rate = args.scored / r["wall"]
    print(
        f"{args.users:,} users x {args.items:,} items, d={args.dim}, "
        f"artifact {artifact_mb:,.0f} MB; "
        f"{args.scored:,} users scored, {args.request} records per request, top_n {args.top_n}, "
        "one thread\n"
    )
    print("| what | value |")
    print("|---|---|")
    print(f"| model_fn (load) | {r['load_s']:.1f} s |")
    print(f"| peak RSS while loading | {r['loaded_mb']:,.0f} MB |")
    print(f"| RSS once loaded (baseline) | {r['resident_mb']:,.0f} MB |")
    print(f"| peak RSS while scoring | {r['scoring_peak_mb']:,.0f} MB |")
    extra = r["scoring_peak_mb"] - r["resident_mb"]
    print(f"| scoring's own peak (difference) | {extra:,.0f} MB |")
    each = r["cpu"] / args.scored * 1e3
    print(f"| users per second (wall) | {rate:,.1f} ({each:.1f} CPU ms each) |")
    print(f"| CSV rows answered | {r['rows']:,} |")
    print(
        f"| all {args.users:,} users at this rate, one thread | {args.users / rate / 3600:,.1f} h |"
    )


if __name__ == "__main__":
    main()
