"""SpotlightEstimator: client-side checks (before any AWS call), staging, attach round-trip."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from _sdk_helpers import (
    ROLE,
    algorithm_specification,
    estimator_options,
    forbid_aws_calls,
    no_sleep,
    session,
    training_channel,
)
from botocore.stub import Stubber

from spotlight_sagemaker import SpotlightEstimator, SpotlightModel, defaults, staging
from spotlight_sagemaker import session as sessions
from spotlight_sagemaker.contract.metric_lines import METRIC_DEFINITIONS
from spotlight_sagemaker.core.config import PARAMS, SPOTLIGHT_DEFAULTS


@pytest.fixture
def offline(aws_env, monkeypatch, tmp_path):
    """A session on which any AWS request fails the test (no moto: nothing may be sent)."""
    no_sleep(monkeypatch)
    monkeypatch.setattr(sessions, "_SAGEMAKER_METADATA", str(tmp_path / "not-in-sagemaker"))
    sm = session(aws_env)
    attempted = forbid_aws_calls(sm)
    yield sm
    assert attempted == []


def _est(sm, **kwargs):
    kwargs.setdefault("role", ROLE)
    kwargs.setdefault("instance_type", "ml.m5.xlarge")
    return SpotlightEstimator(sagemaker_session=sm, **kwargs)


# ----------------------------------------------------------------- defaults and hyperparameters
def test_defaults(offline):
    est = _est(offline, instance_type="ml.g4dn.xlarge")
    assert (est.framework_version, est.py_version) == ("2.6.0", "py312")
    assert est.base_job_name == "spotlight"
    assert est.entry_point == "train.py"
    assert est.metric_definitions == METRIC_DEFINITIONS
    assert est.metric_definitions is not METRIC_DEFINITIONS  # a copy the user may edit
    assert est.training_image_uri().endswith("/pytorch-training:2.6.0-gpu-py312")
    assert _est(offline).training_image_uri().endswith("/pytorch-training:2.6.0-cpu-py312")
    assert est.hyperparameters() == {}


def test_hyperparameters_from_arguments_and_dict_are_checked_and_converted(offline):
    est = _est(
        offline,
        loss="BPR",
        n_iter="5",
        hyperparameters={
            "learning_rate": "0.01",
            "random_state": None,
            "use_weights": "true",
            "preset": "spotlight",
            "validation_fraction": 0.2,
            "_tuning_objective_metric": "validation:ndcg@10",
        },
    )
    assert est.spotlight_hyperparameters == {
        "loss": "bpr",
        "n_iter": 5,
        "learning_rate": 0.01,
        "random_state": None,
        "use_weights": True,
        "preset": "spotlight",
        "validation_fraction": 0.2,
    }
    wire = est.hyperparameters()
    assert wire["loss"] == '"bpr"' and wire["n_iter"] == "5" and wire["random_state"] == "null"
    est.set_hyperparameters(embedding_dim=128)
    assert est.spotlight_hyperparameters["embedding_dim"] == 128
    with pytest.raises(ValueError, match="embedding_dim"):
        est.set_hyperparameters(embedding_dim=0)
    with pytest.raises(ValueError, match="distribution=.*not as a hyperparameter"):
        est.set_hyperparameters(sagemaker_torch_distributed_enabled=True)
    assert "sagemaker_torch_distributed_enabled" not in est.hyperparameters()


def test_auto_is_accepted_for_the_values_train_py_chooses(offline):
    est = _est(offline, n_iter="auto", hyperparameters={"popularity_prior": " AUTO "})
    assert est.spotlight_hyperparameters == {"n_iter": "auto", "popularity_prior": "auto"}
    assert est.hyperparameters()["n_iter"] == '"auto"'
    with pytest.raises(ValueError, match="'embedding_dim'"):
        _est(offline, embedding_dim="auto")


def test_every_core_hyperparameter_is_accepted(offline):
    values = dict(SPOTLIGHT_DEFAULTS, random_state=7, device="cpu")
    assert set(values) == set(PARAMS)
    assert _est(offline, **values).spotlight_hyperparameters == values


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"loss": "softmax-ish"}, ValueError, r"'loss' must be one of \['pointwise', 'bpr'"),
        ({"embedding_dim": "abc"}, ValueError, "'embedding_dim' must be an integer"),
        ({"embedding_dim": 0}, ValueError, "'embedding_dim' must be an integer >= 1"),
        ({"learning_rate": 0}, ValueError, "'learning_rate' must be a number > 0"),
        ({"n_iter": 2.5}, ValueError, "'n_iter'"),
        ({"device": "tpu"}, ValueError, r"'device' must be one of \['auto', 'cpu', 'cuda'\]"),
        ({"preset": "fast"}, ValueError, r"'preset' must be one of \['default', 'spotlight'\]"),
        ({"validation_fraction": 1.0}, ValueError, "'validation_fraction'"),
        ({"duplicates": "drop"}, ValueError, "'duplicates' must be one of"),
        ({"hyperparameters": {"lr": 0.1}}, ValueError, "unknown hyperparameter 'lr'; known: loss"),
        ({"hyperparameters": {"loss": "bpr"}, "loss": "bpr"}, ValueError, "'loss' given twice"),
        ({"embeding_dim": 32}, TypeError, "unknown argument.*embeding_dim.*embedding_dim"),
        ({"instance_count": 2}, ValueError, "instance_count must be 1 without distribution"),
        (
            {"distribution": {"mpi": {"enabled": True}}},
            ValueError,
            r"distribution=\{'mpi'.*only under torchrun.*mpi, smdistributed, pytorchddp",
        ),
        (
            {"distribution": {"torch_distributed": {"enabled": True, "nodes": 2}}},
            ValueError,
            "the keys are 'enabled' and 'processes_per_host'",
        ),
        (
            {"distribution": {"torch_distributed": {"enabled": True, "processes_per_host": 0}}},
            ValueError,
            "'processes_per_host'\\] must be an integer >= 1, got 0",
        ),
        (
            {"distribution": {"torch_distributed": {"enabled": False}}, "instance_count": 2},
            ValueError,
            "torch_distributed",
        ),
        (
            {"hyperparameters": {"sagemaker_torch_distributed_enabled": True}},
            ValueError,
            "'sagemaker_torch_distributed_enabled' asks the training image to start several",
        ),
        (
            {"hyperparameters": {"sagemaker_mpi_enabled": "true"}},
            ValueError,
            "'sagemaker_mpi_enabled' asks .* not as a hyperparameter",
        ),
        (
            {"hyperparameters": {"sagemaker_mpi_num_of_processes_per_host": 2}},
            ValueError,
            "'sagemaker_mpi_num_of_processes_per_host' asks",
        ),
        ({"instance_type": None}, ValueError, "instance_type is required: e.g. 'ml.m5.xlarge'"),
        ({"framework_version": "9.9.9"}, ValueError, "framework_version '9.9.9' has no AWS"),
        ({"py_version": "py27"}, ValueError, "py_version 'py27' has no AWS PyTorch training"),
        ({"ship_code": False}, ValueError, "ship_code=False needs image_uri"),
    ],
)
def test_bad_arguments_fail_before_any_aws_call(offline, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        _est(offline, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"instance_count": 2},
            "instance_count must be 1 without distribution (train.py then runs as one process), "
            "got 2; to train one model on several instances pass distribution={'torch_distributed'"
            ": {'enabled': True}} (optionally 'processes_per_host')",
        ),
        (
            {"distribution": {"smdistributed": {"dataparallel": {"enabled": True}}}},
            "distribution={'smdistributed': {'dataparallel': {'enabled': True}}}: train.py trains "
            "data-parallel only under torchrun: distribution={'torch_distributed': {'enabled': "
            "True}} (optionally 'processes_per_host'); mpi, smdistributed, pytorchddp and the "
            "other launchers are not supported",
        ),
    ],
)
def test_unsupported_launches_are_refused_with_one_clear_message(offline, kwargs, message):
    """The message says what is refused and what to use, without the hyperparameter names."""
    with pytest.raises(ValueError) as err:
        _est(offline, **kwargs)
    assert str(err.value) == message


def test_torch_distributed_sends_the_launcher_settings(offline):
    """One model on several instances (and processes): what the image's torchrun reads."""
    est = _est(offline, instance_count=3, distribution={"torch_distributed": {"enabled": True}})
    wire = est.hyperparameters()
    assert wire["sagemaker_torch_distributed_enabled"] == "true"
    assert "sagemaker_mpi_num_of_processes_per_host" not in wire
    assert est.instance_count == 3 and est.distribution == {"torch_distributed": {"enabled": True}}
    spec = {"torch_distributed": {"enabled": True, "processes_per_host": 2}}
    wire = _est(offline, instance_type="ml.c5.xlarge", distribution=spec).hyperparameters()
    assert wire["sagemaker_mpi_num_of_processes_per_host"] == "2"
    assert wire["sagemaker_instance_type"] == '"ml.c5.xlarge"'


