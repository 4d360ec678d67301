"""The embedded local mode: fit -> transform -> deploy/predict -> delete, with no AWS at all.

The end-to-end tests run the real sagemaker-training toolkit and Multi Model Server (Java) on
this machine, with every AWS_* variable removed and the AWS config/credential files pointed at
empty files, so any AWS call would fail for lack of credentials.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("sagemaker")

from botocore.exceptions import ClientError  # noqa: E402
from sagemaker.exceptions import UnexpectedStatusException  # noqa: E402

from spotlight_sagemaker.local import local_session  # noqa: E402
from spotlight_sagemaker.local.session import EmbeddedLocalSession  # noqa: E402
from spotlight_sagemaker.local.transform_job import (  # noqa: E402
    MB,
    TransformFailed,
    batches,
    plan_transform,
    read_records,
    run_transform,
)
from spotlight_sagemaker.local.workflow import load_artifact, read_transform_output  # noqa: E402
from spotlight_sagemaker.movielens import load_titles  # noqa: E402

SEED_REQUESTS = b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}\n'
HPS = {"n_iter": 2, "embedding_dim": 16, "random_state": 7, "validation_fraction": 0}


@pytest.fixture(scope="module")
def no_aws(tmp_path_factory):
    """An environment where no AWS credentials or config can be found."""
    empty = tmp_path_factory.mktemp("aws")
    (empty / "config").write_text("")
    (empty / "credentials").write_text("")
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            mp.delenv(name)
        mp.setenv("AWS_CONFIG_FILE", str(empty / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        mp.delenv("SPOTLIGHT_LOCAL_MODE", raising=False)
        import boto3

        assert boto3.Session().get_credentials() is None
        yield


@pytest.fixture(scope="module")
def session(no_aws, tmp_path_factory):
    return local_session("local", root=tmp_path_factory.mktemp("spotlight-local"))


@pytest.fixture(scope="module")
def requests_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("requests") / "requests.jsonl"
    path.write_bytes(SEED_REQUESTS)
    return path


@pytest.fixture(scope="module")
def estimator(session, ml100k_csv):
    from spotlight_sagemaker import SpotlightEstimator

    est = SpotlightEstimator(instance_type="local", sagemaker_session=session, **HPS)
    est.fit(str(ml100k_csv))
    return est


def _pid_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _rated(ml100k_csv: Path) -> dict[str, set[str]]:
    rated: dict[str, set[str]] = {}
    with open(ml100k_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            rated.setdefault(row["user_id"], set()).add(row["item_id"])
    return rated


# ---------------------------------------------------------------------- session selection
def test_local_session_kinds(no_aws, monkeypatch, tmp_path):
    assert isinstance(local_session("local", root=tmp_path), EmbeddedLocalSession)
    assert isinstance(local_session("local_gpu", root=tmp_path), EmbeddedLocalSession)
    monkeypatch.setenv("SPOTLIGHT_LOCAL_MODE", "docker")
    assert local_session("local") is None
    monkeypatch.setenv("SPOTLIGHT_LOCAL_MODE", "podman")
    with pytest.raises(ValueError, match="SPOTLIGHT_LOCAL_MODE must be one of"):
        local_session("local")
    with pytest.raises(ValueError, match="instance_type must be one of"):
        local_session("ml.m5.xlarge")


def test_estimator_picks_the_embedded_session(no_aws, monkeypatch, tmp_path):
    from spotlight_sagemaker import SpotlightEstimator

    monkeypatch.setenv("SPOTLIGHT_LOCAL_DIR", str(tmp_path))
    est = SpotlightEstimator(instance_type="local", n_iter=1)
    assert isinstance(est.sagemaker_session, EmbeddedLocalSession)
    assert est.sagemaker_session.local_root == tmp_path.resolve()
    assert est.sagemaker_session.sagemaker_config["SageMaker"]["PythonSDK"]["Modules"][
        "TelemetryOptOut"
    ]


# ---------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_fit_leaves_model_tar_gz_where_model_data_says(estimator, session):
    uri = estimator.model_data
    assert uri.startswith("file://")
    path = Path(uri[len("file://") :])
    job = estimator.latest_training_job.name
    assert path == session.local_root / job / "output" / "model.tar.gz"
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    assert {"spotlight-model.json", "spotlight-model.npz"} <= names
    desc = session.sagemaker_client.describe_training_job(TrainingJobName=job)
    assert desc["TrainingJobStatus"] == "Completed"
    assert json.loads(desc["HyperParameters"]["n_iter"]) == 2  # JSON-encoded, as sent to AWS
    assert desc["HyperParameters"]["sagemaker_program"] == '"train.py"'
    metrics = {m["MetricName"]: m["Value"] for m in desc["FinalMetricDataList"]}
    assert metrics["train:loss"] > 0
    model = load_artifact(path)
    assert model.epochs_trained == 2 and model.hyperparameters["embedding_dim"] == 16


@pytest.mark.slow
@pytest.mark.parametrize("form", ["file", "s3"])
def test_model_uri_warm_starts_a_local_job(estimator, session, ml100k_csv, form):
    """``model_uri=previous.model_data`` (a file:// URI in local mode), or the same file as an
    s3:// URI of the local bucket, is the job's model channel."""
    from spotlight_sagemaker import SpotlightEstimator

    uri = estimator.model_data
    if form == "s3":
        key = Path(uri[len("file://") :]).relative_to(session.local_root).as_posix()
        uri = f"s3://spotlight-local/{key}"
    warm = SpotlightEstimator(
        instance_type="local", sagemaker_session=session, model_uri=uri, **{**HPS, "n_iter": 1}
    )
    warm.fit(str(ml100k_csv), logs=False)
    model = load_artifact(warm.model_data)
    start = model.metrics["warm_start"]
    assert start["previous"]["source"].endswith("/input/data/model/model.tar.gz")
    assert start["users_kept"] == model.num_users == 943 and start["users_new"] == 0
    assert start["previous"]["epochs_trained"] == 2 and model.epochs_trained == 1


@pytest.mark.slow
def test_transform_then_deploy_predict_delete(estimator, session, requests_file, ml100k_csv):
    transformer = estimator.transformer(instance_type="local")
    transformer.transform(str(requests_file), wait=True)
    out = session.local_path(transformer.output_path) / "requests.jsonl.out"
    job = session.sagemaker_client.describe_transform_job(
        TransformJobName=transformer.latest_transform_job.name
    )
    assert job["TransformJobStatus"] == "Completed" and job["BatchStrategy"] == "MultiRecord"
    assert not _pid_alive(job["ServerPid"])  # the model server was stopped with the job
    data = out.read_bytes()
    assert data.endswith(b"\n") and not data.endswith(b"\n\n")  # one response + AssembleWith
    rows = read_transform_output(out)
    assert [r.user_id for r in rows] == ["685"] * 5 + ["302"] * 5
    rated = _rated(ml100k_csv)
    for user in ("685", "302"):
        mine = [r for r in rows if r.user_id == user]
        assert [r.score for r in mine] == sorted((r.score for r in mine), reverse=True)
        assert not {r.item_id for r in mine} & rated[user]
    expected = load_artifact(estimator.model_data).recommend(["685", "302"], n=5)
    assert [r.item_id for r in rows] == [str(i) for rec in expected for i in rec.item_ids]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left
    with tarfile.open(estimator.model_data[len("file://") :]) as tar:  # repacked for serving
        names = set(tar.getnames())
    assert {"code/inference.py", "code/spotlight_sagemaker/core/factorization.py"} <= names

    predictor = estimator.deploy(initial_instance_count=1, instance_type="local")
    desc = session.sagemaker_client.describe_endpoint(EndpointName=predictor.endpoint_name)
    pid = desc["ServerPid"]
    assert desc["EndpointStatus"] == "InService" and desc["EndpointUrl"].startswith(
        "http://127.0.0.1:"
    )
    try:
        got = predictor.recommend(["685", "302"], top_n=5)
        assert [(r.user_id, r.item_id) for r in got] == [(r.user_id, r.item_id) for r in rows]
        with pytest.raises(ClientError, match=r"\(400\).*top_n"):
            predictor.predict('{"user_id": "685", "top_n": "many"}')
        core = load_artifact(estimator.model_data)
        ranked = predictor.rank("685", ["50", "zz", "172"])
        want = core.recommend("685", items=["50", "zz", "172"])
        assert [r.item_id for r in ranked] == [*want.item_ids, "zz"] and ranked[-1].score is None
        visitor = predictor.recommend_from_history(["50", "172", "181"], top_n=4)
        assert [r.item_id for r in visitor] == core.recommend_from_history(
            ["50", "172", "181"], 4
        ).item_ids
        kept = predictor.recommend("685", top_n=3, exclude_items=want.item_ids[:1])
        assert want.item_ids[0] not in [r.item_id for r in kept] and len(kept) == 3
        with pytest.raises(ClientError, match=r"\(400\).*history holds '50' more than once"):
            predictor.predict('{"history": ["50", "50"]}')
    finally:
        predictor.delete_endpoint()
    assert not _pid_alive(pid)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        session.sagemaker_client.describe_endpoint(EndpointName=predictor.endpoint_name)


@pytest.mark.slow
def test_a_transform_of_50000_users_answers_every_row(estimator, session, tmp_path):
    """Beyond the old ~6,400-user cliff (the server's response cap was MaxPayloadInMB, below
    the codec's limit, so the worker died instead of answering): every row checked."""
    users = [str(1 + i % 943) for i in range(50_000)]
    requests = tmp_path / "all-users.jsonl"
    requests.write_text("".join(f'{{"user_id": "{u}", "top_n": "10"}}\n' for u in users))
    transformer = estimator.transformer(instance_type="local")
    transformer.transform(str(requests), wait=True)
    rows = read_transform_output(
        session.local_path(transformer.output_path) / "all-users.jsonl.out"
    )
    assert len(rows) == 500_000
    expected = {
        r.query_id: r.item_ids
        for r in load_artifact(estimator.model_data).recommend(sorted(set(users)), n=10)
    }
    for n, user in enumerate(users):
        got = rows[10 * n : 10 * n + 10]
        assert {r.user_id for r in got} == {user}, n
        assert [r.item_id for r in got] == expected[user], n


def test_malformed_requests_fail_the_job_and_write_nothing(estimator, session, tmp_path):
    requests = tmp_path / "in" / "bad.jsonl"
    requests.parent.mkdir()
    requests.write_bytes(b'{"user_id": "685", "top_n": "5"}\n{"user_id": 685, "top_n": \n')
    out = tmp_path / "out"
    transformer = estimator.transformer(instance_type="local", output_path=f"file://{out}")
    with pytest.raises(UnexpectedStatusException, match=r"bad.jsonl.*HTTP 400.*line 2"):
        transformer.transform(str(requests), wait=True)
    assert not list(out.rglob("*"))  # no .out, no staging folder
    desc = session.sagemaker_client.describe_transform_job(
        TransformJobName=transformer.latest_transform_job.name
    )
    assert desc["TransformJobStatus"] == "Failed"
    assert not _pid_alive(desc["ServerPid"])


# ---------------------------------------------------------------------- bad inputs
def test_a_missing_toolkit_names_the_extra_to_install(session, ml100k_csv, monkeypatch):
    import importlib.util

    from spotlight_sagemaker import SpotlightEstimator

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sagemaker_training" else real(name, *a),
    )
    est = SpotlightEstimator(instance_type="local", sagemaker_session=session, **HPS)
    with pytest.raises(
        UnexpectedStatusException, match=r"pip install 'spotlight-sagemaker\[local\]'"
    ):
        est.fit(str(ml100k_csv))


