"""The pickle-free artifact: identical recommendations after a round trip, clear errors."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from spotlight_sagemaker.core import ArtifactError, ImplicitFactorizationModel, Interactions
from spotlight_sagemaker.core.artifact import ARRAYS_FILE, CONFIG_FILE, is_artifact


@pytest.fixture(scope="module")
def data(ml100k_csv) -> Interactions:
    return Interactions.from_csv(ml100k_csv)


@pytest.fixture(scope="module")
def model(data) -> ImplicitFactorizationModel:
    m = ImplicitFactorizationModel(n_iter=2, embedding_dim=8, random_state=5, device="cpu")
    m.fit(data)
    m.metrics = {"validation:ndcg@10": 0.25}
    return m


def test_round_trip_gives_identical_recommendations(model, data, tmp_path):
    model.save(tmp_path)
    assert is_artifact(tmp_path)
    loaded = ImplicitFactorizationModel.load(tmp_path, device="cpu")
    users = data.user_map.to_list()
    assert [r.item_ids for r in loaded.recommend(users, 10)] == [
        r.item_ids for r in model.recommend(users, 10)
    ]
    assert loaded.hyperparameters == model.hyperparameters
    assert loaded.metrics == model.metrics and loaded.seed == model.seed
    assert loaded.epochs_trained == 2 and len(loaded.history) == 2


def test_artifact_holds_no_pickle(model, tmp_path):
    model.save(tmp_path)
    with zipfile.ZipFile(tmp_path / ARRAYS_FILE) as zf:
        for name in zf.namelist():
            with zf.open(name) as fh:
                assert fh.read(6) == b"\x93NUMPY"  # plain .npy arrays only
    with np.load(tmp_path / ARRAYS_FILE, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["user_ids"][:2] == ["1", "2"] and config["format_version"] == 1


@pytest.mark.parametrize(
    ("options", "atol"),
    [({}, 1e-5), ({"loss": "bpr", "sparse": True}, 1e-6)],
    ids=["dense-adam", "sparse-lazy-adam"],
)
def test_checkpoint_resumes_exactly_like_uninterrupted_training(data, tmp_path, options, atol):
    kw = dict(n_iter=2, embedding_dim=8, random_state=9, device="cpu", batch_size=4096)
    kw.update(options)
    straight = ImplicitFactorizationModel(**kw).fit(data)
    straight.fit_partial(data, n_iter=1)
    first = ImplicitFactorizationModel(**kw).fit(data)
    first.save(tmp_path, include_optimizer=True)
    resumed = ImplicitFactorizationModel.load(tmp_path, device="cpu")
    resumed.fit_partial(data, n_iter=1)
    assert resumed.epochs_trained == 3
    assert np.allclose(
        resumed.score_users(np.arange(20)), straight.score_users(np.arange(20)), atol=atol
    )


def test_save_replaces_atomically_and_leaves_no_temp_files(model, tmp_path):
    model.save(tmp_path)
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ARRAYS_FILE, CONFIG_FILE])


def test_truncated_arrays(model, tmp_path):
    model.save(tmp_path)
    f = tmp_path / ARRAYS_FILE
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="checksum"):
        ImplicitFactorizationModel.load(tmp_path)


def test_truncated_or_foreign_config(model, tmp_path):
    model.save(tmp_path)
    cfg = tmp_path / CONFIG_FILE
    text = cfg.read_text()
    cfg.write_text(text[: len(text) // 2])
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ImplicitFactorizationModel.load(tmp_path)
    cfg.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError, match="not a spotlight-sagemaker model"):
        ImplicitFactorizationModel.load(tmp_path)


def save_with_edited_config(model, folder, edit) -> dict:
    """Save ``model`` into ``folder``, then rewrite its config after ``edit(config)``; returns
    the config as saved, before the edit."""
    model.save(folder)
    cfg = folder / CONFIG_FILE
    config = json.loads(cfg.read_text())
    saved = json.loads(json.dumps(config))
    edit(config)
    cfg.write_text(json.dumps(config))
    return saved


def test_newer_format_asks_for_an_upgrade(model, tmp_path):
    save_with_edited_config(model, tmp_path, lambda c: c.update(format_version=99))
    with pytest.raises(ArtifactError, match="format version 99.*upgrade"):
        ImplicitFactorizationModel.load(tmp_path)


def test_missing_folder_or_files(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        ImplicitFactorizationModel.load(tmp_path / "nothing")
    (tmp_path / "model.pt").write_bytes(b"torch pickle")
    with pytest.raises(ArtifactError, match="not a spotlight-sagemaker model folder"):
        ImplicitFactorizationModel.load(tmp_path)


@pytest.mark.parametrize("name", ["popularity_prior", "l2_rule"])
def test_an_artifact_without_every_hyperparameter_is_refused(model, tmp_path, name):
    """Written by a pre-release build: today's default would silently change its scores."""
    save_with_edited_config(model, tmp_path, lambda c: c["hyperparameters"].pop(name))
    with pytest.raises(ArtifactError, match=f"lacks the hyperparameter\\(s\\) {name}: .*retrain"):
        ImplicitFactorizationModel.load(tmp_path, device="cpu")


