"""entry_points/inference.py called directly, as the toolkit calls it, on a real artifact."""

from __future__ import annotations

import contextlib
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from _artifacts import rewrite_arrays
from sagemaker_inference.errors import BaseInferenceToolkitError
from spotlight_sagemaker._entry_points import inference

from spotlight_sagemaker.core import ImplicitFactorizationModel

SEED_BATCH = bytearray(b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}')
_ENV = (
    "SPOTLIGHT_UNKNOWN_USER",
    "SPOTLIGHT_UNKNOWN_ITEM",
    "SPOTLIGHT_MAX_TOP_N",
    "SPOTLIGHT_MAX_RECORDS",
    "SPOTLIGHT_MAX_RESPONSE_BYTES",
    "SPOTLIGHT_MAX_LIST_ITEMS",
    "SPOTLIGHT_DEFAULT_TOP_N",
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",
    "SPOTLIGHT_TORCH_THREADS",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def served(trained_model_dir):
    return inference.model_fn(str(trained_model_dir))


@pytest.fixture(scope="module")
def core_model(trained_model_dir):
    return ImplicitFactorizationModel.load(trained_model_dir, device="cpu")


@pytest.fixture(scope="module")
def seen(ml100k_csv: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    with open(ml100k_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["user_id"]].add(row["item_id"])
    return out


def _invoke(model, body, content_type="application/jsonlines", accept="text/csv"):
    data = inference.input_fn(body, content_type)
    return inference.output_fn(inference.predict_fn(data, model), accept)


def _rows(body: bytes) -> list[list[str]]:
    return [line.split(",") for line in body.decode().split("\n")] if body else []


def test_seed_batch_gives_ten_unseen_rows_best_first(served, core_model, seen):
    body, ctype = _invoke(served, SEED_BATCH)
    assert ctype == "text/csv"
    assert not body.endswith(b"\n")
    rows = _rows(body)
    assert len(rows) == 10
    assert [r[0] for r in rows] == ["685"] * 5 + ["302"] * 5
    for user in ("685", "302"):
        mine = [r for r in rows if r[0] == user]
        items, scores = [r[1] for r in mine], [float(r[2]) for r in mine]
        assert len(set(items)) == 5
        assert not set(items) & seen[user], "recommended an item the user has rated"
        assert scores == sorted(scores, reverse=True)
        expected = core_model.recommend(user, n=5)
        assert items == expected.item_ids
        np.testing.assert_allclose(scores, expected.scores, atol=1e-6)


def test_output_follows_input_order_and_formats_agree(served):
    body = '{"user_id": "302", "top_n": 2}\n{"item_id": "50", "top_n": 3}\n{"user_id": 685}'
    csv_body, _ = _invoke(served, body, "application/json")
    rows = _rows(csv_body)
    assert [r[0] for r in rows] == ["302"] * 2 + ["50"] * 3 + ["685"] * 10
    jl, ctype = _invoke(served, body, "application/json", "application/jsonlines")
    assert ctype == "application/jsonlines"
    objs = [json.loads(line) for line in jl.decode().split("\n")]
    assert [o.get("user_id", o.get("item_id")) for o in objs] == ["302", "50", "685"]
    assert "item_id" in objs[1] and "user_id" not in objs[1]
    flat = [
        (q, i, s)
        for o in objs
        for i, s in zip(o["items"], o["scores"], strict=True)
        for q in [o.get("user_id", o.get("item_id"))]
    ]
    assert [(r[0], r[1], float(r[2])) for r in rows] == flat
    js, ctype = _invoke(served, body, "application/json", "application/json")
    assert ctype == "application/json" and json.loads(js)["predictions"] == objs


def test_similar_items_rows(served, core_model):
    rows = _rows(_invoke(served, b'{"item_id": 50, "top_n": 4}')[0])
    expected = core_model.similar_items("50", n=4)
    assert [r[0] for r in rows] == ["50"] * 4
    assert [r[1] for r in rows] == expected.item_ids
    np.testing.assert_allclose([float(r[2]) for r in rows], expected.scores, atol=1e-6)


def test_exclude_seen_false(served, core_model, seen):
    user = max(sorted(seen), key=lambda u: len(seen[u]))  # the heaviest user: seen items rank high
    body = json.dumps({"user_id": user, "top_n": 20, "exclude_seen": False}).encode()
    rows = _rows(_invoke(served, body)[0])
    expected = core_model.recommend(user, n=20, exclude_seen=False)
    assert [r[1] for r in rows] == expected.item_ids
    assert set(expected.item_ids) & seen[user], "fixture should rank some seen items high"
    assert not set(core_model.recommend(user, n=20).item_ids) & seen[user]


def test_batch_equals_one_user_at_a_time(served, core_model):
    rng = np.random.default_rng(0)
    users = core_model.user_map.ids[rng.integers(0, core_model.num_users, 3000)]
    tops = rng.integers(1, 15, len(users))
    body = "\n".join(
        json.dumps({"user_id": u, "top_n": int(n)}) for u, n in zip(users, tops, strict=True)
    )
    rows = _rows(_invoke(served, body.encode())[0])
    assert len(rows) == int(tops.sum())
    pos = 0
    for u, n in list(zip(users, tops, strict=True))[:200]:
        expected = core_model.recommend(str(u), n=int(n))
        got = rows[pos : pos + n]
        assert [r[0] for r in got] == [u] * n
        assert [r[1] for r in got] == expected.item_ids
        pos += n


def test_top_n_larger_than_catalogue(served, core_model, seen, monkeypatch):
    monkeypatch.setenv("SPOTLIGHT_MAX_TOP_N", "5000")
    rows = _rows(_invoke(served, b'{"user_id": "685", "top_n": 4000}')[0])
    assert len(rows) == core_model.num_items - len(seen["685"])


def test_unknown_user_fallback_is_popularity(served, core_model, caplog):
    caplog.set_level("INFO", logger="spotlight_sagemaker.inference")
    body, _ = _invoke(
        served,
        b'{"user_id": "no-such-user", "top_n": 3}\n{"user_id": "685"}',
        accept="application/jsonlines",
    )
    first = json.loads(body.decode().split("\n")[0])
    order, share = core_model.popular_items(3)
    assert first["items"] == core_model.item_map.ids[order].tolist()
    np.testing.assert_allclose(first["scores"], share, atol=1e-6)
    assert first["fallback"] is True and first["known"] is False
    assert "1 record(s) with an unknown user_id" in caplog.text


def test_unknown_policies_from_env(trained_model_dir, monkeypatch):
    monkeypatch.setenv("SPOTLIGHT_UNKNOWN_USER", "skip")
    model = inference.model_fn(str(trained_model_dir))
    rows = _rows(_invoke(model, b'{"user_id": "nobody"}\n{"user_id": "685", "top_n": 2}')[0])
    assert [r[0] for r in rows] == ["685", "685"]
    monkeypatch.setenv("SPOTLIGHT_UNKNOWN_USER", "error")
    model = inference.model_fn(str(trained_model_dir))
    with pytest.raises(BaseInferenceToolkitError) as info:
        _invoke(model, b'{"user_id": "685"}\n\n{"user_id": "nobody"}')
    assert info.value.status_code == 400
    assert info.value.message == "line 3: unknown user_id 'nobody' (SPOTLIGHT_UNKNOWN_USER=error)"
    monkeypatch.setenv("SPOTLIGHT_UNKNOWN_USER", "sometimes")
    with pytest.raises(ValueError, match="SPOTLIGHT_UNKNOWN_USER must be one of"):
        inference.model_fn(str(trained_model_dir))


@pytest.mark.parametrize(
    ("body", "ctype", "accept", "status", "message"),
    [
        (b'{"user_id": "685"}', "text/plain", "text/csv", 415, "unsupported Content-Type"),
        (SEED_BATCH, "application/jsonlines", "application/xml", 406, "unsupported Accept"),
        (
            b'{"user_id": "685"}\n{"user_id": "302", "top_n": -1}',
            "application/jsonlines",
            "text/csv",
            400,
            "line 2: top_n must be at least 1",
        ),
        (
            b'{"user_id": "685"}\n{"user": "302"}',
            "application/jsonlines",
            "text/csv",
            400,
            "line 2: unknown field(s) 'user'",
        ),
        (
            '[{"user_id": "685"}, {"user_id": [1]}]',
            "application/json",
            "text/csv",
            400,
            "record 2: user_id must be a string or an integer",
        ),
        (b"{not json}", "application/jsonlines", "text/csv", 400, "line 1: invalid JSON"),
        (b"", "application/jsonlines", "text/csv", 400, "empty payload"),
        (
            b'{"user_id": "685", "top_n": 100000}',
            "application/jsonlines",
            "text/csv",
            400,
            "exceeds the maximum 1000",
        ),
    ],
)
def test_bad_input_raises_toolkit_error(served, body, ctype, accept, status, message):
    with pytest.raises(BaseInferenceToolkitError) as info:
        _invoke(served, body, ctype, accept)
    assert info.value.status_code == status
    assert message in info.value.message


def test_payload_limits_are_413(served, monkeypatch):
    monkeypatch.setenv("SPOTLIGHT_MAX_RECORDS", "2")
    with pytest.raises(BaseInferenceToolkitError) as info:
        _invoke(served, b'{"user_id": "1"}\n{"user_id": "2"}\n{"user_id": "3"}')
    assert info.value.status_code == 413
    monkeypatch.delenv("SPOTLIGHT_MAX_RECORDS")
    monkeypatch.setenv("SPOTLIGHT_MAX_RESPONSE_BYTES", "1000")
    with pytest.raises(BaseInferenceToolkitError) as info:
        _invoke(served, b'{"user_id": "685", "top_n": 500}')
    assert info.value.status_code == 413 and "lower MaxPayloadInMB" in info.value.message


def test_default_accept(served, monkeypatch):
    assert _invoke(served, SEED_BATCH, accept="*/*")[1] == "text/csv"
    assert _invoke(served, SEED_BATCH, accept=None)[1] == "text/csv"
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/jsonlines")
    assert _invoke(served, SEED_BATCH, accept="*/*")[1] == "application/jsonlines"


def test_non_finite_scores_are_500_not_a_silent_answer(trained_model_dir):
    model = inference.model_fn(str(trained_model_dir))
    with np.errstate(all="ignore"):
        model.model._net.item_embeddings.data[:] = float("nan")
    with pytest.raises(BaseInferenceToolkitError) as info:
        _invoke(model, SEED_BATCH)
    assert info.value.status_code == 500 and "non-finite" in info.value.message


def test_model_fn_rejects_a_non_finite_artifact(trained_model_dir, tmp_path):
    rewrite_arrays(trained_model_dir, tmp_path, lambda a: a["user_biases"].__setitem__(3, np.inf))
    with pytest.raises(ValueError, match="non-finite user_biases"):
        inference.model_fn(str(tmp_path))


def test_model_fn_rejects_a_folder_without_artifact(tmp_path):
    with pytest.raises(ValueError, match="spotlight-model"):
        inference.model_fn(str(tmp_path))


# ---------------------------------------------------------------------- memory bounds
def _peak_bytes(func) -> int:
    import tracemalloc

    tracemalloc.start()
    with contextlib.suppress(Exception):
        func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        # within the documented limits (200,000 records, top_n <= 1000): needed ~18 GB
        (b"user_id,top_n\n" + b"1,1000\n" * 200_000, "SPOTLIGHT_MAX_RESPONSE_BYTES"),
        # one large top_n among many small ones: records x the largest top_n
        (b"user_id,top_n\n1,1000\n" + b"1,1\n" * 199_999, "requests of their own"),
    ],
    ids=["all-large", "one-large"],
)
def test_a_response_over_the_limit_is_refused_before_scoring(served, body, fragment):
    with pytest.raises(BaseInferenceToolkitError) as info:
        _invoke(served, body, "text/csv")
    assert info.value.status_code == 413 and fragment in info.value.message
    # decoding 200,000 records costs ~50 MB; scoring them at top_n 1000 would cost gigabytes
    assert _peak_bytes(lambda: _invoke(served, body, "text/csv")) < 300 * 2**20


def test_too_many_lines_are_refused_before_parsing(served):
    body = b'{"user_id": "1"}\n' * 200_001
    with pytest.raises(BaseInferenceToolkitError) as info:
        inference.input_fn(body, "application/jsonlines")
    assert info.value.status_code == 413 and "SPOTLIGHT_MAX_RECORDS" in info.value.message
    # the records were never parsed into dicts (which would take ~100 MB)
    assert _peak_bytes(lambda: inference.input_fn(body, "application/jsonlines")) < 30 * 2**20


def test_a_response_just_within_the_limit_is_served(served):
    body = b"user_id,top_n\n" + b"1,100\n" * 2_000  # 200,000 rows, about 3 MB of CSV
    out, ctype = _invoke(served, body, "text/csv")
    assert ctype == "text/csv" and out.count(b"\n") == 200_000 - 1
