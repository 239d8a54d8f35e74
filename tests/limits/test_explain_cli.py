"""`limiter explain`, `limiter list`, `limiter cooldown` and `limiter resume` against real rows."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from syrupy.assertion import SnapshotAssertion

from powertools_core.config import Settings
from powertools_core.jobs.model import Job
from powertools_core.limits.admission import admit
from tests.limits import app_workers
from tests.support.cli import invoke, normalise, one_line_error

APP = "tests.limits.app_workers"
API = app_workers.LimApiCall.name()
TENANT = app_workers.LimTenantSync.name()


def _run(settings: Settings, *args: str) -> Any:
    run = invoke(
        [
            "limiter",
            *args,
            "--app",
            APP,
            "--database-url",
            settings.database_url or "",
            "--prefix",
            settings.prefix,
        ]
    )
    return run


def _json(settings: Settings, *args: str) -> dict[str, Any]:
    run = _run(settings, *args, "-f", "json")
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)


def _db_now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT timezone('UTC', clock_timestamp())").fetchone()
    assert row is not None
    return row[0]


def _insert(
    conn: psycopg.Connection, prefix: str, worker: str, args: dict[str, Any], **cols: Any
) -> int:
    values = {"state": "available", "queue": "lim_tenant", "attempt": 0, **cols}
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    row = conn.execute(
        f'INSERT INTO "{prefix}".oban_jobs (worker, args, {names}) VALUES (%s, %s, {marks}) '
        "RETURNING id",
        (worker, json.dumps(args), *values.values()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _drain_tenant(conn: psycopg.Connection, prefix: str, tenant: str) -> datetime:
    """Empty tenant's bucket (2 per minute) at the database's now; returns that moment."""
    now = _db_now(conn)
    conn.execute(
        f'INSERT INTO "{prefix}".powertools_rate_buckets '
        "(limit_name, partition_key, kind, capacity, span_us, level, refilled_at) "
        "VALUES ('lim-tenant', %s, 'rate', 2, 60000000, 0, %s)",
        (tenant, now),
    )
    return now


def _iso(moment: datetime) -> str:
    return moment.isoformat() + "Z"


def test_explain_a_limit_partition_says_when_tokens_return(
    installed: Settings, conn: psycopg.Connection, snapshot: SnapshotAssertion
) -> None:
    drained_at = _drain_tenant(conn, installed.prefix, "acme")
    data = _json(installed, "explain", "lim-tenant", "--partition", "acme")
    assert (data["command"], data["subject"], data["status"]) == (
        "limiter explain",
        "limit",
        "blocked",
    )
    (blocker,) = data["blockers"]
    assert blocker["code"] == "limit_reached" and blocker["partition"] == "acme"
    # Two per minute: one token is back exactly 30 s after the bucket was emptied.
    assert blocker["retry_at"] == _iso(drained_at + timedelta(seconds=30))
    stable = json.loads(json.dumps(data))
    stable["now"] = "<now>"
    stable["blockers"][0]["retry_at"] = "<retry_at>"
    stable["blockers"][0]["details"]["tokens"] = "<tokens>"
    stable["gates"][0]["tokens"] = "<tokens>"
    stable["gates"][0]["refilled_at"] = "<refilled_at>"
    assert stable == snapshot(name="json")
    other = _json(installed, "explain", "lim-tenant", "--partition", "other")
    assert other["status"] == "runnable" and other["gates"][0]["tokens"] == 2

    ansi = _run(installed, "explain", "lim-tenant", "--partition", "acme")
    assert ansi.exit_code == 0
    text = normalise(
        ansi.stdout,
        {blocker["retry_at"]: "<retry_at>", _iso(drained_at): "<refilled_at>"},
    )
    assert "[limit_reached] not enough tokens in the bucket (retry at <retry_at>)" in text
    text = re.sub(r"\b\d+(\.\d+)?/2 tokens", "<tokens>/2 tokens", text)
    text = re.sub("─+", "───", re.sub(" {2,}", "  ", text))  # column widths follow the values
    assert text == snapshot(name="ansi")


def test_explain_a_worker_adds_queue_blockers(
    installed: Settings, conn: psycopg.Connection
) -> None:
    _drain_tenant(conn, installed.prefix, "a")
    args = '{"tenant": "a", "cost": 1}'
    data = _json(installed, "explain", "--worker", "LimTenantSync", "--args", args)
    assert [b["code"] for b in data["blockers"]] == ["limit_reached", "no_producer"]
    conn.execute(
        f'INSERT INTO "{installed.prefix}".powertools_producers (uuid, node, queue, paused) '
        "VALUES (gen_random_uuid(), 'n1', 'lim_tenant', true)"
    )
    data = _json(installed, "explain", "--worker", "LimTenantSync", "--args", args)
    assert [b["code"] for b in data["blockers"]] == ["limit_reached", "queue_paused"]
    conn.execute(f'UPDATE "{installed.prefix}".powertools_producers SET paused = false')
    ok = _json(installed, "explain", "--worker", TENANT, "--args", '{"tenant": "z", "cost": 2}')
    assert ok["status"] == "runnable" and ok["blockers"] == []


def test_explain_a_job_lists_every_reason(installed: Settings, conn: psycopg.Connection) -> None:
    p = installed.prefix
    now = _db_now(conn)
    later = now + timedelta(hours=1)
    scheduled = _insert(
        conn, p, TENANT, {"tenant": "s", "cost": 1}, state="scheduled", scheduled_at=later
    )
    data = _json(installed, "explain", "--job", str(scheduled))
    assert [b["code"] for b in data["blockers"]] == ["scheduled_in_future", "no_producer"]
    assert data["blockers"][0]["retry_at"] == _iso(later)
    assert data["job"]["state"] == "scheduled"

    spent = _insert(conn, p, TENANT, {"tenant": "s", "cost": 1}, attempt=3, max_attempts=3)
    codes = [b["code"] for b in _json(installed, "explain", "--job", str(spent))["blockers"]]
    assert codes == ["out_of_attempts", "no_producer"]

    # One job of tenant t runs (it holds t's only slot): a second one waits for it.
    running = _insert(conn, p, TENANT, {"tenant": "t", "cost": 1}, state="executing", attempt=1)
    job = Job(
        running,
        "executing",
        "lim_tenant",
        TENANT,
        {},
        attempt=1,
        raw_args={"tenant": "t", "cost": 1},
    )

    async def claim() -> None:
        assert installed.database_url
        async with await psycopg.AsyncConnection.connect(
            installed.database_url, autocommit=True
        ) as aconn:
            admitted, _ = await admit(aconn, p, [job], cache=None)
            assert admitted == [job]

    asyncio.run(claim())
    waiting = _insert(conn, p, TENANT, {"tenant": "t", "cost": 1})
    data = _json(installed, "explain", "--job", str(waiting))
    assert [b["code"] for b in data["blockers"]] == [
        "no_producer",
        "partition_concurrency_reached",
    ]
    assert data["blockers"][1]["details"] == {"limit": 1, "executing": 1}
    assert _json(installed, "explain", "--job", str(running))["status"] == "running"
    conn.execute(f"UPDATE \"{p}\".oban_jobs SET state = 'completed' WHERE id = %s", (running,))
    assert _json(installed, "explain", "--job", str(running))["status"] == "finished"
    codes = [b["code"] for b in _json(installed, "explain", "--job", str(waiting))["blockers"]]
    assert codes == ["no_producer"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "nope"], "unknown limit 'nope'"),
        (["explain"], "exactly one of NAME, --worker or --job"),
        (["explain", "lim-api", "--job", "1"], "exactly one of"),
        (["explain", "lim-api", "--partition", "x"], "not partitioned"),
        (["explain", "--worker", "Nope"], "unknown worker 'Nope'"),
        (["explain", "--worker", "LimTenantSync"], "no 'tenant' key"),
        (["explain", "--worker", "LimTenantSync", "--args", "{"], "--args is not valid JSON"),
        (["explain", "--job", "999999"], "no job with id 999999"),
        (["cooldown", "lim-api", "--for", "10m", "--actor", "al"], "reason of at least 8"),
        (["cooldown", "lim-api", "--actor", "al", "--reason", "long enough"], "exactly one of"),
        (
            ["cooldown", "lim-api", "--for", "1x", "--actor", "al", "--reason", "long enough"],
            "invalid --for",
        ),
        (
            ["cooldown", "nope", "--for", "1m", "--actor", "al", "--reason", "long enough"],
            "unknown limit",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    installed: Settings, args: list[str], message: str
) -> None:
    run = _run(installed, *args)
    assert run.exit_code == 2
    assert message in one_line_error(run)


def test_cooldown_blocks_admission_and_resume_frees_it_both_audited(
    installed: Settings, conn: psycopg.Connection
) -> None:
    p = installed.prefix
    held = _json(
        installed,
        "cooldown",
        "lim-api",
        "--for",
        "10m",
        "--actor",
        "alice",
        "--reason",
        "upstream returns 429",
    )
    assert held["action"] == "cooldown" and held["previous_until"] is None
    until = held["cooldown_until"]
    explained = _json(installed, "explain", "lim-api")
    assert [(b["code"], b["retry_at"]) for b in explained["blockers"]] == [("cooldown", until)]
    assert explained["blockers"][0]["details"] == {"reason": "upstream returns 429"}

    job_id = _insert(conn, p, API, {}, state="executing", attempt=1, queue="lim_api")
    job = Job(job_id, "executing", "lim_api", API, {}, attempt=1, raw_args={})

    async def try_admit() -> tuple[list[Job], list[Job]]:
        assert installed.database_url
        async with await psycopg.AsyncConnection.connect(
            installed.database_url, autocommit=True
        ) as aconn:
            return await admit(aconn, p, [job], cache=None)

    assert asyncio.run(try_admit()) == ([], [job])
    resumed = _json(
        installed, "resume", "lim-api", "--actor", "bob", "--reason", "upstream healthy again"
    )
    assert resumed["previous_until"] == until
    assert _json(installed, "explain", "lim-api")["status"] == "runnable"
    assert asyncio.run(try_admit()) == ([job], [])
    audit = conn.execute(
        f'SELECT actor, action, target_id, reason FROM "{p}".powertools_audit_events ORDER BY id'
    ).fetchall()
    assert audit == [
        ("alice", "limiter.cooldown", "lim-api", "upstream returns 429"),
        ("bob", "limiter.resume", "lim-api", "upstream healthy again"),
    ]


def test_a_partition_cooldown_holds_only_that_partition(
    installed: Settings, conn: psycopg.Connection
) -> None:
    until = (_db_now(conn) + timedelta(hours=2)).replace(microsecond=0)
    _json(
        installed,
        "cooldown",
        "lim-tenant",
        "--partition",
        "acme",
        "--until",
        _iso(until),
        "--actor",
        "alice",
        "--reason",
        "tenant asked for a pause",
    )
    acme = _json(installed, "explain", "lim-tenant", "--partition", "acme")
    assert acme["blockers"][0]["code"] == "cooldown"
    assert acme["blockers"][0]["retry_at"] == _iso(until)
    assert _json(installed, "explain", "lim-tenant", "--partition", "other")["status"] == (
        "runnable"
    )
    resumed = _json(
        installed, "resume", "lim-tenant", "--actor", "alice", "--reason", "tenant is back online"
    )
    assert resumed["cleared_partitions"] == 1
    assert _json(installed, "explain", "lim-tenant", "--partition", "acme")["status"] == (
        "runnable"
    )


def test_list_shows_config_busiest_partitions_and_waiting_jobs(
    installed: Settings, conn: psycopg.Connection
) -> None:
    _drain_tenant(conn, installed.prefix, "busy")
    _insert(conn, installed.prefix, TENANT, {"tenant": "busy", "cost": 1})
    data = _json(installed, "list")
    by_name = {lim["name"]: lim for lim in data["limits"]}
    assert set(by_name) >= {"lim-api", "lim-tenant", "lim-tenant-run"}
    tenant = by_name["lim-tenant"]
    assert tenant["describe"] == "2 per 1m per args.tenant"
    assert tenant["partitions"] == 1 and tenant["gates"][0]["partition"] == "busy"
    assert tenant["available_jobs"] == 1
    assert by_name["lim-tenant-run"]["describe"] == "3 executing, 1 executing per args.tenant"
    ansi = _run(installed, "list")
    assert ansi.exit_code == 0 and "lim-tenant" in ansi.stdout


def test_explain_a_job_names_its_workflow_blocker(
    installed: Settings, conn: psycopg.Connection
) -> None:
    """A suspended step says what it waits for (its deps, a signal and its timeout), not just
    that it is suspended; a suspended job outside any workflow keeps the generic code."""
    from powertools_core import Await, Workflow
    from tests.workflows.app_durable import Order
    from tests.workflows.app_wf import Step
    from tests.workflows.test_cli_durable import _park

    p = installed.prefix
    wf = (
        Workflow("explain-me")
        .add("a", Step.new({}))
        .add("b", Step.new({}), deps=["a"])
        .add("wait", Order.new({"amount": 1}))
        .insert(conn=conn, prefix=p)
    )
    data = _json(installed, "explain", "--job", str(wf.job_ids["b"]))
    assert data["status"] == "blocked"
    first = data["blockers"][0]
    assert first["code"] == "waiting_on_dependencies"
    assert first["details"] == {"workflow_id": wf.id, "step": "b", "waiting_on": ["a"]}

    _park(installed, conn, wf.job_ids["wait"], Await(["approved"], timeout="1h", step="decide"))
    parked = _json(installed, "explain", "--job", str(wf.job_ids["wait"]))["blockers"][0]
    assert parked["code"] == "waiting_on_signal"
    assert parked["details"]["waiting_on"] == ["approved"]
    assert parked["retry_at"] is not None  # the wait's timeout

    plain = Order.enqueue({"amount": 2}, conn=conn, prefix=p).job
    conn.execute(f"UPDATE \"{p}\".oban_jobs SET state = 'suspended' WHERE id = %s", [plain.id])
    generic = _json(installed, "explain", "--job", str(plain.id))["blockers"][0]
    assert generic["code"] == "suspended"
