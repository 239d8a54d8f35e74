"""Slots, claims and overlap policies against a real database."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import psycopg
import pytest

from powertools_core.config import Settings
from powertools_core.cron import store
from powertools_core.cron.overlap import Decision
from powertools_core.runtime.duties import LeaderDuty
from tests.cron import app_cron
from tests.cron.helpers import jobs, pass_at, run_async, scheduler, set_state, slots, tick

T0 = datetime(2026, 3, 2, 12, 0, 10)


def test_the_scheduler_is_a_leader_duty_and_fires_each_due_minute_once(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    sched = scheduler(tick("every-minute"))
    assert isinstance(sched, LeaderDuty)
    first = pass_at(installed, sched, T0)
    assert first.claimed == [] and slots(conn, s, "every-minute") == []
    report = pass_at(installed, sched, T0 + timedelta(seconds=55))  # 12:01:05
    assert [c.decision for c in report.claimed] == [Decision.enqueued]
    # The same minute again (a second pass, a restart replaying it) finds the slot taken.
    again = pass_at(installed, sched, T0 + timedelta(seconds=58))
    assert again.claimed == []
    (row,) = slots(conn, s, "every-minute")
    assert row[:2] == (datetime(2026, 3, 2, 12, 1), "enqueued")
    (job,) = jobs(conn, s, "every-minute")
    assert job[0] == row[2]
    assert job[1:5] == ("available", app_cron.CronTick.name(), "cron_q", {"n": 7})
    assert job[5]["cron"] is True and job[5]["cron_slot_at"] == "2026-03-02T12:01:00"


def test_two_claimers_racing_insert_each_fire_exactly_once(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    pass_at(installed, scheduler(tick("raced", overlap="allow")), T0)
    fires = [datetime(2026, 3, 2, 12, m) for m in range(1, 31)]
    barrier = threading.Barrier(2)
    results: dict[int, list[store.ClaimOutcome]] = {}

    def claimer(index: int) -> None:
        async def claim_all(c: psycopg.AsyncConnection) -> list[store.ClaimOutcome]:
            barrier.wait()
            out = []
            for at in fires:
                out.append(await store.claim_slot(c, s, "raced", at, now=at, node=f"n{index}"))
            return out

        results[index] = run_async(installed, claim_all)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [o for outs in results.values() for o in outs if o.decision is not None]
    dupes = [o for outs in results.values() for o in outs if o.decision is None]
    assert len(made) == len(fires) and len(dupes) == len(fires)
    assert sorted(o.slot_at for o in made) == fires
    rows = slots(conn, s, "raced")
    assert [r[0] for r in rows] == fires
    job_ids = [j[0] for j in jobs(conn, s, "raced")]
    assert sorted(r[2] for r in rows) == job_ids and len(set(job_ids)) == len(fires)


def _first_claim(installed: Settings, name: str, overlap: str) -> int:
    pass_at(installed, scheduler(tick(name, overlap=overlap)), T0)
    out = run_async(
        installed,
        lambda c: store.claim_slot(c, installed.prefix, name, datetime(2026, 3, 2, 12, 1), now=T0),
    )
    assert out.decision is Decision.enqueued and out.job_id is not None
    return out.job_id


def _claim(installed: Settings, name: str, minute: int) -> store.ClaimOutcome:
    at = datetime(2026, 3, 2, 12, minute)
    return run_async(installed, lambda c: store.claim_slot(c, installed.prefix, name, at, now=at))


def test_overlap_allow_enqueues_alongside_the_active_job(
    installed: Settings, conn: psycopg.Connection
) -> None:
    first = _first_claim(installed, "allow", "allow")
    out = _claim(installed, "allow", 2)
    assert out.decision is Decision.allowed and out.details["active_job_ids"] == [first]
    assert [j[1] for j in jobs(conn, installed.prefix, "allow")] == ["available", "available"]


def test_overlap_skip_records_the_skip_and_inserts_nothing(
    installed: Settings, conn: psycopg.Connection
) -> None:
    first = _first_claim(installed, "skip", "skip")
    set_state(conn, installed.prefix, first, "executing")
    out = _claim(installed, "skip", 2)
    assert out.decision is Decision.skipped and out.job_id is None
    assert [r[1:3] for r in slots(conn, installed.prefix, "skip")] == [
        ("enqueued", first),
        ("skipped", None),
    ]
    set_state(conn, installed.prefix, first, "completed")
    assert _claim(installed, "skip", 3).decision is Decision.enqueued


def test_overlap_queue_one_waits_suspended_then_is_promoted_when_the_active_job_ends(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    first = _first_claim(installed, "q1", "queue_one")
    set_state(conn, s, first, "executing")
    queued = _claim(installed, "q1", 2)
    assert queued.decision is Decision.queued and queued.job_id is not None
    assert _claim(installed, "q1", 3).decision is Decision.skipped  # one follow-up at most
    assert [j[1] for j in jobs(conn, s, "q1")] == ["executing", "suspended"]
    # Still running: the scheduler's pass leaves the follow-up waiting.
    sched = scheduler(tick("q1", overlap="queue_one"))
    assert pass_at(installed, sched, T0 + timedelta(minutes=3)).promoted == []
    set_state(conn, s, first, "completed")
    report = pass_at(installed, sched, T0 + timedelta(minutes=3, seconds=1))
    assert report.promoted == [queued.job_id]
    assert [j[1] for j in jobs(conn, s, "q1")] == ["completed", "available"]
    assert jobs(conn, s, "q1")[1][5]["cron_follow_up"] is True


def test_overlap_cancel_previous_cancels_and_signals_the_running_job(
    installed: Settings, conn: psycopg.Connection, database_url: str
) -> None:
    s = installed.prefix
    first = _first_claim(installed, "cancel", "cancel_previous")
    set_state(conn, s, first, "executing")
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "powertools.{s}.signal"')
        out = _claim(installed, "cancel", 2)
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert out.decision is Decision.cancelled_previous and out.cancelled == (first,)
    assert [json.loads(n.payload) for n in notes] == [{"action": "cancel", "job_id": first}]
    states = [(j[0], j[1]) for j in jobs(conn, s, "cancel")]
    assert states == [(first, "cancelled"), (out.job_id, "available")]
    assert slots(conn, s, "cancel")[1][1:3] == ("cancelled_previous", out.job_id)


@pytest.mark.parametrize(
    ("policy", "cap", "made", "missed"),
    [
        ("all", 2, ["09:40", "09:50", "10:00"], ["09:10", "09:20", "09:30"]),
        ("all", 10, ["09:10", "09:20", "09:30", "09:40", "09:50", "10:00"], []),
        ("none", 10, ["10:00"], ["09:10", "09:20", "09:30", "09:40", "09:50"]),
        ("latest", 1, ["10:00"], ["09:10", "09:20", "09:30", "09:40", "09:50"]),
    ],
)
def test_catch_up_after_downtime_per_policy(
    installed: Settings,
    conn: psycopg.Connection,
    policy: str,
    cap: int,
    made: list[str],
    missed: list[str],
) -> None:
    s = installed.prefix
    sched = scheduler(tick("c", "*/10 * * * *", overlap="allow", catch_up=policy, max_catch_up=cap))
    pass_at(installed, sched, datetime(2026, 3, 2, 9, 0, 30))
    report = pass_at(installed, sched, datetime(2026, 3, 2, 10, 0, 5))
    by = {r[0].strftime("%H:%M"): r[1] for r in slots(conn, s, "c")}
    assert sorted(k for k, v in by.items() if v != "missed") == made
    assert sorted(k for k, v in by.items() if v == "missed") == missed
    assert len(jobs(conn, s, "c")) == len(made) and report.missed == len(missed)
    minutes = conn.execute(
        f'SELECT minute FROM "{s}".powertools_cron_coverage ORDER BY minute'
    ).fetchall()
    assert [m[0] for m in minutes] == [datetime(2026, 3, 2, 9, 0), datetime(2026, 3, 2, 10, 0)]


def test_latest_fires_the_most_recent_missed_slot_when_nothing_is_on_time(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    sched = scheduler(tick("l", "*/10 * * * *", catch_up="latest"))
    pass_at(installed, sched, datetime(2026, 3, 2, 9, 0, 30))
    pass_at(installed, sched, datetime(2026, 3, 2, 9, 55))
    got = [(r[0].strftime("%H:%M"), r[1]) for r in slots(conn, s, "l")]
    assert got == [
        ("09:10", "missed"),
        ("09:20", "missed"),
        ("09:30", "missed"),
        ("09:40", "missed"),
        ("09:50", "enqueued"),
    ]


def test_paused_entries_do_not_fire_and_resume_does_not_catch_up_the_pause(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    sched = scheduler(tick("p"))
    pass_at(installed, sched, T0)
    conn.execute(
        f'UPDATE "{s}".powertools_cron_entries SET paused_at = %s WHERE name = %s', (T0, "p")
    )
    pass_at(installed, sched, T0 + timedelta(minutes=5))
    assert slots(conn, s, "p") == []
    conn.execute(
        f'UPDATE "{s}".powertools_cron_entries SET paused_at = NULL WHERE name = %s', ("p",)
    )
    pass_at(installed, sched, T0 + timedelta(minutes=6))
    assert [r[0] for r in slots(conn, s, "p")] == [datetime(2026, 3, 2, 12, 6)]


def test_code_entries_sync_update_and_retire(installed: Settings, conn: psycopg.Connection) -> None:
    s = installed.prefix
    pass_at(installed, scheduler(tick("a"), tick("b")), T0)
    pass_at(installed, scheduler(tick("a", "*/5 * * * *")), T0 + timedelta(seconds=1))
    rows = conn.execute(
        f'SELECT name, expression, source, paused_by FROM "{s}".powertools_cron_entries '
        "ORDER BY name"
    ).fetchall()
    assert rows == [
        ("a", "*/5 * * * *", "code", None),
        ("b", "* * * * *", "code", store.UNDECLARED),
    ]
    pass_at(installed, scheduler(tick("a", "*/5 * * * *"), tick("b")), T0 + timedelta(seconds=2))
    paused = conn.execute(
        f'SELECT paused_at FROM "{s}".powertools_cron_entries WHERE name = %s', ("b",)
    ).fetchone()
    assert paused == (None,)


def test_an_app_declaring_no_cron_retires_nothing(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    pass_at(installed, scheduler(tick("kept")), T0)
    pass_at(installed, scheduler(), T0 + timedelta(seconds=1))  # a leader without cron modules
    row = conn.execute(
        f'SELECT paused_at FROM "{s}".powertools_cron_entries WHERE name = %s', ("kept",)
    ).fetchone()
    assert row == (None,)


def test_an_entry_that_no_longer_parses_does_not_stop_the_others(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    sched = scheduler(tick("good"))
    pass_at(installed, sched, T0)
    conn.execute(
        f'INSERT INTO "{s}".powertools_cron_entries (name, expression, timezone, worker, '
        "overlap, catch_up, max_catch_up, source, planned_until) "
        "VALUES ('bad', '* * * * *', 'Gone/Zone', 'x.Y', 'skip', 'latest', 1, 'runtime', %s)",
        (T0,),
    )
    report = pass_at(installed, sched, T0 + timedelta(minutes=1))
    assert [c.entry for c in report.claimed] == ["good"]


def test_missing_cron_tables_make_the_duty_a_quiet_no_op(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    conn.execute(f'DROP TABLE "{s}".powertools_cron_coverage')
    sched = scheduler(tick("x"))
    acted = run_async(installed, lambda c: sched.run_once(c, s, T0))
    assert acted == 0
