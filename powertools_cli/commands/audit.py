"""``powertools audit``: read the operator audit trail (append-only; nothing here changes it)."""

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
from powertools_core import ops
from powertools_core.ops.results import AuditListResult

app = typer.Typer(
    name="audit",
    help="Read the audit trail: who changed what, when, why, and what it was before.\n\n"
    "Example: powertools audit list --since 2h",
    no_args_is_help=True,
)


@app.command("list")
@common.returns(AuditListResult)
def list_command(
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only this actor.", show_default=False)
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            help="Only this action, e.g. ops.retry; a trailing * matches a prefix (ops.*).",
            show_default=False,
        ),
    ] = None,
    job: Annotated[
        int | None, typer.Option("--job", help="Only events about this job id.", show_default=False)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only newer events: an age (30m, 2h, 7d) or an ISO-8601 UTC time.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Events per page (1-10000).", min=1, max=10_000)
    ] = 50,
    cursor: Annotated[
        str | None,
        typer.Option(
            "--cursor", help="Continue after a page (its next_cursor).", show_default=False
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """List audit events, newest first (before/after shown in JSON; secrets redacted).

    Examples:

    $ powertools audit list --since 2h

    $ powertools audit list --actor alice --action 'ops.*' --format json

    $ powertools audit list --job 81234
    """
    out = common.output("audit list", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)
    out.run(
        lambda: ops.audit_list(
            settings,
            actor=actor,
            action=action,
            job_id=job,
            since=since,
            cursor=cursor,
            limit=limit,
        )
    )