def test_unknown_name_lists_known_ones(offline):
    with pytest.raises(ValueError) as err:
        _est(offline, hyperparameters={"factors": 8})
    for name in defaults.HYPERPARAMETER_NAMES:
        assert name in str(err.value)


def test_missing_role_outside_sagemaker(offline):
    with pytest.raises(ValueError, match="role is required outside SageMaker"):
        SpotlightEstimator(instance_type="ml.m5.xlarge", sagemaker_session=offline)
    with pytest.raises(ValueError, match="role is required outside SageMaker"):
        SpotlightModel("s3://bucket/model.tar.gz", sagemaker_session=offline)


@pytest.mark.parametrize("inputs", ["/no/such/file.csv", {"training": "/no/such/dir"}])
def test_missing_local_path_fails_before_upload(offline, inputs):
    with pytest.raises(FileNotFoundError, match="/no/such/"):
        _est(offline).fit(inputs, wait=False)


def test_fit_input_errors(offline, ml100k_csv):
    with pytest.raises(ValueError, match="inputs is required"):
        _est(offline).fit(wait=False)
    with pytest.raises(ValueError, match="file:// URIs work only in local mode"):
        _est(offline).fit("file://" + str(ml100k_csv), wait=False)


def test_transformer_needs_an_instance_type(offline):
    with pytest.raises(ValueError, match="instance_type is required"):
        _est(offline).transformer()


