"""The metric lines train.py prints against the regexes SageMaker applies (METRIC_DEFINITIONS)."""

from __future__ import annotations

import re

import pytest

from spotlight_sagemaker.contract.metric_lines import (
    METRIC_DEFINITIONS,
    OBJECTIVE_METRIC,
    VALIDATION_METRICS,
    format_epoch_line,
    format_validation_line,
    parse_metric_lines,
)

VALIDATION = {
    "ndcg@10": 0.3812,
    "precision@10": 0.25,
    "recall@10": 1e-7,
    "mrr": 0.0,
    "coverage@10": 1.0,
    "users": 943.0,
}


def _matches(line: str) -> dict[str, float]:
    """Every definition's group(1) as a float, for the definitions that match ``line``."""
    out = {}
    for d in METRIC_DEFINITIONS:
        m = re.search(d["Regex"], line)
        if m:
            out[d["Name"]] = float(m.group(1))
    return out


@pytest.mark.parametrize(
    "loss,seconds,throughput",
    [
        (0.123456, 0.41, 160000.0),
        (12.5, 1234.5, 3.0),
        (1e-9, 0.0001, 1e9),
        (-0.5, 2.0, 0.4),
    ],
)
def test_epoch_line_matches_the_train_regexes(loss, seconds, throughput):
    line = format_epoch_line(3, loss, seconds, throughput)
    assert re.fullmatch(r"epoch=3 loss=\S+ seconds=\S+ throughput=\S+", line)
    got = _matches(line)
    assert set(got) == {"train:loss", "train:throughput", "train:epoch_seconds"}
    assert got["train:loss"] == pytest.approx(loss, abs=5e-7)
    assert got["train:epoch_seconds"] == pytest.approx(seconds, abs=5e-4)
    assert got["train:throughput"] == pytest.approx(throughput, abs=0.5)


def test_validation_line_matches_every_validation_regex():
    for line in (format_validation_line(VALIDATION), format_validation_line(VALIDATION, epoch=4)):
        got = _matches(line)
        assert set(got) == {f"validation:{m}" for m in VALIDATION_METRICS}  # not train:*
        for m in VALIDATION_METRICS:
            assert got[f"validation:{m}"] == pytest.approx(VALIDATION[m], abs=5e-7)
    assert format_validation_line(VALIDATION, epoch=4).startswith("epoch=4 validation:ndcg@10=")
    assert OBJECTIVE_METRIC in {d["Name"] for d in METRIC_DEFINITIONS}


def test_non_finite_values_produce_no_datapoint():
    got = _matches(format_epoch_line(1, float("nan"), 1.0, float("inf")))
    assert "train:loss" not in got and "train:throughput" not in got
    assert got["train:epoch_seconds"] == 1.0


def test_definitions_are_valid_for_sagemaker():
    names = [d["Name"] for d in METRIC_DEFINITIONS]
    assert len(names) == len(set(names))
    for d in METRIC_DEFINITIONS:
        assert set(d) == {"Name", "Regex"} and 1 <= len(d["Name"]) <= 255
        assert len(d["Regex"]) <= 500 and re.compile(d["Regex"]).groups == 1


def test_missing_validation_metric_is_an_error():
    with pytest.raises(ValueError, match="mrr"):
        format_validation_line({k: v for k, v in VALIDATION.items() if k != "mrr"})


def test_parse_metric_lines_reads_a_log():
    log = [
        "2026 INFO something",
        format_epoch_line(1, 0.5, 1.0, 10.0),
        format_epoch_line(2, 0.25, 1.0, 20.0),
        format_validation_line(VALIDATION),
    ]
    parsed = parse_metric_lines(log)
    assert parsed["train:loss"] == [0.5, 0.25] and parsed["validation:mrr"] == [0.0]
