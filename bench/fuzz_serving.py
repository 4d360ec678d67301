"""Fuzz the real model server: thousands of seeded malformed requests, every answer counted.

    python bench/fuzz_serving.py [--cases 4000] [--seed 1] [--data ../shared/data/ml-100k-gt2.csv]

Trains a small model on the data (core, 2 epochs), starts Multi Model Server with our handler on
127.0.0.1 (``start_model_server``), posts ``--cases`` requests from ``tests/_fuzz.py`` (the same
generator the CI test uses through the handler functions) and prints a table of statuses. The
bar: no 5xx at all (every malformed request is a client error), no error body with a traceback
or a path, and the server still healthy and answering the seed batch at the end. Exits 1 when
the bar is missed.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from _fuzz import payloads  # noqa: E402

SEED_BATCH = b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}'


def _post(host: str, port: int, body: bytes, ctype: str | None, accept: str | None):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    headers = {}
    if ctype is not None:
        headers["Content-Type"] = ctype
    if accept is not None:
        headers["Accept"] = accept
    try:
        conn.request("POST", "/invocations", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/ml-100k-gt2.csv"))
    args = parser.parse_args()

    from spotlight_sagemaker.container.serving.model_server import start_model_server
    from spotlight_sagemaker.core import ImplicitFactorizationModel, Interactions

    with tempfile.TemporaryDirectory(prefix="spotlight-fuzz-") as tmp:
        model_dir = Path(tmp) / "model"
        model = ImplicitFactorizationModel(n_iter=2, embedding_dim=16, random_state=0)
        model.fit(Interactions.from_csv(args.data)).save(model_dir)
        statuses: Counter[int] = Counter()
        leaks, server_errors = [], []
        start = time.perf_counter()
        with start_model_server(model_dir, workers=1) as srv:
            for n, (body, ctype, accept) in enumerate(payloads(args.seed, args.cases)):
                status, text = _post(srv.host, srv.port, body, ctype, accept)
                statuses[status] += 1
                if status >= 500:
                    server_errors.append((n, ctype, body[:80], text[:200]))
                if status >= 400 and (b"Traceback" in text or b'File "' in text):
                    leaks.append((n, text[:200]))
            final, _ = _post(srv.host, srv.port, SEED_BATCH, "application/jsonlines", "text/csv")
            alive = srv.is_running()
        seconds = time.perf_counter() - start

    print(f"\n{args.cases} fuzzed requests (seed {args.seed}) in {seconds:.1f} s\n")
    print("| status | requests |\n|---|---|")
    for status, count in sorted(statuses.items()):
        print(f"| {status} | {count} |")
    ok = not server_errors and not leaks and final == 200 and alive
    print(
        f"\n5xx: {len(server_errors)} (bar: 0); bodies with a traceback: {len(leaks)} (bar: 0); "
        f"seed batch afterwards: {final}; server alive: {alive} -> {'MET' if ok else 'MISSED'}"
    )
    for case in server_errors[:10]:
        print("  5xx:", case)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