def test_model_version_without_inference_image(offline):
    with pytest.raises(ValueError, match="framework_version '2.8.0' has no AWS PyTorch inference"):
        SpotlightModel(
            "s3://b/model.tar.gz", role=ROLE, framework_version="2.8.0", sagemaker_session=offline
        )


def test_training_on_newer_image_still_serves_on_2_6(offline, monkeypatch):
    est = _est(offline, framework_version="2.8.0")
    assert est.training_image_uri().endswith("pytorch-training:2.8.0-cpu-py312")
    monkeypatch.setattr(SpotlightEstimator, "model_data", "s3://b/model.tar.gz")
    model = est.create_model()
    assert isinstance(model, SpotlightModel)
    assert (model.framework_version, model.entry_point) == ("2.6.0", "inference.py")
    assert model.serving_image_uri("us-east-1", "ml.m5.xlarge").endswith(
        "pytorch-inference:2.6.0-cpu-py312"
    )


# ----------------------------------------------------------------------------------- staging
def test_staged_source_dir_has_entry_points_and_package_without_junk():
    pkg = staging.package_dir()
    junk = pkg / "core" / "__pycache__" / "staging-test-junk.cpython-311.pyc"
    made_dir = not junk.parent.exists()
    junk.parent.mkdir(exist_ok=True)
    junk.write_bytes(b"junk")
    try:
        src = Path(staging.source_dir())
    finally:
        junk.unlink()
        if made_dir:
            junk.parent.rmdir()
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert {
        "train.py",
        "inference.py",
        "spotlight_sagemaker/__init__.py",
        "spotlight_sagemaker/core/config.py",
        "spotlight_sagemaker/container/serving/codec/__init__.py",
    } <= files
    assert not [
        f
        for f in files
        if "__pycache__" in f or f.endswith(".pyc") or "_entry_points" in f or "egg-info" in f
    ]
    assert staging.source_dir() == str(src)  # reused while nothing changed
    shipped = src / "spotlight_sagemaker" / "core" / "config.py"
    assert shipped.read_bytes() == (pkg / "core" / "config.py").read_bytes()


