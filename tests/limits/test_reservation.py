"""The pure reservation rule: properties (hypothesis) and a stateful model of a token bucket."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from powertools_core.limits.declarations import Demand, Gate
from powertools_core.limits.reservation import (
    US,
    Blocked,
    GateState,
    Reserved,
    compute_reservation,
    decide_batch,
    fresh_state,
    level_at,
)

T0 = datetime(2026, 1, 1, 12, 0, 0)

capacities = st.integers(min_value=1, max_value=50)
spans_us = st.integers(min_value=1_000, max_value=60_000_000)
offsets_us = st.integers(min_value=0, max_value=120_000_000)


@st.composite
def rate_cases(draw: st.DrawFn) -> tuple[Gate, GateState, int, datetime]:
    cap = draw(capacities)
    span = draw(spans_us)
    gate = Gate("api", "", "rate", cap, span)
    level = draw(st.integers(min_value=0, max_value=cap * span))
    refilled = T0 + draw(offsets_us) * US
    now = T0 + draw(offsets_us) * US
    weight = draw(st.integers(min_value=1, max_value=cap))
    return gate, GateState(level, refilled), weight, now


@given(rate_cases())
def test_capacity_is_never_exceeded_and_a_reservation_debits_exactly_the_weight(
    case: tuple[Gate, GateState, int, datetime],
) -> None:
    gate, state, weight, now = case
    verdict = compute_reservation(state, gate, weight, now)
    before = level_at(state, gate, now)
    assert 0 <= before <= gate.full_level
    if isinstance(verdict, Reserved):
        assert verdict.state.level == before - weight * gate.span_us
        assert 0 <= verdict.state.level <= gate.full_level
        assert verdict.tokens_left == pytest.approx(verdict.state.level / gate.span_us)
    else:
        assert before < weight * gate.span_us


@given(rate_cases())
def test_retry_at_is_not_before_now_and_is_exactly_the_first_moment_it_fits(
    case: tuple[Gate, GateState, int, datetime],
) -> None:
    gate, state, weight, now = case
    verdict = compute_reservation(state, gate, weight, now)
    if isinstance(verdict, Reserved):
        return
    assert verdict.code == "limit_reached"
    assert verdict.retry_at is not None and verdict.retry_at >= now
    assert isinstance(compute_reservation(state, gate, weight, verdict.retry_at), Reserved)
    one_before = verdict.retry_at - US
    if one_before >= now:
        assert isinstance(compute_reservation(state, gate, weight, one_before), Blocked)


@given(rate_cases(), st.integers(min_value=1, max_value=10**9))
def test_an_active_cooldown_wins_over_a_full_bucket(
    case: tuple[Gate, GateState, int, datetime], hold_us: int
) -> None:
    gate, state, weight, now = case
    until = now + hold_us * US
    cooled = GateState(gate.full_level, state.refilled_at, until, "429 from upstream")
    verdict = compute_reservation(cooled, gate, weight, now)
    assert isinstance(verdict, Blocked)
    assert verdict.code == "cooldown" and verdict.retry_at == until
    assert verdict.details["reason"] == "429 from upstream"
    # Once it has passed, the cooldown no longer matters.
    assert isinstance(compute_reservation(cooled, gate, weight, until), Reserved)


@given(capacities, spans_us, st.integers(min_value=1, max_value=50), offsets_us)
def test_a_weight_above_capacity_is_always_blocked_and_never_gets_a_retry_time(
    cap: int, span: int, extra: int, offset: int
) -> None:
    gate = Gate("api", "", "rate", cap, span)
    verdict = compute_reservation(None, gate, cap + extra, T0 + offset * US)
    assert isinstance(verdict, Blocked)
    assert verdict.code == "limit_reached" and verdict.retry_at is None
    assert verdict.details["never"] is True


def test_a_fresh_bucket_is_full_and_refills_continuously() -> None:
    gate = Gate("api", "", "rate", 3, 1_000_000)  # 3 per second
    state = None
    for _ in range(3):
        verdict = compute_reservation(state, gate, 1, T0)
        assert isinstance(verdict, Reserved)
        state = verdict.state
    blocked = compute_reservation(state, gate, 1, T0)
    assert isinstance(blocked, Blocked)
    # One token takes a third of a second to come back (rounded up to the microsecond).
    assert blocked.retry_at == T0 + timedelta(microseconds=333_334)
    assert blocked.details == {"capacity": 3, "tokens": 0.0, "weight": 1}


def test_a_clock_that_goes_backwards_refills_nothing() -> None:
    gate = Gate("api", "", "rate", 2, 1_000_000)
    state = GateState(0, T0)
    verdict = compute_reservation(state, gate, 1, T0 - timedelta(seconds=5))
    assert isinstance(verdict, Blocked)
    assert verdict.retry_at == T0 + timedelta(microseconds=500_000)


def test_concurrency_gates_count_slots_and_say_which_kind_is_full() -> None:
    glob = Gate("calls", "", "concurrency", 2)
    part = Gate("calls", "acme", "partition_concurrency", 1)
    assert isinstance(compute_reservation(GateState(1), glob, 1, T0), Reserved)
    full = compute_reservation(GateState(2), glob, 1, T0)
    assert isinstance(full, Blocked) and full.code == "concurrency_reached"
    assert full.retry_at is None and full.details == {"limit": 2, "executing": 2}
    pfull = compute_reservation(GateState(1), part, 1, T0)
    assert isinstance(pfull, Blocked) and pfull.code == "partition_concurrency_reached"
    assert fresh_state(glob, T0).level == 0


def test_batches_are_a_strict_prefix_per_gate() -> None:
    gate = Gate("api", "", "rate", 5, 1_000_000)
    other = Gate("other", "", "rate", 5, 1_000_000)
    requests = [
        [Demand(gate, 3)],
        [Demand(gate, 3)],  # does not fit (2 left): closes the gate for this batch
        [Demand(gate, 1)],  # would fit, but may not overtake the heavier job ahead of it
        [Demand(other, 1)],
        [Demand(other, 1), Demand(gate, 1)],  # blocked by the closed gate: other not debited
    ]
    verdicts, changed = decide_batch({}, requests, T0)
    assert [v is None for v in verdicts] == [True, False, False, True, False]
    assert changed[gate.key].level == 2 * gate.span_us
    assert changed[other.key].level == 4 * other.span_us


class TokenBucketMachine(RuleBasedStateMachine):
    """Interleaves reservations and clock ticks; tracks every grant and checks that no window of
    length span ever grants more than the bucket allows: capacity (the initial burst) plus what
    refills during the window."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate("api", "", "rate", 4, 1_000_000)
        self.state: GateState | None = None
        self.now = T0
        self.grants: list[tuple[datetime, int]] = []

    @rule(weight=st.integers(min_value=1, max_value=4))
    def reserve(self, weight: int) -> None:
        verdict = compute_reservation(self.state, self.gate, weight, self.now)
        if isinstance(verdict, Reserved):
            self.state = verdict.state
            self.grants.append((self.now, weight))
        else:
            assert verdict.retry_at is not None and verdict.retry_at > self.now

    @rule(dt=st.integers(min_value=0, max_value=700_000))
    def tick(self, dt: int) -> None:
        self.now += dt * US

    @precondition(lambda self: self.state is not None)
    @rule()
    def wait_for_retry(self) -> None:
        verdict = compute_reservation(self.state, self.gate, 4, self.now)
        if isinstance(verdict, Blocked):
            assert verdict.retry_at is not None
            self.now = verdict.retry_at
            assert isinstance(compute_reservation(self.state, self.gate, 4, self.now), Reserved)

    @invariant()
    def never_more_than_the_bucket_allows(self) -> None:
        # In any window [a, b] the bucket grants at most its capacity (what it can hold at a)
        # plus what refills until b: exactly, in ticks.
        span, cap = self.gate.span_us, self.gate.capacity
        times = sorted({t for t, _ in self.grants})
        for i, a in enumerate(times):
            for b in times[i:]:
                granted = sum(w for t, w in self.grants if a <= t <= b)
                assert granted * span <= cap * span + ((b - a) // US) * cap
        if self.state is not None:
            assert 0 <= self.state.level <= self.gate.full_level


TokenBucketMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30)
test_token_bucket_machine = TokenBucketMachine.TestCase
