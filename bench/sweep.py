"""Validation sweep that chose the package defaults (never looks at the test split).

Protocol (../shared/docs/spotlight-model.md): ml-100k-gt2, train = first 80% of a
RandomState(42) shuffle; validation = the same 80/20 cut of train with RandomState(43).
Each configuration is trained on train-minus-validation and scored on validation.

    python bench/sweep.py [--data PATH] [--seeds 2] [--grid NAME]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from spotlight_sagemaker.core import (
    ImplicitFactorizationModel,
    Interactions,
    evaluate,
    random_train_test_split,
)

REPO = Path(__file__).resolve().parent.parent
GRIDS = {
    "losses": [
        dict(
            loss=loss,
            negative_sampling=ns,
            embedding_dim=d,
            n_iter=n,
            batch_size=bs,
            learning_rate=lr,
            l2=l2,
        )
        for loss, ns, d, n, bs, lr, l2 in itertools.product(
            ["bpr", "adaptive_hinge", "softmax"],
            ["unseen"],
            [64],
            [20],
            [1024],
            [1e-2, 5e-3],
            [0.0, 1e-5, 1e-4],
        )
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/ml-100k-gt2.csv"))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--grid", default="losses")
    ap.add_argument("--configs", help="JSON list of configurations instead of a named grid")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Interactions.from_csv(args.data)
    train, _ = random_train_test_split(data, 0.2, random_state=42)
    fit, val = random_train_test_split(train, 0.2, random_state=43)
    configs = json.loads(args.configs) if args.configs else GRIDS[args.grid]
    print("| config | val NDCG@10 | val P@10 | val MRR | train s |")
    print("|---|---|---|---|---|")
    for cfg in configs:
        nd = p = mrr = secs = 0.0
        for seed in range(args.seeds):
            m = ImplicitFactorizationModel(random_state=seed, device="cpu", **cfg)
            t = time.perf_counter()
            m.fit(fit)
            secs += time.perf_counter() - t
            r = evaluate(m, val, fit)
            nd, p, mrr = nd + r["ndcg@10"], p + r["precision@10"], mrr + r["mrr"]
        s = args.seeds
        print(
            f"| {json.dumps(cfg)} | {nd / s:.4f} | {p / s:.4f} | {mrr / s:.4f} | {secs / s:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
