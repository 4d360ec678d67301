"""Quality through the contract: what users run, beside tuned baselines, on every dataset.

    python bench/bench_contract.py [--datasets ml-100k-gt2,lastfm-hetrec,citeulike-a]
                                   [--runs 3] [--data-dir ../shared/data] [--json out.json]

For each dataset (protocol of docs/spotlight-model.md: Spotlight's random 80/20 split with
``RandomState(42)``, train items excluded):

- **ours, the default job**: the training split is written as a CSV training channel and
  ``entry_points/train.py`` runs on it as a subprocess with *no hyperparameters* (so each run
  draws its own seed), ``--runs`` times on a fresh ``/opt/ml`` tree each. The artifact it writes
  is loaded with ``entry_points/inference.py``'s ``model_fn`` and every test user is asked for
  ``{"user_id": ..., "top_n": 10}`` through ``input_fn`` / ``predict_fn`` / ``output_fn``
  (JSON lines in, CSV out, 2,000 records a request). NDCG@10, P@10, coverage@10 and the number
  of training items among the served top-10 lists come from those CSV rows. MRR needs the full
  ranking, which the handler does not return: it is computed from the same served artifact's
  scores (``core.evaluate``). Train seconds are ``timings.train_seconds`` of metrics.json (the
  validated model, the epoch search and the refit); wall seconds include start-up and loading.
- **popularity**, **EASE** (ridge penalty tuned on a validation cut of the training split,
  ``RandomState(43)``, 20%) and **implicit ALS** (factors, regularisation and alpha tuned on the
  same cut), refit on the whole training split and evaluated with ``core.evaluate``.

Everything runs in this one command; the test split is used for nothing but the final numbers.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from baselines import ALS, EASE  # noqa: E402

from spotlight_sagemaker.core import (  # noqa: E402
    ImplicitFactorizationModel,
    Interactions,
    PopularityModel,
    evaluate,
    random_train_test_split,
)

DATASETS = ("ml-100k-gt2", "lastfm-hetrec", "citeulike-a")
EASE_LAMBDAS = (10.0, 20.0, 50.0, 200.0, 500.0, 1000.0)
ALS_GRID = [
    (factors, reg, alpha)
    for factors in (32, 64, 128)
    for reg in (1.0, 10.0)
    for alpha in (1.0, 10.0)
]
REQUEST_RECORDS = 2_000
K = 10


# ---------------------------------------------------------------------- ours, through train.py
def run_default_job(
    train: Interactions, work: Path, hyperparameters: dict | None = None
) -> tuple[Path, dict, float]:
    """``python entry_points/train.py`` on a fresh /opt/ml tree: with no arguments (the default
    job), or ``hyperparameters`` as ``--name value`` arguments, as SageMaker passes them."""
    base = work / "opt_ml"
    train.to_csv(base / "input" / "data" / "training" / "train.csv")
    env = dict(
        os.environ,
        SAGEMAKER_BASE_DIR=str(base),
        SM_CHANNELS='["training"]',
        SM_CHANNEL_TRAINING=str(base / "input" / "data" / "training"),
        SM_MODEL_DIR=str(base / "model"),
        SM_OUTPUT_DIR=str(base / "output"),
        SM_OUTPUT_DATA_DIR=str(base / "output" / "data"),
        SM_NUM_GPUS="0",
    )
    args = [a for k, v in (hyperparameters or {}).items() for a in (f"--{k}", str(v))]
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(REPO / "entry_points" / "train.py"), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"train.py {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    return base / "model", metrics, wall


def served_top10(model_dir: Path, users: list[str]) -> dict[str, list[str]]:
    """Each user's top-10 item ids as the handler functions serve them (CSV rows)."""
    from spotlight_sagemaker._entry_points import inference

    served = inference.model_fn(str(model_dir))
    out: dict[str, list[str]] = {u: [] for u in users}
    for lo in range(0, len(users), REQUEST_RECORDS):
        body = "\n".join(
            json.dumps({"user_id": u, "top_n": str(K)}) for u in users[lo : lo + REQUEST_RECORDS]
        )
        queries = inference.input_fn(body.encode(), "application/jsonlines")
        data, ctype = inference.output_fn(inference.predict_fn(queries, served), "text/csv")
        assert ctype == "text/csv"
        for user, item, _score in csv.reader(io.StringIO(data.decode())):
            out[user].append(item)
    return out


def list_metrics(
    lists: dict[str, list[str]], train: Interactions, test: Interactions
) -> dict[str, float]:
    """NDCG@10, P@10, coverage@10 and seen items of served lists (raw ids), by the protocol."""
    seen = _by_user(train)
    relevant = {u: items - seen.get(u, set()) for u, items in _by_user(test).items()}
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    ndcg = prec = 0.0
    n_seen = 0
    covered: set[str] = set()
    for user, rel in relevant.items():
        top = lists[user]
        n_seen += sum(item in seen.get(user, set()) for item in top)
        covered.update(top)
        hits = np.array([item in rel for item in top[:K]], dtype=float)
        prec += hits.sum() / K
        if rel:
            ideal = discounts[: min(len(rel), K)].sum()
            ndcg += float((hits * discounts[: len(hits)]).sum() / ideal)
    n = len(relevant)
    return {
        "ndcg@10": ndcg / n,
        "precision@10": prec / n,
        "coverage@10": len(covered) / test.num_items,
        "seen_in_top10": n_seen,
    }


def _by_user(inter: Interactions) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    users = inter.user_map.ids[inter.user_ids]
    items = inter.item_map.ids[inter.item_ids]
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        out.setdefault(u, set()).add(i)
    return out


