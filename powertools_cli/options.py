"""Options shared by every command, accepted after the command name.

Each command declares the ones that apply to it with these aliases, then builds its
``Output`` and ``Settings`` through :func:`context`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class Format(StrEnum):
    ansi = "ansi"
    json = "json"


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL. Default: $POWERTOOLS_DATABASE_URL, $DATABASE_URL, the config file, "
        "else the embedded server. E.g. postgresql://app@localhost/app",
        show_default=False,
        rich_help_panel="Connection",
    ),
]
Prefix = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        help="Schema holding oban_jobs (default: $POWERTOOLS_PREFIX or public). E.g. app_jobs",
        show_default=False,
        rich_help_panel="Connection",
    ),
]
App = Annotated[
    list[str] | None,
    typer.Option(
        "--app",
        help="Module(s) that define your workers (default: $POWERTOOLS_APP or the config file). "
        "Repeat or comma-separate. E.g. --app myapp.workers",
        show_default=False,
        rich_help_panel="Connection",
    ),
]
OutputFormat = Annotated[
    Format,
    typer.Option(
        "--format",
        "-f",
        help="ansi for people, json for scripts (one object on stdout).",
        case_sensitive=False,
        rich_help_panel="Output",
    ),
]
NoColor = Annotated[
    bool,
    typer.Option(
        "--no-color",
        help="Plain output without colour (also: NO_COLOR=1).",
        rich_help_panel="Output",
    ),
]
Verbose = Annotated[
    int,
    typer.Option(
        "--verbose", "-v", count=True, help="More detail on stderr.", rich_help_panel="Output"
    ),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Only errors on stderr.", rich_help_panel="Output"),
]
Actor = Annotated[
    str | None,
    typer.Option(
        "--actor",
        help="Who is acting, recorded in the audit trail (default: $POWERTOOLS_ACTOR). E.g. alice",
        show_default=False,
        rich_help_panel="Audit",
    ),
]
Reason = Annotated[
    str | None,
    typer.Option(
        "--reason",
        help="Why, recorded in the audit trail (at least 8 characters).",
        show_default=False,
        rich_help_panel="Audit",
    ),
]
