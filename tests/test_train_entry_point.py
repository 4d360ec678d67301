"""entry_points/train.py under the AWS PyTorch training image's own toolkits.

Each test captures what ``SpotlightEstimator(...).fit()`` sends (under moto: the job's
HyperParameters, JSON-encoded as the SDK encodes them, and the ``sourcedir.tar.gz`` it stages),
builds a temporary /opt/ml tree from it (hyperparameters.json, inputdataconfig.json,
resourceconfig.json, channel files), points SAGEMAKER_BASE_DIR at it and runs sagemaker-training's
``train`` command in a subprocess with ``SAGEMAKER_TRAINING_MODULE`` set as the image sets it:
``sagemaker_pytorch_container.training:main`` (PyPI ``sagemaker-pytorch-training``). The only
change from SageMaker is that ``sagemaker_submit_directory`` names the downloaded tarball
instead of its S3 URI (the toolkit reads either).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _procs import kill_tree, run_in_own_group, wait_gone
from _sdk_helpers import sdk_training_job

from spotlight_sagemaker.contract.metric_lines import METRIC_DEFINITIONS, parse_metric_lines
from spotlight_sagemaker.core import ImplicitFactorizationModel

REPO = Path(__file__).resolve().parent.parent
TRAIN_COMMAND = Path(sys.executable).with_name("train")  # sagemaker-training's console script
EPOCH_LINE = re.compile(r"^epoch=(\d+) loss=\S+ seconds=\S+ throughput=\S+$", re.M)
#: What the AWS PyTorch training images set (their Dockerfile's ENV).
DLC_TRAINING_MODULE = "sagemaker_pytorch_container.training:main"


@pytest.fixture(scope="module")
def seed_rows(ml100k_csv: Path) -> list[str]:
    """The seed file's header and first 20,000 rows."""
    with open(ml100k_csv, encoding="utf-8") as fh:
        return [next(fh) for _ in range(20_001)]


def make_opt_ml(
    base: Path,
    hyperparameters: dict,
    channels: dict[str, dict[str, str]],
    extra: dict | None = None,
    **estimator_kwargs,
) -> Path:
    """A SageMaker /opt/ml tree under ``base`` for the job a SpotlightEstimator with these
    ``hyperparameters`` sends; ``extra`` hyperparameters are added as SageMaker would pass
    them (a tuner's, or a job made without the estimator); channel name -> {file: text}."""
    sent, tarball = sdk_training_job(hyperparameters, base.parent / "sdk", **estimator_kwargs)
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hps = {
        **sent,
        **{k: json.dumps(v) for k, v in (extra or {}).items()},
        "sagemaker_submit_directory": json.dumps(str(tarball)),
    }
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    channel_config = {
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
        "ContentType": "text/csv",
    }
    (config / "inputdataconfig.json").write_text(json.dumps({c: channel_config for c in channels}))
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {
                "current_host": "algo-1",
                "hosts": ["algo-1"],
                "current_instance_type": "ml.m5.xlarge",
                "current_group_name": "homogeneousCluster",
                "network_interface_name": "eth0",
            }
        )
    )
    for name, files in channels.items():
        folder = base / "input" / "data" / name
        folder.mkdir(parents=True)
        for file_name, text in files.items():
            (folder / file_name).write_text(text)
    (base / "code").mkdir()
    return base


def toolkit_env(base: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "PYTHONPATH"))
    }
    # test instrumentation only (see STALL_SOURCE): a sitecustomize on the job's PYTHONPATH
    shim = base.parent / "instrumentation"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(STALL_SOURCE)
    env.update(
        SAGEMAKER_BASE_DIR=str(base),
        SM_STUDIO_LOCAL_MODE="true",  # skips the toolkit's DNS wait for the hosts
        PYTHONUNBUFFERED="1",
        AWS_DEFAULT_REGION="us-east-1",
        TRAINING_JOB_NAME="toolkit-test-job",  # SageMaker sets it in every training job
        SAGEMAKER_TRAINING_MODULE=DLC_TRAINING_MODULE,
        PYTHONPATH=str(shim),
    )
    return env


