"""`powertools cron ...` through the CLI against real rows: output, audit, refusals."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from syrupy.assertion import SnapshotAssertion

from powertools_core.config import Settings
from powertools_core.cron import store
from tests.cron.helpers import jobs, pass_at, run_async, scheduler, slots, tick
from tests.support.cli import Run, invoke, normalise, one_line_error

APP = "tests.cron.app_cron"
WHY = ["--actor", "alice", "--reason", "testing the cron CLI", "--yes"]


def cli(settings: Settings, *args: str) -> Run:
    return invoke(
        ["cron", *args, "--database-url", settings.database_url or "", "--prefix", settings.prefix]
    )


def cli_json(settings: Settings, *args: str) -> dict[str, Any]:
    run = cli(settings, *args, "--format", "json")
    assert run.exit_code == 0, run.output
    data: dict[str, Any] = json.loads(run.stdout)
    return data


def audit_rows(conn: psycopg.Connection, prefix: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f'SELECT actor, action, target_id, reason, before, after, meta FROM "{prefix}".'
        "powertools_audit_events WHERE action LIKE 'cron.%%' AND actor <> 'system' ORDER BY id"
    ).fetchall()


@pytest.fixture
def seeded(installed: Settings) -> Settings:
    """A code entry (new year's day, so nothing is due now) with two claimed slots."""
    pass_at(
        installed,
        scheduler(tick("new-year", "0 0 1 1 *", timezone="Europe/Paris")),
        datetime(2025, 12, 31, 12),
    )
    for year in (2025, 2026):
        at = datetime(year - 1, 12, 31, 23)
        run_async(
            installed,
            lambda c, at=at: store.claim_slot(
                c, installed.prefix, "new-year", at, now=at, node="n1"
            ),
        )
    return installed


def _stable(data: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(data)
    text = re.sub(
        r'"(now|next_fire|window_start|scheduler_last_seen)": "[^"]+"', r'"\1": "<t>"', text
    )
    text = re.sub(r'"job_id": \d+', '"job_id": "<id>"', text)
    text = re.sub(r'"last_job_id": \d+', '"last_job_id": "<id>"', text)
    text = re.sub(r'"active_job_ids": \[[\d, ]+\]', '"active_job_ids": ["<ids>"]', text)
    stable: dict[str, Any] = json.loads(text)
    return stable


def test_list_and_show_json_and_ansi(seeded: Settings, snapshot: SnapshotAssertion) -> None:
    listing = cli_json(seeded, "list")
    (entry,) = listing["entries"]
    assert entry["next_fire"].endswith("-12-31T23:00:00Z")  # midnight in Paris, in UTC
    assert (entry["last_decision"], entry["source"], entry["paused"]) == ("skipped", "code", False)
    assert _stable(listing) == snapshot(name="list-json")
    shown = cli_json(seeded, "show", "new-year")
    assert [s["decision"] for s in shown["slots"]] == ["skipped", "enqueued"]
    assert shown["entry"]["explain"] == "At 00:00 on January 1 (Europe/Paris)"
    assert len(shown["next_fires"]) == 5 and shown["missed"] == []
    shown["next_fires"] = ["<t>"] * 5
    assert _stable(shown) == snapshot(name="show-json")
    text = cli(seeded, "show", "new-year").stdout
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", "<t>", text)
    text = re.sub(r"\b\d+\b(?= +(available|-))", "<id>", text)
    text = re.sub("─+", "───", re.sub(" {2,}", "  ", normalise(text, {})))
    assert text == snapshot(name="show-ansi")


def test_show_tells_missed_fires_from_no_evidence(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    now = conn.execute("SELECT timezone('UTC', now())").fetchone()[0]  # type: ignore[index]
    minute = now.replace(second=0, microsecond=0)
    pass_at(installed, scheduler(tick("m")), minute - timedelta(minutes=30))
    conn.execute(
        f'UPDATE "{s}".powertools_cron_entries SET inserted_at = %s',
        (minute - timedelta(minutes=30),),
    )
    conn.execute(f'DELETE FROM "{s}".powertools_cron_coverage')
    conn.execute(
        f'INSERT INTO "{s}".powertools_cron_coverage (minute) VALUES (%s)',
        (minute - timedelta(minutes=10),),
    )
    conn.execute(
        f'INSERT INTO "{s}".powertools_cron_slots (entry_name, slot_at, decision) '
        "VALUES ('m', %s, 'missed'), ('m', %s, 'enqueued')",
        (minute - timedelta(minutes=5), minute - timedelta(minutes=3)),
    )
    shown = cli_json(installed, "show", "m")
    got = {m["at"]: m["evidence"] for m in shown["missed"]}

    def iso(delta: int) -> str:
        return (minute - timedelta(minutes=delta)).isoformat() + "Z"

    assert got[iso(5)] == "missed" and got[iso(10)] == "missed"
    assert got[iso(4)] == "no_evidence" and iso(3) not in got
    assert sum(1 for v in got.values() if v == "missed") == 2


def test_pause_resume_and_run_are_audited_and_dry_run_changes_nothing(
    seeded: Settings, conn: psycopg.Connection
) -> None:
    s = seeded.prefix
    dry = cli_json(seeded, "pause", "new-year", "--dry-run")
    assert dry["dry_run"] and not dry["changed"] and audit_rows(conn, s) == []
    assert cli_json(seeded, "list")["entries"][0]["paused"] is False
    assert cli_json(seeded, "pause", "new-year", *WHY)["changed"]
    listing = cli_json(seeded, "list")["entries"][0]
    assert listing["paused"] and listing["paused_by"] == "alice" and listing["next_fire"] is None
    again = cli_json(seeded, "pause", "new-year", *WHY)
    assert not again["changed"] and "already paused" in again["message"]
    assert cli_json(seeded, "resume", "new-year", *WHY)["changed"]
    before = len(jobs(conn, s, "new-year"))
    ran = cli_json(seeded, "run", "new-year", *WHY)
    # The entry skips while its first job is still active: the manual fire says so.
    assert ran["decision"] == "skipped" and ran["job_id"] is None
    assert len(jobs(conn, s, "new-year")) == before
    conn.execute(f"UPDATE \"{s}\".oban_jobs SET state = 'completed'")
    ran = cli_json(seeded, "run", "new-year", *WHY)
    assert ran["decision"] == "enqueued" and ran["job_id"] == jobs(conn, s, "new-year")[-1][0]
    assert slots(conn, s, "new-year")[-1][3] is True  # a manual slot
    events = audit_rows(conn, s)
    assert [(e[0], e[1], e[2], e[3]) for e in events] == [
        ("alice", "cron.paused", "new-year", "testing the cron CLI"),
        ("alice", "cron.resumed", "new-year", "testing the cron CLI"),
        ("alice", "cron.run", "new-year", "testing the cron CLI"),
        ("alice", "cron.run", "new-year", "testing the cron CLI"),
    ]
    assert events[-1][6]["decision"] == "enqueued" and events[-1][6]["job_id"] == ran["job_id"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["pause", "new-year", "--reason", "long enough", "--yes"], "an actor is required"),
        (["pause", "new-year", "--actor", "alice", "--yes"], "a reason is required"),
        (["pause", "new-year", "--actor", "a", "--reason", "short", "--yes"], "too short"),
        (["pause", "new-year", "--actor", "a", "--reason", "long enough"], "--yes is required"),
        (["pause", "nope", *WHY], "no cron entry named 'nope'"),
        (["set", "new-year", "--expr", "@hourly", "--app", APP, *WHY], "declared in code"),
        (["remove", "new-year", *WHY], "declared in code"),
        (
            ["add", "x", "--expr", "* * * * *", "--worker", "Nope", "--app", APP, *WHY],
            "unknown worker 'Nope'",
        ),
        (
            ["add", "x", "--expr", "61 * * * *", "--worker", "CronTick", "--app", APP, *WHY],
            "Bad minute",
        ),
        (
            ["add", "x", "--expr", "@reboot", "--worker", "CronTick", "--app", APP, *WHY],
            "@reboot is not supported",
        ),
        (
            [
                "add",
                "x",
                "--expr",
                "* * * * *",
                "--worker",
                "CronTick",
                "--timezone",
                "Mars/X",
                "--app",
                APP,
                *WHY,
            ],
            "unknown timezone",
        ),
        (
            [
                "add",
                "x",
                "--expr",
                "* * * * *",
                "--worker",
                "CronTick",
                "--overlap",
                "maybe",
                "--app",
                APP,
                *WHY,
            ],
            "invalid overlap policy",
        ),
        (
            [
                "add",
                "x",
                "--expr",
                "* * * * *",
                "--worker",
                "CronTick",
                "--args",
                '{"n": "x"}',
                "--app",
                APP,
                *WHY,
            ],
            "invalid args",
        ),
        (
            ["add", "new-year", "--expr", "* * * * *", "--worker", "CronTick", "--app", APP, *WHY],
            "already exists",
        ),
    ],
)
def test_refusals_are_one_line_and_exit_2(
    seeded: Settings, conn: psycopg.Connection, args: list[str], fragment: str
) -> None:
    run = cli(seeded, *args)
    assert run.exit_code == 2, run.output
    assert fragment in one_line_error(run)
    assert audit_rows(conn, seeded.prefix) == []


def test_runtime_entries_add_set_remove(installed: Settings, conn: psycopg.Connection) -> None:
    s = installed.prefix
    add = [
        "add",
        "ping",
        "--expr",
        "*/5 * * * *",
        "--worker",
        "CronTick",
        "--args",
        '{"n": 3}',
        "--timezone",
        "Europe/Paris",
        "--catch-up",
        "all",
        "--app",
        APP,
    ]
    assert cli_json(installed, *add, "--dry-run")["dry_run"]
    assert cli_json(installed, "list")["entries"] == []
    assert cli_json(installed, *add, *WHY)["changed"]
    (entry,) = cli_json(installed, "list")["entries"]
    assert (entry["source"], entry["args"], entry["catch_up"], entry["overlap"]) == (
        "runtime",
        {"n": 3},
        "all",
        "skip",
    )
    changed = cli_json(installed, "set", "ping", "--overlap", "queue_one", "--app", APP, *WHY)
    assert changed["before"]["overlap"] == "skip" and changed["after"]["overlap"] == "queue_one"
    assert cli_json(installed, "remove", "ping", *WHY)["changed"]
    assert cli_json(installed, "list")["entries"] == []
    assert [e[1] for e in audit_rows(conn, s)] == [
        "cron.added",
        "cron.reconfigured",
        "cron.removed",
    ]
