"""The checks, one function each, in the order they run. Each takes the ``CheckContext`` and
returns its problems; raising ``CannotRun`` (or any database error) makes it an error finding.

Ids are stable (scripts and ``--check`` use them); ``STRICT_PROMOTED`` lists the checks whose
warnings ``--strict`` turns into errors: schema and configuration drift, never live traffic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, Final

from alembic.util import CommandError

from powertools_core.db.identifiers import quote_ident
from powertools_core.doctor import sql
from powertools_core.doctor.context import CannotRun, CheckContext, Problem
from powertools_core.doctor.thresholds import exact_duration, format_duration
from powertools_core.migrate import (
    MigrationStatus,
    current_revision,
    head_revision,
    migration_status,
)
from powertools_core.schema import oban
from powertools_core.schema.powertools import (
    OBAN_JOBS_INDEXES,
    OBAN_JOBS_UNIQUE_INDEXES,
    TABLES,
    VERSION_TABLE,
)

OBAN_TABLES: Final = ("oban_jobs", "oban_peers", "oban_producers")
OUR_TABLES: Final = (*OBAN_TABLES, *TABLES, VERSION_TABLE)
# Tables whose churn matters for vacuum: Oban's job table and powertools' busy ones.
VACUUM_TABLES: Final = ("oban_jobs", *TABLES)
ELIGIBLE_STATES: Final = ("available", "scheduled", "retryable", "executing")
DEADLINE_STATES: Final = ("available", "suspended", "scheduled", "retryable")
GIN_INDEXES: Final = {"oban_jobs_args_index": "args", "oban_jobs_meta_index": "meta"}
TERMINAL_TIMESTAMP: Final = {
    "completed": "completed_at",
    "cancelled": "cancelled_at",
    "discarded": "discarded_at",
}
ARCHIVE_CAP: Final = 10_000
DEADLINE_SCAN_CAP: Final = 100_000
MAX_LISTED: Final = 10

CheckFn = Callable[[CheckContext], list[Problem]]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    summary: str
    run: CheckFn


def _n(value: int) -> str:
    return f"{value:,}"


def _ids(ids: list[int] | None, total: int) -> str:
    shown = ", ".join(str(i) for i in (ids or []))
    more = total - len(ids or [])
    return f"{shown} and {_n(more)} more" if more > 0 else shown


def _age(value: timedelta | None) -> str:
    return format_duration(value) if value is not None else "unknown time"


# -- schema -----------------------------------------------------------------------------------
def index_validity(ctx: CheckContext) -> list[Problem]:
    """INVALID or not-ready indexes (a failed CREATE/REINDEX CONCURRENTLY) on our tables."""
    ctx.require_table("oban_jobs")
    problems = []
    for table, index, valid, ready, _live in ctx.rows(
        sql.BROKEN_INDEXES, {"schema": ctx.prefix, "tables": list(OUR_TABLES)}
    ):
        what = "INVALID" if not valid else ("not ready" if not ready else "being dropped")
        problems.append(
            Problem(
                "error",
                f"{what} index {ctx.name(index)} on {ctx.name(table)} is not used by queries "
                "(left by a failed CREATE or REINDEX CONCURRENTLY)",
                f"REINDEX INDEX CONCURRENTLY {ctx.sql_name(index)};",
                ctx.name(index),
            )
        )
    return problems


def missing_indexes(ctx: CheckContext) -> list[Problem]:
    """The Oban v14 index set and powertools' own indexes on oban_jobs."""
    ctx.require_table("oban_jobs")
    present = ctx.rows(sql.INDEXES_OF_TABLE, {"schema": ctx.prefix, "table": "oban_jobs"})
    names = {row[0] for row in present}
    problems = []
    if not any(row[1] for row in present):
        problems.append(
            Problem(
                "error",
                f"{ctx.name('oban_jobs')} has no primary key (Oban expects oban_jobs_pkey on id)",
                f"ALTER TABLE {ctx.sql_name('oban_jobs')} ADD PRIMARY KEY (id);",
                ctx.name("oban_jobs_pkey"),
            )
        )
    expected = [(n, d, "Oban v14", "") for n, d in oban.OBAN_INDEXES.items()]
    expected += [(n, d, "powertools", "") for n, d in OBAN_JOBS_INDEXES.items()]
    # A unique index cannot be built while duplicates exist; the remediation says so.
    expected += [
        (n, d, "powertools unique", "UNIQUE ") for n, d in OBAN_JOBS_UNIQUE_INDEXES.items()
    ]
    for name, definition, owner, unique in expected:
        if name in names:
            continue
        remedy = (
            f"CREATE {unique}INDEX CONCURRENTLY {quote_ident(name)} "
            f"ON {ctx.sql_name('oban_jobs')} {definition};"
        )
        why = (
            " (while it is missing, nothing stops two live jobs sharing a key; a duplicate "
            "must be settled before the index can be built)"
            if unique
            else ""
        )
        problems.append(
            Problem(
                "error",
                f"expected {owner} index {ctx.name(name)} is missing from "
                f"{ctx.name('oban_jobs')}{why}",
                remedy,
                ctx.name(name),
            )
        )
    return problems


