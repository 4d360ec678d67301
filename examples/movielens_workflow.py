"""MovieLens 100k end to end with SpotlightEstimator: train, batch-recommend, evaluate, plot.

The script version of ``spotlight_implicit_factorization.ipynb``. One switch, ``--mode``, picks
where the jobs run: ``local`` (default: this machine, no Docker, no AWS account) or ``aws``
(SageMaker training and Batch Transform; needs ``--role`` and uses ``--bucket`` or the session's
default bucket). Steps:

1. get MovieLens 100k (``--data-dir``, else download from GroupLens, checksum-verified, cached)
   and prepare ratings > 2 as ``user_id,item_id`` (82,520 rows), plus the evaluation protocol's
   80/20 split (numpy ``RandomState(42)``);
2. train on the 80% with the package's default hyperparameters and evaluate the artifact
   against popularity on the 20% (precision@10, recall@10, NDCG@10, MRR, coverage@10);
3. train on all rows and Batch-Transform the requests ``{"user_id": "685", "top_n": "5"}`` and
   ``{"user_id": "302", "top_n": "5"}``;
4. join titles (``u.item``), show each user's best-rated films, plot the training curves.

Outputs (``--output-dir``, default ``examples/output``): ``recommendations.csv``,
``metrics.json``, ``training_curve.png`` and the jobs' files under ``spotlight-local/``.

    python examples/movielens_workflow.py --data-dir ../shared/data/ml-100k
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
USERS = ("685", "302")
TOP_N = 5
SPLIT_SEED = 42


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--mode",
        choices=("local", "aws"),
        default=os.environ.get("MODE", "local"),
        help="where the jobs run (default: local)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with MovieLens 100k (u.data, u.item); default: download + cache",
    )
    p.add_argument("--cache-dir", default=None, help="download cache (default ~/.cache/...)")
    p.add_argument("--output-dir", default=str(HERE / "output"))
    p.add_argument("--n-iter", type=int, default=None, help="epochs (default: the package default)")
    p.add_argument("--seed", type=int, default=42, help="random_state of both trainings")
    p.add_argument("--role", default=None, help="IAM role ARN (aws mode)")
    p.add_argument("--bucket", default=None, help="S3 bucket for data and outputs (aws mode)")
    p.add_argument(
        "--instance-type",
        default=None,
        help="default: 'local' in local mode, ml.m5.xlarge in aws mode",
    )
    p.add_argument("--skip-evaluation", action="store_true", help="only train and recommend")
    return p.parse_args(argv)


class Progress:
    """Prints numbered steps with elapsed times."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def step(self, text: str) -> None:
        self.n += 1
        print(
            f"\n[{self.n}/{self.total}] {text} (t={time.perf_counter() - self.t0:.0f}s)", flush=True
        )


def make_session(args: argparse.Namespace, output: Path) -> Any:
    """The SageMaker session of ``--mode``: the embedded local one or a real one."""
    if args.mode == "local":
        from spotlight_sagemaker.local import local_session

        return local_session("local", root=output / "spotlight-local")
    import sagemaker

    return sagemaker.Session(default_bucket=args.bucket)


def fetch(uri: str, dest: Path, session: Any) -> Path:
    """A local copy of a job output (in local mode the file itself; on AWS a download)."""
    if getattr(session, "local_mode", False):
        return session.local_path(uri)
    from sagemaker.s3 import S3Downloader

    dest.mkdir(parents=True, exist_ok=True)
    S3Downloader.download(uri, str(dest), sagemaker_session=session)
    return dest / uri.rstrip("/").rsplit("/", 1)[-1]


