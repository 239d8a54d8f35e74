"""``powertools worker run``: the worker runtime as a command."""

from __future__ import annotations

from typing import Annotated

import typer

from powertools_cli.commands import common
from powertools_cli.options import (
    App,
    DatabaseUrl,
    Format,
    NoColor,
    OutputFormat,
    Prefix,
    Quiet,
    Verbose,
)
from powertools_core.runtime.config import parse_duration
from powertools_core.runtime.run import WorkerRunResult, build_config, run_worker

app = typer.Typer(
    name="worker",
    help="Run workers: fetch, execute and acknowledge jobs.\n\n"
    "Example: powertools worker run --app myapp.workers --queues default=10",
    no_args_is_help=True,
)

TUNING = "Tuning"


@app.command("run")
@common.returns(WorkerRunResult)
def run(
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queues",
            help="Queues and their concurrency per process, e.g. default=10,mailers=5 "
            "(default: `queues` in the config file, else every registered worker's queue at 10).",
            show_default=False,
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option("--processes", min=1, help="Worker processes (one event loop each)."),
    ] = 1,
    node: Annotated[
        str | None,
        typer.Option(
            "--node",
            help="Node name stored in attempted_by (default: $POWERTOOLS_NODE or the hostname).",
            show_default=False,
        ),
    ] = None,
    grace: Annotated[
        str, typer.Option("--grace", help="How long SIGTERM waits for running jobs, e.g. 30s.")
    ] = "30s",
    log_format: Annotated[
        str, typer.Option("--log-format", help="text or json (one object per line on stderr).")
    ] = "text",
    health_port: Annotated[
        int | None,
        typer.Option(
            "--health-port",
            help="Serve /livez and /readyz on 127.0.0.1:PORT (0 picks a free port).",
            show_default=False,
        ),
    ] = None,
    prefetch: Annotated[
        int | None,
        typer.Option(
            "--prefetch",
            min=0,
            help="Jobs claimed ahead per queue (default: the queue's concurrency).",
            show_default=False,
            rich_help_panel=TUNING,
        ),
    ] = None,
    poll_interval: Annotated[
        str,
        typer.Option("--poll-interval", help="Polling floor under NOTIFY.", rich_help_panel=TUNING),
    ] = "1s",
    heartbeat: Annotated[
        str,
        typer.Option("--heartbeat", help="Producer heartbeat interval.", rich_help_panel=TUNING),
    ] = "5s",
    rescue_after: Annotated[
        str,
        typer.Option(
            "--rescue-after",
            help="A producer silent this long is dead: its executing jobs are rescued.",
            rich_help_panel=TUNING,
        ),
    ] = "30s",
    orphan_after: Annotated[
        str,
        typer.Option(
            "--orphan-after",
            help="Rescue executing jobs of unknown producers (other runtimes) after this long.",
            rich_help_panel=TUNING,
        ),
    ] = "30m",
    election_interval: Annotated[
        str,
        typer.Option(
            "--election-interval",
            help="How often a non-leader tries to become leader.",
            rich_help_panel=TUNING,
        ),
    ] = "5s",
    app_modules: App = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Run workers until SIGTERM/SIGINT, then drain and exit 0.

    On SIGTERM it stops fetching, gives unstarted prefetched jobs back, waits up to --grace
    for running jobs and writes their outcomes; a second signal exits at once (the lifeline
    rescues what was running). Logs go to stderr; the summary goes to stdout at exit.

    Examples:

    $ powertools worker run --app myapp.workers

    $ powertools worker run --app myapp.workers --queues default=20,mailers=5 --processes 2

    $ powertools worker run --app myapp.workers --log-format json --health-port 8081
    """
    out = common.output("worker run", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix, app=app_modules)

    def call() -> object:
        from powertools_core.errors import InvalidInput

        if log_format not in ("text", "json"):
            raise InvalidInput(f"invalid --log-format {log_format!r}", hint="use text or json")
        config = build_config(
            settings,
            queues=queues,
            node=node,
            grace=parse_duration(grace, name="--grace"),
            log_format=log_format,
            log_level="warning" if quiet else ("debug" if verbose else "info"),
            health_port=health_port,
            prefetch=prefetch,
            poll_interval=parse_duration(poll_interval, name="--poll-interval"),
            heartbeat_interval=parse_duration(heartbeat, name="--heartbeat"),
            rescue_after=parse_duration(rescue_after, name="--rescue-after"),
            orphan_after=parse_duration(orphan_after, name="--orphan-after"),
            election_interval=parse_duration(election_interval, name="--election-interval"),
        )
        return run_worker(settings, config, processes=processes)

    out.run(call)  # type: ignore[arg-type]
