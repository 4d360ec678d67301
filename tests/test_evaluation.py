"""Split and metrics, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spotlight_sagemaker.core import Interactions, evaluate, random_train_test_split


class Fixed:
    """A scorer with given scores for every (user, item)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.scores[users]


def test_split_is_spotlights_random_split(ml100k_csv):
    data = Interactions.from_csv(ml100k_csv)
    train, test = random_train_test_split(data, 0.2, random_state=42)
    rows = np.arange(len(data))
    np.random.RandomState(42).shuffle(rows)
    assert len(train) == int(0.8 * len(data)) and len(train) + len(test) == len(data)
    assert np.array_equal(test.user_ids, data.user_ids[rows[len(train) :]])
    assert train.user_map is data.user_map
    with pytest.raises(ValueError, match="test_percentage"):
        random_train_test_split(data, 1.5)


def test_metrics_by_hand():
    # 1 user, 6 items; train item 0; test items 2 and 5.
    train = Interactions.from_arrays(["u"] * 6, list("abcdef")).subset(np.array([0]))
    test = train.subset(np.array([0]))
    test = Interactions(np.array([0, 0]), np.array([2, 5]), train.user_map, train.item_map)
    # scores: a (train) highest, then c, b, f, d, e
    scores = np.array([[9.0, 7.0, 8.0, 3.0, 2.0, 5.0]])
    r = evaluate(Fixed(scores), test, train, k=2)
    # top-2 among non-train: c (hit), b (miss)
    assert r["precision@2"] == pytest.approx(0.5)
    assert r["recall@2"] == pytest.approx(0.5)
    assert r["ndcg@2"] == pytest.approx(1.0 / (1.0 + 1.0 / math.log2(3)))
    # ranks among non-train items: c=1, f=3 -> MRR = (1 + 1/3) / 2
    assert r["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert r["coverage@2"] == pytest.approx(2 / 6)


def test_mrr_averages_ties():
    base = Interactions.from_arrays(["u"] * 3, list("abc"))
    test = base.subset(np.array([1]))  # item b
    r = evaluate(Fixed(np.array([[1.0, 1.0, 1.0]])), test, None, k=1)
    assert r["mrr"] == pytest.approx(1 / 2)  # three-way tie: rank (1 + 3) / 2 = 2


def test_ndcg_at_k_is_evaluates_ndcg_from_the_top_k_alone(ml100k_csv):
    """The per-epoch early-stopping score equals core.evaluate's ndcg@10 (train items excluded),
    with and without the popularity prior, and counts a test row also in train as irrelevant."""
    from spotlight_sagemaker.core import ImplicitFactorizationModel, Interactions
    from spotlight_sagemaker.core.evaluation import ndcg_at_k

    data = Interactions.from_csv(ml100k_csv)
    train, test = random_train_test_split(data, 0.2, random_state=42)
    model = ImplicitFactorizationModel(n_iter=2, embedding_dim=16, random_state=0, device="cpu")
    model.fit(train)
    for prior in (0.0, 0.3):
        model.set_popularity_prior(prior)
        want = evaluate(model, test, train)["ndcg@10"]
        assert ndcg_at_k(model, test, 10) == pytest.approx(want, abs=1e-9)
    overlap = test.subset(np.arange(len(test)))  # the same rows, plus train rows below
    both = Interactions(
        np.concatenate([overlap.user_ids, train.user_ids[:500]]),
        np.concatenate([overlap.item_ids, train.item_ids[:500]]),
        test.user_map,
        test.item_map,
    )
    assert ndcg_at_k(model, both, 10) == pytest.approx(
        evaluate(model, both, train)["ndcg@10"], abs=1e-9
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_scores_never_give_impossible_metrics(bad):
    """A diverged model's NaN scores used to rank at 0.5 (MRR 2.0); every metric stays <= 1."""
    everything = Interactions.from_arrays(["u", "u", "v", "v"], ["a", "c", "b", "d"])
    test = Interactions(
        np.array([0, 1]), np.array([2, 3]), everything.user_map, everything.item_map
    )
    train = Interactions(np.array([0, 1]), np.array([0, 1]), test.user_map, test.item_map)
    all_bad = evaluate(Fixed(np.full((2, 4), bad)), test, train, k=2)
    for name in ("precision@2", "recall@2", "ndcg@2", "mrr"):
        assert 0.0 <= all_bad[name] <= 1.0, (name, all_bad[name])
    if not bad > 0:  # nothing finite-and-high: no hits at all
        assert all_bad["ndcg@2"] == 0.0
    scores = np.array([[0.0, 0.0, bad, 1.0], [0.0, 0.0, 2.0, bad]])
    mixed = evaluate(Fixed(scores), test, train, k=2)
    assert 0.0 <= mixed["mrr"] <= 1.0 and 0.0 <= mixed["ndcg@2"] <= 1.0