@pytest.mark.slow
def test_fit_logs_false_prints_no_job_log(session, ml100k_csv, tmp_path, capfd):
    from spotlight_sagemaker import SpotlightEstimator

    small = tmp_path / "small.csv"
    small.write_text("".join(ml100k_csv.read_text().splitlines(keepends=True)[:3001]))
    est = SpotlightEstimator(instance_type="local", sagemaker_session=session, **HPS)
    est.fit(str(small), logs=False)
    quiet = capfd.readouterr()
    assert "epoch=1 " not in quiet.out + quiet.err
    assert len((quiet.out + quiet.err).splitlines()) < 10, quiet.out[-2000:]
    assert est.model_data and session.stream_job_logs is True  # restored after the job
    est.fit(str(small))
    loud = capfd.readouterr()
    assert "epoch=1 " in loud.out


def test_a_local_tuner_is_refused_by_name(session):
    from sagemaker.tuner import ContinuousParameter

    from spotlight_sagemaker import SpotlightEstimator

    est = SpotlightEstimator(instance_type="local", sagemaker_session=session, **HPS)
    with pytest.raises(ValueError, match="local mode does not emulate.*call est.fit"):
        est.tuner({"learning_rate": ContinuousParameter(1e-3, 1e-2)})


def test_missing_training_file_fails_before_any_job(session, tmp_path):
    from spotlight_sagemaker import SpotlightEstimator

    est = SpotlightEstimator(instance_type="local", sagemaker_session=session, n_iter=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        est.fit(str(tmp_path / "nope.csv"))


def test_empty_channel_is_a_client_error(session, tmp_path):
    from spotlight_sagemaker import SpotlightEstimator

    (tmp_path / "empty").mkdir()
    est = SpotlightEstimator(instance_type="local", sagemaker_session=session, n_iter=1)
    with pytest.raises(
        UnexpectedStatusException, match="ClientError: channel 'training'.*no files"
    ):
        est.fit(str(tmp_path / "empty"))
    assert not (session.local_root / est.latest_training_job.name).exists()


@pytest.mark.slow
def test_bad_training_data_reports_the_failure_file(session, tmp_path):
    from spotlight_sagemaker import SpotlightEstimator

    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\n1,2\n")
    est = SpotlightEstimator(instance_type="local", sagemaker_session=session, n_iter=1)
    with pytest.raises(UnexpectedStatusException, match="AlgorithmError: .*user_id"):
        est.fit(str(bad))
    job = est.latest_training_job.name
    assert not (session.local_root / job / "output" / "model.tar.gz").exists()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"join_source": "Input"}, "join_source='Input'"),
        ({"input_filter": "$.user_id"}, "input_filter='$.user_id'"),
        ({"output_filter": "$[0]"}, "output_filter='$[0]'"),
    ],
)
def test_transform_data_processing_is_refused_not_ignored(estimator, requests_file, kwargs, named):
    transformer = estimator.transformer(instance_type="local")
    with pytest.raises(UnexpectedStatusException, match=re.escape(named)):
        transformer.transform(str(requests_file), wait=True, **kwargs)
    job = estimator.sagemaker_session.sagemaker_client.describe_transform_job(
        TransformJobName=transformer.latest_transform_job.name
    )
    assert (
        "local mode does not implement Batch Transform's data processing" in (job["FailureReason"])
    )


