"""Pure parts of the runtime: option parsing, outcome rows, the telemetry registry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from powertools_core import telemetry
from powertools_core.errors import InvalidInput
from powertools_core.jobs.model import Job
from powertools_core.runtime import outcomes
from powertools_core.runtime.config import default_queues, parse_duration, parse_queues
from powertools_core.runtime.leader import leader_key
from powertools_core.workers import Cancel, Discard, Snooze


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("default=10", {"default": 10}),
        ("default=10,mailers=5", {"default": 10, "mailers": 5}),
        (" a=1 , b=2 ,", {"a": 1, "b": 2}),
    ],
)
def test_parse_queues(spec: str, expected: dict[str, int]) -> None:
    assert parse_queues(spec) == expected


@pytest.mark.parametrize(
    "spec", ["", "default", "default=", "=3", "a=0", "a=x", "a=1,a=2", "a b=1"]
)
def test_parse_queues_rejects(spec: str) -> None:
    with pytest.raises(InvalidInput):
        parse_queues(spec)


def test_parse_queues_accepts_repeated_options() -> None:
    assert parse_queues(["a=1", "b=2,c=3"]) == {"a": 1, "b": 2, "c": 3}


def test_default_queues() -> None:
    assert default_queues({"x": 3}, ["a"]) == {"x": 3}
    assert default_queues(None, ["b", "a", "b"]) == {"a": 10, "b": 10}


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("10m", 600), ("2h", 7200), ("1.5", 1.5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10 minutes", "-1s", "1x"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


def _job(attempt: int = 1, max_attempts: int = 3) -> Job:
    return Job(
        id=7,
        state="executing",
        queue="q",
        worker="w",
        args={},
        attempt=attempt,
        max_attempts=max_attempts,
    )


def test_outcome_rows() -> None:
    job = _job()
    assert outcomes.from_result(job, "p", None).state == "completed"
    assert outcomes.from_result(job, "p", {"any": "value"}).state == "completed"
    snooze = outcomes.from_result(job, "p", Snooze(12))
    assert (snooze.state, snooze.delay, snooze.bump, snooze.error) == ("scheduled", 12.0, 1, None)
    cancel = outcomes.from_result(job, "p", Cancel("stop"))
    assert cancel.state == "cancelled" and json.loads(cancel.error or "")["error"] == "stop"
    discard = outcomes.from_result(job, "p", Discard("bad"))
    assert discard.state == "discarded" and json.loads(discard.error or "")["attempt"] == 1


def test_failure_retries_until_max_attempts() -> None:
    retry = outcomes.failed(_job(attempt=2), "p", "boom", lambda attempt: attempt * 10.0)
    assert (retry.state, retry.delay) == ("retryable", 20.0)
    entry = json.loads(retry.error or "")
    assert set(entry) == {"at", "attempt", "error"} and entry["attempt"] == 2
    last = outcomes.failed(_job(attempt=3), "p", "boom")
    assert (last.state, last.delay) == ("discarded", 0.0)


def test_a_broken_backoff_falls_back_to_the_default() -> None:
    def broken(attempt: int) -> float:
        raise ZeroDivisionError

    retry = outcomes.failed(_job(), "p", "boom", broken)
    assert retry.state == "retryable" and retry.delay > 0


def test_format_exception_starts_with_the_error_line() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        text = outcomes.format_exception(exc)
    assert text.splitlines()[0] == "KeyError: 'missing'" and "Traceback" in text


def test_telemetry_attach_detach_and_contract() -> None:
    got: list[tuple[str, Any]] = []
    handle = telemetry.attach(["fetch"], lambda e, m, md: got.append((e, m["count"])))
    assert telemetry.enabled("fetch")
    telemetry.emit("fetch", {"count": 3, "demand": 5, "duration": 0.1}, {"queue": "q"})
    telemetry.detach(handle)
    telemetry.detach(handle)
    telemetry.emit("fetch", {"count": 4, "demand": 5, "duration": 0.1}, {"queue": "q"})
    assert got == [("fetch", 3)] and not telemetry.enabled("fetch")
    for name, (measurements, metadata) in telemetry.EVENTS.items():
        assert name in telemetry.__doc__  # type: ignore[operator]
        assert measurements and metadata


def test_leader_key_is_stable_and_per_prefix() -> None:
    assert leader_key("public") == leader_key("public") != leader_key("app_jobs")
    assert -(2**63) <= leader_key("public") < 2**63
