"""The training adapter in-process: environment, hyperparameters, data, errors, checkpoints.

Each test runs ``spotlight_sagemaker.container.training.job.main(argv, environ)`` on a temporary
/opt/ml tree (SAGEMAKER_BASE_DIR) with real CSV files, and checks the exit code, the failure file,
the model folder and metrics.json. The toolkit-level runs are in test_train_entry_point.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spotlight_sagemaker.container.training.job import (
    EXIT_INTERNAL_ERROR,
    EXIT_OK,
    EXIT_USER_ERROR,
    TrainingEnv,
    main,
)
from spotlight_sagemaker.contract.hyperparameters import OPTIONS, UserError, parse_hyperparameters
from spotlight_sagemaker.contract.metric_lines import parse_metric_lines
from spotlight_sagemaker.core import ImplicitFactorizationModel, Interactions

FAST = ["--embedding_dim", "8", "--n_iter", "2", "--random_state", "3"]


@pytest.fixture(scope="module")
def small_csv(ml100k_csv: Path) -> str:
    """Header + the seed file's first 5,000 rows."""
    with open(ml100k_csv, encoding="utf-8") as fh:
        return "".join(next(fh) for _ in range(5_001))


def opt_ml(tmp_path: Path, channels: dict[str, dict[str, str]]) -> Path:
    base = tmp_path / "opt_ml"
    for name, files in channels.items():
        folder = base / "input" / "data" / name
        folder.mkdir(parents=True)
        for file_name, text in files.items():
            (folder / file_name).write_text(text)
    return base


def environ(base: Path, channels: tuple[str, ...] = ("training",)) -> dict[str, str]:
    """The variables the toolkit sets (SM_CHANNELS and one SM_CHANNEL_<NAME> each)."""
    env = {
        "SAGEMAKER_BASE_DIR": str(base),
        "SM_CHANNELS": json.dumps(list(channels)),
        "SM_MODEL_DIR": str(base / "model"),
        "SM_OUTPUT_DIR": str(base / "output"),
        "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"),
        "SM_NUM_GPUS": "0",
        "TRAINING_JOB_NAME": "test-job",  # set by SageMaker (and local mode) in a job
    }
    for c in channels:
        env[f"SM_CHANNEL_{c.upper()}"] = str(base / "input" / "data" / c)
    return env


def model_files(base: Path) -> list[str]:
    folder = base / "model"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def failure(base: Path) -> str:
    return (base / "output" / "failure").read_text()


# ---------------------------------------------------------------------- user errors
USER_ERRORS = [
    # (case, channels, argv, words the failure sentence must contain)
    (
        "missing channel",
        {"train": {"d.csv": "user_id,item_id\n1,2\n"}},
        [],
        ["no 'training' channel", "train"],
    ),
    ("empty channel", {"training": {}}, [], ["holds no .csv"]),
    (
        "wrong columns",
        {"training": {"d.csv": "user,item\n1,2\n"}},
        [],
        ["missing column", "'user_id'", "d.csv"],
    ),
    ("non-numeric hyperparameter", None, ["--n_iter", "ten"], ["'n_iter'", "integer", "'ten'"]),
    ("unknown loss", None, ["--loss", "hinge2"], ["'loss'", "adaptive_hinge", "'hinge2'"]),
    ("bad preset", None, ["--preset", "fast"], ["'preset'", "spotlight"]),
    (
        "validation_fraction out of range",
        None,
        ["--validation_fraction", "1"],
        ["'validation_fraction'", "< 1.0"],
    ),
    ("hyperparameter without value", None, ["--n_iter"], ["'n_iter'", "no value"]),
    (
        "bad data row",
        {"training": {"d.csv": "user_id,item_id\n1,2\n3\n"}},
        [],
        ["d.csv", "line 3", "expected 2 fields"],
    ),
    (
        "non-numeric weight",
        {"training": {"d.csv": "user_id,item_id,rating\n1,2,x\n"}},
        [],
        ["line 2", "'rating'", "not a number"],
    ),
    (
        "duplicates",
        {"training": {"d.csv": "user_id,item_id\n1,2\n1,2\n3,4\n5,6\n"}},
        [],
        ["duplicate interaction", "duplicates="],
    ),
    (
        "too little data for a hold-out",
        {"training": {"d.csv": "user_id,item_id\n1,2\n"}},
        [],
        ["validation_fraction", "empty"],
    ),
    (
        "empty validation channel",
        {
            "training": {"d.csv": "user_id,item_id\n1,2\n"},
            "validation": {"v.csv": "user_id,item_id\n"},
        },
        [],
        ["v.csv", "no rows"],
    ),
]


