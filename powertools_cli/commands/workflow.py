"""``powertools workflow``: list workflows and show one as a dependency tree.

Parsing only; the queries live in ``powertools_core.workflows.actions``.
"""

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
from powertools_core.workflows.results import WorkflowListResult, WorkflowShowResult

app = typer.Typer(
    name="workflow",
    help="Workflows (DAGs of jobs): list them and show one step by step with its blockers."
    "\n\nExample: powertools workflow show 42",
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
