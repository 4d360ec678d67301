"""Seeded fuzzing of the serving handler functions: every malformed request is a 4xx.

The cases (tests/_fuzz.py) go through ``input_fn`` -> ``predict_fn`` -> ``output_fn`` as the
inference toolkit calls them (it decodes ``application/json`` and ``text/csv`` bodies as UTF-8
first; our handler service answers 400 where that fails, tested through the real server in
test_model_server.py). A case passes when it is answered, or refused with a toolkit error whose
status is 4xx and whose message names the problem without a traceback. Anything else (an
uncaught exception: a 500 in production) fails. bench/fuzz_serving.py runs thousands of these
through the real model server.
"""

from __future__ import annotations

from collections import Counter

import pytest
from _fuzz import payloads
from sagemaker_inference import content_types
from sagemaker_inference.errors import BaseInferenceToolkitError
from spotlight_sagemaker._entry_points import inference

CASES = 400


@pytest.fixture(scope="module")
def served(trained_model_dir):
    return inference.model_fn(str(trained_model_dir))


def _handle(served, body: bytes, ctype: str | None, accept: str | None) -> int:
    data: bytes | str = body
    if ctype in content_types.UTF8_TYPES:
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            return 400  # handler_service answers before the toolkit decodes
    try:
        queries = inference.input_fn(data, ctype)
        inference.output_fn(inference.predict_fn(queries, served), accept)
    except BaseInferenceToolkitError as e:
        assert "Traceback" not in e.message and 'File "' not in e.message, e.message
        assert e.message.strip(), "an error without a message"
        return e.status_code
    return 200


def test_seeded_fuzz_gives_no_server_errors(served):
    statuses: Counter[int] = Counter()
    for n, (body, ctype, accept) in enumerate(payloads(seed=20261202, count=CASES)):
        try:
            status = _handle(served, body, ctype, accept)
        except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"case {n} ({ctype!r}, {body[:80]!r}) raised {type(e).__name__}: {e}")
        assert status == 200 or 400 <= status < 500, (n, ctype, body[:80], status)
        statuses[status] += 1
    # the generator exercises both outcomes and several kinds of refusal
    assert statuses[200] > 20 and sum(v for k, v in statuses.items() if k != 200) > 100
    assert {400, 406, 415} <= set(statuses), statuses


def test_the_generator_is_deterministic():
    assert list(payloads(7, 50)) == list(payloads(7, 50))
