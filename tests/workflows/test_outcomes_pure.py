"""Pure outcome rules of workflow steps and durable jobs, and the JSON check on results."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powertools_core.jobs.model import Job
from powertools_core.runtime import outcomes
from powertools_core.workers import Cancel, Discard, Snooze
from powertools_core.workflows.values import NotJSON, encode


def _job(meta: dict[str, Any] | None = None, attempt: int = 1, max_attempts: int = 3) -> Job:
    return Job(
        id=7,
        state="executing",
        queue="q",
        worker="w",
        args={},
        attempt=attempt,
        max_attempts=max_attempts,
        meta=meta or {},
    )


STEP = {"workflow_id": 1, "workflow_step": "fetch"}


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (float("nan"), "not JSON-serialisable"),
        ({"x": float("inf")}, "not JSON-serialisable"),
        (object(), "not JSON-serialisable"),
        ({1: {2: {3}}}, "not JSON-serialisable"),
        ("\ud800", "lone surrogate"),
        ({"k": "a\x00b"}, "NUL character"),
        (["\\\x00"], "NUL character"),
    ],
)
def test_values_jsonb_cannot_hold_are_refused_by_name(value: Any, needle: str) -> None:
    with pytest.raises(NotJSON, match=needle) as info:
        encode(value, "the result of step 'x'")
    assert str(info.value).startswith("the result of step 'x'")


def test_a_literal_backslash_u0000_is_not_a_nul() -> None:
    assert json.loads(encode("\\u0000", "v")) == "\\u0000"


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=20,
    )
)
def test_encode_round_trips_every_value_jsonb_holds(value: Any) -> None:
    assert json.loads(encode(value, "v")) == value


def test_plain_jobs_get_no_effects() -> None:
    for result in (None, {"x": 1}, Snooze(1), Cancel("c"), Discard("d")):
        assert outcomes.from_result(_job(), "p", result).effects is None
    assert outcomes.failed(_job(attempt=3), "p", "boom").effects is None
    # meta that is not ours does not make a job a step
    assert outcomes.from_result(_job({"source": "cron"}), "p", {"x": 1}).effects is None


def test_a_completed_step_records_its_result() -> None:
    ack = outcomes.from_result(_job(STEP), "p", {"rows": [1, 2]})
    assert ack.state == "completed" and ack.effects is not None
    assert (ack.effects.step, ack.effects.record) == ((1, "fetch"), True)
    assert json.loads(ack.effects.result or "") == {"rows": [1, 2]}
    none = outcomes.from_result(_job(STEP), "p", None)
    assert none.effects is not None and none.effects.result == "null" and none.effects.record


def test_a_step_result_that_is_not_json_fails_the_attempt() -> None:
    retry = outcomes.from_result(_job(STEP), "p", {"n": float("nan")}, lambda a: 5.0)
    assert (retry.state, retry.delay, retry.effects) == ("retryable", 5.0, None)
    assert (
        "the result of workflow step 'fetch' is not JSON-serialisable"
        in (json.loads(retry.error or "")["error"])
    )
    last = outcomes.from_result(_job(STEP, attempt=3), "p", object())
    assert last.state == "discarded" and last.effects is not None and last.effects.step


def test_steps_that_end_otherwise_promote_without_a_result() -> None:
    for result, state in ((Cancel("c"), "cancelled"), (Discard("d"), "discarded")):
        ack = outcomes.from_result(_job(STEP), "p", result)
        assert ack.state == state and ack.effects is not None
        assert ack.effects.step and not ack.effects.record
    snooze = outcomes.from_result(_job(STEP), "p", Snooze(3))
    assert snooze.state == "scheduled" and snooze.effects is None
    assert outcomes.failed(_job(STEP), "p", "boom").effects is None  # retryable: deps wait


def test_only_a_step_that_may_have_added_steps_gets_its_fan_in_edges_materialised() -> None:
    from powertools_core import Next
    from powertools_core.jobs.spec import JobSpec
    from powertools_core.workflows.context import WorkflowContext

    def effects(result: Any, meta: dict[str, Any], adds: bool = False) -> outcomes.Effects:
        job = _job(meta)
        if adds:
            ctx = WorkflowContext(workflow_id=1, step="fetch")
            ctx.add("part", JobSpec(worker="w", queue="q", args={}))
            job.workflow_context = ctx
        fx = outcomes.from_result(job, "p", result).effects
        assert fx is not None
        return fx

    # a plain step completing without additions cannot be anyone's adder
    assert effects(None, STEP).may_have_added is False
    # additions in this attempt, a durable step (an earlier attempt may have added), a step
    # that ends otherwise: materialised as before
    assert effects(None, STEP, adds=True).may_have_added is True
    assert effects(None, {**STEP, "durable": {"step": "a", "state": None}}).may_have_added
    assert effects(Next("b"), STEP).may_have_added is True
    assert effects(Cancel("no"), STEP).may_have_added is True
