"""Candidate ranking, filters and recommendations from a history: the core API, the artifact
round trip and inference.py's handler functions, on a real artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spotlight_sagemaker._entry_points import inference
from test_inference_handler import _ENV  # the serving variables a test may set

from spotlight_sagemaker.core import (
    ImplicitFactorizationModel,
    Interactions,
    UnknownIdError,
)
from spotlight_sagemaker.core.queries import IndexQuery

JSONL, JSON, CSV = "application/jsonlines", "application/json", "text/csv"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def model(trained_model_dir) -> ImplicitFactorizationModel:
    return ImplicitFactorizationModel.load(trained_model_dir, device="cpu")


@pytest.fixture(scope="module")
def served(trained_model_dir):
    return inference.model_fn(str(trained_model_dir))


def _seen(model, user: str) -> set[str]:
    u = int(model.user_map.lookup([user])[0])
    indptr, indices = model.seen
    return set(model.item_map.ids[indices[indptr[u] : indptr[u + 1]]].tolist())


def _scores(model, user: str, items: list[str]) -> list[float]:
    u = int(model.user_map.lookup([user])[0])
    return model.predict(u, model.item_map.lookup(items)).tolist()


# ---------------------------------------------------------------------------- core API
def test_candidates_are_ranked_with_the_model_scores_and_unknown_ones_reported(model):
    seen = sorted(_seen(model, "685"))
    cands = ["50", "172", "1", "not-an-item", seen[0]]
    rec = model.recommend("685", items=cands)
    assert rec.unknown_items == ("not-an-item",)
    assert sorted(rec.item_ids) == sorted(["50", "172", "1", seen[0]])  # seen kept: the list
    assert rec.scores == sorted(rec.scores, reverse=True)
    assert rec.scores == pytest.approx(_scores(model, "685", rec.item_ids), abs=1e-5)
    top2 = model.recommend("685", 2, items=cands)
    assert top2.item_ids == rec.item_ids[:2]
    unseen = model.recommend("685", items=cands, exclude_seen=True)
    assert seen[0] not in unseen.item_ids and len(unseen.item_ids) == 3


def test_filters_hold_and_never_give_more_than_asked(model):
    plain = model.recommend("685", 10)
    excl = model.recommend("685", 10, exclude_items=plain.item_ids[:3])
    assert not set(excl.item_ids) & set(plain.item_ids[:3])
    assert len(excl.item_ids) == 10
    assert excl.item_ids[:7] == plain.item_ids[3:]
    allowed = plain.item_ids[5:] + ["50", "1"] + sorted(_seen(model, "685"))[:3]
    inc = model.recommend("685", 4, include_items=allowed, exclude_items=[plain.item_ids[5]])
    assert len(inc.item_ids) == 4
    assert set(inc.item_ids) <= set(allowed) - {plain.item_ids[5]} - _seen(model, "685")
    few = model.recommend("685", 10, include_items=["50", "1"])
    assert len(few.item_ids) <= 2  # never more than the filters leave


def test_unknown_users_get_popular_items_through_the_filters(model):
    pop = model.recommend("nobody", 5)
    assert pop.fallback
    rec = model.recommend("nobody", 3, exclude_items=pop.item_ids[:1])
    assert rec.fallback and rec.item_ids == pop.item_ids[1:4]
    assert model.recommend("nobody", 3, include_items=["50"], unknown="skip") is None
    with pytest.raises(UnknownIdError):
        model.recommend("nobody", 3, exclude_items=["50"], unknown="error")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"items": []}, "items must hold at least one"),
        ({"include_items": []}, "include_items must hold at least one"),
        ({"items": ["50", "50"]}, "items holds '50' more than once"),
        ({"exclude_items": "50"}, "must be a sequence"),
    ],
)
def test_bad_lists_are_refused(model, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        model.recommend("685", 5, **kwargs)


def test_a_history_recovers_the_trained_user_and_excludes_itself(model):
    """Folding in a training user's own items gives back (nearly) the ranking of the vector
    training learned for them: the fold-in solves the training objective for that user."""
    overlaps = []
    for user in ("685", "302", "1", "200", "500"):
        history = sorted(_seen(model, user))
        rec = model.recommend_from_history(history, 10)
        assert not set(rec.item_ids) & set(history)
        assert len(rec.item_ids) == 10 and rec.scores == sorted(rec.scores, reverse=True)
        overlaps.append(len(set(rec.item_ids) & set(model.recommend(user, 10).item_ids)))
    assert np.mean(overlaps) >= 6, overlaps
    again = model.recommend_from_history(sorted(_seen(model, "685")), 10)
    assert again == model.recommend_from_history(sorted(_seen(model, "685")), 10)


def test_a_history_beats_popularity_for_a_clear_taste(model):
    """A history of one user's items ranks that user's other items above what popularity
    ranks them (the bench measures it properly on hidden users)."""
    seen = sorted(_seen(model, "685"))
    half, rest = seen[: len(seen) // 2], set(seen[len(seen) // 2 :])
    rec = model.recommend_from_history(half, 20)
    pop = model.recommend_from_history(["not-an-item"], 20)  # nothing known: the fallback
    assert pop.fallback and not rec.fallback
    assert len(set(rec.item_ids) & rest) >= len(set(pop.item_ids) & rest)


def test_history_edge_cases(model):
    rec = model.recommend_from_history(["50", "not-an-item"], 5, query_id="visitor")
    assert rec.query_id == "visitor" and "50" not in rec.item_ids and not rec.fallback
    assert model.recommend_from_history(["x"], 3, unknown="skip") is None
    with pytest.raises(UnknownIdError):
        model.recommend_from_history(["x"], 3, unknown="error")
    with pytest.raises(ValueError, match="non-empty"):
        model.recommend_from_history([], 3)
    with pytest.raises(ValueError, match="more than once"):
        model.recommend_from_history(["50", "50"], 3)
    kept = model.recommend_from_history(["50"], 5, exclude_history=False, include_items=["50"])
    assert kept.item_ids == ["50"]
    cands = model.recommend_from_history(["50"], items=["1", "2", "zz"])
    assert sorted(cands.item_ids) == ["1", "2"] and cands.unknown_items == ("zz",)


def test_a_fold_in_penalises_the_user_vector_as_training_did(model):
    """Training penalises a user's row by l2 x sqrt(l2_balance) per interaction (items by
    l2 / sqrt(l2_balance)); the fold-in solves that user objective: (l2, balance 16) folds in
    the vector (4 x l2, balance 1) does, not the one (l2, balance 1) does."""
    hp = dict(model.hyperparameters)
    histories = [model.item_map.lookup(np.array(sorted(_seen(model, u)))) for u in ("685", "1")]
    try:
        model.hyperparameters.update(l2=0.05, l2_balance=16.0)
        trained_as = model.fold_in_indices(histories)[0]
        model.hyperparameters.update(l2=0.2, l2_balance=1.0)
        same = model.fold_in_indices(histories)[0]
        model.hyperparameters.update(l2=0.05, l2_balance=1.0)
        weaker = model.fold_in_indices(histories)[0]
    finally:
        model.hyperparameters.clear()
        model.hyperparameters.update(hp)
    torch.testing.assert_close(trained_as, same)
    assert float(weaker.norm()) > 1.2 * float(trained_as.norm())


@pytest.mark.parametrize("loss", ["bpr", "pointwise", "hinge", "adaptive_hinge"])
def test_every_loss_folds_in(ml100k_csv, loss):
    data = Interactions.from_csv(ml100k_csv)
    m = ImplicitFactorizationModel(
        loss=loss, n_iter=2, embedding_dim=8, random_state=0, device="cpu", batch_size=4096
    ).fit(data)
    rec = m.recommend_from_history(["50", "172", "181"], 5)
    assert len(rec.item_ids) == 5 and not {"50", "172", "181"} & set(rec.item_ids)
    assert all(np.isfinite(rec.scores))


def test_the_artifact_round_trip_answers_the_same(model, tmp_path):
    model.save(tmp_path)
    back = ImplicitFactorizationModel.load(tmp_path, device="cpu")
    for m in (model, back):
        assert m.recommend_from_history(["50", "172"], 5) == model.recommend_from_history(
            ["50", "172"], 5
        )
        assert m.recommend("685", items=["1", "50"]) == model.recommend("685", items=["1", "50"])


def test_index_queries_refuse_an_unknown_kind(model):
    with pytest.raises(ValueError, match="kind"):
        model.answer([IndexQuery("users", 3, 0)])


# ---------------------------------------------------------------------------- handlers
def _invoke(served, body, content_type=JSONL, accept=CSV) -> bytes:
    data = inference.input_fn(body, content_type)
    return inference.output_fn(inference.predict_fn(data, served), accept)[0]


def _rows(body: bytes) -> list[list[str]]:
    return [line.split(",") for line in body.decode().split("\n")] if body else []


def test_handler_ranks_candidates_and_reports_unknown_ones_last(served, model):
    body = b'{"user_id": "685", "items": ["50", "zz", "172", "1"]}'
    rows = _rows(_invoke(served, body))
    expected = model.recommend("685", items=["50", "zz", "172", "1"])
    assert [r[1] for r in rows] == [*expected.item_ids, "zz"]
    assert rows[-1] == ["685", "zz", ""]
    assert [float(r[2]) for r in rows[:-1]] == pytest.approx(expected.scores, abs=1e-6)
    obj = json.loads(_invoke(served, body, accept=JSONL))
    assert obj["items"] == expected.item_ids and obj["unknown_items"] == ["zz"]


def test_handler_candidates_default_to_all_of_them_past_the_top_n_cap(served, monkeypatch):
    monkeypatch.setenv("SPOTLIGHT_MAX_TOP_N", "2")
    monkeypatch.setenv("SPOTLIGHT_DEFAULT_TOP_N", "2")
    rows = _rows(_invoke(served, b'{"user_id": "685", "items": ["50", "172", "1"]}'))
    assert len(rows) == 3


def test_handler_filters_in_every_content_type(served, model):
    expected = model.recommend(
        "685", 3, exclude_items=["313"], include_items=["313", "50", "1", "2", "3"]
    )
    bodies = [
        (
            b'{"user_id": "685", "top_n": 3, "exclude_items": ["313"], '
            b'"include_items": ["313", "50", "1", "2", "3"]}',
            JSONL,
        ),
        (
            b'[{"user_id": 685, "top_n": "3", "exclude_items": ["313"], '
            b'"include_items": ["313", 50, 1, 2, 3]}]',
            JSON,
        ),
        (b"user_id,top_n,exclude_items,include_items\n685,3,313,313|50|1|2|3", CSV),
    ]
    for body, ctype in bodies:
        rows = _rows(_invoke(served, body, ctype))
        assert [r[1] for r in rows] == expected.item_ids, ctype


def test_handler_history_records_in_every_content_type(served, model):
    expected = model.recommend_from_history(["50", "172", "181"], 4)
    bodies = [
        (b'{"history": ["50", "172", "181"], "top_n": 4}', JSONL),
        (b'{"history": [50, 172, 181], "top_n": 4}', JSON),
        (b"history,top_n\n50|172|181,4", CSV),
    ]
    for body, ctype in bodies:
        rows = _rows(_invoke(served, body, ctype))
        assert [r[1] for r in rows] == expected.item_ids, ctype
        assert {r[0] for r in rows} == {""}
        assert [float(r[2]) for r in rows] == pytest.approx(expected.scores, abs=1e-5)
    mixed = (
        b'{"user_id": "685", "top_n": 2}\n{"user_id": "visitor-7", "history": ["50"], '
        b'"top_n": 2}\n{"history": ["zz"], "top_n": 2}'
    )
    out = [json.loads(line) for line in _invoke(served, mixed, accept=JSONL).splitlines()]
    assert out[0]["user_id"] == "685" and out[0]["known"]
    assert out[1]["user_id"] == "visitor-7" and not out[1]["known"] and not out[1]["fallback"]
    assert "50" not in out[1]["items"] and len(out[1]["items"]) == 2
    assert out[2]["user_id"] is None and out[2]["fallback"]  # no known item: the fallback


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"history": []}', "line 1: history is empty"),
        (b'{"user_id": "1", "items": []}', "line 1: items is empty"),
        (b'{"user_id": "1", "exclude_items": "50"}', "exclude_items must be a list"),
        (b'{"user_id": "1", "items": ["50", 50]}', "items holds '50' more than once"),
        (b'{"user_id": "1", "items": [["50"]]}', "every id in items must be"),
        (b'{"item_id": "1", "history": ["50"]}', 'either "item_id" or "history"'),
        (b'{"top_n": 3}', 'missing "user_id" (or "item_id", or "history")'),
        (b'{"user_id": "685", "history": ["50"]}', "user_id '685' is known to the model"),
        (b'{"user_id": "1"}\n{"user_id": "2", "itemz": ["1"]}', "line 2: unknown field(s) 'itemz'"),
    ],
)
def test_handler_bad_lists_are_400s_naming_the_record(served, body, fragment):
    with pytest.raises(inference.HandlerError) as info:
        _invoke(served, body)
    assert info.value.status_code == 400
    assert fragment in info.value.message


def test_handler_list_cap(served, monkeypatch):
    monkeypatch.setenv("SPOTLIGHT_MAX_LIST_ITEMS", "3")
    with pytest.raises(inference.HandlerError) as info:
        _invoke(served, b'{"user_id": "1", "exclude_items": ["1", "2", "3", "4"]}')
    assert info.value.status_code == 400
    assert "exclude_items holds 4 ids, over the limit of 3 (SPOTLIGHT_MAX_LIST_ITEMS)" in (
        info.value.message
    )


def test_handler_unknown_candidates_under_the_error_policy(trained_model_dir, monkeypatch):
    monkeypatch.setenv("SPOTLIGHT_UNKNOWN_ITEM", "error")
    strict = inference.model_fn(str(trained_model_dir))
    with pytest.raises(inference.HandlerError) as info:
        _invoke(strict, b'{"user_id": "1"}\n{"user_id": "1", "items": ["50", "zz"]}')
    assert info.value.status_code == 400
    assert "line 2: unknown item_id 'zz' in items (SPOTLIGHT_UNKNOWN_ITEM=error)" in (
        info.value.message
    )
    monkeypatch.setenv("SPOTLIGHT_UNKNOWN_USER", "error")
    strict = inference.model_fn(str(trained_model_dir))
    with pytest.raises(inference.HandlerError) as info:
        _invoke(strict, b'{"history": ["zz"]}')
    assert "no item of the history is known" in info.value.message


def test_handler_similar_items_take_filters(served, model):
    plain = model.similar_items("50", 3)
    rows = _rows(
        _invoke(
            served,
            f'{{"item_id": "50", "top_n": 3, "exclude_items": ["{plain.item_ids[0]}"]}}'.encode(),
        )
    )
    assert [r[1] for r in rows] == model.similar_items("50", 4).item_ids[1:]
    assert "50" not in [r[1] for r in rows]