#: Imported by every Python process of a job whose PYTHONPATH holds the shim folder (the toolkit
#: puts its own sys.path there for train.py): with SPOTLIGHT_TEST_STALL_AT=<n>, train.py stops
#: for good right after writing checkpoint n, like an instance reclaimed at that moment, so the
#: interruption test kills a job that cannot have finished (no race with the training speed).
STALL_SOURCE = """
import os, sys
AT = os.environ.get("SPOTLIGHT_TEST_STALL_AT")
if AT and sys.argv and sys.argv[0].endswith("train.py"):
    import importlib.abc, importlib.machinery, time

    class _Stall(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "spotlight_sagemaker.container.training.checkpoints":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                save = module.save_checkpoint

                def save_then_stall(model, *args, **kwargs):
                    out = save(model, *args, **kwargs)
                    if model.epochs_trained >= int(AT):
                        print("stalled after checkpoint", out, flush=True)
                        while True:
                            time.sleep(3600)
                    return out

                module.save_checkpoint = save_then_stall

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Stall())
"""


def run_toolkit(base: Path) -> subprocess.CompletedProcess:
    """Run ``train`` in its own process group; on a timeout the whole group is killed."""
    assert TRAIN_COMMAND.is_file(), f"sagemaker-training's train command not at {TRAIN_COMMAND}"
    return run_in_own_group([str(TRAIN_COMMAND)], toolkit_env(base), base)


def artifact_files(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []


@pytest.mark.slow
def test_trains_under_the_toolkit_like_the_dlc(tmp_path, aws_env, seed_rows):
    base = make_opt_ml(
        tmp_path / "opt_ml",
        {"n_iter": 3, "embedding_dim": 16, "random_state": None, "learning_rate": "0.01"},
        {"training": {"part-0.csv": "".join(seed_rows)}},
        # a tuner adds the first; the second comes from a job made without the estimator
        extra={"_tuning_objective_metric": "validation:ndcg@10", "experiment_tag": "a b"},
    )
    proc = run_toolkit(base)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Imported framework sagemaker_pytorch_container.training" in out
    assert "Invoking user training script" in out  # the image's launcher ran train.py
    assert not (base / "output" / "failure").exists()
    assert (base / "output" / "success").exists()  # written by the toolkit
    assert (base / "code" / "train.py").is_file()  # extracted from sourcedir.tar.gz

    assert artifact_files(base / "model") == ["spotlight-model.json", "spotlight-model.npz"]
    model = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert model.epochs_trained == 3
    assert model.hyperparameters["learning_rate"] == 0.01
    assert model.hyperparameters["random_state"] is None and model.seed is not None
    assert set(model.metrics["validation"]) >= {"ndcg@10", "precision@10", "mrr", "coverage@10"}

    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 3 and len(metrics["history"]) == 3
    # the toolkit keeps _tuning_objective_metric to itself; other extras reach train.py
    assert metrics["ignored_arguments"] == ["experiment_tag"]
    assert metrics["data"]["training_channel_rows"] == 20_000
    assert metrics["data"]["fit_rows"] == 18_000  # the validated model: less the hold-out
    assert metrics["data"]["training_rows"] == 20_000  # the served model: refit on every row
    assert metrics["refit"] == {"rows": 20_000, "epochs": 3}
    assert metrics["data"]["validation_rows_read"] == 2_000
    assert metrics["validation"] == model.metrics["validation"]

    # the validated model's 3 epochs, then the refit's
    assert [int(e) for e in EPOCH_LINE.findall(proc.stdout)] == [1, 2, 3, 1, 2, 3]
    parsed = parse_metric_lines(proc.stdout.splitlines())
    assert set(parsed) == {d["Name"] for d in METRIC_DEFINITIONS}
    refit_losses = parsed["train:loss"][3:]
    assert refit_losses == pytest.approx([h["loss"] for h in metrics["history"]], abs=1e-6)
    assert parsed["validation:ndcg@10"] == [
        pytest.approx(metrics["validation"]["ndcg@10"], abs=1e-6)
    ]


@pytest.mark.slow
def test_user_error_under_the_toolkit_keeps_our_failure_reason(tmp_path, aws_env):
    base = make_opt_ml(
        tmp_path / "opt_ml", {"n_iter": 2}, {"training": {"data.csv": "user,item\n1,2\n3,4\n"}}
    )
    proc = run_toolkit(base)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failure = (base / "output" / "failure").read_text()
    assert "missing column" in failure and "'user_id'" in failure and "data.csv" in failure
    assert failure.count("\n") == 1  # one line; the toolkit does not overwrite it
    assert artifact_files(base / "model") == []
    assert not (base / "output" / "success").exists()


def _killed_after_checkpoint_2(base: Path, log_path: Path) -> int | None:
    """Run the job with ``SPOTLIGHT_TEST_STALL_AT=2`` and SIGKILL it with every process it
    started (the instance goes away: toolkit, launcher and every train.py) once rank 0 has
    written checkpoint 2 and stalled there; returns the exit status. No train.py outlives it."""
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(TRAIN_COMMAND)],
        env={**toolkit_env(base), "SPOTLIGHT_TEST_STALL_AT": "2"},
        cwd=base,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180  # a hang guard, not a race: train.py stalls there
        while "stalled after checkpoint" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "no checkpoint after 180 s"
            time.sleep(0.05)
        killed = kill_tree(proc.pid)  # torchrun's workers are in sessions of their own
        assert killed, "the job started no process below the toolkit"
        wait_gone(killed)
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
        proc.wait(timeout=30)
        log.close()
    return proc.returncode


