"""``powertools archive``: move old terminal jobs (and audit events) aside, list, restore, prune.

Parsing and confirmation only; every decision and every statement lives in
``powertools_core.archive``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from typing import Annotated

import typer

from powertools_cli.commands import common
from powertools_cli.options import (
    Actor,
    App,
    DatabaseUrl,
    Format,
    NoColor,
    OutputFormat,
    Prefix,
    Quiet,
    Reason,
    Verbose,
)
from powertools_cli.output import Output
from powertools_core import archive
from powertools_core.archive.listing import DEFAULT_LIST_LIMIT, RUN_KINDS
from powertools_core.archive.plan import parse_token
from powertools_core.archive.policy import (
    DEFAULT_AUDIT_RETENTION,
    MAX_BATCH_SIZE,
    ArchiveConfig,
    check_actor_reason,
    check_batch_size,
)
from powertools_core.archive.results import (
    ArchiveListResult,
    ArchivePreview,
    ArchiveRunResult,
    ArchiveRunsResult,
    ArchiveShowResult,
)
from powertools_core.config import Settings
from powertools_core.durations import parse_duration
from powertools_core.errors import InvalidInput, PowertoolsError
from powertools_core.ops.errors import ConfirmationRequired
from powertools_core.schema.oban import TERMINAL_STATES

app = typer.Typer(
    name="archive",
    help="Archive-before-delete: move old terminal jobs into powertools_job_archive, list and "
    "restore them, and prune the archive (the only permanent delete).\n\n"
    "Example: powertools archive run --dry-run",
    no_args_is_help=True,
)

FILTERS = "Filters"
EXECUTION = "Execution"

DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Show the preview (counts by state, queue and worker, the first rows to move, ids "
        "left alone, a preview token) and change nothing; nothing is written either.",
        rich_help_panel=EXECUTION,
    ),
]
PreviewToken = Annotated[
    str | None,
    typer.Option(
        "--preview-token",
        help="Execute only if the rows still match this --dry-run preview (exit 2 and nothing "
        "changed otherwise); for run and prune the cutoffs are those of the preview's time. "
        "E.g. 3f9a0c1d2e4b5a6c@20260105T101112Z",
        show_default=False,
        rich_help_panel=EXECUTION,
    ),
]
Yes = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Do not ask for confirmation (required when stdin is not a terminal).",
        rich_help_panel=EXECUTION,
    ),
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        help=f"Rows per chunk, each chunk one short transaction (1-{MAX_BATCH_SIZE:,}; default: "
        "batch_size in [tool.powertools.archive], else 10,000). E.g. 5000",
        show_default=False,
        rich_help_panel=EXECUTION,
    ),
]
States = Annotated[
    list[str] | None,
    typer.Option(
        "--state",
        "-s",
        help=f"Archived job state (repeatable): {', '.join(TERMINAL_STATES)}.",
        show_default=False,
        rich_help_panel=FILTERS,
    ),
]
Queues = Annotated[
    list[str] | None,
    typer.Option(
        "--queue", help="Queue name (repeatable).", show_default=False, rich_help_panel=FILTERS
    ),
]
Workers = Annotated[
    list[str] | None,
    typer.Option(
        "--worker",
        help="Worker as stored in the job (repeatable). E.g. app.workers.SendEmail",
        show_default=False,
        rich_help_panel=FILTERS,
    ),
]
RunId = Annotated[
    str | None,
    typer.Option(
        "--run",
        help="Only the jobs one archive run moved (its id from `powertools archive runs`).",
        show_default=False,
        rich_help_panel=FILTERS,
    ),
]


def _out(command: str, fmt: Format, no_color: bool, verbose: int, quiet: bool) -> Output:
    return common.output(command, fmt, no_color, verbose, quiet)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _config(out: Output, settings: Settings) -> ArchiveConfig:
    try:
        return archive.parse_archive_config(settings.archive)
    except PowertoolsError as exc:
        out.fail(exc)


def _batch(out: Output, size: int | None, config: ArchiveConfig) -> int:
    try:
        return check_batch_size(config.batch_size if size is None else size)
    except PowertoolsError as exc:
        out.fail(exc)


def _run_id(out: Output, text: str | None) -> uuid.UUID | None:
    if text is None:
        return None
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        out.fail(
            InvalidInput(
                f"--run {text!r} is not a run id",
                hint="run ids are UUIDs; `powertools archive runs` lists them",
            )
        )


def _token(out: Output, text: str | None, kind: str) -> str | None:
    """A malformed --preview-token is refused before anything touches the database."""
    if text is None:
        return None
    try:
        parse_token(text, kind)
    except PowertoolsError as exc:
        out.fail(exc)
    return text


def _guard(
    out: Output, settings: Settings, actor: str | None, reason: str | None, yes: bool
) -> None:
    """Actor, reason and --yes are checked before anything touches the database."""
    try:
        check_actor_reason(actor or settings.actor, reason)
        if not yes and not _stdin_is_tty():
            raise ConfirmationRequired(
                "--yes is required to archive, restore or prune when stdin is not a terminal",
                hint="review with --dry-run first, then pass --yes",
            )
    except PowertoolsError as exc:
        out.fail(exc)


def _confirm(
    out: Output, preview: Callable[[], ArchivePreview | ArchiveRunResult], verb: str
) -> str:
    """On a terminal: show the dry-run preview on stderr, then ask; returns the token of what
    was shown, so the execution moves exactly that (or refuses if it drifted meanwhile)."""
    from powertools_cli.render.archive import preview_body

    try:
        shown = preview()
    except PowertoolsError as exc:
        out.fail(exc)
    assert isinstance(shown, ArchivePreview)
    preview_body(shown, out.stderr)
    if shown.total and not typer.confirm(
        f"{verb} {shown.total:,} row(s)?", default=False, err=True
    ):
        out.fail(PowertoolsError("aborted; nothing was changed"))
    return shown.preview_token


# archive run --------------------------------------------------------------------------------


@app.command("run")
@common.returns(ArchiveRunResult, ArchivePreview)
def run_command(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Archive terminal jobs (any terminal state) finished longer ago than this; "
            "with --audit, audit events older than this. E.g. 7d",
            show_default=False,
            rich_help_panel=FILTERS,
        ),
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            help="Terminal states and their retention, e.g. completed=1d,cancelled=7d,"
            "discarded=30d; a state without =AGE takes --older-than, else its configured "
            "retention. Default: [tool.powertools.archive] retention, else "
            "completed=1d,cancelled=7d,discarded=30d.",
            show_default=False,
            rich_help_panel=FILTERS,
        ),
    ] = None,
    queues: Queues = None,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit",
            help="Archive audit events instead of jobs: those older than --older-than (default: "
            "audit_retention in [tool.powertools.archive], else 90d) move to "
            "powertools_audit_archive.",
            rich_help_panel=FILTERS,
        ),
    ] = False,
    batch_size: BatchSize = None,
    actor: Actor = None,
    reason: Reason = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    preview_token: PreviewToken = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    app_modules: App = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Move old terminal jobs into powertools_job_archive and delete them from oban_jobs.

    Each chunk of --batch-size rows is one short transaction that inserts the rows into the
    archive (every column, plus archived_at and archive_run_id) and deletes them from
    oban_jobs, so a row is in exactly one table at every commit; killing the command loses
    nothing and running it again moves the rest. Only completed, cancelled and discarded jobs
    are ever archived; rows a worker holds are skipped. The run is recorded (`archive runs`)
    and audited. Ctrl-C stops after the current chunk and reports what moved (exit 1). An id
    archived earlier that is in oban_jobs again is left alone and reported (exit 1). Needs
    --actor (or POWERTOOLS_ACTOR), --reason (8+ characters) and, without a terminal, --yes.

    --dry-run prints a preview token (plan hash @ the preview's time, e.g.
    3f9a0c1d2e4b5a6c@20260105T101112Z); executing with --preview-token computes the cutoffs
    from that time, so it moves exactly the rows that were old enough then, and refuses (exit
    2, nothing changed) if any row joined or left that set since. On a terminal without --yes
    the confirmation pins the plan it showed the same way.

    Examples:

    $ powertools archive run --dry-run

    $ powertools archive run --state completed=1d,discarded=30d --queue mailers --dry-run

    $ powertools archive run --preview-token "$TOKEN" --actor alice --reason "weekly cleanup" --yes

    $ POWERTOOLS_ACTOR=alice powertools archive run --older-than 30d --reason "weekly cleanup" --yes

    $ powertools archive run --audit --older-than 365d --actor alice --reason "yearly rotation"
    """
    out = _out("archive run", fmt, no_color, verbose, quiet)
    settings = common.settings(
        out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
    )
    config = _config(out, settings)
    size = _batch(out, batch_size, config)
    request: archive.ArchiveRequest | archive.AuditArchiveRequest
    try:
        if audit:
            if state is not None or queues:
                raise InvalidInput(
                    "--state and --queue select jobs; they do not apply to --audit",
                    hint="use --older-than AGE with --audit",
                )
            age = (
                parse_duration(older_than, name="--older-than")
                if older_than is not None
                else config.audit_retention or DEFAULT_AUDIT_RETENTION
            )
            request = archive.AuditArchiveRequest(older_than=age, batch_size=size)
        else:
            retention = archive.resolve_retention(state, older_than, config.retention)
            request = archive.ArchiveRequest(
                retention=retention, queues=tuple(queues or ()), batch_size=size
            )
    except PowertoolsError as exc:
        out.fail(exc)
    token = _token(out, preview_token, "audit_archive" if audit else "archive")
    if dry_run:
        out.run(lambda: archive.run_archive(settings, request, dry_run=True, preview_token=token))
    _guard(out, settings, actor, reason, yes)
    if not yes:
        token = _confirm(
            out,
            lambda: archive.run_archive(settings, request, dry_run=True, preview_token=token),
            "Archive",
        )
    out.run(
        lambda: archive.run_archive(
            settings,
            request,
            actor=actor or settings.actor,
            reason=reason,
            preview_token=token,
            progress=out.progress,
        )
    )