def test_staging_a_user_folder_is_cached_and_a_staged_folder_is_not_restaged(tmp_path):
    user = tmp_path / "code"
    user.mkdir()
    (user / "train.py").write_text("print('mine')\n")
    staged = staging.source_dir(user)
    assert staging.source_dir(user) == staged  # reused while nothing changed
    assert staging.resolve(staged, "train.py") == staged  # e.g. create_model() in local mode
    assert (Path(staged) / "train.py").read_text() == "print('mine')\n"
    (user / "train.py").write_text("print('changed')\n")
    restaged = staging.resolve(str(user), "train.py")
    assert restaged != staged and (Path(restaged) / "train.py").read_text() == "print('changed')\n"
    assert staging.resolve("s3://b/sourcedir.tar.gz", "train.py") == "s3://b/sourcedir.tar.gz"
    assert staging.resolve("src", "train.py", git_config={"repo": "x"}) == "src"


# ------------------------------------------------------------------------ payload arithmetic
def test_the_client_knows_the_codec_s_record_limit():
    from spotlight_sagemaker.container.serving.codec import Limits

    assert Limits().max_records == defaults.DEFAULT_MAX_RECORDS
    assert len('{"user_id":"1"}\n') == defaults.SHORTEST_REQUEST_LINE_BYTES


def test_max_payload_keeps_the_fan_out_under_the_response_cap():
    mib = 1024 * 1024
    for top_n in (1, 5, 10):
        mb = defaults.max_payload_mb(top_n)
        fan_out = top_n * defaults.OUTPUT_ROW_BYTES / defaults.REQUEST_LINE_BYTES
        assert mb * mib * fan_out <= defaults.RESPONSE_CAP_BYTES
        assert mb == 100 or (mb + 1) * mib * fan_out > defaults.RESPONSE_CAP_BYTES
    assert defaults.max_payload_mb() == 1
    assert defaults.max_payload_mb(top_n=1) == 10
    assert defaults.max_payload_mb(top_n=1000) == 1  # never below SageMaker's minimum
    with pytest.raises(ValueError, match="top_n must be a positive integer"):
        defaults.max_payload_mb(top_n=0)


# --------------------------------------------------------------------- attach round-trip
OPTIONS = dict(
    role=ROLE,
    instance_type="ml.g4dn.xlarge",
    volume_size=50,
    max_run=3600,
    output_path="s3://out-bucket/jobs/",
    base_job_name="spotlight",
    checkpoint_s3_uri="s3://ckpt-bucket/run",
    checkpoint_local_path="/opt/ml/checkpoints",
    use_spot_instances=True,
    max_wait=7200,
    max_retry_attempts=3,
    environment={"SPOTLIGHT_LOG": "debug"},
    enable_network_isolation=True,
    subnets=["subnet-1"],
    security_group_ids=["sg-1"],
    encrypt_inter_container_traffic=True,
    tags=[{"Key": "team", "Value": "recs"}],
    loss="bpr",
    n_iter=30,
    learning_rate=0.002,
    random_state=None,
    hyperparameters={"preset": "spotlight", "validation_fraction": 0.1},
)


