"""Warm start (incremental training): the core's warm_start, train.py's model channel, the SDK.

Core: rows of ids the previous model knows are its vectors exactly, new rows are what a fresh
model with the same seed initialises, a dimension mismatch is refused. train.py: the ``model``
channel (a model.tar.gz or the extracted files) is the initial state of every model the job
trains (single model, validated model, refit), a checkpoint of the same job wins over it, and a
bad archive is a user error. The SDK: ``model_uri`` becomes the ``model`` channel.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from _sdk_helpers import tar_model
from test_default_job import as_csv, planted_rows
from test_training import environ, failure, model_files, opt_ml

from spotlight_sagemaker.container.training.job import EXIT_OK, EXIT_USER_ERROR, main
from spotlight_sagemaker.container.training.model_channel import extract_artifact
from spotlight_sagemaker.core import (
    ArtifactError,
    HyperparameterError,
    ImplicitFactorizationModel,
    Interactions,
    warm_start,
)

HP = {"embedding_dim": 8, "random_state": 3, "device": "cpu"}


def tables(model: ImplicitFactorizationModel) -> dict[str, np.ndarray]:
    net = model._require()
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def rows_of(model: ImplicitFactorizationModel, kind: str, ids: list[str]) -> dict[str, np.ndarray]:
    """Embeddings and biases of ``ids`` (users or items) in ``model``, by raw id."""
    id_map = model.user_map if kind == "user" else model.item_map
    assert id_map is not None
    idx = id_map.lookup(ids)
    assert (idx >= 0).all()
    t = tables(model)
    return {"emb": t[f"{kind}_embeddings"][idx], "bias": t[f"{kind}_biases"][idx]}


@pytest.fixture(scope="module")
def old_new() -> tuple[Interactions, Interactions]:
    """``old``: u0-u5 x i0-i5; ``new``: u2-u7 x i2-i7 (u0, u1, i0, i1 gone; u6, u7, i6, i7 new)."""
    rng = np.random.RandomState(0)

    def make(users, items):
        pairs = [(f"u{u}", f"i{i}") for u in users for i in items if rng.rand() < 0.7]
        return Interactions.from_arrays(*zip(*pairs, strict=True))

    return make(range(6), range(6)), make(range(2, 8), range(2, 8))


@pytest.fixture(scope="module")
def previous(old_new) -> ImplicitFactorizationModel:
    return ImplicitFactorizationModel(n_iter=5, **HP).fit(old_new[0])


# ---------------------------------------------------------------------- core
def test_known_rows_are_the_previous_vectors_and_new_rows_are_a_fresh_init(previous, old_new):
    _, new = old_new
    before = tables(previous)
    model = warm_start(previous, new, **{**HP, "random_state": 11})
    assert model.epochs_trained == 0 and model.seed == 11
    assert model.user_map == new.user_map and model.item_map == new.item_map
    kept_u, kept_i = [f"u{k}" for k in range(2, 6)], [f"i{k}" for k in range(2, 6)]
    for kind, ids in (("user", kept_u), ("item", kept_i)):
        got, want = rows_of(model, kind, ids), rows_of(previous, kind, ids)
        np.testing.assert_array_equal(got["emb"], want["emb"])
        np.testing.assert_array_equal(got["bias"], want["bias"])
        # trained item biases, not the zero init (user biases cancel in the softmax: stay 0)
        if kind == "item":
            assert np.abs(got["bias"]).sum() > 0
    # new ids: exactly what fit() would initialise with the same seed
    fresh = ImplicitFactorizationModel(**{**HP, "random_state": 11})
    fresh._initialise(new)
    for kind, ids in (("user", ["u6", "u7"]), ("item", ["i6", "i7"])):
        got, want = rows_of(model, kind, ids), rows_of(fresh, kind, ids)
        np.testing.assert_array_equal(got["emb"], want["emb"])
        np.testing.assert_array_equal(got["bias"], np.zeros_like(got["bias"]))
    # training the warm-started model leaves the previous one as it was
    model.fit_partial(new, n_iter=2)
    assert model.epochs_trained == 2
    for k, v in tables(previous).items():
        np.testing.assert_array_equal(v, before[k])


def test_a_warm_start_begins_where_the_previous_model_ended(previous, old_new):
    old, _ = old_new
    warm = warm_start(previous, old, n_iter=1, **HP).fit_partial(old)
    cold = ImplicitFactorizationModel(n_iter=1, **HP).fit(old)
    assert warm.history[0].loss < cold.history[0].loss
    assert warm.history[0].loss <= previous.history[-1].loss * 1.05


def test_the_job_hyperparameters_are_used_not_the_previous_ones(previous, old_new):
    model = warm_start(previous, old_new[1], loss="bpr", learning_rate=0.02, **HP)
    assert model.hyperparameters["loss"] == "bpr"
    assert model.hyperparameters["learning_rate"] == 0.02
    assert previous.hyperparameters["loss"] == "softmax"


def test_another_embedding_dim_is_refused_naming_both(previous, old_new):
    with pytest.raises(HyperparameterError, match=r"embedding_dim is 16 .* and 8 in the previous"):
        warm_start(previous, old_new[1], **{**HP, "embedding_dim": 16})
    # the default dimension (256) is not silently replaced by the previous model's
    with pytest.raises(HyperparameterError, match="give embedding_dim=8"):
        warm_start(previous, old_new[1], random_state=0)


def test_a_loaded_artifact_warm_starts_like_the_model_itself(previous, old_new, tmp_path):
    previous.save(tmp_path / "m")
    loaded = ImplicitFactorizationModel.load(tmp_path / "m", device="cpu")
    a = tables(warm_start(previous, old_new[1], **HP))
    b = tables(warm_start(loaded, old_new[1], **HP))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# ---------------------------------------------------------------------- the archive
def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_only_the_artifact_files_are_extracted_under_their_own_names(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(
        _tar(
            [
                _file("../spotlight-model.json", b"{}"),  # traversal: not an artifact member
                _file("/etc/evil", b"x"),
                _file("code/inference.py", b"print()"),
                _file("./spotlight-model.json", b'{"a": 1}'),
                _file("spotlight-model.npz", b"npz"),
            ]
        )
    )
    dest = tmp_path / "out"
    dest.mkdir()
    extract_artifact(archive, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["spotlight-model.json", "spotlight-model.npz"]
    assert (dest / "spotlight-model.json").read_bytes() == b'{"a": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz", "out"]


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([_file("model.pth", b"torch")], "not a spotlight-sagemaker model: it lacks"),
        (
            [_file("spotlight-model.json", b"{}"), _file("spotlight-model.json", b"{}")],
            "twice",
        ),
        ([_file("spotlight-model.json", b"x" * 64)], "over 32 bytes"),
    ],
)
def test_bad_archives_are_refused(tmp_path, members, match):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_tar(members))
    with pytest.raises(ArtifactError, match=match):
        extract_artifact(archive, tmp_path, max_bytes=32)


def test_a_linked_artifact_member_is_refused(tmp_path):
    link = tarfile.TarInfo("spotlight-model.npz")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_tar([(link, None)]))
    with pytest.raises(ArtifactError, match="not a regular file"):
        extract_artifact(archive, tmp_path)
    assert not (tmp_path / "spotlight-model.npz").exists()


# ---------------------------------------------------------------------- train.py
ROWS = planted_rows()
OLD = ROWS[: int(0.7 * len(ROWS))]
JOB = ["--embedding_dim", "16", "--random_state", "5", "--checkpoint_dir", "none"]


@pytest.fixture(scope="module")
def old_job(tmp_path_factory) -> Path:
    """The previous job's model folder: train.py on the older 70% of the planted rows."""
    base = opt_ml(tmp_path_factory.mktemp("old"), {"training": {"t.csv": as_csv(OLD)}})
    assert main([*JOB, "--n_iter", "15", "--validation_fraction", "0"], environ(base)) == EXIT_OK
    return base / "model"


