"""One entry point: ``render(result, out)``. JSON is the result model itself; ANSI is drawn by
the renderer registered for the result's type (one module per command group)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from powertools_cli.render import ansi
from powertools_cli.render import archive as _archive  # noqa: F401
from powertools_cli.render import audit as _audit  # noqa: F401
from powertools_cli.render import cron as _cron  # noqa: F401
from powertools_cli.render import db as _db  # noqa: F401  (registers renderers)
from powertools_cli.render import doctor as _doctor  # noqa: F401
from powertools_cli.render import install as _install  # noqa: F401
from powertools_cli.render import limiter as _limiter  # noqa: F401
from powertools_cli.render import ops as _ops  # noqa: F401
from powertools_cli.render import worker as _worker  # noqa: F401
from powertools_cli.render import workflow as _workflow  # noqa: F401

if TYPE_CHECKING:
    from powertools_cli.output import Output
    from powertools_core.results import CommandResult


def render(result: CommandResult, out: Output) -> None:
    if out.json:
        out.write_json(result.to_json_dict())
    else:
        ansi.render_ansi(result, out.stdout)
