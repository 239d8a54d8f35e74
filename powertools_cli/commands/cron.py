"""``powertools cron``: list, show, pause/resume, run now, and add/set/remove runtime entries.

Parsing and confirmation only; every decision and statement lives in ``powertools_core.cron``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

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
from powertools_core.config import Settings
from powertools_core.cron.results import CronActionResult, CronListResult, CronShowResult
from powertools_core.errors import InvalidInput, PowertoolsError

app = typer.Typer(
    name="cron",
    help="Cron entries fired by the worker's leader: see them, pause, resume, run now, and "
    "manage runtime entries.\n\nExample: powertools cron show nightly-report",
    no_args_is_help=True,
)

EXECUTION = "Execution"
ENTRY = "Entry"

DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Show what would change; change nothing.", rich_help_panel=EXECUTION
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
Name = Annotated[str, typer.Argument(metavar="NAME", help="The cron entry's name.")]
Expr = Annotated[
    str | None,
    typer.Option(
        "--expr",
        help='Cron expression or nickname, e.g. "*/5 * * * *", "0 9 * * MON-FRI", @daily.',
        show_default=False,
        rich_help_panel=ENTRY,
    ),
]
WorkerOpt = Annotated[
    str | None,
    typer.Option(
        "--worker",
        help="Worker import path, or its class name when registered (--app).",
        show_default=False,
        rich_help_panel=ENTRY,
    ),
]
ArgsOpt = Annotated[
    str | None,
    typer.Option(
        "--args",
        help='Job args as a JSON object, e.g. \'{"kind": "daily"}\'.',
        show_default=False,
        rich_help_panel=ENTRY,
    ),
]
Timezone = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        help="IANA zone the expression is read in (default Etc/UTC).",
        show_default=False,
        rich_help_panel=ENTRY,
    ),
]
QueueOpt = Annotated[
    str | None,
    typer.Option(
        "--queue",
        help="Queue for its jobs (default: the worker's).",
        show_default=False,
        rich_help_panel=ENTRY,
    ),
]
OverlapOpt = Annotated[
    str | None,
    typer.Option(
        "--overlap",
        help="When the previous run is still active: allow, skip (default), queue_one, "
        "cancel_previous.",
        show_default=False,
        rich_help_panel=ENTRY,
    ),
]
CatchUpOpt = Annotated[
    str | None,
    typer.Option(
        "--catch-up",
        help="Fires missed while no scheduler ran: latest (default), all, none.",
        show_default=False,
        rich_help_panel=ENTRY,
    ),
]
MaxCatchUp = Annotated[
    int | None,
    typer.Option(
        "--max-catch-up",
        help="Most missed fires made with --catch-up all (default 10).",
        show_default=False,
        rich_help_panel=ENTRY,
    ),
]


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _guard(
    out: Output, settings: Settings, actor: str | None, reason: str | None, yes: bool, what: str
) -> str | None:
    """Actor, reason and confirmation before anything touches the database; returns actor."""
    from powertools_core.cron.actions import check_intent
    from powertools_core.ops.errors import ConfirmationRequired

    who = actor or settings.actor
    try:
        check_intent(who, reason)
        if not yes:
            if not _stdin_is_tty():
                raise ConfirmationRequired(
                    "--yes is required to change cron entries when stdin is not a terminal",
                    hint="review with --dry-run first, then pass --yes",
                )
            if not typer.confirm(f"{what}?", default=False, err=True):
                raise PowertoolsError("aborted; nothing was changed")
    except PowertoolsError as exc:
        out.fail(exc)
    return who


def _load_app(out: Output, settings: Settings) -> None:
    from powertools_core.workers import load_app

    try:
        load_app(settings.app)
    except PowertoolsError as exc:
        out.fail(exc)


def _args(out: Output, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        out.fail(InvalidInput(f"--args is not valid JSON: {exc.msg}", hint="e.g. '{\"n\": 1}'"))
    if not isinstance(value, dict):
        out.fail(InvalidInput("--args must be a JSON object", hint="e.g. '{\"n\": 1}'"))
    return value


@app.command("list")
@common.returns(CronListResult)
def list_command(
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """List cron entries: schedule, next fire, last decision, paused, source.

    Examples:

    $ powertools cron list

    $ powertools cron list --format json
    """
    out = common.output("cron list", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)

    def call() -> CronListResult:
        from powertools_core.cron.actions import list_cron

        return list_cron(settings)

    out.run(call)


@app.command("show")
@common.returns(CronShowResult)
def show_command(
    name: Name,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Slots to show (1-1000).")] = 20,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Show one entry: the expression in words, next fires, the newest slots (decision and
    job), and fires of the last day that did not run (missed, or no evidence either way).

    Examples:

    $ powertools cron show nightly-report

    $ powertools cron show nightly-report --limit 50 --format json
    """
    out = common.output("cron show", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)

    def call() -> CronShowResult:
        from powertools_core.cron.actions import show_cron

        return show_cron(settings, name, limit=limit)

    out.run(call)


