"""SpotlightModel (a model.tar.gz trained elsewhere) and SpotlightPredictor against moto/Stubber.

The predictor's answers come from the real serving handler (``inference.py``) run on the bytes
the predictor sends, so the client and the container are checked against each other.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import moto
import pytest
from _sdk_helpers import ROLE, no_sleep, put_model, read_tar, session
from botocore.response import StreamingBody
from botocore.stub import Stubber
from spotlight_sagemaker._entry_points import inference

from spotlight_sagemaker import SpotlightModel, SpotlightPredictor
from spotlight_sagemaker.core import ImplicitFactorizationModel
from spotlight_sagemaker.predictor import Recommended, Similar, SpotlightSerializer


@pytest.fixture
def sm(aws_env, monkeypatch):
    no_sleep(monkeypatch)
    with moto.mock_aws():
        yield session(aws_env)


@pytest.fixture
def model_uri(sm, trained_model_dir):
    uri = f"s3://{sm.default_bucket()}/elsewhere/model.tar.gz"
    put_model(sm, uri, trained_model_dir)
    return uri


def test_model_trained_elsewhere_is_repacked_with_its_code(
    sm, model_uri, trained_model_dir, tmp_path
):
    model = SpotlightModel(model_uri, role=ROLE, sagemaker_session=sm)
    transformer = model.transformer(instance_type="ml.g4dn.xlarge")
    desc = sm.sagemaker_client.describe_model(ModelName=transformer.model_name)
    assert transformer.model_name.startswith("spotlight-")
    container = desc["PrimaryContainer"]
    assert container["Image"].endswith("/pytorch-inference:2.6.0-gpu-py312")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert container["ModelDataUrl"] != model_uri  # repacked copy; the original is untouched

    root = tmp_path / "opt-ml-model"
    names = {n.lstrip("./") for n in read_tar(sm, container["ModelDataUrl"], root)}
    assert {
        "code/inference.py",
        "code/train.py",
        "code/spotlight_sagemaker/core/__init__.py",
        "code/spotlight_sagemaker/container/serving/codec/__init__.py",
        "spotlight-model.json",
    } <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    # serve from the archive alone, as the container does (only code/ on the import path)
    probe = (
        "import sys, inference, spotlight_sagemaker; "
        f"m = inference.model_fn({str(root)!r}); "
        'q = inference.input_fn(bytearray(b\'{"user_id": "685", "top_n": "5"}\'), '
        "'application/jsonlines'); "
        "body, ctype = inference.output_fn(inference.predict_fn(q, m), 'text/csv'); "
        "print(spotlight_sagemaker.__file__); print(ctype); print(body.decode())"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=root / "code", capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[0] == str(root / "code" / "spotlight_sagemaker" / "__init__.py")
    assert out[1] == "text/csv"
    expected = ImplicitFactorizationModel.load(trained_model_dir, device="cpu").recommend(
        "685", n=5
    )
    assert [row.split(",")[1] for row in out[2:]] == list(expected.item_ids)


def test_a_user_source_dir_is_repacked_with_the_package(sm, model_uri, tmp_path):
    """SpotlightModel(source_dir="my_code/") used to repack that folder alone into code/."""
    user = tmp_path / "my_code"
    user.mkdir()
    handler = "import spotlight_sagemaker\nWHERE = spotlight_sagemaker.__file__\n"
    (user / "inference.py").write_text(handler)
    (user / "features.py").write_text("X = 1\n")
    model = SpotlightModel(model_uri, role=ROLE, sagemaker_session=sm, source_dir=str(user))
    transformer = model.transformer(instance_type="ml.m5.xlarge")
    container = sm.sagemaker_client.describe_model(ModelName=transformer.model_name)[
        "PrimaryContainer"
    ]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    root = tmp_path / "opt-ml-model"
    names = {n.lstrip("./") for n in read_tar(sm, container["ModelDataUrl"], root)}
    assert {
        "code/inference.py",
        "code/features.py",
        "code/train.py",
        "code/spotlight_sagemaker/__init__.py",
        "code/spotlight_sagemaker/container/serving/codec/__init__.py",
        "spotlight-model.json",
    } <= names
    assert (root / "code" / "inference.py").read_text() == handler  # theirs, not ours
    run = subprocess.run(
        [sys.executable, "-c", "import inference; print(inference.WHERE)"],
        cwd=root / "code",
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(root / "code" / "spotlight_sagemaker" / "__init__.py")

    source = "s3://code-bucket/mine/sourcedir.tar.gz"
    assert SpotlightModel(model_uri, role=ROLE, source_dir=source).source_dir == source


def test_model_transformer_defaults_are_overridable(sm, model_uri):
    model = SpotlightModel(model_uri, role=ROLE, sagemaker_session=sm)
    default = model.transformer(instance_type="ml.m5.xlarge")
    assert (default.strategy, default.assemble_with, default.accept, default.max_payload) == (
        "MultiRecord",
        "Line",
        "text/csv",
        1,
    )
    assert default.env == {
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "600",
        "TS_DEFAULT_RESPONSE_TIMEOUT": "600",
        "TS_MAX_REQUEST_SIZE": "6553500",
        "TS_MAX_RESPONSE_SIZE": str(32 * 1024 * 1024),
        "SPOTLIGHT_MAX_RESPONSE_BYTES": str(32 * 1024 * 1024),
    }
    custom = model.transformer(
        instance_count=2,
        instance_type="ml.m5.xlarge",
        strategy="SingleRecord",
        assemble_with="None",
        accept="application/jsonlines",
        max_payload=4,
        env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "120", "SPOTLIGHT_DEFAULT_TOP_N": "20"},
    )
    assert (
        custom.instance_count,
        custom.strategy,
        custom.assemble_with,
        custom.accept,
        custom.max_payload,
    ) == (2, "SingleRecord", "None", "application/jsonlines", 4)
    assert custom.env["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == "120"
    # 4 MiB fits under TorchServe's default request cap (kept); the codec takes as many of
    # the shortest lines as 4 MiB holds
    assert custom.env["TS_MAX_REQUEST_SIZE"] == "6553500"
    big = model.transformer(instance_type="ml.m5.xlarge", max_payload=10)
    assert big.env["TS_MAX_REQUEST_SIZE"] == str(10 * 1024 * 1024)
    assert custom.env["SPOTLIGHT_MAX_RECORDS"] == str(4 * 1024 * 1024 // 16)
    assert custom.env["SPOTLIGHT_DEFAULT_TOP_N"] == "20"
    with pytest.raises(ValueError, match="instance_type is required"):
        model.transformer()
    too_many = {f"VAR_{i}": "1" for i in range(12)}  # 12 + the 5 defaults
    with pytest.raises(
        ValueError, match="at most 16 environment variables, this one would have 17"
    ):
        model.transformer(instance_type="ml.m5.xlarge", env=too_many)


def test_transform_uploads_a_local_request_file(sm, model_uri, tmp_path):
    requests = tmp_path / "recommendation.requests"
    requests.write_text('{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}')
    transformer = SpotlightModel(model_uri, role=ROLE, sagemaker_session=sm).transformer(
        instance_type="ml.m5.xlarge"
    )
    transformer.transform(str(requests), job_name="spotlight-local-requests", wait=True)
    desc = sm.sagemaker_client.describe_transform_job(TransformJobName="spotlight-local-requests")
    uri = desc["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri == f"s3://{sm.default_bucket()}/spotlight-local-requests/input"
    bucket, key = uri[5:].split("/", 1)
    body = (
        sm.boto_session.client("s3")
        .get_object(Bucket=bucket, Key=f"{key}/recommendation.requests")["Body"]
        .read()
    )
    assert body == requests.read_bytes()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        transformer.transform(str(tmp_path / "missing.requests"))


def test_deploy_returns_a_spotlight_predictor(sm, model_uri):
    predictor = SpotlightModel(model_uri, role=ROLE, sagemaker_session=sm).deploy(
        initial_instance_count=1, instance_type="ml.m5.large"
    )
    assert isinstance(predictor, SpotlightPredictor)
    assert predictor.content_type == "application/jsonlines"
    assert predictor.accept == ("text/csv",)
    desc = sm.sagemaker_client.describe_endpoint(EndpointName=predictor.endpoint_name)
    assert desc["EndpointStatus"] == "InService"


# ------------------------------------------------------------------------------- predictor
@pytest.fixture(scope="module")
def served(trained_model_dir):
    return inference.model_fn(str(trained_model_dir))


def _answer(served, body: bytes) -> dict:
    queries = inference.input_fn(bytearray(body), "application/jsonlines")
    out, ctype = inference.output_fn(inference.predict_fn(queries, served), "text/csv")
    return {"Body": StreamingBody(io.BytesIO(out), len(out)), "ContentType": ctype}


def _predictor(sm, served, requests: list[str], **kwargs):
    """A predictor whose endpoint answers through the real handler; checks the exact request."""
    predictor = SpotlightPredictor("spotlight-endpoint", sagemaker_session=sm, **kwargs)
    stub = Stubber(sm.sagemaker_runtime_client)
    for body in requests:
        stub.add_response(
            "invoke_endpoint",
            _answer(served, body.encode()),
            {
                "EndpointName": "spotlight-endpoint",
                "Body": body,
                "ContentType": "application/jsonlines",
                "Accept": "text/csv",
            },
        )
    stub.activate()
    return predictor, stub


def test_recommend_one_user_and_many(sm, served, trained_model_dir):
    core = ImplicitFactorizationModel.load(trained_model_dir, device="cpu")
    predictor, stub = _predictor(
        sm,
        served,
        [
            '{"user_id": "685", "top_n": 5}',
            '{"user_id": "685", "top_n": 3}\n{"user_id": 302, "top_n": 3}',
            '{"user_id": "302", "top_n": 2, "exclude_seen": false}',
        ],
    )
    rows = predictor.recommend("685", top_n=5)
    want = core.recommend("685", n=5)
    assert rows == [
        Recommended("685", i, pytest.approx(float(s), rel=1e-5, abs=1e-6))
        for i, s in zip(want.item_ids, want.scores, strict=True)
    ]
    frame = predictor.recommend(["685", 302], top_n=3, as_frame=True)
    assert list(frame.columns) == ["user_id", "item_id", "score"]
    assert list(frame.user_id) == ["685"] * 3 + ["302"] * 3
    assert list(frame.item_id[3:]) == list(core.recommend("302", n=3).item_ids)
    seen = predictor.recommend("302", top_n=2, exclude_seen=False)
    assert [r.item_id for r in seen] == list(
        core.recommend("302", n=2, exclude_seen=False).item_ids
    )
    stub.assert_no_pending_responses()


def test_similar_items(sm, served, trained_model_dir):
    core = ImplicitFactorizationModel.load(trained_model_dir, device="cpu")
    predictor, stub = _predictor(sm, served, ['{"item_id": "50", "top_n": 4}'])
    rows = predictor.similar_items("50", top_n=4)
    assert all(isinstance(r, Similar) and r.item_id == "50" for r in rows)
    assert [r.similar_item_id for r in rows] == list(core.similar_items("50", n=4).item_ids)
    stub.assert_no_pending_responses()


def test_rank_filters_and_history(sm, served, trained_model_dir):
    core = ImplicitFactorizationModel.load(trained_model_dir, device="cpu")
    predictor, stub = _predictor(
        sm,
        served,
        [
            '{"user_id": "685", "items": ["50", "zz", 172, "1"]}',
            '{"user_id": "685", "top_n": 3, "exclude_items": ["313"], "include_items": '
            '["313", "50", "1", "2"]}',
            '{"top_n": 4, "history": ["50", "172", "181"], "user_id": "visitor-1"}',
        ],
    )
    ranked = predictor.rank("685", ["50", "zz", 172, "1"])
    want = core.recommend("685", items=["50", "zz", "172", "1"])
    assert [r.item_id for r in ranked] == [*want.item_ids, "zz"]
    assert ranked[-1] == Recommended("685", "zz", None)
    filtered = predictor.recommend(
        "685", top_n=3, exclude_items=["313"], include_items=["313", "50", "1", "2"]
    )
    assert [r.item_id for r in filtered] == core.recommend(
        "685", 3, exclude_items=["313"], include_items=["313", "50", "1", "2"]
    ).item_ids
    rows = predictor.recommend_from_history(["50", "172", "181"], top_n=4, query_id="visitor-1")
    assert [r.item_id for r in rows] == core.recommend_from_history(
        ["50", "172", "181"], 4
    ).item_ids
    assert {r.user_id for r in rows} == {"visitor-1"}
    stub.assert_no_pending_responses()
    with pytest.raises(ValueError, match="at least one"):
        predictor.rank("685", [])
    with pytest.raises(ValueError, match="more than once"):
        predictor.recommend_from_history(["50", 50])
    with pytest.raises(TypeError, match="iterable of ids"):
        predictor.recommend("685", exclude_items="313")


@pytest.mark.parametrize("with_serializer", [False, True])
def test_recommend_ignores_the_serializers_set_for_predict(
    sm, served, trained_model_dir, with_serializer
):
    """With deserializer=JSONDeserializer(), recommend() used to parse CSV as JSON."""
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.serializers import JSONSerializer

    kwargs = {"deserializer": JSONDeserializer()}
    if with_serializer:
        kwargs["serializer"] = JSONSerializer()
    core = ImplicitFactorizationModel.load(trained_model_dir, device="cpu")
    predictor, stub = _predictor(
        sm, served, ['{"user_id": "685", "top_n": 3}', '{"item_id": "50", "top_n": 2}'], **kwargs
    )
    rows = predictor.recommend("685", top_n=3)
    assert [r.item_id for r in rows] == list(core.recommend("685", n=3).item_ids)
    similar = predictor.similar_items("50", top_n=2)
    assert [r.similar_item_id for r in similar] == list(core.similar_items("50", n=2).item_ids)
    # predict() keeps the user's formats
    answer = b'{"ok": true}'
    stub.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"},
        {
            "EndpointName": "spotlight-endpoint",
            "Body": '{"user_id": "685"}',
            "ContentType": "application/json" if with_serializer else "application/jsonlines",
            "Accept": "application/json",
        },
    )
    assert predictor.predict({"user_id": "685"}) == {"ok": True}
    stub.assert_no_pending_responses()


def test_recommend_refuses_an_answer_that_is_not_csv(sm):
    predictor = SpotlightPredictor("spotlight-endpoint", sagemaker_session=sm)
    answer = b'[["685", "1", 0.5]]'
    with Stubber(sm.sagemaker_runtime_client) as stub:
        stub.add_response(
            "invoke_endpoint",
            {
                "Body": StreamingBody(io.BytesIO(answer), len(answer)),
                "ContentType": "application/json",
            },
        )
        with pytest.raises(ValueError, match="answered Content-Type 'application/json' to Accept"):
            predictor.recommend("685", top_n=1)


def test_predictor_argument_errors(sm):
    predictor = SpotlightPredictor("spotlight-endpoint", sagemaker_session=sm)
    with Stubber(sm.sagemaker_runtime_client) as stub:  # nothing may be sent
        with pytest.raises(ValueError, match="top_n must be a positive integer"):
            predictor.recommend("685", top_n=0)
        with pytest.raises(ValueError, match="user_ids must hold at least one id"):
            predictor.recommend([])
        with pytest.raises(TypeError, match="user_ids must be str or int ids"):
            predictor.recommend([1.5])
        stub.assert_no_pending_responses()


def test_serializer_matches_the_container_decoder():
    ser = SpotlightSerializer()
    assert ser.CONTENT_TYPE == "application/jsonlines"
    assert ser.serialize({"user_id": "685", "top_n": "5"}) == '{"user_id": "685", "top_n": "5"}'
    two = ser.serialize([{"user_id": "685"}, {"item_id": "50", "top_n": 2}])
    assert [json.loads(line) for line in two.splitlines()] == [
        {"user_id": "685"},
        {"item_id": "50", "top_n": 2},
    ]
    queries = inference.input_fn(bytearray(two.encode()), ser.CONTENT_TYPE)
    assert queries.ids == ["685", "50"] and list(queries.is_item) == [False, True]
