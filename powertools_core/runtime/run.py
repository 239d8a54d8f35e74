"""``powertools worker run``: startup checks, then one runtime per process.

Everything that can be wrong before a job runs is checked here and reported as one
``PowertoolsError`` (exit 2): an app module that does not import, no registered workers, a
malformed queue spec, an unreachable database, a schema without powertools' tables.
With ``processes > 1`` the parent starts that many child processes (spawned: each has its own
interpreter, event loop and connections), forwards SIGTERM/SIGINT to them, serves the health
port for all of them, and exits 0 when every child drained cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from pydantic import Field

from powertools_core.config import Settings
from powertools_core.db.connection import connect, resolve_url
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput, PowertoolsError, SchemaNotInstalled
from powertools_core.results import CommandResult
from powertools_core.runtime import queries
from powertools_core.runtime.base import log
from powertools_core.runtime.config import RuntimeConfig, default_node, default_queues, parse_queues
from powertools_core.runtime.health import HealthServer
from powertools_core.runtime.logs import setup_logging
from powertools_core.runtime.supervisor import Runtime
from powertools_core.workers import load_app


class WorkerRunResult(CommandResult):
    """What ``worker run`` reports after it has drained and stopped."""

    node: str = Field(description="node name written to attempted_by[1]")
    prefix: str = Field(description="schema that holds oban_jobs")
    queues: dict[str, int] = Field(description="queue name -> concurrency per process")
    processes: int = Field(description="worker processes that ran")
    jobs_started: int = Field(default=0, description="attempts started (all processes)")
    acked: int = Field(default=0, description="outcomes written to oban_jobs")
    stale_acks: int = Field(
        default=0, description="outcomes ignored because the job was rescued or changed meanwhile"
    )
    released: int = Field(
        default=0, description="prefetched jobs given back (available) at shutdown"
    )
    left_running: int = Field(
        default=0, description="jobs still running when --grace ran out (left to the lifeline)"
    )
    uptime_s: float = Field(default=0.0, description="seconds the runtime ran")


def check_schema(url: str, prefix: str) -> None:
    """Raise ``SchemaNotInstalled`` unless oban_jobs and powertools' tables are there."""
    with connect(url, autocommit=True) as conn:
        row = conn.execute(
            queries.SCHEMA_PRESENT,
            {
                "jobs": qualify("{prefix}.oban_jobs", prefix),
                "producers": qualify("{prefix}.powertools_producers", prefix),
            },
        ).fetchone()
    if not row or not row[0] or not row[1]:
        raise SchemaNotInstalled(
            f"schema {prefix!r} has no powertools job tables",
            hint="run `powertools install`" + (f" --prefix {prefix}" if prefix != "public" else ""),
        )


def build_config(
    settings: Settings,
    *,
    queues: Sequence[str] | None = None,
    node: str | None = None,
    **tuning: Any,
) -> RuntimeConfig:
    """Import the app, resolve queues and the database, check the schema: all before running."""
    registered = load_app(settings.app)
    if not registered:
        raise InvalidInput(
            "no workers registered",
            hint="pass --app MODULE (or set POWERTOOLS_APP / app in the config file) naming the "
            "module(s) that define your Worker classes",
        )
    if queues:
        queue_map = parse_queues(queues)
    else:
        queue_map = default_queues(settings.queues, (w.queue for w in registered.values()))
        if settings.queues:
            parse_queues(",".join(f"{q}={n}" for q, n in queue_map.items()))
    url = resolve_url(settings)
    check_schema(url, settings.prefix)
    values = {k: v for k, v in tuning.items() if v is not None}
    return RuntimeConfig(
        url=url,
        prefix=settings.prefix,
        queues=queue_map,
        node=node or settings.node or default_node(),
        **values,
    )


def freeze_startup_heap() -> None:
    """Move what exists once the app is imported (modules, classes, config) out of the
    collector's sight: a worker's full collections then walk only what jobs allocate, not the
    whole startup heap (about 15% of a no-op drain's time otherwise). Garbage already unreachable
    is collected first, so nothing is pinned that was about to be freed."""
    gc.collect()
    gc.freeze()


def run_worker(settings: Settings, config: RuntimeConfig, *, processes: int = 1) -> WorkerRunResult:
    """Run until SIGTERM/SIGINT, drain, and report."""
    setup_logging(config.log_format, config.log_level)
    if processes < 1:
        raise InvalidInput("--processes must be at least 1")
    if processes == 1:
        freeze_startup_heap()
        stats = run_loop(_serve(config, None, settings))
    else:
        stats = _run_children(settings, config, processes)
    return _result(config, stats, processes)


