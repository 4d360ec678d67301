"""The serving codec on real bytes: decoders, encoders, Accept negotiation, limits, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spotlight_sagemaker.container.serving import codec
from spotlight_sagemaker.container.serving._fastcsv import format_fixed, format_small, joined_rows

SEED_BATCH = b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}'


def _decode(body, ctype="application/jsonlines", **limits):
    return codec.decode(body, ctype, codec.Limits(**limits))


def test_seed_batch_from_bytearray():
    q = _decode(bytearray(SEED_BATCH))
    assert q.ids == ["685", "302"]
    assert q.top_n.tolist() == [5, 5]
    assert q.exclude_seen.tolist() == [True, True]
    assert q.is_item.tolist() == [False, False]
    assert [q.where(r) for r in range(2)] == ["line 1", "line 2"]


@pytest.mark.parametrize(
    "body",
    [
        b'\n\n{"user_id": 685, "top_n": 5}\r\n\r\n  \n{"user_id": "302"}\n',
        b'\xef\xbb\xbf{"user_id": 685, "top_n": 5}\n{"user_id": "302"}',
        b'  {"user_id": 685, "top_n": 5}  \n{"user_id": "302"}\n\n',
    ],
)
def test_jsonlines_blank_lines_crlf_bom(body):
    q = _decode(body)
    assert q.ids == ["685", "302"]
    assert q.top_n.tolist() == [5, 10]  # default top_n 10


def test_line_numbers_count_blank_lines():
    body = b'\n\n{"user_id": "1"}\n\n{"user_id": "2", "top_n": "x"}\n'
    with pytest.raises(codec.BadRequestError, match=r"^line 5: top_n must be a positive"):
        _decode(body)
    q = _decode(b'\n\n{"user_id": "1"}\n\n{"user_id": "2"}\n')
    assert q.numbers == [3, 5]


@pytest.mark.parametrize(
    ("body", "ids", "unit"),
    [
        ('{"user_id": "685", "top_n": 5}', ["685"], "record"),
        ('[{"user_id": "685"}, {"item_id": 50, "top_n": "3"}]', ["685", "50"], "record"),
        ('{"user_id": "685"}\n{"user_id": "302"}', ["685", "302"], "line"),
    ],
)
def test_json_object_list_or_lines(body, ids, unit):
    q = _decode(body, "application/json")
    assert q.ids == ids and q.unit == unit


def test_json_with_charset_arrives_as_bytes():
    q = _decode(bytearray(SEED_BATCH), "Application/JSON; charset=UTF-8")
    assert q.ids == ["685", "302"]


def test_similar_items_and_flags():
    body = (
        '{"item_id": "50", "top_n": 3}\n{"user_id": "7", "exclude_seen": false}\n'
        '{"user_id": "8", "exclude_seen": "TRUE"}'
    )
    q = _decode(body)
    assert q.is_item.tolist() == [True, False, False]
    assert q.exclude_seen.tolist() == [True, False, True]


def test_csv_input_with_and_without_header():
    q = _decode("685,5\n302\n", "text/csv")
    assert q.ids == ["685", "302"] and q.top_n.tolist() == [5, 10]
    q = _decode("item_id,top_n\n50,3\n", "text/csv")
    assert q.ids == ["50"] and q.is_item.tolist() == [True] and q.numbers == [2]
    q = _decode("user_id,exclude_seen,top_n\n685,false,2\n", "text/csv")
    assert q.exclude_seen.tolist() == [False] and q.top_n.tolist() == [2]


BAD = [
    # (body, content type, error type, message fragment)
    (b"", "application/jsonlines", codec.BadRequestError, "empty payload"),
    (b"\n \n", "application/jsonlines", codec.BadRequestError, "empty payload"),
    (b"[]", "application/json", codec.BadRequestError, "empty payload"),
    (
        b'{"user_id": "1"}\n{"user_id": ',
        "application/jsonlines",
        codec.BadRequestError,
        "line 2: invalid JSON",
    ),
    (
        b'{"user_id": "1"} {"user_id": "2"}',
        "application/jsonlines",
        codec.BadRequestError,
        "line 1: invalid JSON",
    ),
    (
        b'{"user_id": "1"}\n[1, 2]',
        "application/jsonlines",
        codec.BadRequestError,
        "line 2: expected a JSON object",
    ),
    (b'{"top_n": 5}', "application/jsonlines", codec.BadRequestError, 'line 1: missing "user_id"'),
    (b'{"user_id": null}', "application/jsonlines", codec.BadRequestError, "missing"),
    (
        b'{"user_id": 1.5}',
        "application/jsonlines",
        codec.BadRequestError,
        "user_id must be a string or an integer",
    ),
    (b'{"user_id": ""}', "application/jsonlines", codec.BadRequestError, "non-empty"),
    (b'{"user_id": true}', "application/jsonlines", codec.BadRequestError, "user_id must be"),
    (
        b'{"user_id": "1", "top_n": -3}',
        "application/jsonlines",
        codec.BadRequestError,
        "top_n must be at least 1",
    ),
    (
        b'{"user_id": "1", "top_n": 0}',
        "application/jsonlines",
        codec.BadRequestError,
        "top_n must be at least 1",
    ),
    (
        b'{"user_id": "1", "top_n": "2.5"}',
        "application/jsonlines",
        codec.BadRequestError,
        "top_n must be a positive integer",
    ),
    (
        b'{"user_id": "1", "top_n": 2.0}',
        "application/jsonlines",
        codec.BadRequestError,
        "top_n must be a positive integer",
    ),
    (
        b'{"user_id": "1", "top_n": true}',
        "application/jsonlines",
        codec.BadRequestError,
        "top_n must be a positive integer",
    ),
    (
        b'{"user_id": "1", "top_n": 1001}',
        "application/jsonlines",
        codec.BadRequestError,
        "exceeds the maximum 1000 (SPOTLIGHT_MAX_TOP_N)",
    ),
    (
        b'{"user_id": "1", "exclude_seen": "maybe"}',
        "application/jsonlines",
        codec.BadRequestError,
        "exclude_seen must be true or false",
    ),
    (
        b'{"user_id": "1", "topn": 5}',
        "application/jsonlines",
        codec.BadRequestError,
        "unknown field(s) 'topn'",
    ),
    (
        b'{"user_id": "1", "item_id": "2"}',
        "application/jsonlines",
        codec.BadRequestError,
        "not both",
    ),
    (
        b'{"item_id": "2", "exclude_seen": false}',
        "application/jsonlines",
        codec.BadRequestError,
        "applies to user_id and history records only",
    ),
    (b'"685"', "application/json", codec.BadRequestError, "got str"),
    (b'{"user_id": "1"', "application/json", codec.BadRequestError, "invalid JSON"),
    (
        b'\xff\xfe{"user_id": "1"}',
        "application/jsonlines",
        codec.BadRequestError,
        "not valid UTF-8",
    ),
    (b"685,5,true\n", "text/csv", codec.BadRequestError, "line 1: 3 fields"),
    (b"user_id,count\n1,2\n", "text/csv", codec.BadRequestError, "bad CSV header"),
    (b"685,x\n", "text/csv", codec.BadRequestError, "line 1: top_n"),
    (
        b'{"user_id": "1"}',
        "text/plain",
        codec.UnsupportedContentTypeError,
        "unsupported Content-Type 'text/plain'",
    ),
    (b'{"user_id": "1"}', None, codec.UnsupportedContentTypeError, "unsupported Content-Type"),
    (
        b'{"user_id": "1"}',
        "application/x-npy",
        codec.UnsupportedContentTypeError,
        "supported: application/jsonlines, application/json, text/csv",
    ),
    (
        b'{"user_id": "1"}',
        "application/json; charset=latin-1",
        codec.UnsupportedContentTypeError,
        "charset",
    ),
]


@pytest.mark.parametrize(("body", "ctype", "error", "fragment"), BAD)
def test_bad_requests(body, ctype, error, fragment):
    with pytest.raises(error) as info:
        _decode(body, ctype)
    assert fragment in info.value.message
    assert (
        info.value.status
        == {codec.BadRequestError: 400, codec.UnsupportedContentTypeError: 415}[error]
    )


def test_record_limit_is_413():
    body = "\n".join(['{"user_id": "1"}'] * 3)
    with pytest.raises(codec.PayloadTooLargeError, match="SPOTLIGHT_MAX_RECORDS") as info:
        _decode(body, max_records=2)
    assert info.value.status == 413


def test_limits_from_env():
    limits = codec.Limits.from_env({"SPOTLIGHT_MAX_TOP_N": "50", "SPOTLIGHT_DEFAULT_TOP_N": "3"})
    assert (limits.max_top_n, limits.default_top_n) == (50, 3)
    assert codec.decode(b'{"user_id": "1"}', "application/jsonlines", limits).top_n[0] == 3
    with pytest.raises(ValueError, match="SPOTLIGHT_MAX_TOP_N must be a positive integer"):
        codec.Limits.from_env({"SPOTLIGHT_MAX_TOP_N": "lots"})
    with pytest.raises(ValueError, match="exceeds"):
        codec.Limits.from_env({"SPOTLIGHT_MAX_TOP_N": "5"})


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "text/csv"),
        ("", "text/csv"),
        ("*/*", "text/csv"),
        ("text/csv", "text/csv"),
        ("application/jsonlines", "application/jsonlines"),
        ("Application/JSON; charset=utf-8", "application/json"),
        ("image/png, application/json;q=0.5, text/csv;q=0.9", "text/csv"),
        ("application/*", "application/jsonlines"),
        ("text/csv;q=0, application/json", "application/json"),
    ],
)
def test_negotiate(accept, expected, monkeypatch):
    monkeypatch.delenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", raising=False)
    assert codec.negotiate(accept) == expected


def test_negotiate_default_from_env_and_406(monkeypatch):
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/jsonlines")
    assert codec.negotiate("*/*") == "application/jsonlines"
    for bad in ("image/png", "text/html, application/xml", "text/csv;q=0"):
        with pytest.raises(codec.NotAcceptableError, match="supported: text/csv") as info:
            codec.negotiate(bad)
        assert info.value.status == 406


def _results(ids, items, scores, counts, vocab, is_item=None, known=None, fallback=None):
    n = len(ids)
    q = codec.Queries(
        list(ids),
        np.zeros(n, bool) if is_item is None else np.asarray(is_item),
        np.asarray(counts),
        np.ones(n, bool),
        list(range(1, n + 1)),
    )
    return codec.Results(
        q,
        np.asarray(items),
        np.asarray(scores, np.float32),
        np.asarray(counts),
        np.ones(n, bool) if known is None else np.asarray(known),
        np.zeros(n, bool) if fallback is None else np.asarray(fallback),
        codec.ItemVocab(np.asarray(vocab)),
    )


def test_encoders_exact_bytes():
    res = _results(
        ["685", 'a,"b"', "50"],
        [[2, 0], [1, -1], [0, 1]],
        [[1.5, -0.25], [0.0001234, 0.0], [3.0, 2.0]],
        [2, 1, 1],
        ["10", "20", "x,y"],
        is_item=[False, False, True],
        known=[True, False, True],
        fallback=[False, True, False],
    )
    body, ctype = codec.encode(res, "text/csv")
    assert ctype == "text/csv"
    assert body == b'685,"x,y",1.5\n685,10,-0.25\n"a,""b""",20,0.000123\n50,10,3.0'
    body, ctype = codec.encode(res, "application/jsonlines")
    lines = [json.loads(line) for line in body.decode().split("\n")]
    assert ctype == "application/jsonlines" and len(lines) == 3
    assert lines[0] == {
        "user_id": "685",
        "items": ["x,y", "10"],
        "scores": [1.5, -0.25],
        "known": True,
        "fallback": False,
    }
    assert lines[1]["fallback"] is True and lines[1]["known"] is False
    assert lines[2] == {
        "item_id": "50",
        "items": ["10"],
        "scores": [3.0],
        "known": True,
        "fallback": False,
    }
    body, ctype = codec.encode(res, "application/json")
    assert json.loads(body)["predictions"] == lines


