"""``powertools ops``: find jobs, and retry / cancel / discard one or many, previewed and audited.

Parsing and confirmation only; every decision and every statement lives in
``powertools_core.ops``.
"""

from __future__ import annotations

import sys
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
from powertools_core import ops
from powertools_core.config import Settings
from powertools_core.errors import PowertoolsError
from powertools_core.ops.actions import DEFAULT_STATES, Action
from powertools_core.ops.bulk import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, MAX_CONCURRENCY
from powertools_core.ops.errors import ConfirmationRequired, check_intent
from powertools_core.ops.filters import JobFilter
from powertools_core.ops.results import (
    ActionResult,
    JobListResult,
    JobShowResult,
    PreviewResult,
)
from powertools_core.schema.oban import JOB_STATES

app = typer.Typer(
    name="ops",
    help="Find jobs, and retry, cancel or discard one or a million: previewed, attributed, "
    "audited.\n\n"
    "Example: powertools ops retry-all --state discarded --queue mailers --dry-run",
    no_args_is_help=True,
)

FILTERS = "Filters"
EXECUTION = "Execution"

States = Annotated[
    list[str] | None,
    typer.Option(
        "--state",
        "-s",
        help=f"Job state (repeatable): {', '.join(JOB_STATES)}.",
        show_default=False,
        rich_help_panel=FILTERS,
    ),
]
Queue = Annotated[
    str | None,
    typer.Option("--queue", help="Queue name.", show_default=False, rich_help_panel=FILTERS),
]
WorkerName = Annotated[
    str | None,
    typer.Option(
        "--worker",
        help="Worker import path, or its class name when registered (--app). E.g. SendEmail",
        show_default=False,
        rich_help_panel=FILTERS,
    ),
]
Tags = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        help="Tag the job carries (repeatable: all must match).",
        show_default=False,
        rich_help_panel=FILTERS,
    ),
]
ArgsContains = Annotated[
    str | None,
    typer.Option(
        "--args-contains",
        help='JSON object the args contain (jsonb @>). E.g. \'{"tenant": "acme"}\'',
        show_default=False,
        rich_help_panel=FILTERS,
    ),
]
OlderThan = Annotated[
    str | None,
    typer.Option(
        "--older-than",
        help="Inserted longer ago than this. E.g. 30m, 2h, 7d",
        show_default=False,
        rich_help_panel=FILTERS,
    ),
]
Ids = Annotated[
    list[int] | None,
    typer.Option("--id", help="Job id (repeatable).", show_default=False, rich_help_panel=FILTERS),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Show the preview (counts by state/queue/worker, a sample, a preview token) and "
        "change nothing; nothing is written either.",
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
PreviewToken = Annotated[
    str | None,
    typer.Option(
        "--preview-token",
        help="Execute only if the selection still matches this --dry-run preview.",
        show_default=False,
        rich_help_panel=EXECUTION,
    ),
]


def _filter(
    out: Output,
    *,
    states: list[str] | None,
    queue: str | None,
    worker: str | None,
    tags: list[str] | None,
    args_contains: str | None,
    older_than: str | None,
    ids: list[int] | None,
    limit: int | None = None,
) -> JobFilter:
    try:
        return ops.build_filter(
            states=states,
            queue=queue,
            worker=worker,
            tags=tags,
            args_contains=args_contains,
            older_than=older_than,
            ids=ids,
            limit=limit,
        )
    except PowertoolsError as exc:
        out.fail(exc)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _confirm(
    out: Output,
    settings: Settings,
    preview: Callable[[], ops.PreviewResult],
    verb: str,
) -> str | None:
    """Ask on the terminal after showing the preview; returns the token to pin it."""
    from powertools_cli.render.ops import preview_lines

    try:
        shown = preview()
    except PowertoolsError as exc:
        out.fail(exc)
    for line in preview_lines(shown):
        out.stderr.print(line, markup=False)
    if shown.preview.would_act == 0:
        return shown.preview.preview_token
    if not typer.confirm(f"{verb} {shown.preview.would_act} job(s)?", default=False, err=True):
        out.fail(PowertoolsError("aborted; nothing was changed"))
    return shown.preview.preview_token


def _guard(
    out: Output, settings: Settings, actor: str | None, reason: str | None, yes: bool
) -> None:
    """Actor, reason and --yes are checked before anything touches the database."""
    try:
        check_intent(actor or settings.actor, reason)
        if not yes and not _stdin_is_tty():
            raise ConfirmationRequired(
                "--yes is required to change jobs when stdin is not a terminal",
                hint="review with --dry-run first, then pass --yes",
            )
    except PowertoolsError as exc:
        out.fail(exc)


def _out(command: str, fmt: Format, no_color: bool, verbose: int, quiet: bool) -> Output:
    return common.output(command, fmt, no_color, verbose, quiet)


# list / show --------------------------------------------------------------------------------


@app.command("list")
@common.returns(JobListResult)
def list_command(
    states: States = None,
    queue: Queue = None,
    worker: WorkerName = None,
    tags: Tags = None,
    args_contains: ArgsContains = None,
    older_than: OlderThan = None,
    ids: Ids = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Jobs per page (1-1000).", min=1, max=1000)
    ] = 20,
    cursor: Annotated[
        str | None,
        typer.Option(
            "--cursor", help="Continue after a page (its next_cursor).", show_default=False
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    app_modules: App = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """List jobs, newest first, with counts by state in the header; args are redacted.

    Examples:

    $ powertools ops list --state discarded --queue mailers

    $ powertools ops list --worker SendEmail --args-contains '{"tenant": "acme"}' --app app.jobs

    $ powertools ops list --state retryable --cursor 81234 --format json
    """
    out = _out("ops list", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix, app=app_modules)
    job_filter = _filter(
        out,
        states=states,
        queue=queue,
        worker=worker,
        tags=tags,
        args_contains=args_contains,
        older_than=older_than,
        ids=ids,
    )
    out.run(lambda: ops.list_jobs(settings, job_filter, cursor=cursor, limit=limit))


@app.command("show")
@common.returns(JobShowResult)
def show_command(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="The job id.")],
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    app_modules: App = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Show one job in full: args (redacted), meta, errors per attempt, attempted_by, timestamps
    and its audit history.

    Example:

    $ powertools ops show 81234 --app myapp.workers
    """
    out = _out("ops show", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix, app=app_modules)
    out.run(lambda: ops.show_job(settings, job_id))


# single-job actions ------------------------------------------------------------------------

_SINGLE_HELP = {
    Action.retry: (
        "Retry one job now.",
        "Oban semantics: available, scheduled now, max_attempts raised when exhausted, "
        "terminal timestamps cleared. Acts on retryable, discarded, cancelled and completed "
        "jobs; others are reported as skipped.",
    ),
    Action.cancel: (
        "Cancel one job (a running one is told to stop).",
        "Acts on available, scheduled, retryable and executing jobs; an executing job gets a "
        "stop signal and is marked cancelled. Others are reported as skipped.",
    ),
    Action.discard: (
        "Discard one job.",
        "Acts on available, scheduled and retryable jobs; others are reported as skipped.",
    ),
}


def _single(action: Action) -> Callable[..., None]:
    def command(
        job_id: Annotated[int, typer.Argument(metavar="ID", help="The job id.")],
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
        name = f"ops {action.value}"
        out = _out(name, fmt, no_color, verbose, quiet)
        settings = common.settings(
            out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
        )
        if dry_run:
            out.run(lambda: ops.preview_job(settings, action, job_id, command=name))
        _guard(out, settings, actor, reason, yes)
        token = preview_token
        if not yes:
            token = _confirm(
                out,
                settings,
                lambda: ops.preview_job(settings, action, job_id, command=name),
                action.value.capitalize(),
            )
        out.run(
            lambda: ops.act_on_job(
                settings,
                action,
                job_id,
                actor=actor,
                reason=reason,
                preview_token=token,
                command=name,
            )
        )

    example = (
        f"$ powertools ops {action.value} 81234 --actor alice "
        '--reason "customer asked, ticket 4411" --yes'
    )
    command.__doc__ = f"""{_SINGLE_HELP[action][0]}

    {_SINGLE_HELP[action][1]} Needs --actor (or POWERTOOLS_ACTOR), --reason (8+ characters)
    and, without a terminal, --yes.

    Examples:

    $ powertools ops {action.value} 81234 --dry-run

    {example}
    """
    return command


# bulk actions ------------------------------------------------------------------------------

_BULK_HELP = {
    Action.retry: "Retry every job matching the filters (completed ones only with "
    "--state completed).",
    Action.cancel: "Cancel every job matching the filters; running jobs are told to stop.",
    Action.discard: "Discard every job matching the filters.",
}

_BULK_REASON = {
    Action.retry: "provider outage fixed",
    Action.cancel: "bad deploy rolled back",
    Action.discard: "stale after migration",
}

_BULK_EXAMPLE = {
    Action.retry: "--state discarded --queue mailers",
    Action.cancel: "--queue imports --worker ImportCsv",
    Action.discard: "--state retryable --older-than 7d",
}


def _bulk(action: Action) -> Callable[..., None]:
    def command(
        states: States = None,
        queue: Queue = None,
        worker: WorkerName = None,
        tags: Tags = None,
        args_contains: ArgsContains = None,
        older_than: OlderThan = None,
        ids: Ids = None,
        actor: Actor = None,
        reason: Reason = None,
        dry_run: DryRun = False,
        yes: Yes = False,
        preview_token: PreviewToken = None,
        limit: Annotated[
            int | None,
            typer.Option(
                "--limit",
                help="Act on at most this many jobs (lowest ids first).",
                min=1,
                show_default=False,
                rich_help_panel=EXECUTION,
            ),
        ] = None,
        batch_size: Annotated[
            int,
            typer.Option(
                "--batch-size",
                help="Jobs per chunk; each chunk is one short transaction.",
                min=1,
                max=50_000,
                rich_help_panel=EXECUTION,
            ),
        ] = DEFAULT_BATCH_SIZE,
        concurrency: Annotated[
            int,
            typer.Option(
                "--concurrency",
                help="Chunks in flight at once, each on its own connection.",
                min=1,
                max=MAX_CONCURRENCY,
                rich_help_panel=EXECUTION,
            ),
        ] = DEFAULT_CONCURRENCY,
        resume: Annotated[
            str | None,
            typer.Option(
                "--resume",
                help="Continue an interrupted run under its run id, skipping every job it "
                "already changed.",
                show_default=False,
                rich_help_panel=EXECUTION,
            ),
        ] = None,
        database_url: DatabaseUrl = None,
        prefix: Prefix = None,
        app_modules: App = None,
        fmt: OutputFormat = Format.ansi,
        no_color: NoColor = False,
        verbose: Verbose = 0,
        quiet: Quiet = False,
    ) -> None:
        name = f"ops {action.value}-all"
        out = _out(name, fmt, no_color, verbose, quiet)
        settings = common.settings(
            out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
        )
        job_filter = _filter(
            out,
            states=states,
            queue=queue,
            worker=worker,
            tags=tags,
            args_contains=args_contains,
            older_than=older_than,
            ids=ids,
            limit=limit,
        )
        if dry_run:
            out.run(lambda: ops.preview(settings, action, job_filter, command=name))
        _guard(out, settings, actor, reason, yes)
        token = preview_token
        if not yes:
            token = _confirm(
                out,
                settings,
                lambda: ops.preview(settings, action, job_filter, command=name),
                action.value.capitalize(),
            )
        verb = {"retry": "retrying", "cancel": "cancelling", "discard": "discarding"}
        out.run(
            lambda: ops.execute(
                settings,
                action,
                job_filter,
                actor=actor,
                reason=reason,
                preview_token=token,
                batch_size=batch_size,
                concurrency=concurrency,
                progress=lambda total: out.progress(verb[action.value], total),
                resume_run=resume,
                command=name,
            )
        )

    example = (
        f"$ powertools ops {action.value}-all {_BULK_EXAMPLE[action]} --actor alice "
        f'--reason "{_BULK_REASON[action]}" --yes'
    )
    command.__doc__ = f"""{_BULK_HELP[action]}

    Default states: {", ".join(DEFAULT_STATES[action])} (with --id and no --state: any state, and
    jobs the action does not apply to are reported as skipped). Runs in chunks of --batch-size, each
    its own short transaction; a job that changed since it was selected is skipped and
    reported. Ctrl-C stops once the chunks in flight (--concurrency) have committed; running
    the command again finishes the rest without acting twice. Needs --actor (or
    POWERTOOLS_ACTOR), --reason (8+ characters) and, without a terminal, --yes. Exit 0 when
    every job was done or legitimately skipped, 1 if any failed.

    Examples:

    $ powertools ops {action.value}-all {_BULK_EXAMPLE[action]} --dry-run

    {example}
    """
    return command


for _action in Action:
    app.command(_action.value)(common.returns(ActionResult, PreviewResult)(_single(_action)))
for _action in Action:
    app.command(f"{_action.value}-all")(common.returns(ActionResult, PreviewResult)(_bulk(_action)))