@pytest.mark.parametrize("case,channels,argv,words", USER_ERRORS, ids=[c[0] for c in USER_ERRORS])
def test_user_error_writes_one_sentence_and_exits_1(
    tmp_path, small_csv, capsys, case, channels, argv, words
):
    channels = channels or {"training": {"d.csv": small_csv}}
    base = opt_ml(tmp_path, channels)
    rc = main(FAST + argv, environ(base, tuple(channels)))
    assert rc == EXIT_USER_ERROR
    text = failure(base)
    assert text.endswith("\n") and text.count("\n") == 1 and len(text) <= 1025
    for word in words:
        assert word in text, (word, text)
    assert model_files(base) == []
    assert "training failed (user error)" in capsys.readouterr().out


def test_missing_channel_folder_is_a_user_error(tmp_path):
    base = opt_ml(tmp_path, {})
    env = environ(base)  # SM_CHANNEL_TRAINING names a folder that does not exist
    assert main(FAST, env) == EXIT_USER_ERROR
    assert "no such file or folder" in failure(base)
    assert str(base / "input" / "data" / "training") in failure(base)


def test_an_mpi_launch_fails_once_on_rank_0(tmp_path, small_csv):
    """MPI launches are refused (torchrun's are data-parallel: test_train_entry_point.py)."""
    size_var, rank_var = "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"
    base = opt_ml(tmp_path, {"training": {"d.csv": small_csv}})
    others = {**environ(base), size_var: "4", rank_var: "3"}
    assert main(FAST, others) == EXIT_OK  # nothing written, nothing trained: rank 0 reports
    assert not (base / "output").exists() and model_files(base) == []
    assert main(FAST, {**environ(base), size_var: "4", rank_var: "0"}) == EXIT_USER_ERROR
    assert failure(base).startswith(f"train.py was started by MPI as 4 processes ({size_var}=4")
    assert "torch_distributed" in failure(base) and model_files(base) == []
    assert main(FAST, {**environ(base), size_var: "1", rank_var: "0"}) == EXIT_OK  # one: fine


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_a_user_error(tmp_path, small_csv):
    base = opt_ml(tmp_path, {"training": {"d.csv": small_csv}})
    assert main(FAST + ["--device", "cuda"], environ(base)) == EXIT_USER_ERROR
    assert "no CUDA device" in failure(base)


def test_internal_error_exits_2_and_says_so(tmp_path, small_csv):
    base = opt_ml(tmp_path, {"training": {"d.csv": small_csv}})
    base.joinpath("model").write_text("a file where the model folder should be")
    rc = main(FAST + ["--checkpoint_dir", "none"], environ(base))
    assert rc == EXIT_INTERNAL_ERROR
    assert failure(base).startswith("Internal error in train.py: FileExistsError")
    assert "traceback" in failure(base)


# ---------------------------------------------------------------------- happy paths
def test_trains_with_holdout_and_prints_metric_lines(tmp_path, small_csv, capsys):
    base = opt_ml(tmp_path, {"training": {"a.csv": small_csv}})
    rc = main(FAST + ["--n_iter", "3", "--eval_every", "2", "--extra_thing", "1"], environ(base))
    out = capsys.readouterr().out
    assert rc == EXIT_OK, out
    assert not (base / "output" / "failure").exists()
    parsed = parse_metric_lines(out.splitlines())
    # 3 epochs of the validated model (on the hold-out's remainder), then 3 of the refit
    assert len(parsed["train:loss"]) == 6 and len(parsed["train:throughput"]) == 6
    assert len(parsed["validation:ndcg@10"]) == 2  # epoch 2 (eval_every) and the final one
    assert "epoch=2 validation:ndcg@10=" in out

    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    model = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert model.epochs_trained == metrics["epochs_trained"] == 3
    assert model.metrics["validation"] == metrics["validation"]
    assert parsed["validation:ndcg@10"][-1] == pytest.approx(
        metrics["validation"]["ndcg@10"], abs=1e-6
    )
    assert [v["epoch"] for v in metrics["validation_history"]] == [2]
    assert metrics["ignored_arguments"] == ["extra_thing"]
    data = metrics["data"]
    assert data["training_channel_rows"] == 5_000
    assert data["fit_rows"] == 4_500 and data["validation_rows_read"] == 500
    assert data["training_rows"] == 5_000  # the served model is refit on every row
    assert metrics["refit"] == {"rows": 5_000, "epochs": 3}
    assert metrics["validated_model"]["rows"] == 4_500
    assert metrics["epochs"]["chosen_by"] == "n_iter"
    assert data["validation_rows"] + data["validation_rows_dropped"] == 500
    # the served vocabulary is the channel's, and every id in it has training rows
    train_counts = np.bincount(np.repeat(np.arange(model.num_users), np.diff(model.seen[0])))
    assert (train_counts > 0).all() and model.num_users == data["training_users"]