def test_missing_transform_input_and_foreign_bucket(session, tmp_path):
    request = {
        "TransformJobName": "t",
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"file://{tmp_path}/missing.jsonl",
                }
            },
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"file://{tmp_path}/out"},
    }
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        plan_transform(request, session.local_root)
    request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = "s3://someone/x"
    with pytest.raises(ValueError, match="local files only"):
        plan_transform(request, session.local_root)


@pytest.mark.slow
def test_deploy_without_java_says_what_to_install(estimator, session, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UnexpectedStatusException, match="needs Java 11 or newer.*openjdk"):
        estimator.deploy(initial_instance_count=1, instance_type="local")


# ---------------------------------------------------------------------- batching semantics
class _Recorder:
    """Stands in for the model server: records bodies, answers one CSV row per record."""

    def __init__(self, fail_on: bytes | None = None, status: int = 400) -> None:
        self.bodies: list[bytes] = []
        self.fail_on, self.status = fail_on, status

    def invoke(self, body, content_type, accept, timeout):
        self.bodies.append(body)
        if self.fail_on is not None and self.fail_on in body:
            return self.status, b"bad record", "text/plain"
        lines = body.splitlines()
        return 200, b"\n".join(b"r," + line for line in lines), "text/csv"


def test_multirecord_packs_records_up_to_the_payload_limit():
    records = [b"x" * 400_000 for _ in range(40)]
    out = list(batches(iter(records), "MultiRecord", 6 * MB, "f"))
    assert [len(b) for _, _, b in out][0] <= 6 * MB
    assert sum(last - first + 1 for first, last, _ in out) == 40
    assert [(f, la) for f, la, _ in out] == [(1, 15), (16, 30), (31, 40)]
    assert out[0][2] == b"\n".join(records[:15])
    assert [b for _, _, b in batches(iter([b"a", b"b"]), "SingleRecord", MB, "f")] == [b"a", b"b"]