def _new_instance(base: Path) -> None:
    """A new instance: fresh code/, model/, output/; SageMaker restores /opt/ml/checkpoints."""
    for name in ("code", "model", "output"):
        subprocess.run(["rm", "-rf", str(base / name)], check=True)
    (base / "code").mkdir()


@pytest.mark.slow
def test_spot_interruption_resumes_from_the_checkpoint(tmp_path, aws_env, seed_rows):
    n_iter = 6
    base = make_opt_ml(
        tmp_path / "opt_ml",
        {
            "n_iter": n_iter,
            "embedding_dim": 16,
            "random_state": 7,
            "loss": "adaptive_hinge",
            "batch_size": 256,
            "validation_fraction": 0,  # one model, so the checkpoints are the served model's
            "checkpoint_interval": 0,  # every epoch
        },
        {"training": {"data.csv": "".join(seed_rows[:5_001])}},
    )
    checkpoints = base / "checkpoints"
    assert _killed_after_checkpoint_2(base, tmp_path / "first.log") == -signal.SIGKILL
    assert artifact_files(base / "model") == []  # killed before the end
    done = max(int(p.name.split("-")[1]) for p in checkpoints.glob("epoch-*"))
    assert done == 2

    _new_instance(base)
    proc = run_toolkit(base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        f"resuming from checkpoint {checkpoints / f'epoch-{done:06d}'} at epoch {done}"
        in proc.stdout
    )
    assert [int(e) for e in EPOCH_LINE.findall(proc.stdout)] == list(range(done + 1, n_iter + 1))
    model = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert model.epochs_trained == n_iter
    assert [h.epoch for h in model.history] == list(range(1, n_iter + 1))
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == done and metrics["epochs_trained"] == n_iter
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        f"epoch-{n_iter - 1:06d}",
        f"epoch-{n_iter:06d}",
    ]


#: What ``SpotlightEstimator(..., distribution=TORCH_DISTRIBUTED)`` asks of the image: torchrun,
#: here 2 processes on one CPU instance (the image's default on CPU is one per instance).
TORCH_DISTRIBUTED = {"torch_distributed": {"enabled": True, "processes_per_host": 2}}