def test_validation_channel_rows_with_unknown_ids_are_dropped_and_counted(tmp_path, small_csv):
    rows = small_csv.splitlines()
    known_user, known_item = rows[1].split(",")
    validation = (
        "\n".join(
            [
                "user_id,item_id",
                rows[2],
                rows[3],
                f"{known_user},no-such-item",
                f"no-such-user,{known_item}",
                "ghost,phantom",
            ]
        )
        + "\n"
    )
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}, "validation": {"v.csv": validation}})
    assert main(FAST, environ(base, ("training", "validation"))) == EXIT_OK
    data = json.loads((base / "output" / "data" / "metrics.json").read_text())["data"]
    assert data["validation_source"] == "channel"
    assert data["training_rows"] == 5_000  # no hold-out with a validation channel
    assert data["validation_rows_read"] == 5 and data["validation_rows"] == 2
    assert data["validation_rows_dropped"] == 3
    assert data["validation_unknown_users"] == 2 and data["validation_unknown_items"] == 2
    assert data["validation_rows_also_in_training"] == 2


def test_validation_fraction_zero_trains_on_every_row(tmp_path, small_csv, capsys):
    base = opt_ml(tmp_path, {"training": {"t.csv.gz": ""}})
    import gzip

    (base / "input" / "data" / "training" / "t.csv.gz").write_bytes(
        gzip.compress(small_csv.encode())
    )
    assert main(FAST + ["--validation_fraction", "0"], environ(base)) == EXIT_OK
    assert "validation:" not in capsys.readouterr().out
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["validation"] is None and metrics["data"]["training_rows"] == 5_000


def test_duplicates_sum_merges_repeated_rows(tmp_path, small_csv):
    rows = small_csv.splitlines()
    base = opt_ml(tmp_path, {"training": {"t.csv": "\n".join(rows + rows[1:101]) + "\n"}})
    assert main(FAST + ["--duplicates", "sum"], environ(base)) == EXIT_OK
    data = json.loads((base / "output" / "data" / "metrics.json").read_text())["data"]
    assert data["training_channel_rows"] == 5_000


def test_spotlight_preset_and_hyperparameter_override(tmp_path, small_csv):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    argv = ["--preset", "spotlight", "--n_iter", "1", "--embedding_dim", "4"]
    assert main(argv, environ(base)) == EXIT_OK
    model = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert model.hyperparameters["loss"] == "pointwise"  # Spotlight's default
    assert model.hyperparameters["embedding_dim"] == 4 and model.num_items > 0


# ---------------------------------------------------------------------- checkpoints
def test_resume_continues_exactly_where_the_checkpoint_left_off(tmp_path, small_csv):
    """2 epochs, then the same job with n_iter=4 resumes: bitwise equal to 4 epochs at once."""
    straight = opt_ml(tmp_path / "a", {"training": {"t.csv": small_csv}})
    resumed = opt_ml(tmp_path / "b", {"training": {"t.csv": small_csv}})
    args = ["--embedding_dim", "8", "--random_state", "5"]
    assert main(args + ["--n_iter", "4"], environ(straight)) == EXIT_OK
    assert main(args + ["--n_iter", "2"], environ(resumed)) == EXIT_OK
    assert main(args + ["--n_iter", "4"], environ(resumed)) == EXIT_OK
    a = ImplicitFactorizationModel.load(straight / "model", device="cpu")
    b = ImplicitFactorizationModel.load(resumed / "model", device="cpu")
    assert a.epochs_trained == b.epochs_trained == 4
    for name in ("user_embeddings", "item_embeddings", "user_biases", "item_biases"):
        assert torch.equal(getattr(a._net, name), getattr(b._net, name)), name
    assert json.loads((resumed / "output/data/metrics.json").read_text())["resumed_from_epoch"] == 2


