"""``powertools doctor`` for people: a compact table of checks, then the findings grouped by
severity with the remediation under each. Fits 80 columns; colour only on a terminal."""

from __future__ import annotations

import textwrap

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from powertools_cli.render.ansi import renders, status_style
from powertools_core.doctor.report import DoctorResult, Finding


def _duration(ms: float) -> str:
    return f"{ms:.0f}ms" if ms < 1000 else f"{ms / 1000:.1f}s"


def _header(result: DoctorResult) -> Text:
    db_version = result.oban_version_db
    expected = result.oban_version_expected
    if db_version == expected:
        oban = f"Oban v{db_version}"
    elif db_version is None:
        oban = f"Oban version unknown (expects v{expected})"
    else:
        oban = f"Oban v{db_version} (expects v{expected})"
    line = Text("powertools doctor", style="bold")
    line.append(
        f"  schema {result.prefix} · PostgreSQL {result.database.server_version} · {oban}"
        + (" · strict" if result.strict else ""),
        style="dim",
    )
    return line


def _checks(result: DoctorResult) -> Table:
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.check] = counts.get(f.check, 0) + 1
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("findings", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    for check in result.checks:
        table.add_row(
            check.id,
            Text(check.status, style=status_style(check.status)),
            str(counts.get(check.id, "")) or "-",
            _duration(check.duration_ms),
        )
    return table


def _verdict(result: DoctorResult) -> Text:
    errors, warnings = result.summary.error, result.summary.warning
    if not errors and not warnings:
        return Text(f"OK: all {len(result.checks)} checks passed", style="bold green")
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    style = "bold red" if errors else "bold yellow"
    return Text(f"{', '.join(parts)} (exit {result.exit_code})", style=style)


def _finding(console: Console, finding: Finding) -> None:
    """The message wraps under itself; the remediation is never hard-wrapped, so it pastes."""
    tag = f"[{finding.check}]"
    width = max(40, console.width - 1)
    lines = textwrap.wrap(
        f"{tag} {finding.message}",
        width=width,
        initial_indent="  ",
        subsequent_indent="    ",
        break_on_hyphens=False,
    )
    for number, text in enumerate(lines):
        line = Text(text)
        if number == 0:
            line.stylize(status_style(finding.severity), 2, 2 + len(tag))
        console.print(line, soft_wrap=True)
    fix = Text("    fix: ", style="dim")
    fix.append(finding.remediation, style="cyan")
    console.print(fix, soft_wrap=True)


@renders(DoctorResult)
def _doctor(result: DoctorResult, console: Console) -> None:
    console.print(_header(result))
    console.print(_checks(result))
    console.print()
    for severity, title in (("error", "ERRORS"), ("warning", "WARNINGS")):
        group = [f for f in result.findings if f.severity == severity]
        if not group:
            continue
        console.print(Text(title, style=f"bold {status_style(severity)}"))
        for finding in group:
            _finding(console, finding)
        console.print()
    console.print(_verdict(result))
