"""Pure cron logic: expressions, zones and DST days, slot plans, overlap decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powertools_core.cron.expression import NICKNAMES, parse_schedule
from powertools_core.cron.overlap import Decision, Overlap, decide
from powertools_core.cron.slots import CatchUp, Evidence, classify_fires, plan_slots
from powertools_core.errors import InvalidInput

ZONES = ["Etc/UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kolkata"]
EXPRESSIONS = [
    "* * * * *",
    "*/5 * * * *",
    "30 1 * * *",
    "30 2 * * *",
    "0 9 * * MON-FRI",
    "15 */3 * * *",
    "0 0 L * *",
    "0 12 * * 5L",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
]
moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1))


def test_fall_back_day_fires_a_daily_0130_once() -> None:
    s = parse_schedule("30 1 * * *", "America/New_York")
    fires = list(s.fires_between(datetime(2026, 10, 31), datetime(2026, 11, 3)))
    # 01:30 EDT (05:30Z) on Nov 1 only; the repeated 01:30 EST (06:30Z) does not fire.
    assert fires == [
        datetime(2026, 10, 31, 5, 30),
        datetime(2026, 11, 1, 5, 30),
        datetime(2026, 11, 2, 6, 30),
    ]


def test_spring_forward_day_fires_the_missing_minute_once_after_the_gap() -> None:
    s = parse_schedule("30 2 * * *", "America/New_York")
    fires = list(s.fires_between(datetime(2027, 3, 13), datetime(2027, 3, 16)))
    assert fires == [
        datetime(2027, 3, 13, 7, 30),
        datetime(2027, 3, 14, 7, 0),
        datetime(2027, 3, 15, 6, 30),
    ]


@pytest.mark.parametrize(("nick", "five"), sorted(NICKNAMES.items()))
def test_nicknames_fire_like_their_expansion(nick: str, five: str) -> None:
    start = datetime(2026, 5, 17, 13, 7)
    assert parse_schedule(nick).next_fires(start, 3) == parse_schedule(five).next_fires(start, 3)
    assert parse_schedule(nick.upper()).expression == nick


@pytest.mark.parametrize(
    ("expr", "zone", "fragment"),
    [
        ("@reboot", "Etc/UTC", "@reboot is not supported"),
        ("61 * * * *", "Etc/UTC", "Bad minute"),
        ("* * *", "Etc/UTC", "expected 5 fields"),
        ("@sometimes", "Etc/UTC", "unknown cron nickname"),
        ("", "Etc/UTC", "empty cron expression"),
        ("* * * * *", "Mars/Olympus", "unknown timezone"),
    ],
)
def test_bad_input_is_one_clear_error(expr: str, zone: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_schedule(expr, zone)
    assert fragment in info.value.one_line()
    assert "\n" not in info.value.one_line()


def test_explain_in_words_names_the_zone() -> None:
    assert parse_schedule("0 9 * * MON-FRI").explain() == "At 09:00 on Monday through Friday"
    assert parse_schedule("@daily", "Europe/Paris").explain().endswith("(Europe/Paris)")


@given(
    st.sampled_from(EXPRESSIONS),
    st.sampled_from(ZONES),
    moments,
    st.integers(min_value=1, max_value=3000),
)
def test_fires_are_strictly_increasing_and_inside_the_range(
    expr: str, zone: str, start: datetime, minutes: int
) -> None:
    s = parse_schedule(expr, zone)
    end = start + timedelta(minutes=minutes)
    fires = list(s.fires_between(start, end))
    assert all(start < f <= end for f in fires)
    assert all(a < b for a, b in pairwise(fires))
    assert all(f.second == 0 and f.microsecond == 0 for f in fires)
    # Splitting the range anywhere gives the same fires (no double fire at a boundary).
    middle = start + timedelta(minutes=minutes // 2)
    assert list(s.fires_between(start, middle)) + list(s.fires_between(middle, end)) == fires


@given(
    st.sampled_from(["30 1 * * *", "0 2 * * *", "59 23 * * *", "0 3 * * *"]),
    st.sampled_from(ZONES),
    st.integers(min_value=2020, max_value=2034),
)
def test_a_daily_job_fires_once_per_local_day_across_a_whole_year(
    expr: str, zone: str, year: int
) -> None:
    s = parse_schedule(expr, zone)
    fires = list(s.fires_between(datetime(year, 1, 1), datetime(year + 1, 1, 1)))
    local_days = {f.replace(tzinfo=UTC).astimezone(s.tz).date() for f in fires}
    assert len(local_days) == len(fires)
    assert 363 <= len(fires) <= 367


@given(
    st.sampled_from(EXPRESSIONS),
    st.sampled_from(ZONES),
    moments,
    st.integers(min_value=0, max_value=20_000),
    st.sampled_from(list(CatchUp)),
    st.integers(min_value=0, max_value=50),
)
def test_slot_plan_partitions_the_due_fires(
    expr: str, zone: str, planned: datetime, gap: int, policy: CatchUp, cap: int
) -> None:
    s = parse_schedule(expr, zone)
    now = planned + timedelta(minutes=gap, seconds=7)
    plan = plan_slots(s, planned_until=planned, now=now, catch_up=policy, max_catch_up=cap)
    due = list(s.fires_between(planned, now))
    assert sorted(plan.fire + plan.missed) == due
    assert not set(plan.fire) & set(plan.missed)
    assert list(plan.fire) == sorted(plan.fire)
    on_time = [f for f in due if now - f <= timedelta(minutes=1)]
    late = [f for f in due if now - f > timedelta(minutes=1)]
    assert set(on_time) <= set(plan.fire)
    made_late = [f for f in plan.fire if f in late]
    if policy is CatchUp.none:
        assert made_late == []
    elif policy is CatchUp.latest:
        assert made_late == ([] if on_time or not late else [late[-1]])
    else:
        assert made_late == late[max(0, len(late) - cap) :] if cap else made_late == []
    # Everything late that is not made is recorded missed: nothing is dropped silently.
    assert list(plan.missed) == [f for f in late if f not in made_late]


def test_catch_up_after_an_hour_down() -> None:
    s = parse_schedule("*/10 * * * *")
    planned = datetime(2026, 1, 1, 9, 0, 30)
    now = datetime(2026, 1, 1, 10, 0, 5)
    late = [datetime(2026, 1, 1, 9, m) for m in (10, 20, 30, 40, 50)]
    on_time = datetime(2026, 1, 1, 10, 0)

    def plan(policy: CatchUp, cap: int = 10) -> tuple[list[datetime], list[datetime]]:
        p = plan_slots(s, planned_until=planned, now=now, catch_up=policy, max_catch_up=cap)
        return list(p.fire), list(p.missed)

    assert plan(CatchUp.all, 2) == ([late[3], late[4], on_time], late[:3])
    assert plan(CatchUp.all) == ([*late, on_time], [])
    assert plan(CatchUp.none) == ([on_time], late)
    assert plan(CatchUp.latest) == ([on_time], late)
    later = datetime(2026, 1, 1, 10, 5)
    p = plan_slots(s, planned_until=planned, now=later, catch_up=CatchUp.latest, max_catch_up=1)
    assert (list(p.fire), list(p.missed)) == ([on_time], late)
    assert (
        plan_slots(s, planned_until=None, now=now, catch_up=CatchUp.all, max_catch_up=5).fire == ()
    )


def test_lookback_bounds_a_very_long_outage() -> None:
    s = parse_schedule("* * * * *")
    now = datetime(2026, 6, 1)
    p = plan_slots(
        s, planned_until=datetime(2025, 1, 1), now=now, catch_up=CatchUp.none, max_catch_up=0
    )
    # 31 days of minutes; the last two (23:59 and 00:00) are within the one-minute grace.
    assert p.beyond_lookback and len(p.missed) == 31 * 24 * 60 - 2
    assert p.fire == (now - timedelta(minutes=1), now)


@pytest.mark.parametrize(
    ("policy", "active", "waiting", "decision"),
    [
        (Overlap.allow, False, False, Decision.enqueued),
        (Overlap.skip, False, True, Decision.enqueued),
        (Overlap.allow, True, False, Decision.allowed),
        (Overlap.skip, True, False, Decision.skipped),
        (Overlap.queue_one, True, False, Decision.queued),
        (Overlap.queue_one, True, True, Decision.skipped),
        (Overlap.cancel_previous, True, False, Decision.cancelled_previous),
    ],
)
def test_overlap_decisions(
    policy: Overlap, active: bool, waiting: bool, decision: Decision
) -> None:
    assert decide(policy, active=active, follow_up_waiting=waiting) is decision


def test_classify_fires_tells_missed_from_no_evidence() -> None:
    a, b, c = (datetime(2026, 1, 1, 0, m) for m in (1, 2, 3))
    got = classify_fires([a, b, c], {a: "enqueued"}, [datetime(2026, 1, 1, 0, 2, 30)])
    assert got == [
        (a, Evidence.recorded, "enqueued"),
        (b, Evidence.missed, None),
        (c, Evidence.no_evidence, None),
    ]
