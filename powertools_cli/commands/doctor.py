from __future__ import annotations

from typing import Annotated

import typer

from powertools_cli.commands import common
from powertools_cli.options import (
    DatabaseUrl,
    Format,
    NoColor,
    OutputFormat,
    Prefix,
    Quiet,
    Verbose,
)
from powertools_core.doctor import DoctorResult, doctor
from powertools_core.doctor.thresholds import parse_overrides
from powertools_core.errors import PowertoolsError


@common.returns(DoctorResult)
def doctor_command(
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Promote the warnings of oban_migration_version, powertools_migrations and "
            "uniqueness_timeout_risk to errors (exit 2).",
        ),
    ] = False,
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            "-c",
            help="Run only this check (repeat or comma-separate). E.g. --check missing_indexes",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            "-t",
            help="Override a threshold, NAME=VALUE (repeatable). E.g. -t backlog_age=30m",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Check the job schema and queues read-only; exit 0 clean, 1 warnings, 2 errors.

    Runs in one READ ONLY transaction with a statement timeout, takes no lock that blocks
    writers, and needs only USAGE on the schema and SELECT on its tables (add
    pg_read_all_stats to see other roles' transactions). It reads catalogs, statistics and
    bounded index probes, never count(*) over oban_jobs: well under a second on 10M jobs.
    A check that cannot run (permission, missing schema or table, timeout) is an error.

    **Checks** (stable ids, in run order):
    index_validity (INVALID indexes: error),
    missing_indexes (Oban v14 + powertools indexes on oban_jobs: error),
    oban_migration_version (comment vs 14: older or absent error, newer warning),
    powertools_migrations (pending revisions or missing tables error, unknown revision warning),
    uniqueness_timeout_risk (args/meta GIN missing, eligible backlog >= uniqueness_backlog),
    expired_deadline_jobs (waiting jobs whose meta.deadline_at has passed),
    orphaned_executing_jobs (executing under a stale producer or an unknown one long ago),
    stale_producers, queue_backlog_age (oldest available job per queue),
    table_bloat, autovacuum,
    long_running_transactions (holding back vacuum: warning; blocking writers: error),
    archive_retention (terminal jobs past [tool.powertools.archive] retention),
    cron_health (active entries but no live scheduler, missed or failed fires in the last day,
    entries naming a worker that --app does not register),
    stuck_workflows (workflow steps whose dependencies ended, or durable jobs whose await timed
    out, still waiting after stuck_workflow_after: no leader runs the reconciler).
    Findings are warnings unless noted.

    **--strict** turns the warnings of exactly these checks into errors: oban_migration_version,
    powertools_migrations, uniqueness_timeout_risk (schema drift). Warnings about live traffic
    and vacuum (expired_deadline_jobs, orphaned_executing_jobs, stale_producers,
    queue_backlog_age, table_bloat, autovacuum, long_running_transactions,
    archive_retention, cron_health, stuck_workflows) stay warnings.

    **Deadlines**: a job's deadline is meta.deadline_at, an ISO-8601 timestamp (UTC when it
    has no offset), e.g. {"deadline_at": "2026-01-31T12:00:00Z"}; `meta.__deadline_at__`
    (Oban Powertools for Elixir) is read the same way.

    **Thresholds** (defaults; set in [tool.powertools.doctor] or with --threshold):
    statement_timeout 5s, lock_timeout 1s, uniqueness_backlog 50000,
    producer_stale_after 1m, orphan_after 1h, backlog_age 10m, long_transaction 5m,
    bloat_dead_ratio 0.2, bloat_min_dead_rows 10000, vacuum_age 1d, archive_grace 1h,
    stuck_workflow_after 5m.

    **JSON** (--format json, schema_version 1; JSON Schema: powertools_core/doctor/schema.json):
    command "doctor"; prefix; strict; database {server_version, url (password masked)};
    oban_version_expected (14); oban_version_db (int or null); exit_code (0|1|2, the process
    exit code); summary {error, warning} (finding counts); checks [{id, status ok|warning|error,
    duration_ms}]; findings [{check, severity error|warning, message, remediation (a command
    or SQL to copy), object (schema.table, queue:NAME, job:ID, producer:UUID, pid:N, ...)}];
    thresholds {name: value}.

    Examples:

    $ powertools doctor

    $ powertools doctor --strict --format json

    $ powertools doctor --prefix app_jobs --check missing_indexes --check index_validity

    $ powertools doctor --threshold backlog_age=30m --threshold long_transaction=2m
    """
    out = common.output("doctor", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)
    try:
        overrides = parse_overrides(threshold or [])
    except PowertoolsError as exc:
        out.fail(exc)
    out.run(lambda: doctor(settings, checks=check, strict=strict, thresholds=overrides))
