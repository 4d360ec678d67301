"""The whole SDK flow against moto: what AWS receives from the Spotlight client classes.

Moto runs nothing: a real artifact (the ``trained_model_dir`` fixture) is uploaded where the
training job says its model is, before anything repacks it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import moto
import pytest
from _sdk_helpers import (
    ROLE,
    algorithm_specification,
    capture,
    estimator_options,
    no_sleep,
    put_model,
    read_tar,
    s3_split,
    session,
    training_channel,
)
from botocore.stub import Stubber

from spotlight_sagemaker import SpotlightEstimator, SpotlightModel, SpotlightPredictor
from spotlight_sagemaker.contract.metric_lines import METRIC_DEFINITIONS
from spotlight_sagemaker.core import ImplicitFactorizationModel

GPU = "ml.g4dn.xlarge"


@pytest.fixture
def sm(aws_env: str, monkeypatch: pytest.MonkeyPatch):
    no_sleep(monkeypatch)
    with moto.mock_aws():
        yield session(aws_env)


def _junk(names: list[str]) -> list[str]:
    return [
        n
        for n in names
        if "__pycache__" in n
        or n.endswith((".pyc", ".pyo"))
        or "_entry_points" in n
        or ".egg-info" in n
    ]


@pytest.mark.slow
def test_whole_flow_upload_fit_attach_transform_deploy(sm, ml100k_csv, trained_model_dir, tmp_path):
    created = capture(sm, "CreateTrainingJob")
    client = sm.sagemaker_client
    s3_train = sm.upload_data(str(ml100k_csv), key_prefix="spotlight-test/training")

    est = SpotlightEstimator(
        role=ROLE,
        instance_type=GPU,
        sagemaker_session=sm,
        loss="bpr",
        n_iter=5,
        hyperparameters={"embedding_dim": "48", "validation_fraction": 0.2},
        checkpoint_s3_uri=f"s3://{sm.default_bucket()}/checkpoints",
        use_spot_instances=True,
        max_wait=7200,
    )
    est.fit({"training": s3_train}, wait=True, logs="All")
    job = est.latest_training_job.name
    assert job.startswith("spotlight-")

    desc = client.describe_training_job(TrainingJobName=job)
    assert desc["AlgorithmSpecification"]["TrainingImage"].endswith(
        "/pytorch-training:2.6.0-gpu-py312"
    )
    hps = desc["HyperParameters"]
    assert {k: json.loads(v) for k, v in hps.items() if not k.startswith("sagemaker_")} == {
        "loss": "bpr",
        "n_iter": 5,
        "embedding_dim": 48,
        "validation_fraction": 0.2,
    }
    assert json.loads(hps["sagemaker_program"]) == "train.py"
    assert [c["ChannelName"] for c in desc["InputDataConfig"]] == ["training"]
    assert desc["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == s3_train
    assert desc["CheckpointConfig"]["S3Uri"] == f"s3://{sm.default_bucket()}/checkpoints"
    assert desc["EnableManagedSpotTraining"] is True
    assert desc["StoppingCondition"]["MaxWaitTimeInSeconds"] == 7200
    # moto replaces MetricDefinitions: assert on the request itself
    assert created[0]["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS

    # the shipped code: entry points + the package, no junk, importable without the SDK
    src = tmp_path / "sourcedir"
    names = read_tar(sm, json.loads(hps["sagemaker_submit_directory"]), src)
    assert {"train.py", "inference.py", "spotlight_sagemaker/core/__init__.py"} <= set(names)
    assert not _junk(names)
    assert "requirements.txt" not in names
    probe = (
        "import sys, spotlight_sagemaker.core, spotlight_sagemaker.container.serving.codec; "
        "print(spotlight_sagemaker.__file__); print('sagemaker' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=src,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout.split()
    assert out == [str(src / "spotlight_sagemaker" / "__init__.py"), "False"]

    put_model(sm, est.model_data, trained_model_dir)
    attached = SpotlightEstimator.attach(job, sagemaker_session=sm)
    got, want = estimator_options(attached), estimator_options(est)
    # the metric definitions AWS receives are asserted on the request above; what moto's
    # DescribeTrainingJob returns for them is moto's choice (it replaces them), not a contract
    got.pop("metrics"), want.pop("metrics")
    assert got == want
    assert attached.model_data == est.model_data

    transformer = attached.transformer(instance_type="ml.m5.xlarge")
    batch_input = sm.upload_data(str(ml100k_csv), key_prefix="spotlight-test/requests")
    transformer.transform(batch_input, wait=True)
    tdesc = client.describe_transform_job(TransformJobName=transformer.latest_transform_job.name)
    assert tdesc["TransformJobStatus"] == "Completed"
    assert tdesc["BatchStrategy"] == "MultiRecord"
    assert tdesc["MaxPayloadInMB"] == 1
    assert tdesc["TransformInput"]["SplitType"] == "Line"
    assert tdesc["TransformInput"]["ContentType"] == "application/jsonlines"
    assert tdesc["TransformOutput"]["Accept"] == "text/csv"
    assert tdesc["TransformOutput"]["AssembleWith"] == "Line"
    assert tdesc["Environment"]["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == "600"
    assert len(tdesc["Environment"]) <= 16

    mdesc = client.describe_model(ModelName=tdesc["ModelName"])
    container = mdesc["PrimaryContainer"]
    assert container["Image"].endswith("/pytorch-inference:2.6.0-cpu-py312")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert container["Environment"]["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] == "text/csv"
    packed = tmp_path / "model"
    names = read_tar(sm, container["ModelDataUrl"], packed)
    assert {
        "code/inference.py",
        "code/spotlight_sagemaker/core/__init__.py",
        "spotlight-model.json",
        "spotlight-model.npz",
    } <= {n.lstrip("./") for n in names}
    assert not _junk(names)
    served = ImplicitFactorizationModel.load(packed, device="cpu")
    assert (
        served.recommend("685", n=5).item_ids
        == ImplicitFactorizationModel.load(trained_model_dir, device="cpu")
        .recommend("685", n=5)
        .item_ids
    )

    predictor = attached.deploy(initial_instance_count=1, instance_type="ml.m5.large")
    assert isinstance(predictor, SpotlightPredictor)
    edesc = client.describe_endpoint(EndpointName=predictor.endpoint_name)
    assert edesc["EndpointStatus"] == "InService"
    config = client.describe_endpoint_config(EndpointConfigName=edesc["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.m5.large"
    deployed = client.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
    assert deployed["Image"].endswith("/pytorch-inference:2.6.0-cpu-py312")


def test_fit_uploads_a_local_folder_and_says_where(sm, ml100k_csv, tmp_path, caplog):
    folder = tmp_path / "train_data"
    folder.mkdir()
    (folder / "ml-100k-gt2.csv").write_bytes(ml100k_csv.read_bytes())
    est = SpotlightEstimator(role=ROLE, instance_type="ml.m5.xlarge", sagemaker_session=sm)
    with caplog.at_level("INFO", logger="spotlight_sagemaker"):
        est.fit(folder, wait=False, job_name="spotlight-local-folder")
    desc = sm.sagemaker_client.describe_training_job(TrainingJobName="spotlight-local-folder")
    assert desc["AlgorithmSpecification"]["TrainingImage"].endswith("2.6.0-cpu-py312")
    uri = desc["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri == f"s3://{sm.default_bucket()}/spotlight-local-folder/input/training"
    bucket, key = s3_split(uri)
    listed = sm.boto_session.client("s3").list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]
    assert [o["Key"] for o in listed] == [f"{key}/ml-100k-gt2.csv"]
    assert listed[0]["Size"] == ml100k_csv.stat().st_size
    assert any(uri in r.getMessage() and str(folder) in r.getMessage() for r in caplog.records)


def test_local_file_channel_is_uploaded_alone(sm, ml100k_csv):
    est = SpotlightEstimator(role=ROLE, instance_type="ml.m5.xlarge", sagemaker_session=sm)
    est.fit(
        {"training": str(ml100k_csv), "validation": str(ml100k_csv)},
        wait=False,
        job_name="spotlight-two-channels",
    )
    desc = sm.sagemaker_client.describe_training_job(TrainingJobName="spotlight-two-channels")
    uris = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in desc["InputDataConfig"]
    }
    for channel, uri in uris.items():
        bucket, key = s3_split(uri)
        listed = sm.boto_session.client("s3").list_objects_v2(Bucket=bucket, Prefix=key)
        assert [o["Key"] for o in listed["Contents"]] == [f"{key}/ml-100k-gt2.csv"], channel


def test_create_training_job_request_shape(sm):
    """Exact CreateTrainingJob request (botocore Stubber validates it against the API model)."""
    bucket = sm.default_bucket()
    est = SpotlightEstimator(
        role=ROLE,
        instance_type=GPU,
        sagemaker_session=sm,
        loss="bpr",
        n_iter="5",
        checkpoint_s3_uri="s3://ckpt-bucket/run1",
        use_spot_instances=True,
        max_wait=7200,
    )
    source = f"s3://{bucket}/spotlight-shape/source/sourcedir.tar.gz"
    expected = {
        "TrainingJobName": "spotlight-shape",
        "AlgorithmSpecification": algorithm_specification(),
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": GPU, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400, "MaxWaitTimeInSeconds": 7200},
        "InputDataConfig": training_channel("s3://data-bucket/ml-100k/"),
        "HyperParameters": {
            "loss": '"bpr"',
            "n_iter": "5",
            "sagemaker_submit_directory": json.dumps(source),
            "sagemaker_program": '"train.py"',
            "sagemaker_container_log_level": "20",
            "sagemaker_job_name": '"spotlight-shape"',
            "sagemaker_region": '"us-east-1"',
        },
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": "s3://ckpt-bucket/run1"},
        "ProfilerConfig": {"DisableProfiler": True},
    }
    with Stubber(sm.sagemaker_client) as stub:
        stub.add_response("create_training_job", {"TrainingJobArn": "arn:x"}, expected)
        est.fit("s3://data-bucket/ml-100k/", wait=False, job_name="spotlight-shape")
        stub.assert_no_pending_responses()


def _user_code(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


_PROBE = "import helper, spotlight_sagemaker; print(spotlight_sagemaker.__file__, helper.X)\n"


def test_a_user_source_dir_is_shipped_with_the_package(sm, tmp_path):
    """source_dir="my_code/" used to upload that folder alone: train.py could not import us."""
    created = capture(sm, "CreateTrainingJob")
    user = _user_code(
        tmp_path / "my_code",
        **{
            "train.py": _PROBE,
            "helper.py": "X = 'mine'\n",
            "data/vocab.txt": "a\n",
            "__pycache__/helper.cpython-311.pyc": "junk",
        },
    )
    est = SpotlightEstimator(
        role=ROLE, instance_type=GPU, sagemaker_session=sm, source_dir=str(user) + "/"
    )
    est.fit("s3://data-bucket/ml-100k/", wait=False, job_name="spotlight-user-code")
    hps = created[0]["HyperParameters"]
    assert hps["sagemaker_program"] == '"train.py"'
    root = tmp_path / "opt-ml-code"
    names = {
        n.lstrip("./") for n in read_tar(sm, json.loads(hps["sagemaker_submit_directory"]), root)
    }
    assert {
        "train.py",
        "helper.py",
        "data/vocab.txt",
        "inference.py",  # ours, for create_model(): the folder has none
        "spotlight_sagemaker/__init__.py",
        "spotlight_sagemaker/core/config.py",
    } <= names
    assert _junk(sorted(names)) == []
    assert (root / "train.py").read_text() == _PROBE  # theirs wins over ours
    # the job runs train.py in /opt/ml/code: it imports the shipped package
    run = subprocess.run(
        [sys.executable, "train.py"], cwd=root, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(root / "spotlight_sagemaker" / "__init__.py"), "mine"]

    # a script of another name is found in the folder; ours stay beside it
    est = SpotlightEstimator(
        role=ROLE,
        instance_type=GPU,
        sagemaker_session=sm,
        source_dir=str(_user_code(tmp_path / "other", **{"fit_me.py": "print(1)\n"})),
        entry_point="fit_me.py",
    )
    est.fit("s3://data-bucket/ml-100k/", wait=False, job_name="spotlight-user-entry")
    hps = created[1]["HyperParameters"]
    assert hps["sagemaker_program"] == '"fit_me.py"'
    names = set(read_tar(sm, json.loads(hps["sagemaker_submit_directory"]), tmp_path / "o2"))
    assert {"fit_me.py", "train.py", "inference.py", "spotlight_sagemaker/__init__.py"} <= {
        n.lstrip("./") for n in names
    }


def test_a_user_package_copy_replaces_the_installed_one(sm, tmp_path):
    created = capture(sm, "CreateTrainingJob")
    user = _user_code(
        tmp_path / "patched", **{"spotlight_sagemaker/__init__.py": "PATCHED = True\n"}
    )
    est = SpotlightEstimator(
        role=ROLE, instance_type=GPU, sagemaker_session=sm, source_dir=str(user)
    )
    est.fit("s3://data-bucket/ml-100k/", wait=False, job_name="spotlight-patched")
    root = tmp_path / "code"
    source = json.loads(created[0]["HyperParameters"]["sagemaker_submit_directory"])
    names = {n.lstrip("./") for n in read_tar(sm, source, root) if (root / n).is_file()}
    assert names == {"train.py", "inference.py", "spotlight_sagemaker/__init__.py"}
    assert (root / "spotlight_sagemaker" / "__init__.py").read_text() == "PATCHED = True\n"


def test_an_s3_source_dir_is_taken_as_given(sm):
    created = capture(sm, "CreateTrainingJob")
    source = "s3://code-bucket/mine/sourcedir.tar.gz"
    est = SpotlightEstimator(role=ROLE, instance_type=GPU, sagemaker_session=sm, source_dir=source)
    assert est.source_dir == source
    est.fit("s3://data-bucket/ml-100k/", wait=False, job_name="spotlight-s3-code")
    assert json.loads(created[0]["HyperParameters"]["sagemaker_submit_directory"]) == source


def test_source_dir_errors_name_the_folder(sm, tmp_path):
    with pytest.raises(FileNotFoundError, match="source_dir '.*nowhere' is not a folder"):
        SpotlightEstimator(
            role=ROLE, instance_type=GPU, sagemaker_session=sm, source_dir=str(tmp_path / "nowhere")
        )
    user = _user_code(tmp_path / "code", **{"helper.py": "X = 1\n"})
    with pytest.raises(ValueError, match="entry_point 'fit_me.py' is not in source_dir '.*code'"):
        SpotlightEstimator(
            role=ROLE,
            instance_type=GPU,
            sagemaker_session=sm,
            source_dir=str(user),
            entry_point="fit_me.py",
        )


def test_create_transform_job_request_shape(sm, trained_model_dir):
    bucket = sm.default_bucket()
    put_model(sm, f"s3://{bucket}/trained/model.tar.gz", trained_model_dir)
    model = SpotlightModel(
        f"s3://{bucket}/trained/model.tar.gz",
        role=ROLE,
        sagemaker_session=sm,
        name="spotlight-model",
    )
    transformer = model.transformer(instance_type="ml.m5.xlarge", env={"EXTRA": "1"})
    expected = {
        "TransformJobName": "spotlight-transform",
        "ModelName": "spotlight-model",
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 1,
        "Environment": {
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "600",
            "TS_DEFAULT_RESPONSE_TIMEOUT": "600",
            "TS_MAX_REQUEST_SIZE": "6553500",
            "TS_MAX_RESPONSE_SIZE": str(32 * 1024 * 1024),
            "SPOTLIGHT_MAX_RESPONSE_BYTES": str(32 * 1024 * 1024),
            "EXTRA": "1",
        },
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data-bucket/requests/"}
            },
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{bucket}/spotlight-transform",
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge"},
    }
    with Stubber(sm.sagemaker_client) as stub:
        stub.add_response("create_transform_job", {"TransformJobArn": "arn:y"}, expected)
        transformer.transform(
            "s3://data-bucket/requests/", job_name="spotlight-transform", wait=False
        )
        stub.assert_no_pending_responses()


def test_custom_images_ship_no_code(sm, trained_model_dir):
    """BYO images from docker/ have the package baked in: no sourcedir, no repack."""
    created = capture(sm, "CreateTrainingJob")
    train_image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/spotlight-train:1"
    est = SpotlightEstimator(
        role=ROLE,
        instance_type="ml.m5.xlarge",
        sagemaker_session=sm,
        image_uri=train_image,
        ship_code=False,
        n_iter=3,
    )
    est.fit("s3://data-bucket/ml-100k/", wait=True, job_name="spotlight-byo")
    request = created[0]
    assert request["AlgorithmSpecification"]["TrainingImage"] == train_image
    assert request["HyperParameters"] == {"n_iter": "3"}

    attached = SpotlightEstimator.attach("spotlight-byo", sagemaker_session=sm)
    assert attached.image_uri == train_image and attached.ship_code is False
    assert attached.spotlight_hyperparameters == {"n_iter": 3}

    put_model(sm, est.model_data, trained_model_dir)
    serve_image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/spotlight-serve:1"
    model = est.create_model(image_uri=serve_image, ship_code=False)
    transformer = model.transformer(instance_type="ml.m5.xlarge")
    desc = sm.sagemaker_client.describe_model(ModelName=transformer.model_name)
    assert desc["PrimaryContainer"]["Image"] == serve_image
    assert desc["PrimaryContainer"]["ModelDataUrl"] == est.model_data  # not repacked
    assert "SAGEMAKER_PROGRAM" not in desc["PrimaryContainer"].get("Environment", {})
    assert "TS_MAX_RESPONSE_SIZE" not in transformer.env  # MMS would ignore it


@pytest.mark.slow
def test_seed_notebook_calls_run_unchanged(
    aws_env, monkeypatch, ml100k_csv, trained_model_dir, tmp_path
):
    """The seed notebook (outpace/sagemaker-examples, Spotlight implicit factorization), its
    boto3 calls translated to these classes, in its own order, region and bucket."""
    no_sleep(monkeypatch)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    monkeypatch.chdir(tmp_path)
    with moto.mock_aws():
        import boto3
        import sagemaker as sage

        boto3.client("s3", region_name="us-east-2").create_bucket(
            Bucket="sagemaker-validation-us-east-2",
            CreateBucketConfiguration={"LocationConstraint": "us-east-2"},
        )
        # --- the notebook from here on ---
        TRAIN_DATA_DIR = "train_data"  # noqa: N806
        Path(TRAIN_DATA_DIR).mkdir()
        Path(f"{TRAIN_DATA_DIR}/ml-100k-gt2.csv").write_bytes(ml100k_csv.read_bytes())
        bucket = "sagemaker-validation-us-east-2"
        prefix = "spotlight-implicit-factorization-test"
        sess = sage.Session()
        s3_train = sess.upload_data(TRAIN_DATA_DIR, bucket, f"{prefix}/training")

        role = ROLE  # get_execution_role() inside SageMaker
        job_name_prefix = "spotlight-implicit-factorization-test"
        estimator = SpotlightEstimator(
            role=role,
            instance_type="ml.p3.2xlarge",
            volume_size=50,
            max_run=360000,
            output_path=f"s3://{bucket}/{job_name_prefix}/output",
            base_job_name=job_name_prefix,
            sagemaker_session=sess,
        )
        estimator.fit({"training": s3_train})
        job_info = sess.sagemaker_client.describe_training_job(
            TrainingJobName=estimator.latest_training_job.name
        )
        assert job_info["TrainingJobStatus"] == "Completed"
        model_data = job_info["ModelArtifacts"]["S3ModelArtifacts"]
        put_model(sess, model_data, trained_model_dir)  # what the real job would have written

        BATCH_INPUT_DIR = "batch_input"  # noqa: N806
        Path(BATCH_INPUT_DIR).mkdir()
        with open(BATCH_INPUT_DIR + "/recommendation.requests", "w") as outfile:
            json.dump({"user_id": "685", "top_n": "5"}, outfile)
            outfile.write("\n")
            json.dump({"user_id": "302", "top_n": "5"}, outfile)
        batch_input = sess.upload_data(BATCH_INPUT_DIR, bucket, f"{prefix}/batch_input")

        batch_output = f"s3://{bucket}/{job_name_prefix}/batch-output"
        transformer = estimator.transformer(
            instance_count=1,
            instance_type="ml.p3.2xlarge",
            strategy="SingleRecord",
            assemble_with="Line",
            accept="text/csv",
            output_path=batch_output,
        )
        transformer.transform(batch_input, content_type="application/json", split_type="Line")
        job_info = sess.sagemaker_client.describe_transform_job(
            TransformJobName=transformer.latest_transform_job.name
        )
        assert job_info["TransformJobStatus"] == "Completed"
        # --- end of the notebook ---
        assert job_info["BatchStrategy"] == "SingleRecord"
        assert job_info["TransformInput"]["ContentType"] == "application/json"
        assert job_info["TransformOutput"]["S3OutputPath"] == batch_output
        image = sess.sagemaker_client.describe_model(ModelName=job_info["ModelName"])
        assert image["PrimaryContainer"]["Image"] == (
            "763104351884.dkr.ecr.us-east-2.amazonaws.com/pytorch-inference:2.6.0-gpu-py312"
        )


def test_hyperparameter_tuner_gets_the_metric_definitions(sm):
    from sagemaker.tuner import ContinuousParameter, HyperparameterTuner, IntegerParameter

    created = capture(sm, "CreateHyperParameterTuningJob")
    est = SpotlightEstimator(
        role=ROLE,
        instance_type="ml.m5.xlarge",
        sagemaker_session=sm,
        loss="adaptive_hinge",
        n_iter=10,
    )
    ranges = {
        "learning_rate": ContinuousParameter(1e-3, 1e-2),
        "embedding_dim": IntegerParameter(16, 128),
    }
    # the convenience method, and the SDK's tuner given the estimator's definitions
    est.tuner(ranges, max_jobs=4, max_parallel_jobs=2).fit(
        "s3://data-bucket/ml-100k/", job_name="spotlight-hpo", wait=False
    )
    HyperparameterTuner(
        est,
        "validation:ndcg@10",
        ranges,
        max_jobs=4,
        max_parallel_jobs=2,
        metric_definitions=est.metric_definitions,
    ).fit("s3://data-bucket/ml-100k/", job_name="spotlight-hpo-sdk", wait=False)
    for request in created:
        job = request["TrainingJobDefinition"]
        assert request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"] == {
            "Type": "Maximize",
            "MetricName": "validation:ndcg@10",
        }
        assert job["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
        assert job["AlgorithmSpecification"]["TrainingImage"].endswith("2.6.0-cpu-py312")
        static = job["StaticHyperParameters"]
        assert json.loads(static["loss"]) == "adaptive_hinge"
        assert json.loads(static["n_iter"]) == 10
        assert json.loads(static["sagemaker_program"]) == "train.py"
        ranges_sent = request["HyperParameterTuningJobConfig"]["ParameterRanges"]
        assert [r["Name"] for r in ranges_sent["ContinuousParameterRanges"]] == ["learning_rate"]
        assert [r["Name"] for r in ranges_sent["IntegerParameterRanges"]] == ["embedding_dim"]
    assert len(created) == 2
    with pytest.raises(ValueError, match="unknown hyperparameter.*'lr'"):
        est.tuner({"lr": ContinuousParameter(1e-3, 1e-2)})


def test_tuner_fit_uploads_a_local_file_like_fit(sm, ml100k_csv):
    from sagemaker.tuner import ContinuousParameter

    created = capture(sm, "CreateHyperParameterTuningJob")
    est = SpotlightEstimator(role=ROLE, instance_type="ml.m5.xlarge", sagemaker_session=sm)
    tuner = est.tuner({"learning_rate": ContinuousParameter(1e-3, 1e-2)}, max_jobs=2)
    tuner.fit(str(ml100k_csv), job_name="spotlight-hpo-local", wait=False)
    channel = created[0]["TrainingJobDefinition"]["InputDataConfig"][0]
    uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
    assert channel["ChannelName"] == "training"
    assert uri == f"s3://{sm.default_bucket()}/spotlight-tuning/input/training"
    bucket, key = s3_split(uri)
    body = (
        sm.boto_session.client("s3")
        .get_object(Bucket=bucket, Key=f"{key}/ml-100k-gt2.csv")["Body"]
        .read()
    )
    assert body == ml100k_csv.read_bytes()


def test_tuner_fit_uploads_a_local_model_uri_like_fit(sm, ml100k_csv, tmp_path):
    from sagemaker.tuner import ContinuousParameter

    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"a previous model.tar.gz")  # uploaded as is; train.py checks it
    created = capture(sm, "CreateHyperParameterTuningJob")
    est = SpotlightEstimator(
        role=ROLE, instance_type="ml.m5.xlarge", sagemaker_session=sm, model_uri=str(archive)
    )
    tuner = est.tuner({"learning_rate": ContinuousParameter(1e-3, 1e-2)}, max_jobs=2)
    tuner.fit(str(ml100k_csv), job_name="spotlight-hpo-warm", wait=False)
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in created[0]["TrainingJobDefinition"]["InputDataConfig"]
    }
    assert set(channels) == {"training", "model"}
    assert channels["model"] == f"s3://{sm.default_bucket()}/spotlight-tuning/input/model"
    bucket, key = s3_split(channels["model"])
    body = (
        sm.boto_session.client("s3")
        .get_object(Bucket=bucket, Key=f"{key}/model.tar.gz")["Body"]
        .read()
    )
    assert body == archive.read_bytes()


@pytest.mark.parametrize(
    ("ranges", "pattern"),
    [
        ({"learning_rate": ("c", 0.0, 0.1)}, r"hyperparameter_ranges\['learning_rate'\]: .*> 0"),
        ({"embedding_dim": ("i", 0, 64)}, r"hyperparameter_ranges\['embedding_dim'\]"),
        ({"embedding_dim": ("i", 128, 16)}, "min_value 128 is above max_value 16"),
        ({"loss": ("cat", ["bpr", "softmax-ish"])}, r"\['loss'\]: .*'softmax-ish'"),
        ({"lr": ("c", 0.1, 0.2)}, "unknown hyperparameter"),
    ],
)
def test_tuner_ranges_are_checked_before_any_aws_call(sm, ranges, pattern):
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter, IntegerParameter

    kinds = {"c": ContinuousParameter, "i": IntegerParameter, "cat": CategoricalParameter}
    built = {k: kinds[v[0]](*v[1:]) for k, v in ranges.items()}
    est = SpotlightEstimator(role=ROLE, instance_type="ml.m5.xlarge", sagemaker_session=sm)
    with pytest.raises(ValueError, match=pattern):
        est.tuner(built)


_PIPELINE_UNDER_MOTO = """
import runpy, sys
import boto3, moto
with moto.mock_aws():
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="pipeline-bucket")
    sys.argv = ["spotlight_pipeline.py", "--role", sys.argv[1], "--data", "s3://data/ml/",
                "--requests", "s3://data/requests/", "--bucket", "pipeline-bucket", "--print"]
    runpy.run_path({example!r}, run_name="__main__")
