from __future__ import annotations

import typer

from powertools_cli.commands import common
from powertools_cli.options import Format, NoColor, OutputFormat, Quiet, Verbose
from powertools_core.db import embedded

app = typer.Typer(
    name="db",
    help="Manage the embedded PostgreSQL server used when no database is configured.\n\n"
    "Example: powertools db status",
    no_args_is_help=True,
)


def _run(
    command: str, call: object, fmt: Format, no_color: bool, verbose: int, quiet: bool
) -> None:
    out = common.output(command, fmt, no_color, verbose, quiet)
    settings = common.settings(out)
    assert callable(call)
    out.run(lambda: call(settings))


@app.command("status")
@common.returns(embedded.DbResult)
def status(
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Show whether the embedded server exists and runs (starts nothing).

    Example: powertools db status --format json
    """
    _run("db status", embedded.db_status, fmt, no_color, verbose, quiet)


@app.command("start")
@common.returns(embedded.DbResult)
def start(
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Create (first time) and start the embedded server; commands also do this on demand.

    Example: powertools db start
    """
    _run("db start", embedded.db_start, fmt, no_color, verbose, quiet)


@app.command("stop")
@common.returns(embedded.DbResult)
def stop(
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Stop the embedded server (its data is kept; the next command starts it again).

    Example: powertools db stop
    """
    _run("db stop", embedded.db_stop, fmt, no_color, verbose, quiet)


@app.command("url")
@common.returns(embedded.DbResult)
def url(
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Print the embedded server's connection URL (starting it if needed).

    Example: psql "$(powertools db url)"
    """
    _run("db url", embedded.db_url, fmt, no_color, verbose, quiet)


@app.command("path")
@common.returns(embedded.DbResult)
def path(
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Print the embedded server's data directory (POWERTOOLS_HOME moves it).

    Example: du -sh "$(powertools db path)"
    """
    _run("db path", embedded.db_path, fmt, no_color, verbose, quiet)