def warm_job(tmp_path: Path, previous: Path, as_archive: bool = True) -> Path:
    base = opt_ml(tmp_path, {"training": {"t.csv": as_csv(ROWS)}})
    channel = base / "input" / "data" / "model"
    channel.mkdir()
    if as_archive:
        (channel / "model.tar.gz").write_bytes(tar_model(previous))
    else:
        for f in previous.iterdir():
            (channel / f.name).write_bytes(f.read_bytes())
    return base


def metrics(base: Path) -> dict:
    return json.loads((base / "output" / "data" / "metrics.json").read_text())


@pytest.mark.parametrize("as_archive", [True, False], ids=["model.tar.gz", "extracted"])
def test_train_py_starts_from_the_model_channel(tmp_path, old_job, as_archive):
    base = warm_job(tmp_path, old_job, as_archive)
    argv = [*JOB, "--n_iter", "0", "--validation_fraction", "0"]
    assert main(argv, environ(base, ("training", "model"))) == EXIT_OK
    served = ImplicitFactorizationModel.load(base / "model", device="cpu")
    previous = ImplicitFactorizationModel.load(old_job, device="cpu")
    users = [u for u in previous.user_map.ids.tolist()]
    np.testing.assert_array_equal(
        rows_of(served, "user", users)["emb"], rows_of(previous, "user", users)["emb"]
    )
    m = metrics(base)
    assert m["warm_start"]["users_kept"] == previous.num_users
    assert m["warm_start"]["users_new"] == served.num_users - previous.num_users
    assert m["warm_start"]["items_new"] == served.num_items - previous.num_items
    assert m["warm_start"]["previous"]["rows"] == len(OLD)
    # what the served model counts as seen is this job's training channel, all of it
    assert int(served.item_counts.sum()) == len(ROWS)
    assert served.metrics["warm_start"] == m["warm_start"]