def event_loop_name() -> str:
    """``uvloop`` when installed (unless ``POWERTOOLS_UVLOOP=0``), else ``asyncio``."""
    if os.environ.get("POWERTOOLS_UVLOOP", "1") == "0":
        return "asyncio"
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def run_loop(main: Any) -> Any:
    """``asyncio.run`` on the fastest available event loop (uvloop cuts the loop's own per-job
    overhead; it is optional: ``pip install uvloop``)."""
    if event_loop_name() == "uvloop":
        return importlib.import_module("uvloop").run(main)
    return asyncio.run(main)


def _result(config: RuntimeConfig, stats: dict[str, Any], processes: int) -> WorkerRunResult:
    return WorkerRunResult(
        command="worker run",
        node=config.node,
        prefix=config.prefix,
        queues=dict(config.queues),
        processes=processes,
        **{k: stats.get(k, 0) for k in ("jobs_started", "acked", "stale_acks", "released")},
        left_running=stats.get("left_running", 0),
        uptime_s=stats.get("uptime_s", 0.0),
    )


async def _serve(
    config: RuntimeConfig,
    ready: Any,
    settings: Settings | None,
    signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
) -> dict[str, Any]:
    runtime = Runtime(config, settings=settings)

    def started() -> None:
        if ready is not None:
            ready.set()
        if _early_term:
            runtime.request_stop()

    await runtime.run(signals=signals, on_started=started)
    return runtime.stats()


# --processes N ---------------------------------------------------------------------------


_early_term = False


def _note_term(signum: int, frame: Any) -> None:
    """SIGTERM before the runtime's own handler is installed: stop right after starting."""
    global _early_term
    _early_term = True


def _child_main(config_dict: dict[str, Any], settings: Settings, ready: Any, out: Any) -> None:
    signal.signal(signal.SIGTERM, _note_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    load_app(settings.app)
    config = RuntimeConfig(**config_dict)
    setup_logging(config.log_format, config.log_level)
    freeze_startup_heap()
    stats = run_loop(_serve(config, ready, settings, (signal.SIGTERM,)))
    out.put(stats)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_children(settings: Settings, config: RuntimeConfig, processes: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.SimpleQueue()
    child_config = replace(config, health_port=None)
    readies = [ctx.Event() for _ in range(processes)]
    children = [
        ctx.Process(
            target=_child_main,
            args=(asdict(child_config), settings, readies[i], out),
            name=f"powertools-worker-{i + 1}",
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    log.info("started %d worker processes: %s", processes, ", ".join(str(c.pid) for c in children))
    asyncio.run(_supervise(children, readies, config.health_port))
    totals: dict[str, Any] = {}
    while not out.empty():
        for key, value in out.get().items():
            totals[key] = totals.get(key, 0) + value
    failed = [
        c
        for c, ready in zip(children, readies, strict=True)
        if c.exitcode not in (0, None)
        # Terminated while still starting up (before it claimed anything): not a failure.
        and not (c.exitcode == -signal.SIGTERM and not ready.is_set())
    ]
    if failed:
        codes = ", ".join(f"pid {c.pid} exited {c.exitcode}" for c in failed)
        raise PowertoolsError(
            f"{len(failed)} of {processes} worker processes failed ({codes})",
            hint="see the log lines above; jobs they were running are rescued by the lifeline",
        )
    return totals


async def _supervise(children: list[Any], readies: list[Any], health_port: int | None) -> None:
    loop = asyncio.get_running_loop()
    signals = 0

    def forward(sig: int) -> None:
        nonlocal signals
        signals += 1
        for child in children:
            if child.is_alive() and child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
        if signals > 1:
            os._exit(128 + sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, forward, sig)
    health = None
    if health_port is not None:

        def ready() -> bool:
            return all(c.is_alive() for c in children) and all(r.is_set() for r in readies)

        health = HealthServer(health_port, ready)
        await health.start()
    try:
        while any(c.is_alive() for c in children):
            await asyncio.sleep(0.1)
            if signals == 0 and any(c.exitcode not in (None, 0) for c in children):
                log.error("a worker process died; stopping the others")
                forward(signal.SIGTERM)
    finally:
        if health is not None:
            await health.stop()
    for child in children:
        child.join()
