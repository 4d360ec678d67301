"""The validation-cut runs that chose the defaults' l2 rule, dimension and learning rate.

    python bench/validation_cuts.py OUT.jsonl 'ml-100k-gt2.csv|{"l2": 0.05}' ...

Each argument is ``dataset|JSON hyperparameters``. The protocol's training split of the dataset
(``RandomState(42)``, 80%) is cut again (``RandomState(43)``, 20%); the model (core, seed 0)
trains on the rest with early stopping on the cut's NDCG@10 (patience 5, at most 150 epochs),
and at the best epoch the popularity priors 0, 0.15, 0.3 and 0.5 are scored. The test split is
never read. One JSON line per run goes to OUT.jsonl (with the per-epoch curve) and stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from spotlight_sagemaker.core import (
    ImplicitFactorizationModel,
    Interactions,
    random_train_test_split,
)
from spotlight_sagemaker.core.evaluation import NdcgAtK

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SPOTLIGHT_DATA_DIR", REPO.parent / "shared" / "data"))
_CUTS: dict[str, tuple[Interactions, Interactions]] = {}


def cut(name: str) -> tuple[Interactions, Interactions]:
    if name not in _CUTS:
        full = Interactions.from_csv(DATA / name)
        train, _test = random_train_test_split(full, 0.2, random_state=42)
        _CUTS[name] = random_train_test_split(train, 0.2, random_state=43)
    return _CUTS[name]


def run(name, hp, max_epochs=150, patience=5, seed=0, priors=(0.0, 0.15, 0.3, 0.5)) -> dict:
    fit, val = cut(name)
    m = ImplicitFactorizationModel(random_state=seed, device="cpu", n_iter=max_epochs, **hp)
    hist: list[float] = []
    best = {"e": 0, "v": -1.0, "p": None}
    scorer: list = []

    def on_epoch(stats) -> bool:
        if not scorer:
            scorer.append(NdcgAtK(val, m.seen, 10))
        v = scorer[0](m)
        hist.append(round(v, 4))
        if v > best["v"]:
            params = {k: x.clone() for k, x in m._net.state_dict().items()}
            best.update(e=stats.epoch, v=v, p=params)
        return stats.epoch - best["e"] >= patience

    t = time.perf_counter()
    m.fit(fit, callback=on_epoch)
    secs = time.perf_counter() - t
    m._net.load_state_dict(best["p"])
    by_prior = {}
    for c in priors:
        m.set_popularity_prior(c)
        by_prior[c] = round(scorer[0](m), 4)
    return {
        "ds": name,
        "hp": hp,
        "l2_used": m.hyperparameters["l2"],
        "best_epoch": best["e"],
        "ndcg": round(best["v"], 4),
        "secs": round(secs, 1),
        "priors": by_prior,
        "hist": hist,
    }


if __name__ == "__main__":
    with open(sys.argv[1], "a", encoding="utf-8") as out:
        for spec in sys.argv[2:]:
            ds, hp_json = spec.split("|", 1)
            r = run(ds, json.loads(hp_json))
            print(json.dumps({k: v for k, v in r.items() if k != "hist"}), flush=True)
            out.write(json.dumps(r) + "\n")