def oban_migration_version(ctx: CheckContext) -> list[Problem]:
    """Oban's version comment on oban_jobs against v14: older error, newer warning."""
    ctx.require_schema()
    inv = ctx.inventory
    table = ctx.name("oban_jobs")
    expected = oban.OBAN_VERSION
    if not inv.oban_present:
        return [
            Problem(
                "error",
                f"table {table} does not exist (Oban is not installed in schema {ctx.prefix}, "
                "or --prefix names the wrong schema)",
                f"{ctx.cli('install')}   # or pass the --prefix that holds oban_jobs",
                table,
            )
        ]
    if (
        inv.oban_version is None
        and inv.oban_comment is None
        and set(oban.JOB_STATES) <= set(inv.states)
    ):
        # oban-py builds the v14 shape (with ``suspended``) but writes no version comment.
        return [
            Problem(
                "warning",
                f"{table} has no Oban version comment but its states match v14 (as oban-py "
                "leaves it); doctor cannot tell its exact version",
                f"COMMENT ON TABLE {ctx.sql_name('oban_jobs')} IS '{expected}';",
                table,
            )
        ]
    if inv.oban_version is None:
        shown = "no comment" if inv.oban_comment is None else f"comment {inv.oban_comment!r}"
        return [
            Problem(
                "error",
                f"{table} carries {shown}, so its Oban version is unknown (expected '{expected}')",
                "run Oban's migrations to v14; if the table is known to be at v14: "
                f"COMMENT ON TABLE {ctx.sql_name('oban_jobs')} IS '{expected}';",
                table,
            )
        ]
    if inv.oban_version < expected:
        return [
            Problem(
                "error",
                f"{table} is at Oban v{inv.oban_version}, expected v{expected}: migration drift",
                f"upgrade with Oban's own migrations to v{expected} (Elixir: "
                f'Oban.Migration.up(version: {expected}, prefix: "{ctx.prefix}"); powertools '
                "never alters Oban's objects)",
                table,
            )
        ]
    if inv.oban_version > expected:
        shown = "∞" if inv.oban_version >= 10**6 else str(inv.oban_version)
        return [
            Problem(
                "warning",
                f"{table} is at Oban v{shown}, newer than the v{expected} this powertools "
                "knows: a newer Oban migrated it",
                "upgrade powertools (pip install -U oban-powertools), or confirm the version "
                "skew is intentional",
                table,
            )
        ]
    return []