# archive list / runs / show -----------------------------------------------------------------


@app.command("list")
@common.returns(ArchiveListResult)
def list_command(
    ids: Annotated[
        list[int] | None,
        typer.Option(
            "--id", help="Job id (repeatable).", show_default=False, rich_help_panel=FILTERS
        ),
    ] = None,
    run: RunId = None,
    states: States = None,
    queues: Queues = None,
    workers: Workers = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", help="Jobs to show (1-10,000).", min=1, max=10_000),
    ] = DEFAULT_LIST_LIMIT,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    app_modules: App = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """List archived jobs, newest job (highest id) first, with how many match; args are
    redacted like `ops list`.

    Examples:

    $ powertools archive list --state discarded --queue mailers

    $ powertools archive list --run 2f0c6f7e-0d9b-4a7e-9a51-1d2b3c4d5e6f --format json
    """
    out = _out("archive list", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix, app=app_modules)
    selection = archive.ArchiveFilter(
        ids=tuple(ids or ()),
        run_id=_run_id(out, run),
        states=tuple(states or ()),
        queues=tuple(queues or ()),
        workers=tuple(workers or ()),
    )
    out.run(lambda: archive.list_archived(settings, selection, limit=limit))


@app.command("runs")
@common.returns(ArchiveRunsResult)
def runs_command(
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help=f"Only runs of this kind: {', '.join(RUN_KINDS)}.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", help="Runs to show (1-10,000).", min=1, max=10_000),
    ] = DEFAULT_LIST_LIMIT,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """List archive, restore and prune runs, newest first: status, actor, rows moved.

    A run whose process died while it was moving chunks shows as interrupted (nothing is
    lost; run the command again to finish).

    Examples:

    $ powertools archive runs

    $ powertools archive runs --kind restore --format json
    """
    out = _out("archive runs", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)
    out.run(lambda: archive.list_runs(settings, kind=kind, limit=limit))


