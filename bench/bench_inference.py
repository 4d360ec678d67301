"""Serving benchmark: the inference handler in-process and behind the real model server.

One command, one table, baselines measured in the same run::

    python bench/bench_inference.py            # trains a model on ../shared/data first
    python bench/bench_inference.py --model-dir /path/to/artifact --seconds 5

1. In-process: ``input_fn`` -> ``predict_fn`` -> ``output_fn`` on one Batch Transform
   MultiRecord request (``--users`` JSON lines, ``top_n=--top-n``, CSV out), against a naive
   handler that decodes each line and calls ``model.recommend`` one user at a time.
   Target: >= 100,000 users/s.
2. Through Multi Model Server (sagemaker-inference, 127.0.0.1): single-record requests/s and
   p50/p99 latency at 1, 4 and 16 concurrent clients (stdlib http.client, one keep-alive
   connection per client), against ``GET /ping`` on the same server (the server's own floor).
   Targets: >= 500 requests/s, p99 <= 50 ms, zero errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
HANDLER_TARGET, RPS_TARGET, P99_TARGET_MS = 100_000, 500, 50.0


def _train(data: Path, out: Path, epochs: int) -> None:
    from spotlight_sagemaker.core import ImplicitFactorizationModel, Interactions

    model = ImplicitFactorizationModel(n_iter=epochs, random_state=0, device="cpu")
    model.fit(Interactions.from_csv(data))
    model.save(out)


def _request(model, users: int, top_n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    ids = model.user_map.ids[rng.integers(0, model.num_users, users)]
    return "\n".join(json.dumps({"user_id": u, "top_n": str(top_n)}) for u in ids).encode()


def _naive(model, body: bytes) -> bytes:
    """One user at a time: what a straightforward handler does."""
    rows = []
    for line in body.decode().splitlines():
        rec = json.loads(line)
        r = model.recommend(rec["user_id"], n=int(rec["top_n"]))
        rows += [f"{r.query_id},{i},{s:.6f}" for i, s in zip(r.item_ids, r.scores, strict=True)]
    return "\n".join(rows).encode()


def bench_handler(model_dir: Path, users: int, top_n: int, repeats: int, naive_users: int):
    from spotlight_sagemaker._entry_points import inference

    served = inference.model_fn(str(model_dir))
    body = bytearray(_request(served.model, users, top_n))
    stages = {"decode": [], "predict": [], "encode": [], "total": [], "cpu": []}
    for _ in range(repeats + 1):  # first run warms up
        c0 = time.process_time()
        t0 = time.perf_counter()
        q = inference.input_fn(body, "application/jsonlines")
        t1 = time.perf_counter()
        r = inference.predict_fn(q, served)
        t2 = time.perf_counter()
        out, _ = inference.output_fn(r, "text/csv")
        t3 = time.perf_counter()
        c3 = time.process_time()
        for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0, c3 - c0), strict=True):
            stages[k].append(v)
    stages = {k: v[1:] for k, v in stages.items()}
    assert out.count(b"\n") + 1 == users * top_n, "unexpected number of CSV rows"
    small = bytes(body).split(b"\n")[:naive_users]
    t0, c0 = time.perf_counter(), time.process_time()
    naive_out = _naive(served.model, b"\n".join(small))
    naive_s, naive_cpu = time.perf_counter() - t0, time.process_time() - c0
    fast_small, _ = inference.output_fn(
        inference.predict_fn(
            inference.input_fn(b"\n".join(small), "application/jsonlines"), served
        ),
        "text/csv",
    )
    same = [r.split(b",")[:2] for r in fast_small.split(b"\n")] == [
        r.split(b",")[:2] for r in naive_out.split(b"\n")
    ]
    return stages, (naive_users / naive_s, naive_users / naive_cpu), same, served.model


def _client(host, port, method, path, body, headers, stop_at, max_requests, out, errors):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    n = 0
    while time.perf_counter() < stop_at and n < max_requests:
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=body[n % len(body)] if body else None, headers=headers)
            resp = conn.getresponse()
            resp.read()
            ok = resp.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
        out.append(time.perf_counter() - t0)
        if not ok:
            errors.append(1)
        n += 1
    conn.close()


def load_test(server, clients: int, seconds: float, bodies, ping: bool, max_requests: int):
    lat: list[float] = []
    errors: list[int] = []
    headers = {} if ping else {"Content-Type": "application/jsonlines", "Accept": "text/csv"}
    method, path = ("GET", "/ping") if ping else ("POST", "/invocations")
    start = time.perf_counter()
    stop_at = start + seconds
    threads = [
        threading.Thread(
            target=_client,
            args=(
                server.host,
                server.port,
                method,
                path,
                None if ping else bodies[i::clients],
                headers,
                stop_at,
                max_requests // clients,
                lat,
                errors,
            ),
        )
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ms = np.array(lat) * 1000
    return {
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "errors": len(errors),
    }


def bench_server(
    model_dir: Path,
    model,
    clients_list,
    seconds: float,
    workers: int,
    top_n: int,
    max_requests: int,
):
    from spotlight_sagemaker.container.serving import model_server as serving

    with tempfile.TemporaryDirectory() as tmp:
        sm_dir = Path(tmp) / "model"
        shutil.copytree(model_dir, sm_dir)
        server = serving.start_model_server(sm_dir, workers=workers, startup_timeout=300)
        try:
            rng = np.random.default_rng(1)
            ids = model.user_map.ids[rng.integers(0, model.num_users, 4096)]
            bodies = [json.dumps({"user_id": u, "top_n": top_n}).encode() for u in ids]
            load_test(server, 4, 2.0, bodies, False, 10**9)  # warm-up
            results = []
            for clients in clients_list:
                for ping in (True, False):
                    r = load_test(server, clients, seconds, bodies, ping, max_requests)
                    results.append(("GET /ping" if ping else "POST /invocations", clients, r))
        finally:
            server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ml-100k-gt2.csv")
    parser.add_argument("--model-dir", type=Path, help="use this artifact instead of training")
    parser.add_argument("--epochs", type=int, default=2, help="epochs when training (default 2)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--naive-users", type=int, default=1000, help="users the naive baseline runs (it is slow)"
    )
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=8.0, help="per load level")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per load level")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads in-process (default torch's own; the server uses 1 per worker)",
    )
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    if args.threads:
        os.environ["SPOTLIGHT_TORCH_THREADS"] = str(args.threads)

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            if not args.data.is_file():
                parser.error(f"--data {args.data} not found")
            model_dir = Path(tmp) / "artifact"
            t0 = time.perf_counter()
            _train(args.data, model_dir, args.epochs)
            print(
                f"trained {args.epochs} epochs on {args.data.name} in "
                f"{time.perf_counter() - t0:.0f} s",
                flush=True,
            )
        import torch

        stages, naive_ups, same, model = bench_handler(
            model_dir, args.users, args.top_n, args.repeats, args.naive_users
        )
        threads = torch.get_num_threads()
        os.environ.pop("SPOTLIGHT_TORCH_THREADS", None)  # the launcher sets CPUs / workers
        server = (
            []
            if args.skip_server
            else bench_server(
                model_dir,
                model,
                [int(c) for c in args.clients.split(",")],
                args.seconds,
                args.workers,
                args.top_n,
                args.max_requests,
            )
        )
    load1 = os.getloadavg()

    best, med = min(stages["total"]), statistics.median(stages["total"])
    cpu = statistics.median(stages.pop("cpu"))
    naive_ups, naive_cpu_ups = naive_ups
    print(
        f"\nmodel: {model.num_users} users x {model.num_items} items, dim "
        f"{model.hyperparameters['embedding_dim']}; CPUs {os.cpu_count()}; "
        f"load average {load0[0]:.1f} -> {load1[0]:.1f}; python {sys.version.split()[0]}; "
        f"torch threads in-process {threads}"
    )
    print(
        f"\n1. handler in-process: {args.users:,} records (one MultiRecord request), "
        f"top_n={args.top_n}, CSV out"
    )
    print(f"{'variant':<34}{'users/s':>12}{'ms/request':>12}{'target':>12}")
    print(
        f"{'batched handler (best)':<34}{args.users / best:>12,.0f}{best * 1e3:>12.1f}"
        f"{'>= 100,000':>12}  {'OK' if args.users / best >= HANDLER_TARGET else 'MISS'}"
    )
    print(
        f"{'batched handler (median)':<34}{args.users / med:>12,.0f}{med * 1e3:>12.1f}"
        f"{'>= 100,000':>12}  {'OK' if args.users / med >= HANDLER_TARGET else 'MISS'}"
    )
    print(
        f"{'naive, one user at a time':<34}{naive_ups:>12,.0f}"
        f"{args.users / naive_ups * 1e3:>12.1f}{'baseline':>12}"
    )
    print(
        f"per CPU-second of this process (robust to other load): batched "
        f"{args.users / cpu:,.0f} users/s ({cpu * 1e3:.0f} ms CPU per request), naive "
        f"{naive_cpu_ups:,.0f} users/s"
    )
    print(
        f"speed-up {args.users / med / naive_ups:.0f}x (median); same items as the naive "
        f"handler on {args.naive_users} users: {same}"
    )
    print(
        "median stage times (ms): "
        + ", ".join(f"{k} {statistics.median(v) * 1e3:.1f}" for k, v in stages.items())
    )
    if server:
        print(
            f"\n2. model server (MMS, {args.workers} workers, 127.0.0.1), single-record "
            f"requests, top_n={args.top_n}, {args.seconds:g} s per level"
        )
        print(
            f"{'endpoint':<20}{'clients':>8}{'requests':>10}{'req/s':>9}{'p50 ms':>9}"
            f"{'p99 ms':>9}{'errors':>8}  verdict"
        )
        for name, clients, r in server:
            verdict = "floor"
            if name.startswith("POST"):
                ok = r["rps"] >= RPS_TARGET and r["p99"] <= P99_TARGET_MS and r["errors"] == 0
                verdict = "OK" if ok else "MISS"
            print(
                f"{name:<20}{clients:>8}{r['requests']:>10}{r['rps']:>9.0f}{r['p50']:>9.1f}"
                f"{r['p99']:>9.1f}{r['errors']:>8}  {verdict}"
            )
        print(f"targets: >= {RPS_TARGET} req/s, p99 <= {P99_TARGET_MS:.0f} ms, zero errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