def _describe(name, est, source):
    """describe_training_job as AWS returns it for a job ``est`` started."""
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    hps = {k: json.dumps(v) for k, v in est.spotlight_hyperparameters.items()}
    hps.update(
        {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(source),
            "sagemaker_container_log_level": "20",
            "sagemaker_job_name": json.dumps(name),
            "sagemaker_region": '"us-east-1"',
        }
    )
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://out-bucket/jobs/{name}/output/model.tar.gz"},
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "HyperParameters": hps,
        "AlgorithmSpecification": algorithm_specification(),
        "RoleArn": ROLE,
        "InputDataConfig": training_channel("s3://data/ml-100k/"),
        "OutputDataConfig": {"KmsKeyId": "", "S3OutputPath": "s3://out-bucket/jobs/"},
        "ResourceConfig": {
            "InstanceType": est.instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": 50,
            **({"VolumeKmsKeyId": est.volume_kms_key} if est.volume_kms_key else {}),
        },
        "VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
        "CreationTime": when,
        "TrainingStartTime": when,
        "TrainingEndTime": when,
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": "s3://ckpt-bucket/run", "LocalPath": "/opt/ml/checkpoints"},
        "Environment": {"SPOTLIGHT_LOG": "debug"},
        "RetryStrategy": {"MaximumRetryAttempts": 3},
        "ProfilerConfig": {"DisableProfiler": True},
    }


@pytest.mark.parametrize(
    "options",
    [
        OPTIONS,
        # an EBS-only instance type: the training volume is encrypted with the job's KMS key
        dict(OPTIONS, instance_type="ml.m5.xlarge", volume_kms_key="arn:aws:kms:us-east-1:1:key/v"),
    ],
    ids=["gpu", "volume-kms-key"],
)
def test_attach_rebuilds_an_equal_estimator_from_a_hand_written_description(offline, options):
    original = SpotlightEstimator(sagemaker_session=offline, **options)
    name = "spotlight-2026-01-01-00-00-00-000"
    source = f"s3://out-bucket/jobs/{name}/source/sourcedir.tar.gz"
    details = _describe(name, original, source)
    with Stubber(offline.sagemaker_client) as stub:
        stub.add_response("describe_training_job", details, {"TrainingJobName": name})
        stub.add_response(
            "list_tags", {"Tags": options["tags"]}, {"ResourceArn": details["TrainingJobArn"]}
        )
        stub.add_response("describe_training_job", details, {"TrainingJobName": name})
        attached = SpotlightEstimator.attach(name, sagemaker_session=offline)
        stub.add_response("describe_training_job", details, {"TrainingJobName": name})
        model = attached.create_model()  # model_data comes from the job description
        stub.assert_no_pending_responses()
    assert isinstance(attached, SpotlightEstimator)
    assert estimator_options(attached) == estimator_options(original)
    assert attached.source_dir == source  # re-fits and serves the code the job trained with
    assert attached.latest_training_job.name == name
    assert model.model_data == details["ModelArtifacts"]["S3ModelArtifacts"]
    assert (model.source_dir, model.entry_point) == (source, "inference.py")
    assert model.enable_network_isolation() is True


def test_attach_keeps_tuning_objective_and_custom_image(offline):
    original = _est(offline, image_uri="123.dkr.ecr.us-east-1.amazonaws.com/spotlight:1", n_iter=3)
    name = "spotlight-tuned-001"
    details = _describe(name, original, "s3://b/sourcedir.tar.gz")
    details["AlgorithmSpecification"]["TrainingImage"] = original.image_uri
    details["HyperParameters"]["_tuning_objective_metric"] = "validation:ndcg@10"
    init = SpotlightEstimator._prepare_init_params_from_job_description(details)
    assert init["image_uri"] == original.image_uri
    assert init["hyperparameters"] == {
        "n_iter": 3,
        "_tuning_objective_metric": "validation:ndcg@10",
    }
    rebuilt = SpotlightEstimator(sagemaker_session=offline, **init)
    assert rebuilt.spotlight_hyperparameters == {"n_iter": 3}