@pytest.mark.slow
def test_data_parallel_under_the_toolkit_writes_one_model(tmp_path, aws_env, seed_rows):
    """torch_distributed as the SDK sends it, run by the image's own launcher (torchrun, two
    gloo processes): one model, one metrics.json, every metric line once."""
    base = make_opt_ml(
        tmp_path / "opt_ml",
        {"n_iter": 2, "embedding_dim": 8, "random_state": 5},
        {"training": {"data.csv": "".join(seed_rows[:3_001])}},
        instance_type="ml.c5.xlarge",
        distribution=TORCH_DISTRIBUTED,
    )
    proc = run_toolkit(base)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Invoking TorchDistributed" in out and "torchrun" in out
    assert "rank 0 of 2 (gloo" in out
    assert not (base / "output" / "failure").exists()
    assert artifact_files(base / "model") == ["spotlight-model.json", "spotlight-model.npz"]
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["data_parallel"] == {"processes": 2}
    assert metrics["epochs_trained"] == 2 and metrics["refit"] == {"rows": 3_000, "epochs": 2}
    # the validated model's 2 epochs, then the refit's: each line once (rank 0 prints them)
    assert [int(e) for e in EPOCH_LINE.findall(proc.stdout)] == [1, 2, 1, 2]
    parsed = parse_metric_lines(proc.stdout.splitlines())
    assert len(parsed["validation:ndcg@10"]) == 1
    assert parsed["validation:ndcg@10"][0] == pytest.approx(
        metrics["validation"]["ndcg@10"], abs=1e-6
    )
    model = ImplicitFactorizationModel.load(base / "model", device="cpu")
    assert model.epochs_trained == 2 and model.seed == metrics["seed"]


@pytest.mark.slow
def test_data_parallel_spot_interruption_resumes(tmp_path, aws_env, seed_rows):
    """Two ranks; rank 0 writes checkpoint 2 and the instance goes away; the restarted job
    (two ranks again) resumes at epoch 2 on both and finishes."""
    n_iter = 4
    base = make_opt_ml(
        tmp_path / "opt_ml",
        {
            "n_iter": n_iter,
            "embedding_dim": 8,
            "random_state": 7,
            "loss": "bpr",
            "sparse": True,
            "validation_fraction": 0,
            "checkpoint_interval": 0,
        },
        {"training": {"data.csv": "".join(seed_rows[:3_001])}},
        instance_type="ml.c5.xlarge",
        distribution=TORCH_DISTRIBUTED,
    )
    checkpoints = base / "checkpoints"
    _killed_after_checkpoint_2(base, tmp_path / "first.log")
    assert artifact_files(base / "model") == []
    assert max(int(p.name.split("-")[1]) for p in checkpoints.glob("epoch-*")) == 2

    _new_instance(base)
    proc = run_toolkit(base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"resuming from checkpoint {checkpoints / 'epoch-000002'} at epoch 2" in proc.stdout
    assert [int(e) for e in EPOCH_LINE.findall(proc.stdout)] == [3, 4]
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 2 and metrics["epochs_trained"] == n_iter
    assert ImplicitFactorizationModel.load(base / "model", device="cpu").epochs_trained == n_iter


@pytest.mark.slow
def test_an_mpi_launch_is_one_clear_user_error(tmp_path, aws_env, seed_rows):
    """MPI (distribution mpi/smdistributed/pytorchddp) is refused by the estimator; a job made
    without it still fails with one line, written once by rank 0."""
    base = make_opt_ml(
        tmp_path / "opt_ml",
        {"n_iter": 2, "embedding_dim": 8},
        {"training": {"data.csv": "".join(seed_rows[:2_001])}},
    )
    env = {**toolkit_env(base), "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}
    proc = run_in_own_group([str(TRAIN_COMMAND)], env, base)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith("train.py was started by MPI as 2 processes"), failure
    assert "torch_distributed" in failure and failure.count("\n") == 1
    assert artifact_files(base / "model") == []
