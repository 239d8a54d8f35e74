from __future__ import annotations

from rich.console import Console

from powertools_cli.render.ansi import key_values, renders
from powertools_core.migrate import InstallResult


@renders(InstallResult)
def _install(result: InstallResult, console: Console) -> None:
    if result.dry_run:
        if result.up_to_date:
            console.print(
                f"-- schema {result.prefix} is already up to date; nothing would run",
                markup=False,
            )
        else:
            console.print(
                f"-- powertools install --dry-run: SQL for schema {result.prefix} "
                f"at {result.database}",
                markup=False,
                soft_wrap=True,
            )
            console.print(result.sql or "", markup=False, highlight=False, soft_wrap=True)
        return
    oban = result.oban
    if oban.action == "created":
        oban_line = f"created (Oban v{oban.version})"
    else:
        version = f"v{oban.version}" if oban.version is not None else "unknown version"
        oban_line = f"found existing oban_jobs ({version}), left unchanged"
        if oban.missing_tables:
            oban_line += f"; missing: {', '.join(oban.missing_tables)}"
    if result.applied:
        migrations = f"applied {', '.join(result.applied)} (now at {result.revision_after})"
    else:
        migrations = f"already up to date (at {result.revision_after})"
    key_values(
        console,
        [
            ("database", result.database),
            ("schema", result.prefix),
            ("oban core", oban_line),
            ("powertools", migrations),
        ],
    )
    if result.up_to_date:
        console.print("already up to date", style="green")
    else:
        console.print("installed", style="green")
    for w in result.warnings:
        console.print(f"warning: {w}", style="yellow", markup=False)
    for n in result.notes:
        console.print(f"note: {n}", style="dim", markup=False)
