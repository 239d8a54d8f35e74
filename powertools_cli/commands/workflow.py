"""``powertools workflow``: list workflows and show one as a dependency tree.

Parsing only; the queries live in ``powertools_core.workflows.actions``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from powertools_cli.commands import common
from powertools_cli.options import (
    Actor,
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
from powertools_core.errors import PowertoolsError
from powertools_core.workflows.results import (
    WorkflowActionResult,
    WorkflowListResult,
    WorkflowShowResult,
)
from powertools_core.workflows.signals import SignalResult

app = typer.Typer(
    name="workflow",
    help="Workflows (DAGs of jobs) and durable jobs: list, show step by step with blockers, "
    "cancel, retry, signal.\n\nExample: powertools workflow show 42",
    no_args_is_help=True,
)

StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="Only workflows in this state: running, completed, failed, cancelled.",
        show_default=False,
    ),
]
Limit = Annotated[int, typer.Option("--limit", "-n", help="Newest workflows to read (1-10000).")]
WorkflowId = Annotated[int, typer.Argument(metavar="ID", help="The workflow's id.")]
Yes = Annotated[
    bool,
    typer.Option(
        "--yes", "-y", help="Do not ask for confirmation (required when stdin is not a terminal)."
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Show what the signal would do; send nothing.")
]
Target = Annotated[
    str,
    typer.Argument(
        metavar="TARGET",
        help="The durable job: its id (all digits) or its correlation key.",
        show_default=False,
    ),
]
SignalName = Annotated[
    str, typer.Argument(metavar="NAME", help="The signal's name, e.g. approved.")
]
Payload = Annotated[
    str | None,
    typer.Option(
        "--payload",
        help='JSON payload, e.g. \'{"by": "alice"}\' (default null).',
        show_default=False,
    ),
]
DedupeKey = Annotated[
    str | None,
    typer.Option(
        "--dedupe-key",
        help="Send at most once per job with this key (a repeat is a no-op).",
        show_default=False,
    ),
]
ByKey = Annotated[
    bool,
    typer.Option("--key", help="TARGET is a correlation key even if it is all digits."),
]
StepOpt = Annotated[
    str | None,
    typer.Option("--step", help="Retry only this failed step.", show_default=False),
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
    from powertools_core.ops.errors import ConfirmationRequired, check_intent

    who = actor or settings.actor
    try:
        check_intent(who, reason)
        if not yes:
            if not _stdin_is_tty():
                raise ConfirmationRequired(
                    "--yes is required to change a workflow when stdin is not a terminal",
                    hint="check it with `powertools workflow show ID`, then pass --yes",
                )
            if not typer.confirm(f"{what}?", default=False, err=True):
                raise PowertoolsError("aborted; nothing was changed")
    except PowertoolsError as exc:
        out.fail(exc)
    return who


@app.command("list")
@common.returns(WorkflowListResult)
def list_command(
    state: StateOpt = None,
    limit: Limit = 100,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """List workflows, newest first: state and steps by job state.

    Examples:

    $ powertools workflow list

    $ powertools workflow list --state failed --format json
    """
    out = common.output("workflow list", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)

    def call() -> WorkflowListResult:
        from powertools_core.workflows.actions import list_workflows

        return list_workflows(settings, state=state, limit=limit)

    out.run(call)


@app.command("show")
@common.returns(WorkflowShowResult)
def show_command(
    workflow_id: WorkflowId,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Show a workflow as a tree: each step's state, attempt, duration and blocker code
    (waiting_on_dependencies, waiting_on_retryable_dependency, cancelled_by_dependency, ...).

    Examples:

    $ powertools workflow show 42

    $ powertools workflow show 42 --format json
    """
    out = common.output("workflow show", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)

    def call() -> WorkflowShowResult:
        from powertools_core.workflows.actions import show_workflow

        return show_workflow(settings, workflow_id)

    out.run(call)


@app.command("cancel")
@common.returns(WorkflowActionResult)
def cancel_command(
    workflow_id: WorkflowId,
    actor: Actor = None,
    reason: Reason = None,
    yes: Yes = False,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Cancel a workflow: pending steps are cancelled, executing ones are told to stop
    (audited).

    Examples:

    $ powertools workflow cancel 42 --actor alice --reason "bad input file" --yes
    """
    out = common.output("workflow cancel", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)
    who = _guard(out, settings, actor, reason, yes, f"Cancel workflow {workflow_id}")

    def call() -> WorkflowActionResult:
        from powertools_core.workflows.operate import cancel_workflow

        return cancel_workflow(settings, workflow_id, actor=who, reason=reason)

    out.run(call)


@app.command("retry")
@common.returns(WorkflowActionResult)
def retry_command(
    workflow_id: WorkflowId,
    step: StepOpt = None,
    actor: Actor = None,
    reason: Reason = None,
    yes: Yes = False,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Retry failed steps (discarded or cancelled) and re-open the steps they cancelled
    (audited).

    Examples:

    $ powertools workflow retry 42 --actor alice --reason "upstream fixed" --yes

    $ powertools workflow retry 42 --step fetch --actor alice --reason "retry the fetch" --yes
    """
    out = common.output("workflow retry", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)
    who = _guard(out, settings, actor, reason, yes, f"Retry workflow {workflow_id}")

    def call() -> WorkflowActionResult:
        from powertools_core.workflows.operate import retry_workflow

        return retry_workflow(settings, workflow_id, step=step, actor=who, reason=reason)

    out.run(call)


@app.command("signal")
@common.returns(SignalResult)
def signal_command(
    target: Target,
    name: SignalName,
    payload: Payload = None,
    dedupe_key: DedupeKey = None,
    by_key: ByKey = False,
    actor: Actor = None,
    reason: Reason = None,
    yes: Yes = False,
    dry_run: DryRun = False,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Send a signal to a durable job (audited): it is kept until a step awaiting NAME takes
    it, and wakes the job now if it is parked on NAME. A repeat with the same --dedupe-key is
    a no-op.

    Examples:

    $ powertools workflow signal order-17 approved --payload '{"by": "alice"}' --actor alice
    --reason "approved by phone" --yes

    $ powertools workflow signal 4211 approved --dry-run
    """
    import json

    from powertools_core.errors import InvalidInput
    from powertools_core.workflows.signals import check_request

    out = common.output("workflow signal", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)
    try:
        value = None if payload is None else json.loads(payload)
    except json.JSONDecodeError as exc:
        out.fail(InvalidInput(f"--payload is not valid JSON: {exc}", hint="e.g. --payload '{}'"))
    try:
        check_request(target, name, value, dedupe_key=dedupe_key, by_key=by_key)
    except InvalidInput as exc:
        out.fail(exc)
    who = None if dry_run else _guard(out, settings, actor, reason, yes, f"Signal {target}")

    def call() -> SignalResult:
        from powertools_core.db.connection import resolve_url
        from powertools_core.workflows.signals import signal_command as send

        return send(
            resolve_url(settings),
            settings.prefix,
            target,
            name,
            value,
            dedupe_key=dedupe_key,
            actor=who or "",
            reason=" ".join((reason or "").split()),
            dry_run=dry_run,
            by_key=by_key,
        )

    out.run(call)