"""


@pytest.mark.slow
def test_the_example_pipeline_is_the_same_definition_in_two_processes(aws_env, tmp_path):
    """Step caching needs equal definitions: the staged code's path and hash, the steps'
    arguments. Only the SDK's own repack step carries timestamped names."""
    example = Path(__file__).resolve().parent.parent / "examples" / "spotlight_pipeline.py"
    code = _PIPELINE_UNDER_MOTO.format(example=str(example))
    env = {**os.environ, "SAGEMAKER_SUPPRESS_V2_WARNING": "1"}
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code, ROLE], capture_output=True, text=True, env=env, check=False
        )
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append({s["Name"]: s for s in json.loads(out.stdout.splitlines()[-1])["Steps"]})
    first, second = runs
    assert set(first) == {"Train", "Model-RepackModel-0", "Model-CreateModel", "Transform"}
    for name in ("Train", "Model-CreateModel", "Transform"):
        assert first[name] == second[name], name
    assert first["Train"]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    submit = json.loads(
        first["Train"]["Arguments"]["HyperParameters"]["sagemaker_submit_directory"]
    )
    assert submit.startswith("s3://pipeline-bucket/spotlight/code/")
    transform = first["Transform"]["Arguments"]
    assert transform["ModelName"] == {"Get": "Steps.Model-CreateModel.ModelName"}
    assert (transform["BatchStrategy"], transform["MaxPayloadInMB"]) == ("MultiRecord", 1)
    assert transform["TransformOutput"]["Accept"] == "text/csv"
    assert transform["Environment"]["TS_DEFAULT_RESPONSE_TIMEOUT"] == "600"


def test_a_pipeline_transformer_needs_the_model_step(aws_env):
    from sagemaker.workflow.pipeline_context import PipelineSession

    with moto.mock_aws():
        sess = PipelineSession(default_bucket="b")
        model = SpotlightModel("s3://b/model.tar.gz", role=ROLE, sagemaker_session=sess)
        with pytest.raises(ValueError, match=r"pass model_name=<ModelStep>.properties.ModelName"):
            model.transformer(instance_type="ml.m5.xlarge")