@app.command("show")
@common.returns(ArchiveShowResult)
def show_command(
    target: Annotated[
        str,
        typer.Argument(metavar="ID", help="An archived job id, or a run id (UUID)."),
    ],
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    app_modules: App = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Show one archived job in full (every column, and the run that archived it), or one run
    (filter, counts, status).

    Examples:

    $ powertools archive show 81234

    $ powertools archive show 2f0c6f7e-0d9b-4a7e-9a51-1d2b3c4d5e6f --format json
    """
    out = _out("archive show", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix, app=app_modules)
    out.run(lambda: archive.show(settings, target))


# archive restore ----------------------------------------------------------------------------


@app.command("restore")
@common.returns(ArchiveRunResult, ArchivePreview)
def restore_command(
    ids: Annotated[
        list[int] | None,
        typer.Argument(metavar="[ID]...", help="Archived job ids to restore.", show_default=False),
    ] = None,
    run: RunId = None,
    states: States = None,
    queues: Queues = None,
    workers: Workers = None,
    batch_size: BatchSize = None,
    actor: Actor = None,
    reason: Reason = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    preview_token: PreviewToken = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    app_modules: App = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Put archived jobs back into oban_jobs with their original ids and every column.

    Select by ids, by --run, and/or by --state/--queue/--worker (at least one). An id that is
    in oban_jobs again is never overwritten: it stays in the archive and is reported, as are
    ids not in the archive (exit 1). Chunked and audited like `archive run`; Ctrl-C stops after
    the current chunk. A restored job keeps its old finish time, so the next `archive run` (or
    the worker's retention duty) archives it again unless it is retried first. Needs --actor,
    --reason and, without a terminal, --yes. With --preview-token from a --dry-run it restores
    only if the rows to restore (and the ids it would refuse) are still the previewed ones.

    Examples:

    $ powertools archive restore 81234 81235 --dry-run

    $ powertools archive restore 81234 --preview-token "$TOKEN" --actor bo --reason "replay it" -y

    $ powertools archive restore --run RUN_ID --actor alice --reason "replay after the fix" --yes
    """
    out = _out("archive restore", fmt, no_color, verbose, quiet)
    settings = common.settings(
        out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
    )
    size = _batch(out, batch_size, _config(out, settings))
    selection = archive.ArchiveFilter(
        ids=tuple(ids or ()),
        run_id=_run_id(out, run),
        states=tuple(states or ()),
        queues=tuple(queues or ()),
        workers=tuple(workers or ()),
    )
    if selection.empty:
        out.fail(
            InvalidInput(
                "say what to restore",
                hint="give job ids, --run RUN_ID, or --state/--queue/--worker",
            )
        )
    token = _token(out, preview_token, "restore")

    def dry() -> ArchivePreview | ArchiveRunResult:
        return archive.run_restore(
            settings, selection, batch_size=size, dry_run=True, preview_token=token
        )

    if dry_run:
        out.run(dry)
    _guard(out, settings, actor, reason, yes)
    if not yes:
        token = _confirm(out, dry, "Restore")
    out.run(
        lambda: archive.run_restore(
            settings,
            selection,
            actor=actor or settings.actor,
            reason=reason,
            batch_size=size,
            preview_token=token,
            progress=out.progress,
        )
    )


# archive prune ------------------------------------------------------------------------------


@app.command("prune")
@common.returns(ArchiveRunResult, ArchivePreview)
def prune_command(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Delete rows archived longer ago than this (required). E.g. 90d",
            show_default=False,
            rich_help_panel=FILTERS,
        ),
    ],
    audit: Annotated[
        bool,
        typer.Option(
            "--audit",
            help="Prune powertools_audit_archive (archived audit events) instead of the job "
            "archive.",
            rich_help_panel=FILTERS,
        ),
    ] = False,
    batch_size: BatchSize = None,
    actor: Actor = None,
    reason: Reason = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    preview_token: PreviewToken = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    app_modules: App = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Permanently delete rows archived longer ago than --older-than, from the archive only.

    The only permanent delete powertools has: oban_jobs and powertools_audit_events are never
    touched. Look with --dry-run first; --preview-token then deletes exactly the rows that
    preview counted (archived before its time minus --older-than) or refuses (exit 2). Chunked,
    recorded as a prune run and audited. Needs --actor, --reason and, without a terminal, --yes.

    Examples:

    $ powertools archive prune --older-than 90d --dry-run

    $ powertools archive prune --older-than 90d --actor alice --reason "quarterly prune" --yes
    """
    out = _out("archive prune", fmt, no_color, verbose, quiet)
    settings = common.settings(
        out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
    )
    size = _batch(out, batch_size, _config(out, settings))
    try:
        age = parse_duration(older_than, name="--older-than")
    except PowertoolsError as exc:
        out.fail(exc)
    request = archive.PruneRequest(older_than=age, audit=audit, batch_size=size)
    token = _token(out, preview_token, "audit_prune" if audit else "prune")
    if dry_run:
        out.run(lambda: archive.run_prune(settings, request, dry_run=True, preview_token=token))
    _guard(out, settings, actor, reason, yes)
    if not yes:
        token = _confirm(
            out,
            lambda: archive.run_prune(settings, request, dry_run=True, preview_token=token),
            "Permanently delete",
        )
    out.run(
        lambda: archive.run_prune(
            settings,
            request,
            actor=actor or settings.actor,
            reason=reason,
            preview_token=token,
            progress=out.progress,
        )
    )
