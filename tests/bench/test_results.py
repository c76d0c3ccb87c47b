"""Benchmark rows: ratios, targets and the results.json shape."""

from __future__ import annotations

import json
from pathlib import Path

from bench.results import Row, failed, table, write_json

KEYS = {"name", "value", "unit", "baseline", "ratio", "target", "pass"}


def test_ratio_defaults_to_value_over_baseline() -> None:
    assert Row("x", 30.0, "KiB", baseline=20.0).ratio == 1.5


def test_row_passes_when_ratio_meets_an_upper_target() -> None:
    assert Row("x", 1.0, "s", baseline=1.0, direction="<=", threshold=1.05).passed is True
    assert Row("x", 1.1, "s", baseline=1.0, direction="<=", threshold=1.05).passed is False


def test_row_with_value_target_checks_the_value_not_the_ratio() -> None:
    row = Row("x", 3.0, "%", baseline=100.0, direction="<", threshold=5.0, on_value=True)
    assert row.passed is True
    assert row.target == "value < 5.00"


def test_row_without_target_is_information_only() -> None:
    assert Row("x", 1.0, "MB/s").passed is None


def test_a_benchmark_that_could_not_run_fails_with_its_reason() -> None:
    row = failed("coldstart", "s", "fake gateway did not start", "<=", 1.05)
    assert row.passed is False
    assert "fake gateway did not start" in table([row])


def test_results_json_is_a_list_of_rows_with_exactly_the_documented_keys(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    write_json(
        [Row("a", 2.0, "s", baseline=4.0, direction="<=", threshold=1.0), failed("b", "s", "boom")],
        out,
    )
    doc = json.loads(out.read_text())
    assert [set(d) for d in doc] == [KEYS, KEYS]
    assert doc[0]["ratio"] == 0.5 and doc[0]["pass"] is True
    assert doc[1]["value"] is None and doc[1]["pass"] is False


def test_rows_from_other_harnesses_keep_their_target_and_verdict() -> None:
    row = Row.from_dict(
        {
            "name": "sink",
            "value": 5,
            "unit": "ms",
            "baseline": 10,
            "ratio": 0.5,
            "target": "<= 1.0",
            "pass": True,
        }
    )
    assert row.to_json() == {
        "name": "sink",
        "value": 5.0,
        "unit": "ms",
        "baseline": 10.0,
        "ratio": 0.5,
        "target": "<= 1.0",
        "pass": True,
    }