def test_checkpoint_state_has_its_own_field_and_the_old_place_still_resumes(tmp_path, small_csv):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    args = ["--embedding_dim", "8", "--random_state", "5", "--validation_fraction", "0"]
    assert main(args + ["--n_iter", "2"], environ(base)) == EXIT_OK
    config_file = base / "checkpoints" / "epoch-000002" / "spotlight-model.json"
    config = json.loads(config_file.read_text())
    assert set(config["checkpoint"]) >= {"data_sha256", "hyperparameters"}
    assert "checkpoint" not in config["metrics"]
    # a checkpoint written when the state lived in metrics (same content, other place)
    config["metrics"] = {"checkpoint": config.pop("checkpoint")}
    config_file.write_text(json.dumps(config))
    assert main(args + ["--n_iter", "3"], environ(base)) == EXIT_OK
    metrics = json.loads((base / "output/data/metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 2 and metrics["epochs_trained"] == 3


def test_checkpoint_of_another_configuration_is_refused(tmp_path, small_csv):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    assert main(FAST, environ(base)) == EXIT_OK
    (base / "model" / "spotlight-model.json").unlink()
    (base / "model" / "spotlight-model.npz").unlink()
    assert main(FAST + ["--learning_rate", "0.1"], environ(base)) == EXIT_USER_ERROR
    assert "hyperparameter learning_rate was 0.005 there and is 0.1 now" in failure(base)
    assert "resume=never" in failure(base)
    assert model_files(base) == []
    (base / "output" / "failure").unlink()
    assert main(FAST + ["--learning_rate", "0.1", "--resume", "never"], environ(base)) == EXIT_OK
    ckpt = ImplicitFactorizationModel.load(base / "checkpoints" / "epoch-000002", device="cpu")
    assert ckpt.hyperparameters["learning_rate"] == 0.1


def test_checkpoint_of_other_data_is_refused(tmp_path, small_csv):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    assert main(FAST, environ(base)) == EXIT_OK
    rows = small_csv.splitlines()
    (base / "input/data/training/t.csv").write_text("\n".join(rows[:-1]) + "\n")
    assert main(FAST, environ(base)) == EXIT_USER_ERROR
    assert "trained on other data" in failure(base)


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path, small_csv, capsys):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    every_epoch = ["--validation_fraction", "0", "--checkpoint_interval", "0"]
    assert main(FAST + ["--n_iter", "3"] + every_epoch, environ(base)) == EXIT_OK
    newest = base / "checkpoints" / "epoch-000003" / "spotlight-model.npz"
    newest.write_bytes(newest.read_bytes()[:100])  # an upload cut short
    assert main(FAST + ["--n_iter", "4"] + every_epoch, environ(base)) == EXIT_OK
    out = capsys.readouterr().out
    assert "cannot be loaded" in out and "resuming from checkpoint" in out
    assert "at epoch 2 of 4" in out
    assert ImplicitFactorizationModel.load(base / "model").epochs_trained == 4


def test_checkpoints_can_be_disabled(tmp_path, small_csv):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    assert main(FAST + ["--checkpoint_dir", "none"], environ(base)) == EXIT_OK
    assert not (base / "checkpoints").exists()
    custom = tmp_path / "elsewhere"
    assert main(FAST + ["--checkpoint_dir", str(custom)], environ(base)) == EXIT_OK
    # the served (refit) model's checkpoints, and the hold-out model's in their own folder
    assert sorted(p.name for p in custom.iterdir()) == ["epoch-000001", "epoch-000002", "holdout"]
    assert sorted(p.name for p in (custom / "holdout").iterdir()) == [
        "epoch-000001",
        "epoch-000002",
    ]


def test_checkpoints_are_written_on_the_first_and_last_epoch_and_by_interval(tmp_path, small_csv):
    """Writing every epoch costs more than a small model's epoch: within checkpoint_interval
    seconds only a run's first and last epochs are written (0 writes every epoch)."""
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    argv = FAST + ["--n_iter", "5", "--validation_fraction", "0"]
    assert main(argv + ["--checkpoint_interval", "86400"], environ(base)) == EXIT_OK
    assert sorted(p.name for p in (base / "checkpoints").iterdir()) == [
        "epoch-000001",
        "epoch-000005",
    ]
    other = opt_ml(tmp_path / "b", {"training": {"t.csv": small_csv}})
    assert main(argv + ["--checkpoint_interval", "0"], environ(other)) == EXIT_OK
    # the newest two are kept
    assert sorted(p.name for p in (other / "checkpoints").iterdir()) == [
        "epoch-000004",
        "epoch-000005",
    ]


# ---------------------------------------------------------------------- pure parts
def test_hyperparameters_as_the_toolkit_passes_them(tmp_path):
    argv = [
        "--batch_size",
        "512",
        "--learning-rate=0.02",
        "--random_state",
        "",
        "--use_weights",
        "True",
        "--validation_fraction",
        "0.25",
        "stray",
        "--x",
        "1",
    ]
    model, opts, ignored = parse_hyperparameters(argv, tmp_path)
    assert model == {
        "batch_size": 512,
        "learning_rate": 0.02,
        "random_state": None,
        "use_weights": True,
    }
    assert opts["validation_fraction"] == 0.25 and opts["duplicates"] == "error"
    assert opts["checkpoint_dir"] == tmp_path / "checkpoints"
    assert ignored == ["stray", "x"]
    assert set(opts) == set(OPTIONS) | {"choose_epochs", "choose_prior"}
    assert opts["choose_epochs"] and opts["choose_prior"]  # not given, default preset
    assert not parse_hyperparameters(["--n_iter", "7"], tmp_path)[1]["choose_epochs"]
    assert not parse_hyperparameters(["--preset", "spotlight"], tmp_path)[1]["choose_epochs"]
    model, opts, _ = parse_hyperparameters(["--preset", "spotlight", "--n_iter", "AUTO"], tmp_path)
    assert opts["choose_epochs"] and "n_iter" not in model
    with pytest.raises(UserError, match="'batch_size'"):
        parse_hyperparameters(["--batch_size", "1.5"], tmp_path)
    with pytest.raises(UserError, match="'eval_every'"):
        parse_hyperparameters(["--eval_every", "-1"], tmp_path)


def test_environment_defaults_and_overrides(tmp_path):
    env = TrainingEnv.from_environ({})
    assert env.model_dir == Path("/opt/ml/model") and env.output_dir == Path("/opt/ml/output")
    assert env.output_data_dir == Path("/opt/ml/output/data") and env.num_gpus == 0
    (tmp_path / "input" / "data" / "training").mkdir(parents=True)
    env = TrainingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path), "SM_NUM_GPUS": "4"})
    assert env.channels == {"training": tmp_path / "input" / "data" / "training"}
    assert env.model_dir == tmp_path / "model" and env.num_gpus == 4
    env = TrainingEnv.from_environ(
        {
            "SM_CHANNELS": '["training","validation"]',
            "SM_CHANNEL_TRAINING": "/data/t",
            "SM_MODEL_DIR": "/m",
        }
    )
    assert env.channels == {
        "training": Path("/data/t"),
        "validation": Path("/opt/ml/input/data/validation"),
    }
    assert env.model_dir == Path("/m")