def test_the_validated_model_and_the_refit_both_start_from_the_previous_model(tmp_path, old_job):
    """With the default hold-out: validation is only on rows the previous model never trained
    on, and with n_iter=0 both models are the warm start itself."""
    base = warm_job(tmp_path, old_job)
    assert main([*JOB, "--n_iter", "0"], environ(base, ("training", "model"))) == EXIT_OK
    warm = metrics(base)
    cold_base = opt_ml(tmp_path / "cold", {"training": {"t.csv": as_csv(ROWS)}})
    assert main([*JOB, "--n_iter", "0"], environ(cold_base)) == EXIT_OK
    cold = metrics(cold_base)

    counts = warm["data"]
    known = counts["validation_rows_known_to_previous_model"]
    assert known > 0
    assert counts["validation_rows"] == (
        counts["validation_rows_read"] - counts["validation_rows_dropped"] - known
    )
    assert warm["warm_start"]["validation_rows_known_to_previous_model"] == known
    # the validated model is the warm start (planted groups already learned), not noise
    assert warm["validation"]["ndcg@10"] > cold["validation"]["ndcg@10"] + 0.1
    # and so is the refit that is served
    served = ImplicitFactorizationModel.load(base / "model", device="cpu")
    previous = ImplicitFactorizationModel.load(old_job, device="cpu")
    items = previous.item_map.ids.tolist()
    np.testing.assert_array_equal(
        rows_of(served, "item", items)["emb"], rows_of(previous, "item", items)["emb"]
    )
    assert warm["refit"] == {"rows": len(ROWS), "epochs": 0}


def test_early_stopping_and_refit_with_a_warm_start(tmp_path, old_job):
    base = warm_job(tmp_path, old_job)
    argv = [*JOB, "--patience", "2", "--max_epochs", "30"]
    assert main(argv, environ(base, ("training", "model"))) == EXIT_OK
    m = metrics(base)
    best = m["epochs"]["n_iter"]
    assert m["refit"] == {"rows": len(ROWS), "epochs": best}
    assert m["epochs_trained"] == best
    assert m["validated_model"]["epochs"] == best
    assert m["warm_start"]["previous"]["epochs_trained"] == 15


def test_a_checkpoint_of_the_same_job_wins_over_the_warm_start(tmp_path, old_job, capsys):
    base = warm_job(tmp_path, old_job)
    ckpt = tmp_path / "ckpt"
    argv = [
        *JOB[:-2],
        "--checkpoint_dir",
        str(ckpt),
        "--checkpoint_interval",
        "0",
        "--n_iter",
        "4",
        "--validation_fraction",
        "0",
    ]
    env = environ(base, ("training", "model"))
    assert main(argv, env) == EXIT_OK
    whole = tables(ImplicitFactorizationModel.load(base / "model", device="cpu"))
    # a spot restart after epoch 3: the newest checkpoint lost, the model folder not written
    for name in ("epoch-000004",):
        for f in (ckpt / name).iterdir():
            f.unlink()
        (ckpt / name).rmdir()
    for f in (base / "model").iterdir():
        f.unlink()
    capsys.readouterr()
    assert main(argv, env) == EXIT_OK
    out = capsys.readouterr().out
    assert "resuming from checkpoint" in out and "at epoch 3 of 4" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("epoch=")] == [
        "epoch=4"
    ]
    assert metrics(base)["resumed_from_epoch"] == 3
    resumed = tables(ImplicitFactorizationModel.load(base / "model", device="cpu"))
    for k in whole:
        np.testing.assert_array_equal(resumed[k], whole[k])

    # the same checkpoints do not continue a job without the model channel
    cold = opt_ml(tmp_path / "cold", {"training": {"t.csv": as_csv(ROWS)}})
    assert main(argv, environ(cold)) == EXIT_USER_ERROR
    assert "started from the model with arrays sha256" in failure(cold)
    assert "this job from scratch" in failure(cold)


