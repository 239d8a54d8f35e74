"""Turning the shared options into an ``Output`` and core ``Settings`` (errors rendered)."""

from __future__ import annotations

from typing import NoReturn

from powertools_cli.options import Format
from powertools_cli.output import Output
from powertools_core.config import Settings, load_settings
from powertools_core.errors import PowertoolsError


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