def test_holdout_is_reproducible_and_the_served_vocabulary_is_the_channels(tmp_path, small_csv):
    """The same validation_seed holds out the same rows; the served model is refit on every row,
    so ids seen only in held-out rows are known to it."""
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    assert main(FAST + ["--checkpoint_dir", "none"], environ(base)) == EXIT_OK
    first = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert main(FAST + ["--checkpoint_dir", "none"], environ(base)) == EXIT_OK
    second = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert first.user_map == second.user_map and first.item_map == second.item_map
    full = Interactions.from_csv(base / "input" / "data" / "training")
    assert first.item_map == full.item_map and first.user_map == full.user_map
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["data"]["fit_items"] < len(full.item_map)  # some only in held-out rows


def test_docs_list_every_hyperparameter_and_metric():
    from spotlight_sagemaker.contract.metric_lines import METRIC_DEFINITIONS
    from spotlight_sagemaker.core import DEFAULTS, PARAMS, SPOTLIGHT_DEFAULTS

    doc = (Path(__file__).resolve().parent.parent / "docs" / "training.md").read_text()
    for name in [*PARAMS, *OPTIONS]:
        assert f"| `{name}` |" in doc, name
    for name in PARAMS:  # the model table states today's defaults: keep it true
        row = next(r for r in doc.splitlines() if r.startswith(f"| `{name}` |"))
        cells = [c.strip() for c in row.split("|")[2:4]]
        want = [str(d[name]).lower() for d in (DEFAULTS, SPOTLIGHT_DEFAULTS)]
        assert cells == want, f"docs/training.md row {name}: {cells}, core says {want}"
    for d in METRIC_DEFINITIONS:
        assert d["Name"] in doc, d["Name"]