def train(args: argparse.Namespace, session: Any, data: Path, name: str) -> Any:
    """Fit a SpotlightEstimator with the package defaults on ``data``: the default job picks
    its epochs and prior on a 10% hold-out, then refits on every row (docs/training.md)."""
    from spotlight_sagemaker import SpotlightEstimator

    instance_type = args.instance_type or ("local" if args.mode == "local" else "ml.m5.xlarge")
    hyperparameters: dict[str, Any] = {"random_state": args.seed}
    if args.n_iter is not None:
        hyperparameters["n_iter"] = args.n_iter
    estimator = SpotlightEstimator(
        role=args.role,
        instance_type=instance_type,
        sagemaker_session=session,
        base_job_name=f"spotlight-{name}",
        hyperparameters=hyperparameters,
    )
    estimator.fit(str(data), logs="All")
    return estimator


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from spotlight_sagemaker import movielens
    from spotlight_sagemaker.core import Interactions, random_train_test_split
    from spotlight_sagemaker.local.workflow import (
        evaluate_against_popularity,
        format_table,
        load_artifact,
        read_transform_output,
    )

    output = Path(args.output_dir).resolve()
    work = output / "data"
    work.mkdir(parents=True, exist_ok=True)
    progress = Progress(6 if not args.skip_evaluation else 5)

    progress.step("MovieLens 100k: prepare ratings > 2 as implicit feedback")
    folder = movielens.fetch_ml100k(args.data_dir, cache_dir=args.cache_dir)
    full_csv = work / "ml-100k-gt2.csv"
    rows = movielens.prepare_interactions(folder, full_csv)
    data = Interactions.from_csv(full_csv)
    print(f"{folder}: {rows:,} rows, {data.num_users:,} users, {data.num_items:,} items")
    titles = movielens.load_titles(folder)
    session = make_session(args, output)

    metrics: dict[str, Any] = {}
    curves: dict[str, list] = {}
    if not args.skip_evaluation:
        progress.step("Train on the protocol's 80% split (RandomState(42))")
        train_part, test_part = random_train_test_split(data, 0.2, random_state=SPLIT_SEED)
        train_csv = work / "train" / "train.csv"
        train_part.to_csv(train_csv)
        evaluator = train(args, session, train_csv, "eval")

        progress.step("Evaluate the artifact against popularity on the 20% test split")
        with tempfile.TemporaryDirectory() as tmp:
            model = load_artifact(fetch(evaluator.model_data, Path(tmp), session))
        curves["trained on 80%"] = [s.loss for s in model.history]
        metrics = evaluate_against_popularity(model, train_part, test_part, k=10)
        keys = ["precision@10", "recall@10", "ndcg@10", "mrr", "coverage@10"]
        print(
            format_table(
                ["model", *keys], [[name, *[m[k] for k in keys]] for name, m in metrics.items()]
            )
        )

    progress.step("Train on all 82,520 rows")
    estimator = train(args, session, full_csv, "ml100k")

    progress.step(f"Batch Transform: top {TOP_N} for users {', '.join(USERS)}")
    requests = work / "requests" / "requests.jsonl"
    requests.parent.mkdir(parents=True, exist_ok=True)
    requests.write_text(
        "".join(json.dumps({"user_id": u, "top_n": str(TOP_N)}) + "\n" for u in USERS)
    )
    transformer = estimator.transformer(
        instance_type=args.instance_type or ("local" if args.mode == "local" else "ml.m5.xlarge")
    )
    transformer.transform(str(requests), wait=True, logs=False)
    out_uri = transformer.output_path.rstrip("/") + "/requests.jsonl.out"
    recs = read_transform_output(fetch(out_uri, work / "transform", session))

    progress.step("Recommendations with titles, the users' history, the training curve")
    table = []
    for user in USERS:
        mine = [r for r in recs if r.user_id == user]
        table += [
            [user, rank, r.item_id, titles.get(r.item_id, "?"), r.score]
            for rank, r in enumerate(mine, 1)
        ]
    print(format_table(["user_id", "rank", "item_id", "title", "score"], table))
    for user in USERS:
        history = movielens.user_history(folder, user, n=5)
        print(f"\nuser {user} rated highest: " + "; ".join(f"{t} ({r})" for _, t, r in history))
    _write_recommendations(output / "recommendations.csv", table)
    with tempfile.TemporaryDirectory() as tmp:
        final = load_artifact(fetch(estimator.model_data, Path(tmp), session))
    curves["trained on 100%"] = [s.loss for s in final.history]
    plot = _plot(curves, output / "training_curve.png")
    summary = {
        "mode": args.mode,
        "rows": rows,
        "metrics": metrics,
        "model_data": estimator.model_data,
        "transform_output": out_uri,
        "recommendations": len(table),
        "training_curve": str(plot),
        "epochs": final.epochs_trained,
        "hyperparameters": final.hyperparameters,
    }
    (output / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nwrote {output / 'recommendations.csv'}, {output / 'metrics.json'}, {plot}")
    print(f"done in {time.perf_counter() - progress.t0:.0f}s")
    return 0


def _write_recommendations(path: Path, table: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["user_id", "rank", "item_id", "title", "score"])
        writer.writerows(table)


def _plot(curves: dict[str, list], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("SpotlightEstimator on MovieLens 100k")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
