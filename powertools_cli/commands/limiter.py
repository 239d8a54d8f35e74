"""``powertools limiter``: see, explain, simulate and pause concurrency and rate limits."""

from __future__ import annotations

from typing import Annotated, Any

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
from powertools_cli.output import Output
from powertools_core.config import Settings
from powertools_core.limits.glossary import GLOSSARY
from powertools_core.limits.results import (
    SimulateResult,
)

app = typer.Typer(
    name="limiter",
    help="Concurrency and rate limits: list them, explain why work is blocked, simulate a "
    "bucket, pause a limit.\n\nExample: powertools limiter explain --job 81234",
    no_args_is_help=True,
)


def _load_workers(out: Output, settings: Settings) -> None:
    from powertools_core.errors import PowertoolsError
    from powertools_core.workers import load_app

    try:
        load_app(settings.app)
    except PowertoolsError as exc:
        out.fail(exc)


def _resolve_worker(name: str) -> type[Any]:
    from powertools_core.workers import resolve

    return resolve(name)


SIMULATE_HELP = f"""Replay requests through a worker's rate limit and print each verdict.

Touches nothing: no connection is opened, nothing is written, no NOTIFY, no telemetry. The
bucket starts full at --start (default: now); requests come --every apart. The worker's declared
rate limit is used, with any of --bucket-capacity, --bucket-span, --weight, --partition
overriding it (overrides alone are enough for a worker that declares none). Partitioned or
weight_by limits need --args (or --partition / --weight).

Examples:

$ powertools limiter simulate SendEmail --count 5 --app myapp.workers

$ powertools limiter simulate Charge --count 20 --every 100ms --args '{{"account": 7}}'

$ powertools limiter simulate Sync --bucket-capacity 3 --bucket-span 1s --count 4 --format json

{GLOSSARY}"""


@app.command("simulate", help=SIMULATE_HELP)
@common.returns(SimulateResult)
def simulate_command(
    worker: Annotated[
        str, typer.Argument(help="Worker import path, or its class name if unambiguous.")
    ],
    count: Annotated[int, typer.Option("--count", "-n", help="How many requests.")] = 1,
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            help="Time between requests, e.g. 100ms (default 0s: a burst).",
            show_default=False,
        ),
    ] = None,
    args: Annotated[
        str | None,
        typer.Option(
            "--args",
            help='The job\'s args as JSON, e.g. \'{"tenant": "acme"}\'.',
            show_default=False,
        ),
    ] = None,
    bucket_capacity: Annotated[
        int | None,
        typer.Option(
            "--bucket-capacity", help="Override: tokens the bucket holds.", show_default=False
        ),
    ] = None,
    bucket_span: Annotated[
        str | None,
        typer.Option(
            "--bucket-span",
            help="Override: refill time from empty to full, e.g. 1s.",
            show_default=False,
        ),
    ] = None,
    weight: Annotated[
        int | None,
        typer.Option("--weight", help="Override: tokens per request.", show_default=False),
    ] = None,
    partition: Annotated[
        str | None,
        typer.Option("--partition", help="Override: the partition key.", show_default=False),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            help="Time of the first request (ISO-8601, UTC by default).",
            show_default=False,
        ),
    ] = None,
    app_modules: App = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    out = common.output("limiter simulate", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix, app=app_modules)
    _load_workers(out, settings)

    def call() -> SimulateResult:
        from powertools_core.limits.simulate import parse_args_json, parse_time, simulate

        parsed = parse_args_json(args)
        begin = parse_time(start, what="--start") if start is not None else None
        return simulate(
            _resolve_worker(worker),
            count=count,
            every=every,
            args=parsed,
            bucket_capacity=bucket_capacity,
            bucket_span=bucket_span,
            weight=weight,
            partition=partition,
            start=begin,
        )

    out.run(call)
