from __future__ import annotations

from rich.console import Console

from powertools_cli.render.ansi import key_values, renders
from powertools_core.runtime.run import WorkerRunResult


@renders(WorkerRunResult)
def _worker_run(result: WorkerRunResult, console: Console) -> None:
    key_values(
        console,
        [
            ("node", result.node),
            ("schema", result.prefix),
            ("queues", ", ".join(f"{q}={n}" for q, n in result.queues.items())),
            ("processes", result.processes),
            ("jobs run", result.jobs_started),
            ("outcomes written", result.acked),
            ("stale acks ignored", result.stale_acks),
            ("released on drain", result.released),
            ("left to the lifeline", result.left_running),
            ("uptime", f"{result.uptime_s:.1f}s"),
        ],
    )
    console.print("stopped", style="green")
