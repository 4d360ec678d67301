"""Choose the fold-in's pseudo-count on validation users (never the bench's hidden users).

    python bench/sweep_fold_in.py [--datasets ml-100k-gt2,lastfm-hetrec] [--counts 0,10,30,100,300]

The bench's split (``bench_history.split``, RandomState(42)) hides its test users; from the
remaining users this hides another 20% with RandomState(43) as validation users, trains the
core model with the defaults on the rest, and prints validation NDCG@10 of recommendations from
the first k = 1, 3, 10 interactions for each pseudo-count (``core.foldin.PSEUDO_COUNT``), beside
popularity with the history excluded. A diagnostic of the core, not the user's path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from bench_history import HISTORY_SIZES, MIN_INTERACTIONS, K, ndcg, ordered_rows, split  # noqa: E402

from spotlight_sagemaker.core import ImplicitFactorizationModel, Interactions, foldin  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="ml-100k-gt2,lastfm-hetrec")
    p.add_argument("--counts", default="0,10,30,100,300")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = p.parse_args(argv)
    counts = [float(c) for c in args.counts.split(",")]
    print(
        f"{'dataset':<14} {'count':>6} "
        + " ".join(f"{'k=' + str(k):>7}" for k in HISTORY_SIZES)
        + f" {'mean':>7}"
    )
    for name in args.datasets.split(","):
        rows, _test_users = split(ordered_rows(args.data_dir, name), 0.2)
        by_user: dict[str, list[str]] = {}
        for user, item in rows:
            by_user.setdefault(user, []).append(item)
        eligible = sorted(u for u, items in by_user.items() if len(items) >= MIN_INTERACTIONS)
        rng = np.random.RandomState(43)
        valid = set(rng.choice(eligible, int(round(0.2 * len(eligible))), replace=False))
        train_rows = [(u, i) for u, i in rows if u not in valid]
        train = Interactions.from_arrays([u for u, _ in train_rows], [i for _, i in train_rows])
        model = ImplicitFactorizationModel(random_state=0).fit(train)
        base = []
        for k in HISTORY_SIZES:
            rel = {u: set(by_user[u][k:]) for u in valid}
            pop = {u: model.recommend("", K, exclude_items=by_user[u][:k]).item_ids for u in valid}
            base.append(ndcg(pop, rel))
        print(
            f"{name:<14} {'pop':>6} "
            + " ".join(f"{v:>7.4f}" for v in base)
            + f" {np.mean(base):>7.4f}"
        )
        for count in counts:
            foldin.PSEUDO_COUNT = count
            vals = []
            for k in HISTORY_SIZES:
                rel = {u: set(by_user[u][k:]) for u in valid}
                lists = {u: model.recommend_from_history(by_user[u][:k], K).item_ids for u in valid}
                vals.append(ndcg(lists, rel))
            print(
                f"{name:<14} {count:>6g} "
                + " ".join(f"{v:>7.4f}" for v in vals)
                + f" {np.mean(vals):>7.4f}"
            )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