def test_empty_result_and_response_limit():
    res = _results(["1"], [[-1]], [[0.0]], [0], ["10"])
    assert codec.encode(res, "text/csv")[0] == b""
    big = _results(["1"] * 100, [[0, 0]] * 100, [[1.0, 1.0]] * 100, [2] * 100, ["10"])
    with pytest.raises(codec.PayloadTooLargeError, match="SPOTLIGHT_MAX_RESPONSE_BYTES"):
        codec.encode(big, "text/csv", codec.Limits(max_response_bytes=100))


def test_format_fixed_matches_python_formatting():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.normal(size=5000) * 10.0 ** rng.uniform(-7, 4, 5000),
            [0.0, -0.0, 1.0, -1.0, 0.5, 123456.0, -2.5e-7, 2147.483648],
        ]
    )
    text = format_fixed(x, as_text=True)
    for got, value in zip(text, x, strict=True):
        assert abs(float(got) - value) <= 5e-7 + 1e-12 * abs(value), (got, value)
        assert got == got.strip() and "e" not in got and "." in got
        assert not (got.endswith("0") and not got.endswith(".0")), got
    assert format_fixed(np.array([1e13, -2.5]), as_text=True) == ["10000000000000.0", "-2.5"]
    with pytest.raises(ValueError, match="non-finite"):
        format_fixed(np.array([np.nan]))