def _pause_or_resume(paused: bool) -> Any:
    verb = "pause" if paused else "resume"

    def command(
        name: Name,
        actor: Actor = None,
        reason: Reason = None,
        dry_run: DryRun = False,
        yes: Yes = False,
        database_url: DatabaseUrl = None,
        prefix: Prefix = None,
        fmt: OutputFormat = Format.ansi,
        no_color: NoColor = False,
        verbose: Verbose = 0,
        quiet: Quiet = False,
    ) -> None:
        out = common.output(f"cron {verb}", fmt, no_color, verbose, quiet)
        settings = common.settings(out, database_url=database_url, prefix=prefix, actor=actor)
        who = None if dry_run else _guard(out, settings, actor, reason, yes, f"{verb} {name}")

        def call() -> CronActionResult:
            from powertools_core.cron.actions import set_paused

            return set_paused(
                settings, name, paused=paused, actor=who, reason=reason, dry_run=dry_run
            )

        out.run(call)

    what = (
        "Pause an entry: the scheduler makes none of its fires until it is resumed."
        if paused
        else "Resume a paused entry; fires during the pause are not caught up."
    )
    command.__doc__ = f"""{what}

    Works on code and runtime entries. Needs --actor (or POWERTOOLS_ACTOR), --reason (8+
    characters) and, without a terminal, --yes. Audited.

    Examples:

    $ powertools cron {verb} nightly-report --dry-run

    $ powertools cron {verb} nightly-report --actor alice --reason "warehouse maintenance" --yes
    """
    return command


app.command("pause")(common.returns(CronActionResult)(_pause_or_resume(True)))
app.command("resume")(common.returns(CronActionResult)(_pause_or_resume(False)))


