"""Benchmark of the recommender core (issue 2): quality, training speed, top-N latency, scale.

    python bench/bench_core.py [--data ../shared/data/ml-100k-gt2.csv] [--seeds 3] [--quick]

Protocol (../shared/docs/spotlight-model.md): ml-100k-gt2, RandomState(42) 80/20 split, test
split metrics with train items excluded, mean over seeds. Compared in the same run: popularity,
our model in Spotlight's default configuration (``preset="spotlight"``), our defaults, and our
defaults with the popularity prior switched off (what the prior adds). Then:
throughput at d=32, top-10 for all users (batched vs Spotlight's one-user-at-a-time predict),
and a synthetic 20M-interaction set (140k users x 27k items, power-law popularity): seconds per
epoch and peak memory at 2M and 20M interactions (memory must grow linearly).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spotlight_sagemaker.core import (
    ImplicitFactorizationModel,
    Interactions,
    PopularityModel,
    evaluate,
    random_train_test_split,
)

REPO = Path(__file__).resolve().parent.parent
METRICS = ("precision@10", "recall@10", "ndcg@10", "mrr", "coverage@10")


def quality(train: Interactions, test: Interactions, seeds: int) -> list[dict]:
    rows = [
        dict(
            model="popularity",
            config="train counts",
            train_s=0.0,
            ips=float("nan"),
            **evaluate(PopularityModel(train), test, train),
        )
    ]
    for name, kwargs in (
        ("ours, Spotlight's defaults", {"preset": "spotlight"}),
        ("ours, defaults", {}),
        ("ours, defaults without the popularity prior", {"popularity_prior": 0}),
    ):
        runs = []
        for seed in range(seeds):
            m = ImplicitFactorizationModel(random_state=seed, device="cpu", **kwargs)
            t = time.perf_counter()
            m.fit(train)
            secs = time.perf_counter() - t
            r = evaluate(m, test, train)
            r["train_s"] = secs
            r["ips"] = statistics.median(h.interactions_per_second for h in m.history)
            runs.append(r)
        cfg = {k: v for k, v in m.hyperparameters.items() if k not in ("random_state", "device")}
        rows.append(
            dict(
                model=name,
                config=json.dumps(cfg),
                per_seed_ndcg=[round(r["ndcg@10"], 4) for r in runs],
                **{k: statistics.mean(r[k] for r in runs) for k in runs[0]},
            )
        )
    return rows


def throughput_d32(train: Interactions) -> tuple[float, float]:
    out = []
    for kwargs in ({"embedding_dim": 32}, {"preset": "spotlight"}):
        m = ImplicitFactorizationModel(random_state=0, device="cpu", n_iter=3, **kwargs)
        m.fit(train)
        out.append(statistics.median(h.interactions_per_second for h in m.history))
    return out[0], out[1]


def topn_latency(train: Interactions, repeats: int = 20) -> tuple[float, float]:
    m = ImplicitFactorizationModel(random_state=0, device="cpu", n_iter=1).fit(train)
    users = np.arange(train.num_users)
    batched = []
    for _ in range(repeats):
        t = time.perf_counter()
        m.recommend_indices(users, 10, exclude_seen=True)
        batched.append(time.perf_counter() - t)
    indptr, indices = train.tocsr()
    t = time.perf_counter()
    for u in users:  # Spotlight's way: predict one user, mask its items, sort
        s = m.predict(int(u))
        s[indices[indptr[u] : indptr[u + 1]]] = -np.inf
        np.argsort(-s)[:10]
    naive = time.perf_counter() - t
    return statistics.median(batched) * 1e3, naive * 1e3


def synthetic(n: int, users: int = 140_000, items: int = 27_000, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, items + 1) ** 0.9
    user_p = 1.0 / np.arange(1, users + 1) ** 0.6
    cu, ci = np.cumsum(user_p / user_p.sum()), np.cumsum(item_p / item_p.sum())
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n:  # power-law draws collide: draw until n distinct pairs exist
        draw = int((n - len(keys)) * 1.5) + 1000
        u = np.minimum(np.searchsorted(cu, rng.random(draw)), users - 1)
        i = np.minimum(np.searchsorted(ci, rng.random(draw)), items - 1)
        keys = np.unique(np.concatenate([keys, u * items + i]))
    keys = rng.permutation(keys)[:n]
    return Interactions.from_indices(keys // items, keys % items, users, items)


def scale_child(n: int) -> None:
    """Run in a subprocess: one epoch of the defaults on n synthetic interactions."""
    data = synthetic(n)
    m = ImplicitFactorizationModel(random_state=0, device="cpu", n_iter=1)
    t = time.perf_counter()
    m.fit(data)
    secs = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": len(data), "epoch_s": secs, "peak_mb": peak_mb}))


def scale(sizes: list[int]) -> list[dict]:
    out = []
    for n in sizes:
        proc = subprocess.run(
            [sys.executable, __file__, "--scale-child", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/ml-100k-gt2.csv"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="skip the 20M-interaction scale test")
    ap.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scale_child:
        scale_child(args.scale_child)
        return
    data = Interactions.from_csv(args.data)
    train, test = random_train_test_split(data, 0.2, random_state=42)
    print(
        f"data: {data!r}; train {len(train):,}, test {len(test):,}; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print("| model | P@10 | R@10 | NDCG@10 | MRR | cov@10 | train s | interactions/s |")
    print("|---|---|---|---|---|---|---|---|")
    rows = quality(train, test, args.seeds)
    for r in rows:
        print(
            f"| {r['model']} | {r['precision@10']:.3f} | {r['recall@10']:.3f} | "
            f"{r['ndcg@10']:.3f} | {r['mrr']:.3f} | {r['coverage@10']:.3f} | "
            f"{r['train_s']:.2f} | {r['ips']:,.0f} |",
            flush=True,
        )
    for r in rows[1:]:
        print(f"\n{r['model']}: {r['config']}\n  NDCG@10 per seed: {r['per_seed_ndcg']}")
    ours, spot = throughput_d32(train)
    print(
        f"\ntraining throughput at d=32: defaults {ours:,.0f}/s; Spotlight config "
        f"{spot:,.0f}/s (interactions per second per epoch, median of 3 epochs)"
    )
    fast, naive = topn_latency(train)
    print(
        f"top-10 for all {train.num_users} users, seen items excluded: batched "
        f"{fast:.1f} ms (median of 20); one user at a time {naive:.0f} ms"
    )
    if not args.quick:
        print("\n| synthetic interactions | s/epoch | peak RSS MB |\n|---|---|---|")
        res = scale([2_000_000, 20_000_000])
        for r in res:
            print(f"| {r['n']:,} | {r['epoch_s']:.1f} | {r['peak_mb']:,.0f} |")
        a, b = res
        print(
            f"memory growth {a['n'] / 1e6:g}M -> {b['n'] / 1e6:g}M interactions: "
            f"{b['peak_mb'] / a['peak_mb']:.2f}x for "
            f"{b['n'] / a['n']:.1f}x interactions (users x items would be "
            f"{140_000 * 27_000 * 4 / 2**20:,.0f} MB as float32)"
        )


if __name__ == "__main__":
    main()