def powertools_migrations(ctx: CheckContext) -> list[Problem]:
    """Pending or unknown alembic revisions, and powertools tables that are missing."""
    ctx.require_schema()
    inv = ctx.inventory
    missing = [t for t in TABLES if t not in inv.tables]
    install = ctx.cli("install")
    if VERSION_TABLE not in inv.tables and len(missing) == len(TABLES):
        return [
            Problem(
                "error",
                f"powertools is not installed in schema {ctx.prefix} "
                f"(no {VERSION_TABLE}, none of its tables)",
                install,
                f"schema:{ctx.prefix}",
            )
        ]
    try:
        status = migration_status(ctx.conn, ctx.prefix)
    except CommandError:
        # migrate.migration_status raises for a revision its scripts do not know (instead of
        # reporting ``unknown``): that is exactly the "newer powertools" case.
        status = MigrationStatus(
            current=current_revision(ctx.conn, ctx.prefix),
            head=head_revision(),
            pending=[],
            unknown=True,
        )
    version_table = ctx.name(VERSION_TABLE)
    if status.unknown:
        return [
            Problem(
                "warning",
                f"{version_table} is at revision {status.current}, unknown to this powertools "
                f"(head {status.head}): a newer powertools migrated it",
                "upgrade powertools (pip install -U oban-powertools), or confirm the version "
                "skew is intentional",
                version_table,
            )
        ]
    if status.pending:
        extra = f"; missing tables: {', '.join(missing)}" if missing else ""
        return [
            Problem(
                "error",
                f"{version_table} is at revision {status.current or 'none'}, head is "
                f"{status.head}: {len(status.pending)} migration(s) pending "
                f"({', '.join(status.pending)}){extra}",
                install,
                version_table,
            )
        ]
    return [
        Problem(
            "error",
            f"table {ctx.name(table)} is missing although {version_table} says revision "
            f"{status.current} (head) is applied: it was dropped outside powertools",
            "restore it from a backup, or recreate it with the CREATE TABLE that "
            f"`powertools install --dry-run --prefix scratch_schema` prints (schema renamed "
            f"to {ctx.prefix})",
            ctx.name(table),
        )
        for table in missing
    ]