@app.command("run")
@common.returns(CronActionResult)
def run_command(
    name: Name,
    actor: Actor = None,
    reason: Reason = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    app_modules: App = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Fire an entry now, through the same slot path as the scheduler (its overlap policy
    applies and the decision is recorded on a manual slot). Audited.

    Examples:

    $ powertools cron run nightly-report --dry-run

    $ powertools cron run nightly-report --actor alice --reason "rerun after the fix" --yes
    """
    out = common.output("cron run", fmt, no_color, verbose, quiet)
    settings = common.settings(
        out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
    )
    who = None if dry_run else _guard(out, settings, actor, reason, yes, f"fire {name} now")
    if settings.app:
        _load_app(out, settings)

    def call() -> CronActionResult:
        from powertools_core.cron.actions import run_now

        return run_now(settings, name, actor=who, reason=reason, dry_run=dry_run)

    out.run(call)


@app.command("add")
@common.returns(CronActionResult)
def add_command(
    name: Name,
    expr: Expr = None,
    worker: WorkerOpt = None,
    args: ArgsOpt = None,
    timezone: Timezone = None,
    queue: QueueOpt = None,
    overlap: OverlapOpt = None,
    catch_up: CatchUpOpt = None,
    max_catch_up: MaxCatchUp = None,
    actor: Actor = None,
    reason: Reason = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    app_modules: App = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Add a runtime entry (source runtime); it first fires at the first match after now.

    --expr and --worker are required; the worker must be registered (--app) so its args are
    validated. Audited.

    Examples:

    $ powertools cron add digest --expr "0 7 * * MON-FRI" --worker SendDigest --app myapp.workers
    --timezone Europe/Paris --actor alice --reason "weekday digest for sales" --yes

    $ powertools cron add ping --expr "*/5 * * * *" --worker myapp.workers.Ping --dry-run
    """
    out = common.output("cron add", fmt, no_color, verbose, quiet)
    settings = common.settings(
        out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
    )
    if expr is None or worker is None:
        out.fail(
            InvalidInput(
                "cron add needs --expr and --worker",
                hint='e.g. --expr "*/5 * * * *" --worker SendDigest',
            )
        )
    _load_app(out, settings)
    parsed_args = _args(out, args)
    try:
        from powertools_core.cron.entry import build_config

        extra: dict[str, Any] = {}
        if timezone is not None:
            extra["timezone"] = timezone
        if overlap is not None:
            extra["overlap"] = overlap
        if catch_up is not None:
            extra["catch_up"] = catch_up
        if max_catch_up is not None:
            extra["max_catch_up"] = max_catch_up
        config = build_config(expr, worker, args=parsed_args, name=name, queue=queue, **extra)
    except PowertoolsError as exc:
        out.fail(exc)
    who = None if dry_run else _guard(out, settings, actor, reason, yes, f"add {name}")

    def call() -> CronActionResult:
        from powertools_core.cron.actions import add_entry

        return add_entry(settings, config, actor=who, reason=reason, dry_run=dry_run)

    out.run(call)


@app.command("set")
@common.returns(CronActionResult)
def set_command(
    name: Name,
    expr: Expr = None,
    worker: WorkerOpt = None,
    args: ArgsOpt = None,
    timezone: Timezone = None,
    queue: QueueOpt = None,
    overlap: OverlapOpt = None,
    catch_up: CatchUpOpt = None,
    max_catch_up: MaxCatchUp = None,
    actor: Actor = None,
    reason: Reason = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    app_modules: App = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Change a runtime entry; entries declared in code are refused (edit the code). Audited.

    Examples:

    $ powertools cron set digest --expr "30 7 * * MON-FRI" --app myapp.workers --dry-run

    $ powertools cron set digest --overlap queue_one --app myapp.workers --actor alice
    --reason "runs overlap on Mondays" --yes
    """
    out = common.output("cron set", fmt, no_color, verbose, quiet)
    settings = common.settings(
        out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
    )
    _load_app(out, settings)
    changes: dict[str, Any] = {}
    for key, value in (
        ("expression", expr),
        ("worker", worker),
        ("args", _args(out, args)),
        ("timezone", timezone),
        ("queue", queue),
        ("overlap", overlap),
        ("catch_up", catch_up),
        ("max_catch_up", max_catch_up),
    ):
        if value is not None:
            changes[key] = value
    who = None if dry_run else _guard(out, settings, actor, reason, yes, f"change {name}")

    def call() -> CronActionResult:
        from powertools_core.cron.actions import set_entry

        return set_entry(settings, name, changes, actor=who, reason=reason, dry_run=dry_run)

    out.run(call)


@app.command("remove")
@common.returns(CronActionResult)
def remove_command(
    name: Name,
    actor: Actor = None,
    reason: Reason = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Remove a runtime entry and its slot history (jobs it inserted stay). Entries declared in
    code are refused. Audited.

    Examples:

    $ powertools cron remove digest --dry-run

    $ powertools cron remove digest --actor alice --reason "replaced by weekly digest" --yes
    """
    out = common.output("cron remove", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix, actor=actor)
    who = None if dry_run else _guard(out, settings, actor, reason, yes, f"remove {name}")

    def call() -> CronActionResult:
        from powertools_core.cron.actions import remove_entry

        return remove_entry(settings, name, actor=who, reason=reason, dry_run=dry_run)

    out.run(call)
