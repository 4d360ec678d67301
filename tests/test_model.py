"""The model contract, run against every variant: fresh, reloaded from its artifact, and CUDA.

Data with planted structure: users belong to one of four groups and interact only with their
group's items, so the right answer (recommend unseen items of the user's own group) is known.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spotlight_sagemaker.core import (
    SPOTLIGHT_DEFAULTS,
    DivergedError,
    ImplicitFactorizationModel,
    Interactions,
    NotFittedError,
    UnknownIdError,
    pairdot,
)
from spotlight_sagemaker.core.trainer import (
    Trainer,
    _Order,
    balanced_batches,
    make_optimizer,
    softmax_nll,
)

GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 4, 40, 20


def planted(seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = [], []
    for g in range(GROUPS):
        for u in range(USERS_PER_GROUP):
            chosen = rng.choice(ITEMS_PER_GROUP, size=ITEMS_PER_GROUP // 2, replace=False)
            users += [f"u{g}-{u}"] * len(chosen)
            items += [f"i{g}-{i}" for i in chosen]
    return Interactions.from_arrays(users, items)


def group(raw: str) -> str:
    return raw[1:].split("-")[0]


@pytest.fixture(scope="module")
def data() -> Interactions:
    return planted()


@pytest.fixture(scope="module")
def fresh(data) -> ImplicitFactorizationModel:
    return ImplicitFactorizationModel(n_iter=30, batch_size=128, random_state=7, device="cpu").fit(
        data
    )


@pytest.fixture(scope="module")
def reloaded(fresh, tmp_path_factory) -> ImplicitFactorizationModel:
    folder = tmp_path_factory.mktemp("artifact")
    fresh.save(folder)
    return ImplicitFactorizationModel.load(folder, device="cpu")


@pytest.fixture(scope="module")
def on_cuda(data) -> ImplicitFactorizationModel:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return ImplicitFactorizationModel(n_iter=30, batch_size=128, random_state=7, device="cuda").fit(
        data
    )


@pytest.fixture(params=["fresh", "reloaded", "on_cuda"])
def model(request) -> ImplicitFactorizationModel:
    return request.getfixturevalue(request.param)


# ------------------------------------------------------------------ the contract suite
def test_recommends_unseen_items_of_the_users_group(model, data):
    users = data.user_map.to_list()
    recs = model.recommend(users, n=5)
    indptr, indices = data.tocsr()
    in_group = 0
    for r in recs:
        u = data.user_map.get(r.query_id)
        seen = set(data.item_map.ids[indices[indptr[u] : indptr[u + 1]]].tolist())
        assert not seen & set(r.item_ids)
        assert r.scores == sorted(r.scores, reverse=True)
        in_group += sum(group(i) == group(r.query_id) for i in r.item_ids)
    assert in_group / (5 * len(users)) >= 0.9


def test_batch_equals_scalar(model, data):
    users = data.user_map.to_list()[::7]
    batch = model.recommend(users, n=8)
    for b, u in zip(batch, users, strict=True):
        one = model.recommend(u, n=8)
        assert one.item_ids == b.item_ids
        assert np.allclose(one.scores, b.scores)


def test_exclude_seen_false_ranks_seen_items_first(model, data):
    user = data.user_map.ids[0]
    top = model.recommend(user, n=ITEMS_PER_GROUP // 2, exclude_seen=False)
    indptr, indices = data.tocsr()
    seen = set(data.item_map.ids[indices[indptr[0] : indptr[1]]].tolist())
    assert len(seen & set(top.item_ids)) >= 0.8 * len(seen)


def test_n_larger_than_catalogue_returns_every_unseen_item(model, data):
    rec = model.recommend(data.user_map.ids[0], n=10_000)
    assert len(rec.item_ids) == data.num_items - ITEMS_PER_GROUP // 2


def test_unknown_users(model):
    fallback = model.recommend(["nobody", "u0-0"], n=3)
    assert fallback[0].fallback and len(fallback[0].item_ids) == 3
    assert not fallback[1].fallback
    assert [r.query_id for r in model.recommend(["nobody", "u0-0"], n=3, unknown="skip")] == [
        "u0-0"
    ]
    assert model.recommend("nobody", n=3, unknown="skip") is None
    with pytest.raises(UnknownIdError, match="nobody"):
        model.recommend(["u0-0", "nobody"], n=3, unknown="error")
    # one vocabulary with serving's SPOTLIGHT_UNKNOWN_USER; the older spelling still works
    assert model.recommend("nobody", n=3, unknown="fallback") == fallback[0]
    assert model.recommend("nobody", n=3, unknown="popular") == fallback[0]
    assert model.similar_items("nowhere", n=2, unknown="fallback").fallback


def test_similar_items_stay_in_group(model, data):
    sims = model.similar_items(["i0-0", "i2-3"], n=5)
    for s in sims:
        assert s.query_id not in s.item_ids
        assert sum(group(i) == group(s.query_id) for i in s.item_ids) >= 4
    assert model.similar_items("no-such-item") is None


def test_predict_matches_recommend_scores(model, data):
    rec = model.recommend("u1-3", n=3)
    u = data.user_map.get("u1-3")
    scores = model.predict(u)
    assert np.allclose(scores[[data.item_map.get(i) for i in rec.item_ids]], rec.scores, atol=1e-5)


# ------------------------------------------------------------------ training behaviour
def test_seeded_runs_are_reproducible_and_fit_starts_fresh(data):
    a = ImplicitFactorizationModel(n_iter=3, random_state=3, device="cpu").fit(data)
    b = ImplicitFactorizationModel(n_iter=3, random_state=3, device="cpu").fit(data)
    assert np.array_equal(a.score_users(np.arange(5)), b.score_users(np.arange(5)))
    a.fit(data)  # fresh start: identical to a single fit
    assert a.epochs_trained == 3
    assert np.array_equal(a.score_users(np.arange(5)), b.score_users(np.arange(5)))
    b.fit_partial(data, n_iter=2)  # explicit continuation
    assert b.epochs_trained == 5 and len(b.history) == 5


@pytest.mark.parametrize("loss", ["pointwise", "bpr", "hinge", "adaptive_hinge", "softmax"])
def test_every_loss_learns_and_survives_a_batch_of_one(data, loss):
    # a batch of one interaction (one user for the grouped softmax): the case that crashes
    # Spotlight. Batches are near-equal now, so len(data) % batch_size == 1 no longer makes one;
    # three interactions at batch_size=1 are three batches of one, and one user with one item
    # is a grouped batch of one.
    for rows in (np.arange(3), np.array([0])):
        tiny = data.subset(rows)
        m = ImplicitFactorizationModel(
            loss=loss, n_iter=2, batch_size=1, random_state=0, device="cpu"
        )
        m.fit(tiny)
        assert all(np.isfinite(h.loss) for h in m.history)
    small = ImplicitFactorizationModel(
        loss=loss,
        n_iter=40,
        batch_size=64,
        random_state=0,
        learning_rate=0.05,
        device="cpu",
        # the hinge losses diverge at this learning rate without a little weight decay
        embedding_dim=96,
        l2=1e-4,
        l2_rule="weight_decay",
    ).fit(data)
    assert small.history[-1].loss < small.history[0].loss


def test_popularity_prior_shifts_scores_but_never_training(data, tmp_path):
    kw = dict(n_iter=3, embedding_dim=8, random_state=4, device="cpu")
    plain = ImplicitFactorizationModel(popularity_prior=0, **kw).fit(data)
    tilted = ImplicitFactorizationModel(popularity_prior=0.5, **kw).fit(data)
    for (name, a), b in zip(plain._net.named_parameters(), tilted._net.parameters(), strict=True):
        assert torch.equal(a, b), name  # the training loss never saw the prior
    shift = (0.5 * np.log1p(data.item_counts())).astype(np.float32)
    users = np.arange(data.num_users)
    assert np.allclose(tilted.score_users(users), plain.score_users(users) + shift, atol=1e-5)
    pairs = np.array([1, 5, 9])
    assert np.allclose(tilted.predict(0, pairs), plain.predict(0, pairs) + shift[pairs], atol=1e-5)
    top_i, top_s = tilted.recommend_indices(users[:3], 5)
    assert np.allclose(top_s, np.take_along_axis(tilted.score_users(users[:3]), top_i, 1))
    assert np.allclose(
        tilted.set_popularity_prior(0).score_users(users), plain.score_users(users), atol=1e-6
    )
    tilted.set_popularity_prior("0.5")  # strings, as SageMaker sends hyperparameters
    tilted.save(tmp_path)
    again = ImplicitFactorizationModel.load(tmp_path, device="cpu")
    assert np.array_equal(again.score_users(users), tilted.score_users(users))
    with pytest.raises(ValueError, match="'popularity_prior' must be a number"):
        ImplicitFactorizationModel(popularity_prior="strong")


@pytest.mark.parametrize(
    ("sizes", "batch_size", "max_rows"),
    [
        ([5] * 33, 16, 1000),  # 165 interactions: greedy cutting leaves a remainder of 5
        ([1] * 4097, 4096, 10_000),  # the batch-of-one case
        ([70, 1, 1, 2, 90, 3, 3, 3, 1, 200, 4], 64, 1000),  # rows larger than a batch
        ([2] * 50, 1000, 7),  # the per-step row cap splits the only batch
        ([3], 1, 10),
    ],
)
def test_balanced_batches_cover_every_row_once_in_even_batches(sizes, batch_size, max_rows):
    sizes = np.asarray(sizes)
    batches = balanced_batches(sizes, batch_size, max_rows)
    assert [lo for lo, _ in batches] == [0] + [hi for _, hi in batches[:-1]]
    assert batches[-1][1] == len(sizes) and all(lo < hi <= lo + max_rows for lo, hi in batches)
    totals = [int(sizes[lo:hi].sum()) for lo, hi in batches]
    if max_rows >= len(sizes) and sizes.max() <= batch_size:
        assert len(batches) == -(-int(sizes.sum()) // batch_size)
        assert max(totals) - min(totals) <= 2 * sizes.max()  # no small remainder batch
    assert balanced_batches(np.array([], dtype=np.int64), 8, 8) == []


def test_sampled_softmax_on_a_catalogue_larger_than_its_negatives(data):
    m = ImplicitFactorizationModel(
        loss="softmax", n_iter=30, softmax_negatives=16, random_state=0, device="cpu"
    )
    m.fit(data)  # 80 items, 16 shared negatives per step: the sampled path
    assert m.hyperparameters["softmax_negatives"] == 16
    assert all(np.isfinite(h.loss) for h in m.history)
    users = data.user_map.to_list()
    recs = m.recommend(users, n=5)
    in_group = sum(group(i) == group(r.query_id) for r in recs for i in r.item_ids)
    assert in_group / (5 * len(users)) >= 0.9  # the planted groups, as the exact softmax


def _step(hp: dict, data: Interactions, seed: int = 0):
    """A trainer and the softmax losses of one step over every user, drawn with ``seed``."""
    m = ImplicitFactorizationModel(**hp, random_state=0, device="cpu", n_iter=0).fit(data)
    hp = {**m.hyperparameters}
    gen = torch.Generator().manual_seed(seed)
    net = m._net.train()
    t = Trainer(net, make_optimizer(net.parameters(), hp), data, hp, gen, torch.device("cpu"))
    width = min(hp["softmax_negatives"], data.num_items)
    cand = None if width >= data.num_items else t._negatives(width)
    return t, _step_on(t, cand)


def test_sampled_softmax_estimates_the_exact_softmax():
    """Shared negatives (half uniform, half by popularity) weighted by their inverse draw
    probability: exp of the sampled log-sum-exp is an unbiased estimate of the exact one, so the
    mean over many draws of exp(loss) - 1 ~ the exact sum of exp(neg - pos) over the catalogue."""
    hp = {"loss": "softmax", "embedding_dim": 8}
    rng = np.random.default_rng(0)  # a skewed catalogue: the popularity half matters
    items = rng.choice(60, size=3000, p=np.arange(1, 61.0) ** -2 / (np.arange(1, 61.0) ** -2).sum())
    pairs = np.unique(np.stack([rng.integers(0, 200, 3000), items], 1), axis=0)
    data = Interactions.from_arrays([f"u{u}" for u in pairs[:, 0]], [f"i{i}" for i in pairs[:, 1]])
    with torch.no_grad():
        t, _ = _step({**hp, "softmax_negatives": 100_000}, data)
        # random but fixed vectors, so the logits are far from equal
        t.net.item_embeddings.normal_(0, 1, generator=torch.Generator().manual_seed(5))
        exact = _step_on(t, None)[0]
        draws = [_step_on(t, t._negatives(21))[0] for _ in range(2000)]  # odd: 11 + 10
    # exact: log(sum_j exp s_j) - s_pos; sampled: log(exp s_pos + sum_k exp s_k / (K q_k)) - s_pos
    z_exact = torch.exp(exact)
    z_sampled = torch.stack([torch.exp(d) - 1 for d in draws]).mean(0) + 1
    rel = (z_sampled - z_exact).abs() / z_exact
    assert float(rel.mean()) < 0.04, float(rel.mean())  # 0.061 with uniform weights


def _step_on(t: Trainer, cand):
    """The softmax losses of one step over every active user, in index order."""
    return t._user_step(_Order(t.active_dev, t.indptr_dev), 0, len(t.active), cand)


@pytest.mark.parametrize("negatives", [16, 100_000])  # sampled, exact
@pytest.mark.parametrize(("l2", "balance"), [(0.0, 16.0), (0.05, 1.0), (0.05, 16.0)])
def test_softmax_penalty_matches_the_per_interaction_rule(data, l2, balance, negatives):
    """The softmax steps compute the L2 penalty from their own lookups: the same sum as the
    per-interaction rule's, sum over interactions of a |p_u|^2 + |q_i|^2 / a with
    a = sqrt(l2_balance), computed here from the tables."""
    hp = {"loss": "softmax", "embedding_dim": 8, "l2": l2, "softmax_negatives": negatives}
    t, (loss, w, penalty) = _step({**hp, "l2_balance": balance}, data)
    assert w is None and len(loss) == len(data)
    if not l2:
        assert penalty is None
        return
    rows, cols = data.tocsr()
    users = np.repeat(np.arange(data.num_users), np.diff(rows))
    expected = t._penalty(torch.from_numpy(users), torch.from_numpy(cols), None)
    torch.testing.assert_close(penalty, expected)
    p = t.net.user_embeddings.detach().double().numpy()
    q = t.net.item_embeddings.detach().double().numpy()
    a = balance**0.5
    by_hand = a * (p[users] ** 2).sum() + (q[cols] ** 2).sum() / a
    assert float(penalty.detach()) == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize("device", ["cpu", "gather"])
def test_pair_dot_matches_the_gathered_product(device, monkeypatch):
    if device == "gather":  # the path other devices (and torch builds without kernels) take
        monkeypatch.setitem(pairdot._SPARSE_KERNELS, "cpu", False)
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(7, 5, generator=gen, requires_grad=True)
    q = torch.randn(11, 5, generator=gen, requires_grad=True)
    counts = torch.tensor([3, 0, 2, 5, 1, 1, 4])
    row = torch.repeat_interleave(torch.arange(7), counts)
    col = torch.randint(0, 11, (len(row),), generator=gen)
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    g = torch.randn(len(row), generator=gen)
    got = pairdot.pair_dot(p, q, crow, row, col)
    (got * g).sum().backward()
    gp, gq = p.grad.clone(), q.grad.clone()
    p.grad = q.grad = None
    want = (p[row] * q[col]).sum(-1)
    (want * g).sum().backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(gp, p.grad)
    torch.testing.assert_close(gq, q.grad)


def test_weights_change_training_only_when_asked():
    users = ["a", "a", "b", "b"]
    items = ["x", "y", "x", "y"]
    heavy = Interactions.from_arrays(users, items, [100.0, 0.01, 100.0, 0.01])
    m = ImplicitFactorizationModel(
        loss="bpr",
        n_iter=50,
        batch_size=4,
        random_state=1,
        use_weights=True,
        negative_sampling="uniform",
        learning_rate=0.05,
        device="cpu",
    ).fit(heavy)
    x, y = heavy.item_map.get("x"), heavy.item_map.get("y")
    s = m.score_users(np.array([0]))[0]
    assert s[x] > s[y]


def test_spotlight_preset_and_hyperparameter_errors():
    m = ImplicitFactorizationModel(preset="spotlight")
    assert m.hyperparameters == SPOTLIGHT_DEFAULTS | {"device": "auto"}
    assert ImplicitFactorizationModel(n_iter="7").n_iter == 7
    with pytest.raises(ValueError, match="'loss' must be one of"):
        ImplicitFactorizationModel(loss="warp")
    with pytest.raises(ValueError, match="'embedding_dim' must be an integer"):
        ImplicitFactorizationModel(embedding_dim="big")
    with pytest.raises(ValueError, match="'learning_rate' must be a number > 0.0"):
        ImplicitFactorizationModel(learning_rate=0)
    with pytest.raises(ValueError, match="unknown hyperparameter 'lr'"):
        ImplicitFactorizationModel(lr=0.1)
    with pytest.raises(ValueError, match="preset must be one of"):
        ImplicitFactorizationModel(preset="lightfm")


def test_unfitted_model_and_wrong_inputs(data):
    m = ImplicitFactorizationModel(device="cpu")
    with pytest.raises(NotFittedError):
        m.recommend("u0-0")
    with pytest.raises(TypeError, match="Interactions"):
        m.fit([("a", "b")])
    m.fit_partial(data, n_iter=1)
    other = Interactions.from_arrays(["zz"], ["yy"])
    with pytest.raises(ValueError, match="vocabularies"):
        m.fit_partial(other)
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        m.recommend("u0-0", n=-1)
    with pytest.raises(ValueError, match="unknown must be one of"):
        m.recommend("u0-0", unknown="ignore")


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        ImplicitFactorizationModel(device="cuda")


@pytest.mark.parametrize("loss", ["bpr", "adaptive_hinge", "softmax"])
def test_sparse_lazy_adam_learns_the_planted_groups(data, loss):
    m = ImplicitFactorizationModel(
        loss=loss,
        sparse=True,
        n_iter=30,
        batch_size=128,
        learning_rate=0.02,
        random_state=2,
        device="cpu",
    ).fit(data)
    recs = m.recommend(data.user_map.to_list(), n=5)
    hits = sum(group(i) == group(r.query_id) for r in recs for i in r.item_ids)
    assert hits / (5 * len(recs)) >= 0.9


@pytest.mark.parametrize("balance", [1.0, 16.0])
@pytest.mark.parametrize("loss", ["softmax", "bpr"])
def test_per_interaction_l2_is_part_of_the_loss_not_adams_weight_decay(data, loss, balance):
    """l2_rule="per_interaction": the epoch's loss is the data loss plus l2 x the mean of
    a |p_u|^2 + |q_i|^2 / a over the interactions (a = sqrt(l2_balance); one batch: measured
    before the only step), and the optimiser decays nothing; l2_rule="weight_decay"
    (Spotlight's) is Adam's weight_decay, which l2_balance does not change."""
    common = dict(
        loss=loss, batch_size=len(data), random_state=3, device="cpu", n_iter=1, l2_balance=balance
    )
    plain = ImplicitFactorizationModel(l2=0.0, **common).fit(data)
    penalised = ImplicitFactorizationModel(l2=0.5, l2_rule="per_interaction", **common)
    penalised.fit(data)
    init = ImplicitFactorizationModel(l2=0.0, **dict(common, n_iter=0)).fit(data)._net
    u = torch.from_numpy(data.user_ids)
    i = torch.from_numpy(data.item_ids)
    a = balance**0.5
    norms = (
        a * init.user_embeddings[u].square().sum(1) + init.item_embeddings[i].square().sum(1) / a
    )
    want = plain.history[0].loss + 0.5 * float(norms.mean().detach())
    assert penalised.history[0].loss == pytest.approx(want, rel=1e-5)
    assert all(g["weight_decay"] == 0.0 for g in penalised._opt.param_groups)
    decayed = ImplicitFactorizationModel(l2=0.5, l2_rule="weight_decay", **common).fit(data)
    assert all(g["weight_decay"] == 0.5 for g in decayed._opt.param_groups)
    assert decayed.history[0].loss == pytest.approx(plain.history[0].loss, rel=1e-6)


# ---------------------------------------------------------------------- the batched engine
def test_recommend_batch_is_recommend_indices_per_record(fresh):
    """One call for records with their own n and exclude_seen (users repeated) equals scoring
    each record alone; counts say how many items each record gets."""
    users = np.array([3, 0, 3, 7, 0, 3])
    n = np.array([5, 2, 1, 4, 2, 7])
    exclude = np.array([True, True, False, True, False, True])
    items, scores, counts = fresh.recommend_batch(users, n, exclude)
    assert items.shape == (6, 7) and counts.tolist() == n.tolist()
    for r in range(6):
        want_i, want_s = fresh.recommend_indices(users[r : r + 1], int(n[r]), bool(exclude[r]))
        assert items[r, : n[r]].tolist() == want_i[0].tolist()
        np.testing.assert_allclose(scores[r, : n[r]], want_s[0], rtol=1e-6)
    # the public recommend() gives the same items for a record
    rec = fresh.recommend(fresh.user_map.ids[3], 5)
    assert rec.item_ids == fresh.item_map.ids[items[0, :5]].tolist()


def test_recommend_batch_refuses_to_answer_short_on_non_finite_scores(fresh, tmp_path):
    fresh.save(tmp_path)
    broken = ImplicitFactorizationModel.load(tmp_path, device="cpu")
    broken._net.item_biases.data[: broken.num_items // 2] = float("nan")
    with pytest.raises(DivergedError, match="non-finite scores"):
        broken.recommend_batch(np.array([0, 1]), 10)


def test_similar_indices_match_similar_items(fresh):
    idx = np.array([5, 9, 5])
    top_i, top_s = fresh.similar_indices(idx, 4)
    recs = fresh.similar_items(fresh.item_map.ids[idx].tolist(), 4)
    for row, rec in zip(top_i, recs, strict=True):
        assert fresh.item_map.ids[row].tolist() == rec.item_ids
    assert 5 not in top_i[0] and (top_i[0] == top_i[2]).all()


def test_sparse_auto_follows_the_table_size(ml100k_csv, monkeypatch):
    from spotlight_sagemaker.core import config
    from spotlight_sagemaker.core.optim import Adam, LazyAdam

    assert config.DEFAULTS["sparse"] == "auto" and config.SPOTLIGHT_DEFAULTS["sparse"] is False
    assert config.auto_sparse(50_000, 50_000) and not config.auto_sparse(943, 1_682)
    data = Interactions.from_csv(ml100k_csv)
    model = ImplicitFactorizationModel(n_iter=1, embedding_dim=8, random_state=0, device="cpu")
    model.fit(data)
    assert model.hyperparameters["sparse"] is False and isinstance(model._opt, Adam)
    monkeypatch.setattr(config, "SPARSE_AUTO_CELLS", 0)  # as if the tables were large
    model.fit(data)  # "auto" is kept for the next fit
    assert model.hyperparameters["sparse"] is True and isinstance(model._opt, LazyAdam)
    assert model._net.sparse
    assert (
        ImplicitFactorizationModel(sparse=False, n_iter=1, embedding_dim=8)
        .fit(data)
        .hyperparameters["sparse"]
        is False
    )


def test_softmax_nll_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    r = torch.tensor([0, 0, 1, 3, 3, 3, 4])
    c = torch.tensor([2, 2, 8, 0, 1, 5, 7])  # a repeated (row, item) pair, a row without any
    g = torch.rand(len(r), generator=gen, dtype=torch.float64)
    got = softmax_nll(logits, r, c)
    (got * g).sum().backward()
    mine = logits.grad.clone()
    logits.grad = None
    want = torch.logsumexp(logits, dim=1)[r] - logits[r, c]
    (want * g).sum().backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(mine, logits.grad)
    torch.autograd.gradcheck(lambda x: softmax_nll(x, r, c), (logits.detach().requires_grad_(),))


@pytest.mark.parametrize("negatives", [16, 100_000])  # sampled, exact
def test_softmax_leaves_the_user_biases_at_zero(data, negatives):
    """A user's bias shifts all their logits alike and cancels in their softmax: it gets no
    gradient (it used to random-walk on rounding noise scaled up by Adam)."""
    m = ImplicitFactorizationModel(
        loss="softmax", n_iter=3, softmax_negatives=negatives, random_state=0, device="cpu"
    ).fit(data)
    params = m.copy_parameters()
    assert not params["user_biases"].any()
    assert params["item_biases"].abs().sum() > 0


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_exact_softmax_user_rows_train_like_the_dense_lookup(data, l2, monkeypatch):
    """The exact softmax writes its users' gradient rows into a persistent buffer (no
    table-sized allocation per step): dense Adam must see the very gradient the ordinary
    embedding lookup gives, so training is unchanged."""
    kw = dict(loss="softmax", n_iter=4, batch_size=64, l2=l2, random_state=3, device="cpu")
    buffered = ImplicitFactorizationModel(**kw).fit(data)
    assert buffered.hyperparameters["sparse"] is False
    assert buffered.hyperparameters["softmax_negatives"] >= data.num_items  # the exact path
    monkeypatch.setattr(Trainer, "_user_rows", lambda self, u: self.net.users(u)[0])
    plain = ImplicitFactorizationModel(**kw).fit(data)
    a, b = buffered.copy_parameters(), plain.copy_parameters()
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    start = ImplicitFactorizationModel(**{**kw, "n_iter": 0}).fit(data).copy_parameters()
    assert not torch.equal(a["user_embeddings"], start["user_embeddings"])


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_sampled_softmax_item_rows_train_like_the_sparse_lookup(data, l2, monkeypatch):
    """Under ``sparse=True`` the sampled softmax looks its item rows up through
    ``LazyAdam.rows`` (a coalesced gradient, the gathered rows reused by the step): training
    must equal the ordinary sparse embedding lookup's, bit for bit."""
    kw = dict(
        loss="softmax",
        softmax_negatives=8,
        sparse=True,
        n_iter=4,
        batch_size=64,
        l2=l2,
        random_state=3,
        device="cpu",
    )
    reused = ImplicitFactorizationModel(**kw).fit(data)
    assert reused.hyperparameters["softmax_negatives"] < data.num_items  # the sampled path
    monkeypatch.setattr(Trainer, "_item_rows", lambda self, rows: self.net.items(rows))
    plain = ImplicitFactorizationModel(**kw).fit(data)
    a, b = reused.copy_parameters(), plain.copy_parameters()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    start = ImplicitFactorizationModel(**{**kw, "n_iter": 0}).fit(data).copy_parameters()
    assert not torch.equal(a["item_embeddings"], start["item_embeddings"])
