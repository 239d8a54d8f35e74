"""All terminal output goes through ``Output``: results to stdout, messages and progress to stderr.

Like Hatch's application object: commands never print directly, and ``fail`` is the one way an
error leaves the process (one line, the documented exit code, no traceback).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from powertools_cli.options import Format
from powertools_core.errors import PowertoolsError
from powertools_core.results import CommandResult, ErrorDetail, ErrorResult


class Output:
    def __init__(
        self,
        command: str,
        fmt: Format = Format.ansi,
        *,
        no_color: bool = False,
        verbose: int = 0,
        quiet: bool = False,
    ) -> None:
        self.command = command
        self.format = fmt
        self.verbose = verbose
        self.quiet = quiet
        # --no-color / NO_COLOR (any non-empty value, see no-color.org) mean plain text: no colour
        # and no other ANSI styling either, even when FORCE_COLOR or a terminal would allow it.
        self.plain = no_color or bool(os.environ.get("NO_COLOR"))
        styling: dict[str, Any] = {"no_color": True, "color_system": None} if self.plain else {}
        self.stdout = Console(highlight=False, emoji=False, **styling)
        self.stderr = Console(stderr=True, highlight=False, emoji=False, **styling)

    @property
    def json(self) -> bool:
        return self.format == Format.json

    # messages (stderr) -------------------------------------------------------------------
    def info(self, text: str) -> None:
        if not self.quiet:
            self.stderr.print(text, markup=False)

    def detail(self, text: str) -> None:
        if self.verbose and not self.quiet:
            self.stderr.print(text, markup=False, style="dim")

    def warn(self, text: str) -> None:
        if not self.quiet:
            self.stderr.print(f"warning: {text}", markup=False, style="yellow")

    # results (stdout) --------------------------------------------------------------------
    def emit(self, result: CommandResult) -> NoReturn:
        from powertools_cli.render import render

        render(result, self)
        raise typer.Exit(result.exit_status())

    def write_json(self, payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def fail(self, error: PowertoolsError) -> NoReturn:
        if self.json:
            self.write_json(
                ErrorResult(
                    command=self.command,
                    error=ErrorDetail(code=error.code, message=error.message, hint=error.hint),
                    exit_code=error.exit_code,
                ).to_json_dict()
            )
        self.stderr.print(f"error: {error.one_line()}", markup=False, style="red", soft_wrap=True)
        raise typer.Exit(error.exit_code)

    def run(self, call: Callable[[], CommandResult]) -> NoReturn:
        """Call core, render its result, map every expected error to its exit code."""
        try:
            result = call()
        except PowertoolsError as exc:
            self.fail(exc)
        except KeyboardInterrupt:
            self.stderr.print("interrupted", style="yellow")
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except Exception as exc:
            if self.verbose:
                traceback.print_exc()
            self.fail(
                PowertoolsError(
                    f"internal error: {type(exc).__name__}: {exc}",
                    hint="this is a bug in powertools; rerun with -v for the traceback and "
                    "report it",
                )
            )
        self.emit(result)

    # progress (stderr) -------------------------------------------------------------------
    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A live bar on stderr when it is a terminal; ``advance(n)`` either way."""
        if self.quiet or not self.stderr.is_terminal:
            yield lambda n: None
            return
        bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.stderr,
            transient=True,
        )
        with bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)
