"""Terminal rendering: a renderer per result type, plus the few shared building blocks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import singledispatch
from typing import Any, TypeVar

from rich import box
from rich.console import Console
from rich.table import Table

from powertools_core.results import CommandResult

R = TypeVar("R", bound=CommandResult)


@singledispatch
def render_ansi(result: CommandResult, console: Console) -> None:
    """Fallback: key/value lines of the model (every result type should register its own)."""
    key_values(console, [(k, v) for k, v in result.to_json_dict().items() if k != "schema_version"])


def renders(cls: type[R]) -> Callable[[Callable[[R, Console], None]], Callable[[R, Console], None]]:
    def register(fn: Callable[[R, Console], None]) -> Callable[[R, Console], None]:
        render_ansi.register(cls)(fn)
        return fn

    return register


def key_values(console: Console, rows: Iterable[tuple[str, Any]]) -> None:
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, "-" if value is None or value == "" else str(value))
    console.print(table)


def table(
    console: Console,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
) -> None:
    t = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False)
    for h in headers:
        t.add_column(h, overflow="fold")
    for row in rows:
        t.add_row(*["-" if v is None else str(v) for v in row])
    console.print(t)


def status_style(status: str) -> str:
    return {
        "ok": "green",
        "completed": "green",
        "done": "green",
        "warning": "yellow",
        "skipped": "yellow",
        "error": "red",
        "failed": "red",
        "discarded": "red",
    }.get(status, "")
