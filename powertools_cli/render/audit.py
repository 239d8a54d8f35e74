"""Terminal rendering of ``powertools audit list`` (JSON carries before/after in full)."""

from __future__ import annotations

from rich.console import Console

from powertools_cli.render.ansi import renders
from powertools_cli.render.ops import AUDIT_HEADERS, audit_rows, filter_text, grid
from powertools_core.ops.results import AuditListResult


@renders(AuditListResult)
def _audit_list(result: AuditListResult, console: Console) -> None:
    console.print(
        f"filter: {filter_text(result.filter) if result.filter else 'all events'}", markup=False
    )
    if not result.events:
        console.print("no audit events match", style="dim")
        return
    grid(console, AUDIT_HEADERS, audit_rows(result.events))
    if result.next_cursor:
        console.print(f"next page: --cursor {result.next_cursor}", markup=False)