def test_unwritable_checkpoint_dir_is_a_user_error(tmp_path, small_csv):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(FAST + ["--checkpoint_dir", str(blocker / "ckpt")], environ(base)) == 1
    assert f"checkpoint_dir {blocker / 'ckpt'} cannot be created" in failure(base)


def test_killed_after_the_last_checkpoint_finishes_without_training(tmp_path, small_csv, capsys):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    assert main(FAST, environ(base)) == EXIT_OK
    for f in (base / "model").iterdir():  # as if killed between the last epoch and the save
        f.unlink()
    capsys.readouterr()
    assert main(FAST, environ(base)) == EXIT_OK
    out = capsys.readouterr().out
    assert "at epoch 2 of 2" in out and "loss=" not in out  # no epoch trained
    assert "validation:ndcg@10=" in out
    assert ImplicitFactorizationModel.load(base / "model").epochs_trained == 2


def test_the_adapter_imports_neither_the_sdk_nor_boto3():
    import subprocess
    import sys

    code = (
        "import sys, spotlight_sagemaker.container.training.job\n"
        "import spotlight_sagemaker.contract.metric_lines\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('sagemaker', 'boto3', 'botocore')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_with_lr_decay_a_checkpoint_of_another_n_iter_is_refused(tmp_path, small_csv):
    from spotlight_sagemaker.core import PARAMS

    if "lr_decay" not in PARAMS:
        pytest.skip("this core has no lr_decay")
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    argv = FAST + ["--lr_decay", "linear", "--validation_fraction", "0"]
    assert main(argv, environ(base)) == EXIT_OK  # n_iter=2
    assert main(argv + ["--n_iter", "3"], environ(base)) == EXIT_USER_ERROR
    assert "hyperparameter n_iter was 2 there and is 3 now" in failure(base)


# ---------------------------------------------------------------------- divergence
def test_a_diverging_run_is_a_user_error_and_writes_nothing(tmp_path, small_csv):
    """learning_rate=1e30 made the loss NaN from epoch 2 and the job exit 0 with MRR 2.0."""
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    argv = FAST + ["--n_iter", "5", "--learning_rate", "1e30"]
    assert main(argv, environ(base)) == EXIT_USER_ERROR
    message = failure(base)
    assert message.startswith("training diverged in epoch ")
    assert "use a smaller learning_rate (it is 1e+30)" in message
    assert model_files(base) == []
    assert not (base / "output" / "data" / "metrics.json").exists()
    # no checkpoint holds the diverged parameters
    for ckpt in (base / "checkpoints").rglob("epoch-*"):
        ImplicitFactorizationModel.load(ckpt, device="cpu")  # loads: finite


def test_a_checkpoint_with_non_finite_weights_is_not_resumed(tmp_path, small_csv, capsys):
    from _artifacts import rewrite_arrays

    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    every_epoch = ["--validation_fraction", "0", "--checkpoint_interval", "0"]
    assert main(FAST + ["--n_iter", "3"] + every_epoch, environ(base)) == EXIT_OK
    newest = base / "checkpoints" / "epoch-000003"
    broken = rewrite_arrays(
        newest, tmp_path / "broken", lambda a: a["user_embeddings"].fill(np.nan)
    )
    for f in broken.iterdir():
        (newest / f.name).write_bytes(f.read_bytes())
    assert main(FAST + ["--n_iter", "4"] + every_epoch, environ(base)) == EXIT_OK
    out = capsys.readouterr().out
    assert "non-finite user_embeddings" in out and "at epoch 2 of 4" in out
    model = ImplicitFactorizationModel.load(base / "model")
    assert model.epochs_trained == 4


def test_outside_a_sagemaker_job_a_rerun_trains_afresh(tmp_path, small_csv, capsys):
    """checkpoint_dir used to default to <base>/checkpoints everywhere: a second identical run
    outside SageMaker 'resumed' at epoch n of n and wrote the first run's parameters again."""
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    env = {k: v for k, v in environ(base).items() if k != "TRAINING_JOB_NAME"}
    argv = ["--embedding_dim", "8", "--n_iter", "2"]  # random_state unset: each run its own
    assert main(argv, env) == EXIT_OK
    first = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert not (base / "checkpoints").exists()
    assert main(argv, env) == EXIT_OK
    assert "resuming" not in capsys.readouterr().out
    second = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert first.seed != second.seed
    assert not torch.equal(first._net.item_embeddings, second._net.item_embeddings)
    # asked for explicitly, checkpoints work outside a job too
    assert main(argv + ["--checkpoint_dir", str(tmp_path / "ck")], env) == EXIT_OK
    assert (tmp_path / "ck" / "epoch-000002").is_dir()


# ---------------------------------------------------------------------- bad inputs, bounds
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "user_id,item_id\n1,2\n" + "u" * 10_000 + ",3\n",
            "line 3, column 'user_id': an id of 10000",
        ),
        (
            "user_id,item_id\n1,2\n" + "9" * 5_000 + ",3\n",
            "line 3, column 'user_id': an id of 5000",
        ),
        ("user_id,item_id\n1,24\x004\n1,244\n", "line 2, column 'item_id': an id holding a NUL"),
        ('user_id,item_id\n1,2\n"3,4\n5,6\n7,8\n', "line 3: a quoted field starts on this line"),
        ("user_id,item_id\n685.0,1.0\n302.0,2.0\n", "every user_id reads like a float ('302.0')"),
    ],
    ids=["long-id", "long-number", "nul", "unterminated-quote", "float-ids"],
)
def test_bad_ids_are_user_errors_naming_file_and_line(tmp_path, text, fragment):
    base = opt_ml(tmp_path, {"training": {"t.csv": text}})
    assert main(FAST, environ(base)) == EXIT_USER_ERROR
    assert fragment in failure(base)
    assert model_files(base) == []


