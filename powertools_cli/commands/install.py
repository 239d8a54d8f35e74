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
from powertools_core.migrate import InstallResult, install


@common.returns(InstallResult)
def install_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the SQL that would run; change nothing.")
    ] = False,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Create Oban's job tables (when absent) and apply powertools' migrations.

    Safe to run again (it says "already up to date") and from several processes at once.
    On a database where Elixir Oban or oban-py already created oban_jobs, Oban's objects
    are left exactly as they are.

    Examples:

    $ powertools install

    $ powertools install --prefix app_jobs --database-url postgresql://app@db/app

    $ powertools install --dry-run > install.sql
    """
    out = common.output("install", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix)
    out.run(lambda: install(settings, dry_run=dry_run))