def test_staging_from_an_installed_layout(tmp_path):
    """Installed from a wheel, the entry points live inside the package (_entry_points/)."""
    import shutil
    import subprocess
    import sys

    site = tmp_path / "home" / ".config" / "site-packages"  # a path the SDK would refuse
    shutil.copytree(
        staging.package_dir(),
        site / "spotlight_sagemaker",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copytree(
        staging.entry_points_dir(),
        site / "spotlight_sagemaker" / "_entry_points",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    probe = (
        f"import sys, pathlib; sys.path.insert(0, {str(site)!r}); "
        "from spotlight_sagemaker import staging; print(staging.package_dir()); "
        "src = pathlib.Path(staging.source_dir()); print(src); "
        "print(*sorted(p.relative_to(src).as_posix() for p in src.rglob('*.py')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    pkg, src, files = run.stdout.splitlines()
    assert Path(pkg) == site / "spotlight_sagemaker"
    assert site not in Path(src).parents
    # named after the content: another process stages the same code at the same path (what
    # pipeline step caching needs), and finds it complete
    again = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert again.stdout.splitlines()[1] == src and Path(src).is_dir()
    files = files.split()
    assert {"train.py", "inference.py", "spotlight_sagemaker/core/config.py"} <= set(files)
    assert not [f for f in files if "_entry_points" in f]


def test_a_model_gets_its_own_staged_folder_without_a_misleading_log(caplog):
    """The SDK writes its repack scripts into a model's source folder in pipelines: a model
    given the estimator's staged folder is staged again, quietly, for serving."""
    import logging

    training = staging.source_dir()
    with caplog.at_level(logging.INFO, logger="spotlight_sagemaker.staging"):
        serving = staging.resolve(training, "inference.py", purpose="serving")
    assert serving != training and Path(serving).name.startswith("spotlight-servingdir-")
    assert (Path(serving) / "spotlight_sagemaker" / "core" / "config.py").is_file()
    assert "has its own" not in caplog.text
    assert staging.resolve(serving, "inference.py", purpose="serving") == serving


def test_instance_groups_of_more_than_one_instance_are_refused(offline):
    from sagemaker.instance_group import InstanceGroup

    two = [InstanceGroup("a", "ml.m5.xlarge", 2)]
    with pytest.raises(ValueError, match=r"one group \(of one instance .* counts \[2\]"):
        _est(offline, instance_type=None, instance_groups=two)
    spec = {"torch_distributed": {"enabled": True}}
    _est(offline, instance_type=None, instance_groups=two, distribution=spec)  # one job of 2
    pair = [InstanceGroup("a", "ml.m5.xlarge", 1), InstanceGroup("b", "ml.g4dn.xlarge", 1)]
    with pytest.raises(ValueError, match="got 2 group"):
        _est(offline, instance_type=None, instance_groups=pair)


def test_distribution_round_trips_through_the_hyperparameters():
    """attach() rebuilds ``distribution`` from what the job was sent."""
    from spotlight_sagemaker import distribution

    spec = {"torch_distributed": {"enabled": True, "processes_per_host": 2}}
    sent = distribution.launcher_hyperparameters(spec, "ml.c5.xlarge")
    wire = {k: json.dumps(v) for k, v in {**sent, "n_iter": 3}.items()}
    decoded = {k: json.loads(v) for k, v in wire.items()}
    assert distribution.from_hyperparameters(decoded) == (spec, {"n_iter": 3})
    assert distribution.from_hyperparameters({"n_iter": 3}) == (None, {"n_iter": 3})