def test_a_broken_symlink_in_the_channel_is_a_user_error(tmp_path, small_csv):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    (base / "input/data/training/more.csv").symlink_to(tmp_path / "gone.csv")
    assert main(FAST, environ(base)) == EXIT_USER_ERROR
    assert "more.csv: a broken symbolic link" in failure(base)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--loss", "adaptive_hinge", "--num_negative_samples", "5000"], "one training step"),
        (
            ["--loss", "bpr", "--batch_size", "10000000", "--embedding_dim", "4096"],
            "one training step",
        ),
        (["--num_negative_samples", "1000000"], "num_negative_samples"),
    ],
    ids=["negatives", "batch-dim", "over-the-cap"],
)
def test_hyperparameters_that_would_not_fit_are_refused_before_training(
    tmp_path, small_csv, args, fragment
):
    """num_negative_samples up to 1,000,000 was allowed and OOM-killed a 2,000-row job at
    21.9 GB."""
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    assert main(["--n_iter", "1", "--random_state", "1"] + args, environ(base)) == EXIT_USER_ERROR
    assert fragment in failure(base)


def test_the_largest_allowed_training_step_fits_in_memory(tmp_path, ml100k_csv):
    """The largest adaptive_hinge step allowed (batch x (negatives + 1) x d = 2**26 values) and
    the widest tables (d=4096) on MovieLens 100k, each one epoch, in a fresh process: peak RSS
    stays under 4 GB (measured ~0.7 GB)."""
    code = (
        "import json, resource, sys\n"
        "from spotlight_sagemaker.core import ImplicitFactorizationModel, Interactions\n"
        f"data = Interactions.from_csv({str(ml100k_csv)!r})\n"
        "for hp in ({'loss': 'adaptive_hinge', 'batch_size': 8192, 'num_negative_samples': 31,"
        " 'embedding_dim': 256}, {'loss': 'bpr', 'batch_size': 65536, 'embedding_dim': 512},"
        " {'embedding_dim': 4096, 'batch_size': 8192}):\n"
        "    ImplicitFactorizationModel(n_iter=1, random_state=0, device='cpu', **hp).fit(data)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) * 1024 < 4 * 2**30


def test_the_job_prints_its_epoch_line_not_the_cores(tmp_path, small_csv, capsys):
    base = opt_ml(tmp_path, {"training": {"t.csv": small_csv}})
    assert main(FAST + ["--validation_fraction", "0"], environ(base)) == EXIT_OK
    out = capsys.readouterr().out
    assert "epoch=2 " in out  # the metric line metric_definitions read
    assert "interactions/s" not in out  # the core's own line, on its own logger, left out