def test_bad_model_channels_are_user_errors(tmp_path, old_job):
    base = warm_job(tmp_path, old_job)
    archive = base / "input" / "data" / "model" / "model.tar.gz"
    good = archive.read_bytes()
    env = environ(base, ("training", "model"))
    argv = [*JOB, "--n_iter", "1", "--validation_fraction", "0"]

    archive.write_bytes(good[: len(good) // 2])
    assert main(argv, env) == EXIT_USER_ERROR
    assert "'model' channel" in failure(base) and "cannot be read as a tar archive" in failure(base)
    assert model_files(base) == []

    archive.unlink()
    (archive.parent / "weights.pt").write_bytes(b"torch")
    assert main(argv, env) == EXIT_USER_ERROR
    assert "neither a model.tar.gz nor the artifact files" in failure(base)
    assert "weights.pt" in failure(base)

    (archive.parent / "weights.pt").unlink()
    archive.write_bytes(good)
    assert main(["--embedding_dim", "32", *JOB[2:], "--n_iter", "1"], env) == EXIT_USER_ERROR
    assert "embedding_dim is 32 for the new model and 16 in the previous model" in failure(base)


def test_a_tampered_artifact_in_the_archive_is_refused(tmp_path, old_job):
    folder = tmp_path / "tampered"
    folder.mkdir()
    for f in old_job.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    npz = folder / "spotlight-model.npz"
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    base = warm_job(tmp_path / "job", folder)
    env = environ(base, ("training", "model"))
    assert main([*JOB, "--n_iter", "1"], env) == EXIT_USER_ERROR
    assert "does not match its checksum" in failure(base)


# ---------------------------------------------------------------------- the SDK
@pytest.fixture
def sm(aws_env, monkeypatch):
    import moto
    from _sdk_helpers import no_sleep, session

    no_sleep(monkeypatch)
    with moto.mock_aws():
        yield session(aws_env)


def model_channel(uri: str) -> dict:
    return {
        "ChannelName": "model",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "ContentType": "application/x-sagemaker-model",
        "InputMode": "File",
    }


def test_model_uri_is_the_model_channel_and_survives_attach(sm, old_job):
    from _sdk_helpers import ROLE, capture, put_model

    from spotlight_sagemaker import SpotlightEstimator

    created = capture(sm, "CreateTrainingJob")
    bucket = sm.default_bucket()
    previous = f"s3://{bucket}/old-job/output/model.tar.gz"
    put_model(sm, previous, old_job)
    est = SpotlightEstimator(
        role=ROLE, instance_type="ml.m5.xlarge", sagemaker_session=sm, model_uri=previous
    )
    est.fit(f"s3://{bucket}/training/", wait=False, job_name="warm-1")
    channels = created[0]["InputDataConfig"]
    assert [c["ChannelName"] for c in channels] == ["training", "model"]
    assert channels[1] == model_channel(previous)
    again = SpotlightEstimator.attach("warm-1", sagemaker_session=sm)
    assert again.model_uri == previous and again.model_channel_name == "model"


def test_a_local_model_uri_is_uploaded_and_a_renamed_channel_refused(sm, old_job, tmp_path):
    from _sdk_helpers import ROLE, capture

    from spotlight_sagemaker import SpotlightEstimator

    created = capture(sm, "CreateTrainingJob")
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tar_model(old_job))
    est = SpotlightEstimator(
        role=ROLE, instance_type="ml.m5.xlarge", sagemaker_session=sm, model_uri=str(archive)
    )
    est.fit(f"s3://{sm.default_bucket()}/training/", wait=False, job_name="warm-2")
    uri = f"s3://{sm.default_bucket()}/warm-2/input/model"
    assert created[0]["InputDataConfig"][1] == model_channel(uri)
    listed = sm.boto_session.client("s3").list_objects_v2(
        Bucket=sm.default_bucket(), Prefix="warm-2/input/model"
    )
    assert [o["Key"] for o in listed["Contents"]] == ["warm-2/input/model/model.tar.gz"]

    with pytest.raises(FileNotFoundError, match="model_uri"):
        SpotlightEstimator(
            role=ROLE,
            instance_type="ml.m5.xlarge",
            sagemaker_session=sm,
            model_uri=str(tmp_path / "missing.tar.gz"),
        ).fit(f"s3://{sm.default_bucket()}/training/", wait=False)
    with pytest.raises(ValueError, match="model_channel_name='pretrained'"):
        SpotlightEstimator(
            role=ROLE,
            instance_type="ml.m5.xlarge",
            sagemaker_session=sm,
            model_uri="s3://b/model.tar.gz",
            model_channel_name="pretrained",
        )
