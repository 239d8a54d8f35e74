"""``powertools limiter``: see, explain, simulate and pause concurrency and rate limits."""

from __future__ import annotations

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
from powertools_core.limits.glossary import GLOSSARY
from powertools_core.limits.results import (
    CooldownResult,
    ExplainResult,
    ListResult,
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


EXPLAIN_HELP = f"""Say whether a limit, a worker or a job is blocked now, why, and until when.

Read-only. Give exactly one of NAME (a limit; --partition KEY for one partition of a
partitioned limit), --worker W (with --args JSON when its limits are partitioned or weighted), or
--job ID. For a job every reason counts: limits, cooldowns, concurrency, a queue no live worker
serves or whose producers are paused, a schedule in the future, attempts used up. Each blocker has
a code, a summary, retry_at (when it clears, if known) and details. Exit 0 whether blocked or not;
2 on bad input.

Examples:

$ powertools limiter explain stripe --partition acme

$ powertools limiter explain --worker Charge --args '{{"account": 7}}' --app myapp.workers

$ powertools limiter explain --job 81234 --format json

{GLOSSARY}"""


@app.command("explain", help=EXPLAIN_HELP)
@common.returns(ExplainResult)
def explain_command(
    name: Annotated[str | None, typer.Argument(help="A limit name.", show_default=False)] = None,
    partition: Annotated[
        str | None,
        typer.Option("--partition", help="One partition of the limit.", show_default=False),
    ] = None,
    worker: Annotated[
        str | None,
        typer.Option("--worker", help="A worker (import path or class name).", show_default=False),
    ] = None,
    args: Annotated[
        str | None,
        typer.Option("--args", help="The worker's job args as JSON.", show_default=False),
    ] = None,
    job: Annotated[int | None, typer.Option("--job", help="A job id.", show_default=False)] = None,
    app_modules: App = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    out = common.output("limiter explain", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix, app=app_modules)
    _load_workers(out, settings)

    def call() -> ExplainResult:
        from powertools_core.limits.explain import explain
        from powertools_core.limits.simulate import parse_args_json

        parsed = parse_args_json(args) if args is not None else None
        cls = _resolve_worker(worker) if worker is not None else None
        return explain(
            settings, name=name, partition=partition, worker=cls, args=parsed, job_id=job
        )

    out.run(call)


@app.command("list")
@common.returns(ListResult)
def list_command(
    top: Annotated[
        int, typer.Option("--top", help="Busiest partitions shown per limit (0-1000).")
    ] = 5,
    app_modules: App = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """List every limit: its configuration, its busiest partitions and the jobs waiting for it.

    Read-only. Limits recorded by running workers are always shown; pass --app to include limits
    declared in code that no worker has recorded yet.

    Examples:

    $ powertools limiter list

    $ powertools limiter list --top 20 --format json --app myapp.workers
    """
    out = common.output("limiter list", fmt, no_color, verbose, quiet)
    settings = common.settings(out, database_url=database_url, prefix=prefix, app=app_modules)
    _load_workers(out, settings)

    def call() -> ListResult:
        from powertools_core.limits.explain import list_limits

        return list_limits(settings, top=top)

    out.run(call)


@app.command("cooldown")
@common.returns(CooldownResult)
def cooldown_command(
    name: Annotated[str, typer.Argument(help="The limit to hold.")],
    partition: Annotated[
        str | None,
        typer.Option("--partition", help="Hold only this partition.", show_default=False),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="End of the hold (ISO-8601, UTC by default).", show_default=False
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option("--for", help="Length of the hold, e.g. 10m or 2h.", show_default=False),
    ] = None,
    actor: Actor = None,
    reason: Reason = None,
    app_modules: App = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Put a limit (or one partition) on hold: nothing it covers is admitted until the hold ends.

    Give --until TIME or --for DURATION. Recorded in the audit trail with --actor and --reason;
    running workers notice within a second.

    Examples:

    $ powertools limiter cooldown stripe --for 10m --actor alice --reason "Stripe returns 429"

    $ powertools limiter cooldown stripe --partition acme --until 2026-01-01T18:00:00Z
    --actor alice --reason "tenant asked us to pause"
    """
    out = common.output("limiter cooldown", fmt, no_color, verbose, quiet)
    settings = common.settings(
        out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
    )
    _load_workers(out, settings)

    def call() -> CooldownResult:
        from powertools_core.limits.cooldown import cooldown
        from powertools_core.limits.declarations import parse_named_duration
        from powertools_core.limits.simulate import parse_time

        return cooldown(
            settings,
            name,
            partition=partition,
            until=parse_time(until, what="--until") if until is not None else None,
            duration=parse_named_duration(duration, "--for") if duration is not None else None,
            actor=actor,
            reason=reason,
        )

    out.run(call)


@app.command("resume")
@common.returns(CooldownResult)
def resume_command(
    name: Annotated[str, typer.Argument(help="The limit to release.")],
    partition: Annotated[
        str | None,
        typer.Option("--partition", help="Release only this partition.", show_default=False),
    ] = None,
    actor: Actor = None,
    reason: Reason = None,
    app_modules: App = None,
    database_url: DatabaseUrl = None,
    prefix: Prefix = None,
    fmt: OutputFormat = Format.ansi,
    no_color: NoColor = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Lift a hold: the whole limit and all its partitions, or only --partition. Audited.

    Example:

    $ powertools limiter resume stripe --actor alice --reason "Stripe recovered, 200s again"
    """
    out = common.output("limiter resume", fmt, no_color, verbose, quiet)
    settings = common.settings(
        out, database_url=database_url, prefix=prefix, app=app_modules, actor=actor
    )
    _load_workers(out, settings)

    def call() -> CooldownResult:
        from powertools_core.limits.cooldown import resume

        return resume(settings, name, partition=partition, actor=actor, reason=reason)

    out.run(call)