def test_a_record_over_the_limit_is_an_error():
    with pytest.raises(TransformFailed, match="record 2 is 1,048,577 bytes"):
        list(batches(iter([b"a", b"x" * (MB + 1)]), "MultiRecord", MB, "f"))


def test_records_skip_blank_lines_and_read_gzip(tmp_path):
    f = tmp_path / "r.jsonl.gz"
    f.write_bytes(gzip.compress(b'{"a": 1}\n\n  \r\n{"b": 2}'))
    assert list(read_records(f, "Line", True)) == [b'{"a": 1}', b'{"b": 2}']
    assert list(read_records(f, None, True)) == [b'{"a": 1}\n\n  \r\n{"b": 2}']


def _plan(tmp_path, **extra):
    request = {
        "TransformJobName": "job",
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in"}
            },
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"file://{tmp_path}/out",
            "AssembleWith": "Line",
            "Accept": "text/csv",
        },
        **extra,
    }
    return plan_transform(request, tmp_path)


def test_one_out_file_per_input_file_with_assemble_line(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.jsonl").write_bytes(b"1\n2\n3\n")
    (tmp_path / "in" / "sub" / "b.jsonl").write_bytes(b"4\n")
    server = _Recorder()
    run_transform(_plan(tmp_path, BatchStrategy="SingleRecord"), server)
    assert (tmp_path / "out" / "a.jsonl.out").read_bytes() == b"r,1\nr,2\nr,3\n"
    assert (tmp_path / "out" / "sub" / "b.jsonl.out").read_bytes() == b"r,4\n"
    run_transform(_plan(tmp_path, BatchStrategy="MultiRecord"), server)
    assert (tmp_path / "out" / "a.jsonl.out").read_bytes() == b"r,1\nr,2\nr,3\n"
    assert server.bodies[-2:] == [b"1\n2\n3", b"4"]


def test_a_failing_request_leaves_no_output_at_all(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"1\n2\n")
    (tmp_path / "in" / "b.jsonl").write_bytes(b"3\nboom\n")
    server = _Recorder(fail_on=b"boom")
    with pytest.raises(TransformFailed, match=r"b.jsonl, records 2-2: HTTP 400: bad record"):
        run_transform(_plan(tmp_path, BatchStrategy="SingleRecord"), server)
    assert list((tmp_path / "out").iterdir()) == []  # a.jsonl.out was not published either


def test_server_errors_are_retried_then_fail(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"boom\n")
    server = _Recorder(fail_on=b"boom", status=500)
    with pytest.raises(TransformFailed, match="HTTP 500"):
        run_transform(_plan(tmp_path, ModelClientConfig={"InvocationsMaxRetries": 2}), server)
    assert len(server.bodies) == 3


# ---------------------------------------------------------------------- console script
def test_cli_recommend_and_evaluate(trained_model_dir, ml100k_dir, ml100k_csv, capsys):
    from spotlight_sagemaker import cli

    assert (
        cli.main(
            [
                "recommend",
                "--model",
                str(trained_model_dir),
                "--user",
                "685",
                "--user",
                "302",
                "--top-n",
                "3",
                "--movielens-dir",
                str(ml100k_dir),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["685"] * 3 + ["302"] * 3
    titles = load_titles(ml100k_dir)
    assert all(titles[line.split(",")[1]] in line for line in lines)
    assert (
        cli.main(
            ["evaluate", "--model", str(trained_model_dir), "--data", str(ml100k_csv), "--json"]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"model", "popularity"} and metrics["model"]["users"] == 940
    assert cli.main(["recommend", "--model", "/nonexistent", "--user", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_prepare_movielens_with_split(tmp_path, ml100k_dir, capsys):
    from spotlight_sagemaker import cli

    out, train, test = tmp_path / "all.csv", tmp_path / "tr.csv", tmp_path / "te.csv"
    assert (
        cli.main(
            [
                "prepare-movielens",
                str(out),
                "--data-dir",
                str(ml100k_dir),
                "--split",
                str(train),
                str(test),
            ]
        )
        == 0
    )
    counts = [len(p.read_text().splitlines()) - 1 for p in (out, train, test)]
    assert counts == [82_520, 66_016, 16_504]


@pytest.mark.slow
def test_cli_train_and_transform(no_aws, estimator, requests_file, tmp_path, ml100k_csv, capsys):
    from spotlight_sagemaker import cli

    small = tmp_path / "small.csv"
    small.write_text("\n".join(ml100k_csv.read_text().splitlines()[:3001]) + "\n")
    root = tmp_path / "root"
    assert (
        cli.main(
            ["train", str(small), "-p", "n_iter=1", "-p", "embedding_dim=8", "--root", str(root)]
        )
        == 0
    )
    out = capsys.readouterr().out
    model = out.strip().splitlines()[-1].removeprefix("model_data: file://")
    assert Path(model).is_file() and Path(model).is_relative_to(root)
    assert cli.main(["train", str(small), "-p", "loss=nope", "--root", str(root)]) == 2
    assert "loss" in capsys.readouterr().err
    dest = tmp_path / "out"
    assert (
        cli.main(
            [
                "transform",
                "--model",
                estimator.model_data.removeprefix("file://"),
                str(requests_file),
                "--output",
                str(dest),
                "--root",
                str(root),
            ]
        )
        == 0
    )
    assert len(read_transform_output(dest / "requests.jsonl.out")) == 10


def test_deploy_of_a_model_that_cannot_be_served_fails_with_model_fns_message(estimator, session):
    """deploy() used to report success while every request answered 500."""
    model = estimator.create_model(env={"SPOTLIGHT_UNKNOWN_USER": "bogus"})
    with pytest.raises(UnexpectedStatusException, match="the model cannot be served: .*UNKNOWN"):
        model.deploy(initial_instance_count=1, instance_type="local")


class _LoopbackOnly:
    """Fails any socket connection beyond 127.0.0.1 / ::1 in this process, and records it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import socket

        self.attempts: list[str] = []
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        guard = self

        def check(address: object) -> None:
            host = address[0] if isinstance(address, tuple) else str(address)
            if isinstance(address, tuple) and host not in ("127.0.0.1", "::1", "localhost"):
                guard.attempts.append(f"{host}:{address[1]}")
                raise OSError(f"test guard: connection to {host}:{address[1]} refused")

        def connect(sock, address):
            check(address)
            return real_connect(sock, address)

        def connect_ex(sock, address):
            check(address)
            return real_connect_ex(sock, address)

        real_getaddrinfo = socket.getaddrinfo

        def getaddrinfo(host, *args, **kwargs):  # name lookups come first: refuse them too
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name not in ("127.0.0.1", "::1", "localhost"):
                guard.attempts.append(f"lookup {name}")
                raise OSError(f"test guard: looking up {name} refused")
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.slow
def test_the_notebooks_steps_keep_every_byte_on_this_machine(
    no_aws, tmp_path, ml100k_csv, monkeypatch
):
    """The reference notebook's S3 calls in local mode, with credentials that would work: no
    connection leaves the machine, and the data is where the local root says."""
    from sagemaker.s3 import S3Downloader, S3Uploader

    from spotlight_sagemaker import SpotlightEstimator
    from spotlight_sagemaker.local.paths import LocalPathError
    from spotlight_sagemaker.local.session import AwsCallRefused

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKING00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-secret-that-would-sign-requests")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    guard = _LoopbackOnly(monkeypatch)
    root = tmp_path / "root"
    sess = local_session("local", root=root)
    bucket, prefix = sess.default_bucket(), "sagemaker/spotlight"

    train_dir = tmp_path / "train_data"
    train_dir.mkdir()
    train_dir.joinpath("ml-100k-gt2.csv").write_bytes(ml100k_csv.read_bytes())
    s3_train = sess.upload_data(str(train_dir), bucket, f"{prefix}/training")
    assert s3_train == f"s3://{bucket}/{prefix}/training"
    assert (root / prefix / "training" / "ml-100k-gt2.csv").read_bytes() == ml100k_csv.read_bytes()
    assert sess.list_s3_files(bucket, f"{prefix}/training") == [
        f"{prefix}/training/ml-100k-gt2.csv"
    ]

    est = SpotlightEstimator(instance_type="local", sagemaker_session=sess, **HPS)
    est.fit({"training": s3_train})

    requests = tmp_path / "recommendation.requests"
    requests.write_bytes(SEED_REQUESTS)
    s3_requests = S3Uploader.upload(
        str(requests), f"s3://{bucket}/{prefix}/requests", sagemaker_session=sess
    )
    assert s3_requests == f"s3://{bucket}/{prefix}/requests/recommendation.requests"
    transformer = est.transformer(instance_type="local", strategy="SingleRecord")
    transformer.transform(s3_requests, content_type="application/jsonlines", split_type="Line")
    transformer.wait()

    out_uri = transformer.output_path
    listed = S3Downloader.list(out_uri, sagemaker_session=sess)
    assert [u.rsplit("/", 1)[1] for u in listed] == ["recommendation.requests.out"]
    text = S3Downloader.read_file(listed[0], sagemaker_session=sess)
    assert len(text.strip().splitlines()) == 10
    got = S3Downloader.download(out_uri, str(tmp_path / "results"), sagemaker_session=sess)
    assert [Path(p).name for p in got] == ["recommendation.requests.out"]
    assert Path(got[0]).read_text() == text
    assert guard.attempts == []

    # what is not local is refused by name, and still nothing connects
    with pytest.raises(LocalPathError, match="s3://someone-elses-bucket/ is not on this machine"):
        sess.upload_data(str(requests), "someone-elses-bucket", "x")
    with pytest.raises(LocalPathError, match="not on this machine"):
        S3Downloader.download("s3://someone-elses-bucket/x", str(tmp_path), sagemaker_session=sess)
    with pytest.raises(AwsCallRefused, match="calls no AWS service"):
        sess.boto_session.client("s3").list_buckets()
    assert guard.attempts == []
