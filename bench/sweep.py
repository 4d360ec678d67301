"""Validation sweeps that chose the package defaults (never look at the test split).

Protocol (../shared/docs/spotlight-model.md): ml-100k-gt2, train = first 80% of a
RandomState(42) shuffle; validation = the same 80/20 cut of train with RandomState(43) (and,
with ``--cuts``, further cuts with other seeds, to average out which users landed where). Each
configuration is trained on train-minus-validation and scored on validation; with ``--priors``
each trained model is also scored at several ``popularity_prior`` values (no retraining).

    python bench/sweep.py [--grid losses|final] [--cuts 43,44,45] [--seeds 2]
                          [--priors 0,0.2,0.3,0.4] [--val-fraction 0.2] [--configs JSON]
                          [--first-seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
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
    # the second sweep (after batches became equal-sized): dimension x batch x epochs of the
    # softmax, with --cuts 43,44,45 --priors 0,0.2,0.3,0.4
    "final": [
        dict(loss="softmax", embedding_dim=d, batch_size=bs, n_iter=n, learning_rate=5e-3, l2=1e-4)
        for d, bs, n in itertools.product([64, 96, 128], [4096, 8192], [30, 40, 45, 50])
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/ml-100k-gt2.csv"))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--grid", default="losses", choices=sorted(GRIDS))
    ap.add_argument("--configs", help="JSON list of configurations instead of a named grid")
    ap.add_argument("--cuts", default="43", help="RandomState seeds of the validation cuts")
    ap.add_argument("--priors", default="", help="popularity_prior values to score each model at")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Interactions.from_csv(args.data)
    train, _ = random_train_test_split(data, 0.2, random_state=42)
    cuts = [int(c) for c in args.cuts.split(",")]
    splits = [random_train_test_split(train, args.val_fraction, random_state=c) for c in cuts]
    priors = [float(p) for p in args.priors.split(",")] if args.priors else [None]
    configs = json.loads(args.configs) if args.configs else GRIDS[args.grid]
    print(f"validation: {args.val_fraction:.0%} cuts of train with RandomState {cuts}\n")
    print("| config | popularity_prior | val NDCG@10 | per cut | val P@10 | val MRR | train s |")
    print("|---|---|---|---|---|---|---|")
    for cfg in configs:
        res = {p: [] for p in priors}  # per prior: (cut, ndcg, precision, mrr)
        secs = []
        for c, (fit, val) in zip(cuts, splits, strict=True):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                m = ImplicitFactorizationModel(random_state=seed, device="cpu", **cfg)
                t = time.perf_counter()
                m.fit(fit)
                secs.append(time.perf_counter() - t)
                for p in priors:
                    if p is not None:
                        m.set_popularity_prior(p)
                    r = evaluate(m, val, fit)
                    res[p].append((c, r["ndcg@10"], r["precision@10"], r["mrr"]))
        for p in priors:
            rows = res[p]
            per_cut = "/".join(
                f"{statistics.mean(r[1] for r in rows if r[0] == c):.4f}" for c in cuts
            )
            shown = m.popularity_prior if p is None else p
            print(
                f"| {json.dumps(cfg)} | {shown:g} | {statistics.mean(r[1] for r in rows):.4f} | "
                f"{per_cut} | {statistics.mean(r[2] for r in rows):.4f} | "
                f"{statistics.mean(r[3] for r in rows):.4f} | {statistics.mean(secs):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
