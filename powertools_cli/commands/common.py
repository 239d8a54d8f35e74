"""Turning the shared options into an ``Output`` and core ``Settings`` (errors rendered)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from powertools_cli.options import Format
from powertools_cli.output import Output
from powertools_core.config import Settings, load_settings
from powertools_core.errors import PowertoolsError
from powertools_core.results import CommandResult

F = TypeVar("F", bound=Callable[..., Any])

# Command function -> the result model(s) its JSON output is. Filled by ``returns``; read by
# ``powertools_cli.generate`` to write the JSON OUTPUT section of each man page.
RESULT_MODELS: dict[Callable[..., Any], tuple[type[CommandResult], ...]] = {}


def returns(*models: type[CommandResult]) -> Callable[[F], F]:
    """Declare what a command prints with ``--format json`` (one model, or one per mode).

    Example::

        @app.command("status")
        @common.returns(DbResult)
        def status(...) -> None: ...
    """

    def register(fn: F) -> F:
        RESULT_MODELS[fn] = models
        return fn

    return register


def result_models(callback: Callable[..., Any] | None) -> tuple[type[CommandResult], ...]:
    """The models declared for a command callback (Typer wraps callbacks; this unwraps)."""
    if callback is None:
        return ()
    return RESULT_MODELS.get(inspect.unwrap(callback), ())


def output(
    command: str,
    fmt: Format = Format.ansi,
    no_color: bool = False,
    verbose: int = 0,
    quiet: bool = False,
) -> Output:
    return Output(command, fmt, no_color=no_color, verbose=verbose, quiet=quiet)


def settings(
    out: Output,
    *,
    database_url: str | None = None,
    prefix: str | None = None,
    app: list[str] | None = None,
    actor: str | None = None,
) -> Settings:
    """Resolve settings; a bad prefix or config file fails here, before any SQL."""
    try:
        return load_settings(database_url=database_url, prefix=prefix, app=app, actor=actor)
    except PowertoolsError as exc:
        out.fail(exc)


def abort(out: Output, error: PowertoolsError) -> NoReturn:
    out.fail(error)
