"""Threshold parsing and the duration spellings doctor prints (pure, no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from powertools_core.doctor.thresholds import (
    Thresholds,
    exact_duration,
    format_duration,
    parse_duration,
    resolve_retention,
    resolve_thresholds,
)
from powertools_core.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("45", timedelta(seconds=45)),
        (90, timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_parse_duration(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "soon", "10 minutes", "-5s", True, "5w", None])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(seconds=12, milliseconds=900), "12s"),
        (timedelta(minutes=45), "45m"),
        (timedelta(hours=3, minutes=0, seconds=5), "3h"),
        (timedelta(days=2, hours=3, minutes=59), "2d3h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
    ],
)
def test_format_duration_is_two_units_rounded_down(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_exact_duration_round_trips_every_default() -> None:
    for name, text in Thresholds().as_strings().items():
        value = getattr(Thresholds(), name)
        if isinstance(value, timedelta):
            assert parse_duration(text) == value
            assert exact_duration(value) == text


def test_overrides_beat_config_beat_defaults() -> None:
    limits = resolve_thresholds(
        {"backlog_age": "30m", "uniqueness_backlog": 10}, {"backlog_age": "2h"}
    )
    assert limits.backlog_age == timedelta(hours=2)
    assert limits.uniqueness_backlog == 10
    assert limits.long_transaction == Thresholds().long_transaction


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"backlog": "1m"}, "unknown doctor threshold 'backlog'"),
        ({"uniqueness_backlog": "many"}, "expected a whole number"),
        ({"bloat_dead_ratio": "2"}, "between 0 and 1"),
    ],
)
def test_bad_config_is_invalid_input(config: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        resolve_thresholds(config)


def test_retention_reads_the_archive_table() -> None:
    assert resolve_retention(None)["completed"] == timedelta(days=1)
    configured = resolve_retention({"retention": {"completed": "3d"}})
    assert configured["completed"] == timedelta(days=3)
    assert configured["discarded"] == timedelta(days=30)
    with pytest.raises(InvalidInput):
        resolve_retention({"retention": {"available": "1d"}})
