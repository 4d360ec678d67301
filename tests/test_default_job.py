"""The default job as users run it: train.py with no hyperparameters, served by inference.py.

On planted data (users and items in groups; each user has a random part of their group's items),
the best unseen items of a user are their group's other items, held-out rows included, so a job
that served a model trained without its hold-out, or that did not count those rows as seen,
would recommend them back. Every row of the training channel must count as seen.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from spotlight_sagemaker._entry_points import inference
from test_training import environ, opt_ml

from spotlight_sagemaker.container.training.job import EXIT_OK, main
from spotlight_sagemaker.core import ImplicitFactorizationModel

GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP, SHARE = 4, 30, 25, 0.5


def planted_rows(seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.RandomState(seed)
    rows = []
    for g in range(GROUPS):
        items = [f"i{g}-{k}" for k in range(ITEMS_PER_GROUP)]
        for u in range(USERS_PER_GROUP):
            for item in rng.permutation(items)[: int(SHARE * ITEMS_PER_GROUP)]:
                rows.append((f"u{g}-{u}", str(item)))
    rng.shuffle(rows)
    return rows


def as_csv(rows: list[tuple[str, str]]) -> str:
    return "user_id,item_id\n" + "".join(f"{u},{i}\n" for u, i in rows)


def serve_top_n(model_dir: Path, users: list[str], top_n: int) -> list[tuple[str, str]]:
    """(user, item) pairs the handler functions return for every user, as Batch Transform."""
    served = inference.model_fn(str(model_dir))
    body = "\n".join(json.dumps({"user_id": u, "top_n": top_n}) for u in users)
    data = inference.input_fn(body.encode(), "application/jsonlines")
    out, _ = inference.output_fn(inference.predict_fn(data, served), "text/csv")
    pairs = [tuple(line.split(",")[:2]) for line in out.decode().splitlines()]
    assert len(pairs) == len(users) * top_n
    return pairs


def metrics(base: Path) -> dict:
    return json.loads((base / "output" / "data" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, str]]:
    return planted_rows()


def test_default_job_refits_on_every_row_and_never_serves_a_training_row(tmp_path, rows):
    base = opt_ml(tmp_path, {"training": {"t.csv": as_csv(rows)}})
    assert main([], environ(base)) == EXIT_OK
    m = metrics(base)
    chosen = m["epochs"]
    assert chosen["chosen_by"] == "early stopping on validation ndcg@10"
    best = chosen["n_iter"]
    # the chosen epoch is the first best of the recorded validation curve, and the search ran
    # exactly `patience` epochs past it (or to max_epochs)
    curve = {h["epoch"]: h["ndcg@10"] for h in m["validation_history"]}
    assert curve[best] == max(curve.values())
    assert all(v < curve[best] for e, v in curve.items() if e < best)
    assert chosen["epochs_searched"] == min(best + chosen["patience"], chosen["max_epochs"])
    assert m["validated_model"] == {
        "trained_on": "training channel less the hold-out",
        "rows": int(0.9 * len(rows)),  # Spotlight's split: the first int(0.9 n) shuffled rows
        "epochs": best,
        "seed": m["validated_model"]["seed"],
    }
    assert m["refit"] == {"rows": len(rows), "epochs": best}
    assert m["epochs_trained"] == best and m["hyperparameters"]["n_iter"] == best
    # the prior is chosen on the same rows, at the chosen epoch; the metrics are with it
    prior = m["popularity_prior"]
    assert prior["chosen_by"] == "validation ndcg@10"
    assert prior["candidates"][str(prior["value"])] == max(prior["candidates"].values())
    assert m["validation"]["ndcg@10"] == pytest.approx(max(prior["candidates"].values()))
    assert m["hyperparameters"]["popularity_prior"] == prior["value"]
    assert m["data"]["training_rows"] == len(rows)

    model = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert model.epochs_trained == best
    assert model.hyperparameters["popularity_prior"] == prior["value"]
    assert int(model.item_counts.sum()) == len(rows)  # every row is counted as seen

    users = sorted({u for u, _ in rows})
    unseen = GROUPS * ITEMS_PER_GROUP - int(SHARE * ITEMS_PER_GROUP)
    served = serve_top_n(base / "model", users, unseen)
    assert not set(served) & set(rows), "a training-channel row was recommended back"


def test_with_a_validation_channel_it_serves_the_best_epoch_and_its_rows_are_not_seen(
    tmp_path, rows
):
    cut = len(rows) // 10
    train, valid = rows[cut:], rows[:cut]
    base = opt_ml(
        tmp_path,
        {"training": {"t.csv": as_csv(train)}, "validation": {"v.csv": as_csv(valid)}},
    )
    env = environ(base, ("training", "validation"))
    assert main(["--random_state", "4"], env) == EXIT_OK
    m = metrics(base)
    best = m["epochs"]["n_iter"]
    assert m["refit"] is None  # the validated model trained on every training row: served
    assert m["validated_model"]["rows"] == len(train) == m["data"]["training_rows"]
    assert m["epochs_trained"] == best < m["epochs"]["epochs_searched"]

    model = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert int(model.item_counts.sum()) == len(train)
    users = sorted({u for u, _ in rows})
    served = set(serve_top_n(base / "model", users, ITEMS_PER_GROUP))
    assert not served & set(train)
    assert served & set(valid), "validation-channel rows must stay recommendable"

    # the served model is the one of the best epoch: the same as training exactly that long
    straight = ImplicitFactorizationModel(n_iter=best, random_state=4, device="cpu")
    straight.fit(model_interactions(base / "input" / "data" / "training"))
    assert torch.equal(straight._net.item_embeddings, model._net.item_embeddings)

    # killed before the artifact was written: the resumed job rebuilds the best epoch's model
    for f in (base / "model").iterdir():
        f.unlink()
    assert main(["--random_state", "4"], env) == EXIT_OK
    again = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert again.epochs_trained == best
    assert torch.equal(again._net.item_embeddings, model._net.item_embeddings)


def model_interactions(folder: Path):
    from spotlight_sagemaker.core import Interactions

    return Interactions.from_csv(folder)


def test_an_interrupted_default_job_resumes_to_the_same_model(tmp_path, rows):
    """Stopped early in the search (a smaller max_epochs stands in for the kill), then rerun:
    the validation resumes, chooses the same epochs, and the refit resumes to the same model."""
    csv = as_csv(rows)
    straight = opt_ml(tmp_path / "a", {"training": {"t.csv": csv}})
    resumed = opt_ml(tmp_path / "b", {"training": {"t.csv": csv}})
    seed = ["--random_state", "9"]
    assert main(seed, environ(straight)) == EXIT_OK
    assert main(seed + ["--max_epochs", "3"], environ(resumed)) == EXIT_OK
    assert metrics(resumed)["epochs"]["n_iter"] <= 3
    assert main(seed, environ(resumed)) == EXIT_OK
    a, b = metrics(straight), metrics(resumed)
    assert a["epochs"] == b["epochs"] and a["validation"] == b["validation"]
    ma = ImplicitFactorizationModel.load(straight / "model", device="cpu")
    mb = ImplicitFactorizationModel.load(resumed / "model", device="cpu")
    for name in ("user_embeddings", "item_embeddings", "user_biases", "item_biases"):
        assert torch.equal(getattr(ma._net, name), getattr(mb._net, name)), name

    # killed between the refit's last epoch and the save: nothing is trained again, and the
    # validation report comes from the refit's checkpoint
    for f in (resumed / "model").iterdir():
        f.unlink()
    assert main(seed, environ(resumed)) == EXIT_OK
    assert metrics(resumed)["validation"] == a["validation"]
    assert metrics(resumed)["resumed_from_epoch"] == a["epochs"]["n_iter"]


def test_explicit_n_iter_is_honoured_and_lr_decay_needs_it(tmp_path, rows):
    base = opt_ml(tmp_path, {"training": {"t.csv": as_csv(rows)}})
    assert main(["--n_iter", "4", "--checkpoint_dir", "none"], environ(base)) == EXIT_OK
    m = metrics(base)
    assert m["epochs"]["chosen_by"] == "n_iter" and m["epochs_trained"] == 4
    assert m["refit"] == {"rows": len(rows), "epochs": 4}
    assert main(["--lr_decay", "linear"], environ(base)) == 1
    assert "needs an explicit n_iter" in (base / "output" / "failure").read_text()