def uniqueness_timeout_risk(ctx: CheckContext) -> list[Problem]:
    """Unique inserts need the args/meta GIN indexes and a bounded eligible backlog."""
    ctx.require_states()
    names = {
        r[0] for r in ctx.rows(sql.INDEXES_OF_TABLE, {"schema": ctx.prefix, "table": "oban_jobs"})
    }
    problems = []
    for index, column in GIN_INDEXES.items():
        if index not in names:
            problems.append(
                Problem(
                    "warning",
                    f"GIN index {ctx.name(index)} is missing: unique-job checks on {column} scan "
                    f"{ctx.name('oban_jobs')} and can time out",
                    f"CREATE INDEX CONCURRENTLY {quote_ident(index)} "
                    f"ON {ctx.sql_name('oban_jobs')} USING gin ({column});",
                    ctx.name(index),
                )
            )
    cap = ctx.thresholds.uniqueness_backlog
    states = ctx.states(*ELIGIBLE_STATES)
    eligible = ctx.rows(sql.ELIGIBLE_CAPPED, {"states": states, "cap": cap})[0][0]
    if eligible >= cap:
        plan = ctx.rows(sql.ELIGIBLE_ESTIMATE, {"states": states})[0][0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        problems.append(
            Problem(
                "warning",
                f"{ctx.name('oban_jobs')} holds at least {_n(cap)} jobs that unique inserts "
                f"compare against ({'/'.join(states)}; planner estimate {_n(max(estimate, cap))}"
                f"): unique checks slow down and can time out",
                "drain or archive the backlog before relying on unique jobs; "
                "see queue_backlog_age, and "
                + ctx.cli('archive run --dry-run --actor "$USER" --reason "doctor: backlog"'),
                ctx.name("oban_jobs"),
            )
        )
    return problems


def expired_deadline_jobs(ctx: CheckContext) -> list[Problem]:
    """Jobs still waiting to run whose ``meta.deadline_at`` (ISO-8601, UTC) has passed."""
    ctx.require_states()
    query = (
        sql.EXPIRED_DEADLINES_PG16
        if ctx.server_version_num >= 160000
        else (sql.EXPIRED_DEADLINES_PG12)
    )
    states = ctx.states(*DEADLINE_STATES)
    problems = []
    for queue, worker, expired, malformed, oldest, ids, bad_ids in ctx.rows(
        query, {"states": states, "scan_cap": DEADLINE_SCAN_CAP}
    ):
        where = f"worker {worker} in queue {queue}"
        if expired:
            age = ctx.now.replace(tzinfo=UTC) - oldest if oldest is not None else None
            first = (ids or [0])[0]
            problems.append(
                Problem(
                    "warning",
                    f"{_n(expired)} job(s) of {where} are past their deadline and still "
                    f"waiting to run (oldest deadline passed {_age(age)} ago; jobs "
                    f"{_ids(ids, expired)})",
                    ctx.cli(f"ops show {first}")
                    + "   # then, if the work is moot: "
                    + ctx.cli(f'ops cancel {first} --actor "$USER" --reason "deadline passed"'),
                    f"job:{first}",
                )
            )
        if malformed:
            problems.append(
                Problem(
                    "warning",
                    f"{_n(malformed)} job(s) of {where} have a meta.deadline_at that is not an "
                    f"ISO-8601 timestamp, so no deadline applies (jobs {_ids(bad_ids, malformed)})",
                    ctx.cli(f"ops show {(bad_ids or [0])[0]}")
                    + "   # write deadlines as meta.deadline_at = '2026-01-31T12:00:00Z'",
                    f"job:{(bad_ids or [0])[0]}",
                )
            )
    return problems


# -- runtime ----------------------------------------------------------------------------------
def orphaned_executing_jobs(ctx: CheckContext) -> list[Problem]:
    """Executing jobs whose producer stopped heartbeating, or of an unknown producer long ago."""
    ctx.require_table("oban_jobs")
    t = ctx.thresholds
    params = {"stale_after": t.producer_stale_after, "orphan_after": t.orphan_after}
    with_producers = "powertools_producers" in ctx.inventory.tables
    query = sql.ORPHANED_JOBS if with_producers else sql.ORPHANED_JOBS_BY_TIME
    problems = []
    for kind, producer, node, queue, jobs, oldest, beat_at, ids in ctx.rows(query, params):
        on_node = f" on node {node}" if node else ""
        if kind == "stale":
            message = (
                f"{_n(jobs)} job(s) in queue {queue} are executing under producer "
                f"{producer}{on_node}, whose last heartbeat was {_age(ctx.now - beat_at)} ago "
                f"(stale after {exact_duration(t.producer_stale_after)}; jobs {_ids(ids, jobs)})"
            )
        else:
            who = f"unknown producer {producer}" if producer else "no recorded producer"
            message = (
                f"{_n(jobs)} job(s) in queue {queue} have been executing under {who}{on_node} "
                f"for up to {_age(ctx.now - oldest)} (orphaned after "
                f"{exact_duration(t.orphan_after)}; jobs {_ids(ids, jobs)})"
            )
        problems.append(
            Problem(
                "warning",
                message,
                ctx.worker_command() + "   # a running worker's lifeline rescues them",
                f"producer:{producer}" if producer else f"job:{(ids or [0])[0]}",
            )
        )
    if not with_producers:
        raise _partial(ctx, problems, "powertools_producers", "heartbeats were not checked")
    return problems


def stale_producers(ctx: CheckContext) -> list[Problem]:
    """Producers whose heartbeat is older than ``producer_stale_after``."""
    ctx.require_table("powertools_producers")
    stale_after = ctx.thresholds.producer_stale_after
    rows = ctx.rows(sql.STALE_PRODUCERS, {"stale_after": stale_after})
    problems = []
    for uuid, node, queue, pid, beat_at, executing in rows[:MAX_LISTED]:
        holding = (
            f"; it still holds {_n(executing)} executing job(s) (see orphaned_executing_jobs)"
            if executing
            else ""
        )
        remediation = (
            ctx.worker_command() + "   # its lifeline rescues the jobs"
            if executing
            else f"DELETE FROM {ctx.sql_name('powertools_producers')} WHERE uuid = '{uuid}';"  # noqa: S608 (advice text)
            "   # once you know the process is gone (a worker's leader prunes it too)"
        )
        problems.append(
            Problem(
                "warning",
                f"producer {uuid} (queue {queue}, node {node}, pid {pid}) last heartbeat "
                f"{_age(ctx.now - beat_at)} ago (stale after {exact_duration(stale_after)})"
                f"{holding}",
                remediation,
                f"producer:{uuid}",
            )
        )
    if len(rows) > MAX_LISTED:
        problems.append(
            Problem(
                "warning",
                f"{'50+' if len(rows) > 50 else len(rows) - MAX_LISTED} more stale producers in "
                f"{ctx.name('powertools_producers')}",
                f"SELECT * FROM {ctx.sql_name('powertools_producers')} ORDER BY beat_at;",  # noqa: S608
                ctx.name("powertools_producers"),
            )
        )
    return problems


def queue_backlog_age(ctx: CheckContext) -> list[Problem]:
    """Per queue, the oldest available job, when it has waited longer than ``backlog_age``."""
    ctx.require_table("oban_jobs")
    t = ctx.thresholds
    rows = ctx.rows(sql.BACKLOG_OLDEST, {"threshold": t.backlog_age, "max_pairs": 10_000})
    oldest: dict[str, tuple[int, timedelta]] = {}
    for queue, job_id, _scheduled_at, waited in rows:
        if queue not in oldest or waited > oldest[queue][1]:
            oldest[queue] = (job_id, waited)
    live: dict[str, tuple[int, int]] | None = None
    if "powertools_producers" in ctx.inventory.tables and oldest:
        live = {
            q: (running, total)
            for q, running, total in ctx.rows(
                sql.LIVE_PRODUCERS_BY_QUEUE, {"stale_after": t.producer_stale_after}
            )
        }
    problems = []
    for queue, (job_id, waited) in sorted(oldest.items()):
        running, total = (live or {}).get(queue, (0, 0))
        if live is not None and total == 0:
            why = "; no live producer runs this queue"
            fix = ctx.worker_command() + f" --queues {queue}=10"
        elif live is not None and running == 0:
            why = f"; the queue is paused on all {total} live producer(s)"
            fix = "resume the queue on its producers"
        else:
            why = ""
            fix = ctx.cli(f"limiter explain --job {job_id}") + "   # why it is not picked"
        problems.append(
            Problem(
                "warning",
                f"queue {queue}: the oldest available job ({job_id}) has waited "
                f"{_age(waited)} (threshold {exact_duration(t.backlog_age)}){why}",
                fix,
                f"queue:{queue}",
            )
        )
    return problems


# -- database health --------------------------------------------------------------------------
def _table_stats(ctx: CheckContext) -> list[Any]:
    ctx.require_schema()
    tables = [t for t in VACUUM_TABLES if t in ctx.inventory.tables]
    if "oban_jobs" not in tables:
        ctx.require_table("oban_jobs")
    return list(ctx.rows(sql.TABLE_STATS, {"schema": ctx.prefix, "tables": tables}))


def table_bloat(ctx: CheckContext) -> list[Problem]:
    """Dead tuples on oban_jobs and powertools tables beyond the bloat thresholds."""
    t = ctx.thresholds
    problems = []
    for table, live, dead, _last, _since, _options in _table_stats(ctx):
        total = live + dead
        if dead < t.bloat_min_dead_rows or total == 0 or dead / total < t.bloat_dead_ratio:
            continue
        problems.append(
            Problem(
                "warning",
                f"{ctx.name(table)} has {_n(dead)} dead rows ({dead / total:.0%} of "
                f"{_n(total)}; threshold {t.bloat_dead_ratio:.0%}): scans and the fetch slow "
                "down; if it persists, see long_running_transactions",
                f"VACUUM (ANALYZE, VERBOSE) {ctx.sql_name(table)};",
                ctx.name(table),
            )
        )
    return problems


def autovacuum(ctx: CheckContext) -> list[Problem]:
    """Autovacuum off (server or table) or not run for ``vacuum_age`` while dead rows pile up."""
    t = ctx.thresholds
    stats = _table_stats(ctx)
    problems = []
    enabled, track_counts = ctx.rows(sql.AUTOVACUUM_SETTINGS)[0]
    dead = max((row[2] for row in stats), default=0)
    # Off on a scratch or CI server is harmless until dead rows pile up; without track_counts
    # there are no dead-row counts at all, so this check cannot look.
    if track_counts != "on" or (enabled != "on" and dead >= t.bloat_min_dead_rows):
        setting, value = (
            ("track_counts", track_counts)
            if track_counts != "on"
            else (
                "autovacuum",
                enabled,
            )
        )
        problems.append(
            Problem(
                "warning",
                f"server setting {setting} is {value}: dead rows in {ctx.name('oban_jobs')} "
                "are never vacuumed automatically"
                + (f" ({_n(dead)} dead rows already)" if setting == "autovacuum" else ""),
                f"ALTER SYSTEM SET {setting} = on; SELECT pg_reload_conf();",
                f"database:{ctx.database}",
            )
        )
    for table, _live, dead, last, since, options in stats:
        opts = {o.split("=", 1)[0]: o.split("=", 1)[-1] for o in options}
        if opts.get("autovacuum_enabled", "true").lower() in ("false", "off", "0", "no"):
            problems.append(
                Problem(
                    "warning",
                    f"autovacuum is disabled on {ctx.name(table)} (autovacuum_enabled=false)",
                    f"ALTER TABLE {ctx.sql_name(table)} RESET (autovacuum_enabled);",
                    ctx.name(table),
                )
            )
        elif dead >= t.bloat_min_dead_rows and (last is None or since > t.vacuum_age):
            when = "never vacuumed" if last is None else f"last vacuumed {_age(since)} ago"
            problems.append(
                Problem(
                    "warning",
                    f"{ctx.name(table)} has {_n(dead)} dead rows and was {when} (threshold "
                    f"{exact_duration(t.vacuum_age)}): autovacuum is not keeping up",
                    f"VACUUM (ANALYZE, VERBOSE) {ctx.sql_name(table)};",
                    ctx.name(table),
                )
            )
    return problems


def long_running_transactions(ctx: CheckContext) -> list[Problem]:
    """Transactions in this database older than ``long_transaction`` that hold back vacuum or
    lock our tables; an error when the lock blocks inserts and updates (the fetch, the ack)."""
    threshold = ctx.thresholds.long_transaction
    schema = ctx.prefix
    problems = []
    for pid, user, app, state, age, horizon, blocks, touches in ctx.rows(
        sql.LONG_TRANSACTIONS, {"schema": schema, "threshold": threshold}
    ):
        if not (horizon or touches):
            continue
        who = f"pid {pid} (user {user}" + (f", application {app}" if app else "") + ")"
        effects = []
        if blocks:
            effects.append(f"holds a lock on schema {schema} that blocks inserts and updates")
        if horizon:
            effects.append("holds back vacuum")
        if touches and not blocks:
            effects.append(f"holds locks on tables of schema {schema}")
        stop = "pg_terminate_backend" if state and state.startswith("idle") else "pg_cancel_backend"
        problems.append(
            Problem(
                "error" if blocks else "warning",
                f"transaction of {who} has been open for {_age(age)}, {state or 'state hidden'}"
                f" (threshold {exact_duration(threshold)}); it {' and '.join(effects)}",
                f"SELECT {stop}({pid});   # after checking what it runs: "  # noqa: S608
                f"SELECT query FROM pg_stat_activity WHERE pid = {pid};",
                f"pid:{pid}",
            )
        )
    for gid, owner, age in ctx.rows(sql.OLD_PREPARED, {"threshold": threshold}):
        problems.append(
            Problem(
                "warning",
                f"prepared transaction {gid!r} (owner {owner}) has waited {_age(age)} for "
                "COMMIT PREPARED: it holds back vacuum and keeps its locks",
                f"ROLLBACK PREPARED '{gid}';   # or COMMIT PREPARED, if its coordinator says so",
                f"database:{ctx.database}",
            )
        )
    hidden = ctx.rows(sql.HIDDEN_SESSIONS)[0][0]
    if hidden:
        problems.append(
            Problem(
                "warning",
                f"{_n(hidden)} session(s) of other roles in database {ctx.database} are hidden "
                f"from role {ctx.role}; their transactions were not inspected",
                f"GRANT pg_read_all_stats TO {quote_ident(ctx.role)};",
                f"database:{ctx.database}",
            )
        )
    return problems


def archive_retention(ctx: CheckContext) -> list[Problem]:
    """Terminal jobs older than ``[tool.powertools.archive] retention`` (plus a grace)."""
    ctx.require_states()
    grace = ctx.thresholds.archive_grace
    problems = []
    for state, column in TERMINAL_TIMESTAMP.items():
        if state not in ctx.retention or state not in ctx.inventory.states:
            continue
        keep = ctx.retention[state]
        template = sql.OVERDUE_TERMINAL.replace("{ts}", quote_ident(column))
        cutoff = ctx.now - keep - grace
        count, _oldest, age = ctx.rows(
            template, {"state": state, "cutoff": cutoff, "cap": ARCHIVE_CAP + 1}
        )[0]
        if not count:
            continue
        many = f"more than {_n(ARCHIVE_CAP)}" if count > ARCHIVE_CAP else _n(count)
        problems.append(
            Problem(
                "warning",
                f"{many} {state} job(s) in {ctx.name('oban_jobs')} are past the "
                f"{exact_duration(keep)} retention (+{exact_duration(grace)} grace); the oldest "
                f"{state} {_age(age)} ago",
                ctx.cli(
                    f'archive run --state {state}={exact_duration(keep)} --actor "$USER" '
                    f'--reason "doctor: {state} jobs past retention"'
                ),
                ctx.name("oban_jobs"),
            )
        )
    return problems


def cron_health(ctx: CheckContext) -> list[Problem]:
    """Cron's own check (``powertools_core.cron.health``), imported when it runs: that module
    builds on ``doctor.context``, so a top-level import here would be circular."""
    from powertools_core.cron.health import cron_health as check

    return check(ctx)


def stuck_workflows(ctx: CheckContext) -> list[Problem]:
    """The workflows' own check (``powertools_core.workflows.health``), imported when it runs
    for the same reason as ``cron_health``."""
    from powertools_core.workflows.health import stuck_workflows as check

    return check(ctx)


def _partial(ctx: CheckContext, done: list[Problem], table: str, what: str) -> CannotRun:
    """A check that ran only in part: its findings so far plus the error about the rest."""
    return CannotRun(
        f"{ctx.check_id} could not finish: table {ctx.name(table)} does not exist, so {what}",
        ctx.cli("install"),
        ctx.name(table),
        partial=done,
    )


CHECKS: Final = (
    CheckSpec("index_validity", "indexes left INVALID by a failed build", index_validity),
    CheckSpec("missing_indexes", "Oban v14 and powertools indexes on oban_jobs", missing_indexes),
    CheckSpec("oban_migration_version", "oban_jobs comment vs Oban v14", oban_migration_version),
    CheckSpec(
        "powertools_migrations", "pending/unknown revisions, missing tables", powertools_migrations
    ),
    CheckSpec(
        "uniqueness_timeout_risk",
        "GIN indexes and eligible backlog for unique jobs",
        uniqueness_timeout_risk,
    ),
    CheckSpec("expired_deadline_jobs", "waiting jobs past meta.deadline_at", expired_deadline_jobs),
    CheckSpec(
        "orphaned_executing_jobs",
        "executing under a dead or unknown producer",
        orphaned_executing_jobs,
    ),
    CheckSpec("stale_producers", "producers without a fresh heartbeat", stale_producers),
    CheckSpec("queue_backlog_age", "oldest available job per queue", queue_backlog_age),
    CheckSpec("table_bloat", "dead rows on oban_jobs and powertools tables", table_bloat),
    CheckSpec("autovacuum", "autovacuum off or not keeping up", autovacuum),
    CheckSpec(
        "long_running_transactions",
        "old transactions holding back vacuum or blocking writers",
        long_running_transactions,
    ),
    CheckSpec("archive_retention", "terminal jobs past the archive retention", archive_retention),
    CheckSpec("cron_health", "cron scheduler alive, missed fires, unknown workers", cron_health),
    CheckSpec("stuck_workflows", "steps due to move on that no leader moved", stuck_workflows),
)
CHECK_IDS: Final = tuple(c.id for c in CHECKS)
STRICT_PROMOTED: Final = (
    "oban_migration_version",
    "powertools_migrations",
    "uniqueness_timeout_risk",
)
