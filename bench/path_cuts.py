"""The user's path on validation cuts: choose job defaults through train.py, never on test.

    python bench/path_cuts.py [--datasets ml-100k-gt2] [--cuts 43,44,45] [--runs 3]
        [--data-dir ../shared/data] [--configs '{"default": {}, "b16": {"l2_balance": 16}}']

For each dataset, the protocol's training split (``RandomState(42)``, 80%) is cut again
(``RandomState(cut)``, 20%); ``entry_points/train.py`` runs on the rest as a SageMaker job
would (a training channel, each configuration's hyperparameters as ``--name value`` arguments,
everything else its defaults: the hold-out, early stopping, the refit), and the artifact's
top-10 for every cut user is served by ``inference.py``'s handler functions and scored on the
cut (NDCG@10, seen items). The test split is never read. Prints one row per dataset, cut and
configuration, then the mean over cuts, beside the first configuration (the baseline) of the
same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench_contract import REPO, list_metrics, run_default_job, served_top10

from spotlight_sagemaker.core import Interactions, random_train_test_split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="ml-100k-gt2")
    ap.add_argument("--cuts", default="43,44,45")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("SPOTLIGHT_DATA_DIR", REPO.parent / "shared" / "data")),
    )
    ap.add_argument(
        "--configs",
        default='{"default": {}}',
        help="JSON: name -> train.py hyperparameters; the first is the baseline",
    )
    a = ap.parse_args(argv)
    configs: dict[str, dict] = json.loads(a.configs)
    cuts = [int(c) for c in a.cuts.split(",")]
    table: dict[tuple[str, str], list[float]] = {}
    print("| dataset | cut | configuration | NDCG@10 per run | mean | seen | n_iter chosen |")
    print("|---|---|---|---|---|---|---|")
    for name in a.datasets.split(","):
        full = Interactions.from_csv(a.data_dir / f"{name}.csv")
        train, _test = random_train_test_split(full, 0.2, random_state=42)
        for cut in cuts:
            fit, val = random_train_test_split(train, 0.2, random_state=cut)
            users = sorted(set(val.user_map.ids[val.user_ids].tolist()))
            for label, hp in configs.items():
                scores, seen, epochs = [], 0, []
                for _ in range(a.runs):
                    with tempfile.TemporaryDirectory(prefix="bench-cuts-") as tmp:
                        model_dir, metrics, _wall = run_default_job(fit, Path(tmp), hp)
                        row = list_metrics(served_top10(model_dir, users), fit, val)
                    scores.append(row["ndcg@10"])
                    seen += row["seen_in_top10"]
                    epochs.append((metrics["epochs"] or {}).get("n_iter"))
                mean = statistics.fmean(scores)
                table.setdefault((name, label), []).append(mean)
                runs = ", ".join(f"{s:.4f}" for s in scores)
                print(f"| {name} | {cut} | {label} | {runs} | {mean:.4f} | {seen} | {epochs} |")
                sys.stdout.flush()
    print("\n| dataset | configuration | mean over cuts | against the baseline |")
    print("|---|---|---|---|")
    baseline = next(iter(configs))
    for (name, label), means in table.items():
        diff = statistics.fmean(means) - statistics.fmean(table[(name, baseline)])
        print(f"| {name} | {label} | {statistics.fmean(means):.4f} | {diff:+.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
