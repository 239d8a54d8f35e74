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


SHORT_CELL = 24
"""Columns whose cells are all at most this long never wrap: ids, states, times, names."""
COLUMN_GAP = 3
"""Width a column costs besides its text (padding and separator), rounded up."""
MIN_FLEX = 8
"""Narrower than this a free-text column says nothing; then every column shrinks instead."""


def table(
    console: Console,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    flex: Sequence[str] = (),
) -> None:
    """A table that stays readable in 80 columns: short columns never wrap; the ``flex``
    columns (free text such as args or a reason) stay on one line and give up width to fit,
    the first named first, down to an ellipsis; any other long column wraps."""
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [
        max([len(h), *(len(row[i]) for row in cells if i < len(row))])
        for i, h in enumerate(headers)
    ]
    excess = sum(widths) + COLUMN_GAP * (len(headers) - 1) - console.width
    squeezable = [headers.index(h) for h in flex if h in headers]
    for i in squeezable:
        cut = max(0, min(excess, widths[i] - MIN_FLEX))
        widths[i] -= cut
        excess -= cut
    t = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False
    )
    for i, h in enumerate(headers):
        if i in squeezable:
            t.add_column(h, no_wrap=True, overflow="ellipsis", max_width=widths[i])
        elif widths[i] <= SHORT_CELL:
            t.add_column(h, no_wrap=True, overflow="ellipsis")
        else:
            t.add_column(h, overflow="fold")
    for row in cells:
        t.add_row(*row)
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
