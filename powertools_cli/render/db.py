from __future__ import annotations

from rich.console import Console

from powertools_cli.render.ansi import key_values, renders
from powertools_core.db.embedded import DbResult


@renders(DbResult)
def _db(result: DbResult, console: Console) -> None:
    if result.command == "db url":
        console.print(result.url or "", markup=False, soft_wrap=True)
        return
    if result.command == "db path":
        console.print(result.path, markup=False, soft_wrap=True)
        return
    state = "running" if result.running else ("stopped" if result.initialised else "not created")
    key_values(
        console,
        [
            ("embedded server", state),
            ("data directory", result.path),
            ("PostgreSQL", result.server_version),
            ("pid", result.pid),
            ("url", result.url),
        ],
    )
    if result.in_use_note:
        console.print(f"note: {result.in_use_note}", style="dim", markup=False)
