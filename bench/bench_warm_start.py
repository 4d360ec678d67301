"""Benchmark of warm start (incremental training, issue 16): does starting from the previous
model reach from-scratch quality in fewer epochs?

    python bench/bench_warm_start.py [--data ../shared/data/ml-100k] [--seeds 5] [--epochs 45]

Protocol: MovieLens 100k ratings > 2 (``u.data``, with timestamps), sorted by timestamp (ties in
file order). The oldest 70% of the rows are the "old" data, the next 20% the "new" data, the
newest 10% the test rows; test rows whose user or item never occurs in old + new cannot be
scored and are dropped (counted). Every model uses the package's defaults (``core.DEFAULTS``)
with a seed per run; NDCG@10 on the test rows with each user's old + new items excluded
(``core.evaluation.NdcgAtK``, the metric of ``evaluate``), after every epoch.

- **A, from scratch**: trained on old + new; the baseline, in the same run.
- **B, warm start**: the previous model is trained on old, then ``core.warm_start`` on
  old + new and trained on; epoch 0 is the warm start before any training on old + new. The
  previous model is, with ``--previous job`` (default), what ``train.py`` with no
  hyperparameters serves for the old data (epochs chosen by early stopping on its 10%
  hold-out, then refit on all of old), or, with ``--previous N``, the core's defaults fit on old
  for N epochs.

Printed: both curves (mean over seeds), A's best and final (epoch ``--epochs``) NDCG@10, and the
epochs each needs to reach them. B's training on old is the previous job's cost, already paid.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from spotlight_sagemaker.container.training.job import EXIT_OK
from spotlight_sagemaker.container.training.job import main as train_py
from spotlight_sagemaker.core import (
    ImplicitFactorizationModel,
    Interactions,
    PopularityModel,
    evaluate,
    warm_start,
)
from spotlight_sagemaker.core.evaluation import NdcgAtK

REPO = Path(__file__).resolve().parent.parent


def time_ordered(folder: Path) -> tuple[Interactions, Interactions, Interactions, dict]:
    """(old, old + new, test on old + new's vocabulary, counts) of ``u.data`` ratings > 2."""
    raw = np.loadtxt(folder / "u.data", dtype=np.int64, delimiter="\t")
    raw = raw[raw[:, 2] > 2]
    raw = raw[np.argsort(raw[:, 3], kind="stable")]
    n = len(raw)
    a, b = int(0.7 * n), int(0.9 * n)
    old = Interactions.from_arrays(raw[:a, 0], raw[:a, 1], timestamps=raw[:a, 3])
    both = Interactions.from_arrays(raw[:b, 0], raw[:b, 1], timestamps=raw[:b, 3])
    u = both.user_map.lookup(raw[b:, 0].astype(str))
    i = both.item_map.lookup(raw[b:, 1].astype(str))
    keep = (u >= 0) & (i >= 0)
    test = Interactions(u[keep], i[keep], both.user_map, both.item_map)
    counts = {
        "rows": n,
        "old": a,
        "new": b - a,
        "test_rows": n - b,
        "test_rows_scored": int(keep.sum()),
        "test_users_scored": int(len(np.unique(u[keep]))),
        "test_users_in_old": int(
            (old.user_map.lookup(both.user_map.ids[np.unique(u[keep])]) >= 0).sum()
        ),
        "old_users": old.num_users,
        "old_items": old.num_items,
        "users": both.num_users,
        "items": both.num_items,
    }
    return old, both, test, counts


def curve(
    model: ImplicitFactorizationModel, data: Interactions, scorer: NdcgAtK, epochs: int, warm: bool
) -> tuple[list[float], float]:
    """Test NDCG@10 at epoch 0 (warm start only) and after every epoch; seconds of training."""
    out = [scorer(model)] if warm else [float("nan")]
    seconds = 0.0

    def on_epoch(stats) -> None:
        nonlocal seconds
        seconds += stats.seconds
        out.append(scorer(model))

    if warm:
        model.fit_partial(data, n_iter=epochs, callback=on_epoch)
    else:
        model.fit(data, callback=on_epoch)
    return out, seconds


def previous_model(
    old: Interactions, how: str, seed: int
) -> tuple[ImplicitFactorizationModel, int]:
    """The previous model on ``old`` (see the module docstring) and its epochs."""
    if how != "job":
        model = ImplicitFactorizationModel(random_state=100 + seed, device="cpu", n_iter=int(how))
        return model.fit(old), int(how)
    with tempfile.TemporaryDirectory(prefix="bench-warm-start-") as tmp:
        base = Path(tmp)
        (base / "input" / "data" / "training").mkdir(parents=True)
        old.to_csv(base / "input" / "data" / "training" / "old.csv")
        env = {"SAGEMAKER_BASE_DIR": str(base), "SM_CHANNELS": json.dumps(["training"])}
        with contextlib.redirect_stdout(io.StringIO()):
            code = train_py(["--random_state", str(100 + seed), "--device", "cpu"], env)
        if code != EXIT_OK:
            raise RuntimeError(f"train.py on the old rows exited with {code}")
        model = ImplicitFactorizationModel.load(base / "model", device="cpu")
    return model, model.epochs_trained


def first_reaching(values: list[float], target: float) -> int | None:
    return next((e for e, v in enumerate(values) if v >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-100k")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=45, help="epochs of A and of B on old + new")
    ap.add_argument(
        "--previous",
        default="job",
        help="'job' (train.py's default job on old) or a number of epochs of the core on old",
    )
    args = ap.parse_args()

    old, both, test, counts = time_ordered(args.data)
    print(
        f"ml-100k ratings > 2, time-ordered: {counts['old']} old + {counts['new']} new rows "
        f"({counts['old_users']} -> {counts['users']} users, {counts['old_items']} -> "
        f"{counts['items']} items); test: {counts['test_rows_scored']} of "
        f"{counts['test_rows']} newest rows scorable ({counts['test_users_scored']} users, "
        f"{counts['test_users_in_old']} of them in old)"
    )
    scorer = NdcgAtK(test, both.tocsr(), 10)
    pop = evaluate(PopularityModel(both), test, both)["ndcg@10"]
    a_curves, b_curves, a_secs, b_secs, old_secs, old_epochs = [], [], [], [], [], []
    started = time.perf_counter()
    for seed in range(args.seeds):
        a = ImplicitFactorizationModel(random_state=seed, device="cpu", n_iter=args.epochs)
        values, secs = curve(a, both, scorer, args.epochs, warm=False)
        a_curves.append(values)
        a_secs.append(secs)
        t = time.perf_counter()
        prev, epochs = previous_model(old, args.previous, seed)
        old_secs.append(time.perf_counter() - t)
        old_epochs.append(epochs)
        b = warm_start(prev, both, random_state=seed, device="cpu")
        values, secs = curve(b, both, scorer, args.epochs, warm=True)
        b_curves.append(values)
        b_secs.append(secs)
    mean_a = [statistics.mean(c[e] for c in a_curves) for e in range(args.epochs + 1)]
    mean_b = [statistics.mean(c[e] for c in b_curves) for e in range(args.epochs + 1)]

    how = "train.py's default job" if args.previous == "job" else "the core's defaults"
    print(
        f"previous model: {how} on old, {old_epochs} epochs; its test NDCG@10 is B's epoch 0 "
        "(new users and items at their fresh initialisation)"
    )
    print(f"\ntest NDCG@10, mean of {args.seeds} seeds (popularity: {pop:.4f})\n")
    print("| epoch | A: from scratch on old+new | B: warm start from old, on old+new |")
    print("|---|---|---|")
    for e in range(args.epochs + 1):
        a_txt = "-" if e == 0 else f"{mean_a[e]:.4f}"
        print(f"| {e} | {a_txt} | {mean_b[e]:.4f} |")

    best_epoch = int(np.nanargmax(mean_a))
    best, final = mean_a[best_epoch], mean_a[args.epochs]
    print(
        f"\nA: best {best:.4f} at epoch {best_epoch}, final (epoch {args.epochs}) {final:.4f}; "
        f"B: best {max(mean_b):.4f} at epoch {int(np.argmax(mean_b))}, "
        f"final {mean_b[args.epochs]:.4f}"
    )
    behind = next((e for e in range(1, args.epochs + 1) if mean_b[e] < mean_a[e]), None)
    print(f"B is ahead of A at every epoch before epoch {behind}" if behind else "B always ahead")
    print("\n| target | A needs | B needs |")
    print("|---|---|---|")
    for name, target in (
        (f"A's best ({best:.4f})", best),
        (f"A's final ({final:.4f})", final),
        (f"99% of A's best ({0.99 * best:.4f})", 0.99 * best),
    ):
        a_need, b_need = first_reaching(mean_a[1:], target), first_reaching(mean_b, target)
        a_txt = "never" if a_need is None else f"{a_need + 1} epochs"
        b_txt = "never" if b_need is None else f"{b_need} epochs"
        print(f"| {name} | {a_txt} | {b_txt} |")
    print(
        f"\nper-seed final NDCG@10: A {[round(c[-1], 4) for c in a_curves]}, "
        f"B {[round(c[-1], 4) for c in b_curves]}"
    )
    print(
        f"seconds of training per run: A {statistics.mean(a_secs):.2f}, B on old+new "
        f"{statistics.mean(b_secs):.2f} (+ the previous model {statistics.mean(old_secs):.2f}, "
        f"already paid); whole bench {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