def test_l2_balance_round_trips_and_older_artifacts_load_with_one(data, tmp_path):
    """``l2_balance`` travels with the artifact (a warm start or a fold-in uses it); artifacts
    written before it existed trained with one l2 for users and items, and load with 1."""
    m = ImplicitFactorizationModel(
        n_iter=1, embedding_dim=8, random_state=5, device="cpu", l2_balance=4.0
    ).fit(data)
    m.save(tmp_path / "now")
    assert ImplicitFactorizationModel.load(tmp_path / "now").hyperparameters["l2_balance"] == 4.0
    save_with_edited_config(m, tmp_path / "old", lambda c: c["hyperparameters"].pop("l2_balance"))
    loaded = ImplicitFactorizationModel.load(tmp_path / "old", device="cpu")
    assert loaded.hyperparameters["l2_balance"] == 1.0


def test_artifact_files_are_readable_by_other_users(model, tmp_path):
    """mkstemp's 0600 kept our serving image (uid 1000) from reading a root-written artifact."""
    model.save(tmp_path)
    for name in (ARRAYS_FILE, CONFIG_FILE):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda a: a.update(item_biases=a["item_biases"][:-1]), "item_biases has shape"),
        (lambda a: a.update(item_embeddings=a["item_embeddings"][:, :-1]), "item_embeddings"),
        (lambda a: a.update(user_embeddings=a["user_embeddings"].astype(np.int64)), "dtype"),
        (lambda a: a["seen_indices"].__setitem__(0, 10**6), "seen_indptr/seen_indices"),
        (lambda a: a.update(seen_indptr=a["seen_indptr"][::-1].copy()), "seen_indptr"),
        (lambda a: a["item_counts"].__setitem__(0, -1), "negative item_counts"),
        (lambda a: a["item_embeddings"].__setitem__((0, 0), np.nan), "non-finite item_emb"),
    ],
    ids=["short-biases", "dims", "dtype", "index-range", "indptr", "counts", "nan"],
)
def test_inconsistent_arrays_are_refused_at_load(model, tmp_path, edit, fragment):
    """Arrays that disagree with the id lists used to load and then fail every request (or fail
    with a raw torch error): every one is an ArtifactError naming the array."""
    from _artifacts import rewrite_arrays

    model.save(tmp_path / "good")
    bad = rewrite_arrays(tmp_path / "good", tmp_path / "bad", edit)
    with pytest.raises(ArtifactError, match=fragment):
        ImplicitFactorizationModel.load(bad, device="cpu")


def test_a_non_finite_model_is_never_saved(model, tmp_path):
    model.save(tmp_path / "a")
    broken = ImplicitFactorizationModel.load(tmp_path / "a", device="cpu")
    broken._net.user_embeddings.data[0, 0] = float("nan")
    with pytest.raises(ArtifactError, match="refusing to save"):
        broken.save(tmp_path / "b")
    assert not (tmp_path / "b" / CONFIG_FILE).exists()


def test_an_artifact_from_before_softmax_negatives_loads_and_trains(model, data, tmp_path):
    """Artifacts written before ``softmax_negatives`` existed load with its "auto" value for
    their tables (what they were trained with: the exact softmax up to 2**31 cells), score
    exactly as saved, and train on."""
    save_with_edited_config(
        model, tmp_path, lambda c: c["hyperparameters"].pop("softmax_negatives")
    )
    loaded = ImplicitFactorizationModel.load(tmp_path, device="cpu")
    assert loaded.hyperparameters["softmax_negatives"] == loaded.num_items  # every item
    users = np.arange(3)
    np.testing.assert_array_equal(loaded.score_users(users), model.score_users(users))
    loaded.fit_partial(data, n_iter=1)
    assert np.isfinite(loaded.history[-1].loss)
