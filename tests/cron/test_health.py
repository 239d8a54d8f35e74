"""The doctor check ``cron_health`` on real rows (run in the doctor's read-only session)."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from powertools_core.config import Settings
from powertools_core.cron.expression import parse_schedule
from powertools_core.cron.health import cron_health
from powertools_core.doctor.context import Problem
from powertools_core.doctor.runner import doctor_session
from powertools_core.doctor.thresholds import Thresholds
from tests.cron.helpers import pass_at, scheduler, tick


def _check(settings: Settings, app: tuple[str, ...] = ()) -> list[Problem]:
    assert settings.database_url
    with doctor_session(settings.database_url, settings.prefix, Thresholds(), app=app) as (
        ctx,
        _version,
    ):
        ctx.check_id = "cron_health"
        return cron_health(ctx)


def test_cron_health_reports_absent_scheduler_missed_fires_and_unknown_workers(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    assert _check(installed) == []  # no entries: nothing to say
    now = conn.execute("SELECT timezone('UTC', now())").fetchone()[0]  # type: ignore[index]
    sched = scheduler(tick("ok", "*/10 * * * *", catch_up="none"))
    pass_at(installed, sched, now - timedelta(hours=2))
    pass_at(installed, sched, now)  # back after two hours down: the fires between are missed
    late = [
        f
        for f in parse_schedule("*/10 * * * *").fires_between(now - timedelta(hours=2), now)
        if now - f > timedelta(minutes=1)
    ]
    (missed,) = _check(installed)
    assert missed == Problem(
        "warning",
        f"cron entry ok missed {len(late)} fire(s) in the last 1d (newest {late[-1].isoformat()}Z)",
        f"powertools cron show ok --prefix {s}",
        "cron:ok",
    )
    # The scheduler goes quiet for longer than five minutes.
    conn.execute(
        f"UPDATE \"{s}\".powertools_cron_coverage SET seen_at = seen_at - interval '10 minutes'"
    )
    conn.execute(f"UPDATE \"{s}\".powertools_cron_entries SET worker = 'gone.Worker'")
    found = _check(installed, app=("tests.cron.app_cron",))
    messages = [p.message for p in found]
    assert any("the cron scheduler last ran 10m" in m for m in messages), messages
    assert any("names worker gone.Worker, which the app" in m for m in messages), messages
    assert len(found) == 3


def test_doctor_runs_cron_health_in_its_suite(
    installed: Settings, conn: psycopg.Connection
) -> None:
    """An active entry with no live scheduler is a doctor warning (exit 1), also under --strict."""
    from tests.doctor.conftest import of, run, status

    assert status(run(installed), "cron_health") == "ok"
    now = conn.execute("SELECT timezone('UTC', now())").fetchone()[0]  # type: ignore[index]
    pass_at(installed, scheduler(tick("nightly", "0 3 * * *")), now - timedelta(hours=1))
    result = run(installed)
    [finding] = of(result, "cron_health")
    assert finding.severity == "warning" and "the cron scheduler last ran 1h" in finding.message
    assert result.exit_code == 1
    assert run(installed, strict=True).exit_code == 1  # live traffic, never promoted