class _OnVocabulary:
    """A served artifact's scores laid out on the protocol's full item vocabulary (items the
    artifact never saw score below every other item, tied, as the baselines' zero columns)."""

    def __init__(self, model: ImplicitFactorizationModel, full: Interactions) -> None:
        self.model = model
        self.user_rows = model.user_map.lookup(full.user_map.ids)
        self.item_cols = model.item_map.lookup(full.item_map.ids)

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        rows = self.user_rows[user_idx]
        scores = np.full((len(user_idx), len(self.item_cols)), -1e30, dtype=np.float32)
        known = rows >= 0
        block = self.model.score_users(rows[known])
        cols = self.item_cols >= 0
        scores[np.ix_(np.flatnonzero(known), np.flatnonzero(cols))] = block[:, self.item_cols[cols]]
        return scores


def ours(full: Interactions, train: Interactions, test: Interactions, runs: int) -> dict:
    users = sorted(_by_user(test))
    per_run = []
    for r in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-contract-") as tmp:
            model_dir, metrics, wall = run_default_job(train, Path(tmp))
            lists = served_top10(model_dir, users)
            row = list_metrics(lists, train, test)
            model = ImplicitFactorizationModel.load(model_dir, device="cpu")
            row["mrr"] = evaluate(_OnVocabulary(model, full), test, train)["mrr"]
            row.update(
                train_s=metrics["timings"]["train_seconds"],
                wall_s=wall,
                seed=metrics["seed"],
                n_iter=metrics["epochs"]["n_iter"] if metrics["epochs"] else None,
                prior=(metrics["popularity_prior"] or {}).get("value"),
            )
            per_run.append(row)
            print(
                f"  run {r + 1}: ndcg@10 {row['ndcg@10']:.4f}, n_iter {row['n_iter']}, "
                f"prior {row['prior']}, seen {row['seen_in_top10']}, "
                f"train {row['train_s']:.1f} s",
                flush=True,
            )
    return _mean(per_run, "ours, default job (train.py, inference.py)")


# ---------------------------------------------------------------------- baselines
def tuned(name: str, train: Interactions, test: Interactions, candidates, build) -> dict:
    fit, val = random_train_test_split(train, 0.2, random_state=43)
    scores = {}
    for c in candidates:
        scores[c] = evaluate(build(fit, c), val, fit)["ndcg@10"]
    best = max(candidates, key=lambda c: scores[c])
    t = time.perf_counter()
    model = build(train, best)
    secs = time.perf_counter() - t
    row = evaluate(model, test, train)
    row.update(train_s=secs, seen_in_top10=0)
    row["model"] = f"{name} {best} (val ndcg@10 {scores[best]:.4f})"
    return row


def _mean(rows: list[dict], label: str) -> dict:
    out = {"model": label, "runs": rows}
    for key in ("ndcg@10", "precision@10", "mrr", "coverage@10", "train_s", "wall_s"):
        out[key] = statistics.fmean(r[key] for r in rows)
    out["ndcg_sd"] = statistics.pstdev(r["ndcg@10"] for r in rows)
    out["seen_in_top10"] = sum(r["seen_in_top10"] for r in rows)
    return out


def dataset(path: Path, runs: int) -> list[dict]:
    full = Interactions.from_csv(path)
    train, test = random_train_test_split(full, 0.2, random_state=42)
    print(f"{path.stem}: {len(full)} rows, {full.num_users} users, {full.num_items} items")
    rows = []
    pop = evaluate(PopularityModel(train), test, train)
    rows.append({**pop, "model": "popularity", "train_s": 0.0, "seen_in_top10": 0})
    t = time.perf_counter()
    rows.append(tuned("EASE lambda", train, test, EASE_LAMBDAS, EASE))
    print(f"  EASE tuned in {time.perf_counter() - t:.0f} s: {rows[-1]['ndcg@10']:.4f}")
    t = time.perf_counter()
    rows.append(tuned("ALS (factors, reg, alpha)", train, test, ALS_GRID, lambda d, c: ALS(d, *c)))
    print(f"  ALS tuned in {time.perf_counter() - t:.0f} s: {rows[-1]['ndcg@10']:.4f}")
    rows.append(ours(full, train, test, runs))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("SPOTLIGHT_DATA_DIR", REPO.parent / "shared" / "data")),
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    results = {}
    for name in args.datasets.split(","):
        results[name] = dataset(args.data_dir / f"{name}.csv", args.runs)
    print()
    print("| dataset | model | NDCG@10 | P@10 | MRR | cov@10 | seen in top-10 | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for r in rows:
            ndcg = f"{r['ndcg@10']:.4f}"
            if "ndcg_sd" in r:
                ndcg += f" ± {r['ndcg_sd']:.4f}"
            print(
                f"| {name} | {r['model']} | {ndcg} | {r['precision@10']:.4f} | {r['mrr']:.4f} "
                f"| {r['coverage@10']:.3f} | {r['seen_in_top10']} | {r['train_s']:.2f} |"
            )
    verdicts = []
    for name, rows in results.items():
        ours_row = rows[-1]
        best_base = max(rows[1:3], key=lambda r: r["ndcg@10"])
        verdicts.append(
            f"{name}: ours {ours_row['ndcg@10']:.4f} vs best of EASE/ALS "
            f"{best_base['ndcg@10']:.4f} ({best_base['model'].split(' (')[0]}): "
            f"{'at or above' if ours_row['ndcg@10'] >= best_base['ndcg@10'] else 'BELOW'}; "
            f"seen items in served top-10: {ours_row['seen_in_top10']}"
        )
    print()
    print("\n".join(verdicts))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