def test_small_and_vectorized_paths_agree(monkeypatch):
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.normal(size=2000) * 10.0 ** rng.uniform(-7, 5, 2000),
            np.arange(-50, 50) / 8.0,
            [2.5e-6, -2.5e-6, 0.5e-6, 1.5e-6],
        ]
    )
    assert format_fixed(x, as_text=True) == format_small(x.tolist())
    n = 300
    res = _results(
        [f"u{i % 7}" if i % 5 else f"u,{i}" for i in range(n)],
        rng.integers(0, 3, (n, 2)),
        rng.normal(size=(n, 2)),
        [2] * n,
        ["10", "2,0", "30"],
    )
    monkeypatch.setattr(codec.encoding, "SMALL", 10**9)
    small = codec.encode(res, "text/csv")[0]
    monkeypatch.setattr(codec.encoding, "SMALL", 0)
    assert codec.encode(res, "text/csv")[0] == small
    assert small.count(b"\n") == 2 * n - 1


def test_joined_rows():
    a = np.array([b"1", b"22"])
    assert joined_rows([a, format_fixed(np.array([0.5, 10.0]))]) == b"1,0.5\n22,10.0"
    assert joined_rows([np.array([], dtype="S1")]) == b""


def test_codec_and_serving_import_without_toolkit_or_sdk():
    code = (
        "import sys; sys.modules['sagemaker_inference'] = None; sys.modules['boto3'] = None\n"
        "sys.modules['sagemaker'] = None\n"
        "import spotlight_sagemaker.container.serving.codec\n"
        "import spotlight_sagemaker.container.serving.model_server\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "lines",
    [
        [json.dumps({"user_id": str(i), "top_n": "5"}) for i in range(50)],
        [json.dumps({"user_id": str(i), "top_n": i % 7 + 1}) for i in range(50)],
        [json.dumps({"user_id": str(i)}) for i in range(50)],
        [json.dumps({"user_id": str(i), "exclude_seen": i % 2 == 1}) for i in range(50)],
    ],
)
def test_bulk_validation_equals_per_record(lines):
    numbers, records, unit = codec.decoding._decode_jsonlines("\n".join(lines))
    limits = codec.Limits()
    bulk = codec.decoding._uniform_user_records(numbers, records, unit, limits)
    each = codec.decoding._each_record(numbers, records, unit, limits)
    assert bulk is not None, "uniform user records should take the bulk path"
    assert bulk.ids == each.ids and bulk.numbers == each.numbers
    for field in ("is_item", "top_n", "exclude_seen"):
        assert getattr(bulk, field).tolist() == getattr(each, field).tolist()


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"user_id": "9", "top_n": "0"}', "line 50: top_n must be at least 1"),
        ('{"user_id": "9", "top_n": "5000"}', "line 50: top_n 5000 exceeds"),
        ('{"user_id": "9", "top_n": 5.0}', "line 50: top_n must be a positive integer"),
        ('{"user_id": "", "top_n": "5"}', "line 50: user_id must be a non-empty"),
        ('{"user_id": "9", "top_n": true}', "line 50: top_n must be a positive integer"),
    ],
)
def test_bulk_path_defers_errors_to_the_record(line, fragment):
    body = "\n".join(['{"user_id": "1", "top_n": "5"}'] * 49 + [line])
    with pytest.raises(codec.BadRequestError) as info:
        _decode(body)
    assert info.value.message.startswith(fragment)
