"""Recommendations from a history, for users the model never saw, beside popularity.

    python bench/bench_history.py [--datasets ml-100k-gt2,lastfm-hetrec,citeulike-a]
                                  [--hidden 0.2] [--data-dir ../shared/data] [--json out.json]

For each dataset: among the users with at least ``MIN_INTERACTIONS`` interactions, a fraction
(``--hidden``, ``RandomState(42)``) is hidden from training; ``entry_points/train.py`` runs on
the other users' rows as a subprocess with *no hyperparameters* (the default job, as
``bench_contract.py`` runs it). Each hidden user's interactions are ordered (MovieLens by
timestamp, from ``ml-100k/u.data``; the others in file order, which is the source's order) and
their first k (k = 1, 3, 10) are the history; the rest are the relevant items (``--order
random`` shuffles each user's interactions first, ``RandomState(7)``). Every hidden user
is then asked, through ``entry_points/inference.py``'s ``input_fn`` / ``predict_fn`` /
``output_fn`` (JSON lines in, CSV out), for:

- **history**: ``{"user_id": u, "history": [first k], "top_n": 10}`` (a user vector folded in
  from the history, the history excluded);
- **popularity, as served**: ``{"user_id": u, "top_n": 10}``: the unknown-user fallback the
  same model gives without a history (the most popular items, history not excluded);
- **popularity, history excluded**: ``{"user_id": u, "top_n": 10, "exclude_items": [first k]}``
  (the fair baseline: popularity that knows the history).

NDCG@10 (binary relevance, ideal DCG over min(10, relevant) items) on the remaining
interactions, averaged over the hidden users; the same users for every k.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from bench_contract import run_default_job  # noqa: E402

from spotlight_sagemaker.core import Interactions  # noqa: E402

DATASETS = ("ml-100k-gt2", "lastfm-hetrec", "citeulike-a")
HISTORY_SIZES = (1, 3, 10)
MIN_INTERACTIONS = 20  # so that k = 10 leaves at least 10 relevant items
K = 10
REQUEST_RECORDS = 2_000


def ordered_rows(data_dir: Path, name: str) -> list[tuple[str, str]]:
    """(user, item) rows in time order (MovieLens) or in the file's (source) order."""
    with open(data_dir / f"{name}.csv", newline="") as fh:
        rows = [(r["user_id"], r["item_id"]) for r in csv.DictReader(fh)]
    if name == "ml-100k-gt2":
        stamp = {}
        for line in (data_dir / "ml-100k" / "u.data").read_text().splitlines():
            user, item, rating, ts = line.split("\t")
            if int(rating) > 2:
                stamp[(user, item)] = int(ts)
        order = sorted(range(len(rows)), key=lambda i: (stamp[rows[i]], i))
        rows = [rows[i] for i in order]
    return rows


def split(rows: list[tuple[str, str]], hidden_fraction: float, order: str = "source"):
    by_user: dict[str, list[str]] = {}
    for user, item in rows:
        by_user.setdefault(user, []).append(item)
    if order == "random":  # each user's interactions in a random order (RandomState(7))
        shuffle = np.random.RandomState(7)
        by_user = {
            u: [items[i] for i in shuffle.permutation(len(items))] for u, items in by_user.items()
        }
    eligible = sorted(u for u, items in by_user.items() if len(items) >= MIN_INTERACTIONS)
    rng = np.random.RandomState(42)
    hidden = set(rng.choice(eligible, int(round(hidden_fraction * len(eligible))), replace=False))
    train = [(u, i) for u, i in rows if u not in hidden]
    return train, {u: by_user[u] for u in sorted(hidden)}


def ask(served, records: list[dict]) -> dict[str, list[str]]:
    from spotlight_sagemaker._entry_points import inference

    out: dict[str, list[str]] = {r["user_id"]: [] for r in records}
    for lo in range(0, len(records), REQUEST_RECORDS):
        body = "\n".join(json.dumps(r) for r in records[lo : lo + REQUEST_RECORDS]).encode()
        queries = inference.input_fn(body, "application/jsonlines")
        data, _ = inference.output_fn(inference.predict_fn(queries, served), "text/csv")
        for user, item, _score in csv.reader(io.StringIO(data.decode())):
            out[user].append(item)
    return out


def ndcg(lists: dict[str, list[str]], relevant: dict[str, set[str]]) -> float:
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    values = []
    for user, rel in relevant.items():
        gains = np.array([item in rel for item in lists[user][:K]], dtype=float)
        ideal = discounts[: min(K, len(rel))].sum()
        values.append(float((gains * discounts[: len(gains)]).sum() / ideal))
    return float(np.mean(values))


def dataset(data_dir: Path, name: str, hidden_fraction: float, order: str) -> dict:
    from spotlight_sagemaker._entry_points import inference

    rows = ordered_rows(data_dir, name)
    train_rows, hidden = split(rows, hidden_fraction, order)
    train = Interactions.from_arrays([u for u, _ in train_rows], [i for _, i in train_rows])
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, metrics, wall = run_default_job(train, Path(tmp))
        served = inference.model_fn(str(model_dir))
        out = {"dataset": name, "hidden_users": len(hidden), "train_rows": len(train_rows)}
        for k in HISTORY_SIZES:
            hist = {u: items[:k] for u, items in hidden.items()}
            relevant = {u: set(items[k:]) for u, items in hidden.items()}
            t = time.perf_counter()
            folded = ask(
                served, [{"user_id": u, "history": h, "top_n": K} for u, h in hist.items()]
            )
            secs = time.perf_counter() - t
            served_pop = ask(served, [{"user_id": u, "top_n": K} for u in hist])
            fair_pop = ask(
                served, [{"user_id": u, "top_n": K, "exclude_items": h} for u, h in hist.items()]
            )
            out[k] = {
                "history": ndcg(folded, relevant),
                "popularity_served": ndcg(served_pop, relevant),
                "popularity_excluding_history": ndcg(fair_pop, relevant),
                "history_seconds": secs,
            }
        out["train_seconds"] = metrics.get("timings", {}).get("train_seconds", wall)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--hidden", type=float, default=0.2)
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument(
        "--order",
        choices=("source", "random"),
        default="source",
        help="which interactions are a user's first: time (MovieLens) or file order, or random",
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    results = []
    print(
        f"{'dataset':<14} {'k':>3} {'users':>6} {'history':>8} {'pop(served)':>11} "
        f"{'pop(-hist)':>10} {'x pop':>6} {'fold-in s':>9}"
    )
    for name in args.datasets.split(","):
        res = dataset(args.data_dir, name, args.hidden, args.order)
        results.append(res)
        for k in HISTORY_SIZES:
            r = res[k]
            gain = r["history"] / max(r["popularity_excluding_history"], 1e-12)
            print(
                f"{name:<14} {k:>3} {res['hidden_users']:>6} {r['history']:>8.4f} "
                f"{r['popularity_served']:>11.4f} {r['popularity_excluding_history']:>10.4f} "
                f"{gain:>6.2f} {r['history_seconds']:>9.2f}"
            )
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
