"""Write ``completions/`` and ``man/`` from the CLI itself (the ``./dev gen`` project command).

Everything is derived from the Typer app as it is now: the command tree, each command's help,
options and arguments, and, for the JSON OUTPUT section, the fields of the result model each
command declares with ``commands.common.returns``. Output is deterministic (no dates), so a test
can regenerate in memory and compare with the files on disk.

    python -m powertools_cli.generate            # write completions/ and man/
    python -m powertools_cli.generate --check    # exit 1 and list the stale files
"""

from __future__ import annotations

import argparse
import enum
import re
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import typer
import typer.main
from pydantic import BaseModel
from typer import _click
from typer._completion_shared import get_completion_script

from powertools_cli.app import app
from powertools_cli.commands.common import result_models
from powertools_core.results import ErrorResult
from powertools_core.version import __version__

PROG = "powertools"
COMPLETE_VAR = "_POWERTOOLS_COMPLETE"
COMPLETION_FILES = {"bash": "powertools.bash", "zsh": "_powertools", "fish": "powertools.fish"}
GENERATED_DIRS = ("completions", "man")
MAN_SECTION = "1"

EXIT_STATUS = (
    ("0", "Success."),
    (
        "1",
        "Completed with warnings or partial failures (for example an older Oban schema, "
        "or some jobs of a bulk action failed).",
    ),
    (
        "2",
        "Error: bad usage or input, invalid configuration, unreachable database, missing "
        "permission, or failed checks. One line on stderr says what to do; no traceback.",
    ),
    ("130", "Interrupted (Ctrl-C)."),
)

ENVIRONMENT = (
    ("POWERTOOLS_DATABASE_URL", "Database URL when --database-url is not given."),
    (
        "DATABASE_URL",
        "Database URL when neither --database-url nor POWERTOOLS_DATABASE_URL is "
        "set. Without any of them, the config file, then the embedded server, is used.",
    ),
    ("POWERTOOLS_PREFIX", "Schema holding oban_jobs when --prefix is not given (default public)."),
    (
        "POWERTOOLS_APP",
        "Module(s) that register workers, comma-separated, when --app is not given.",
    ),
    ("POWERTOOLS_ACTOR", "Who is acting, recorded in the audit trail, when --actor is not given."),
    (
        "POWERTOOLS_HOME",
        "Where the embedded server keeps its data (default: the user data "
        "directory, or /var/lib/powertools as root).",
    ),
    ("NO_COLOR", "Any non-empty value turns colour and styling off, like --no-color."),
)

FILES = (
    (
        "powertools.toml",
        "Configuration (or [tool.powertools] in pyproject.toml), found in the "
        "working directory or the nearest parent that has one.",
    ),
)


# --- the command tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    path: tuple[str, ...]  # ("powertools", "db", "status")
    command: Any  # typer._click.Command (or a group)
    ctx: Any  # typer._click.Context

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def page(self) -> str:
        return "-".join(self.path)

    @property
    def is_group(self) -> bool:
        return bool(getattr(self.command, "commands", None))


def walk(root: Any | None = None) -> Iterator[Node]:
    """Every visible command and group, depth first, in the order the app registers them."""
    root = root if root is not None else typer.main.get_command(app)
    yield from _walk(root, (PROG,), None)


def _walk(command: Any, path: tuple[str, ...], parent: Any) -> Iterator[Node]:
    ctx = _click.Context(command, info_name=path[-1], parent=parent)
    yield Node(path, command, ctx)
    for name, sub in _subcommands(command):
        yield from _walk(sub, (*path, name), ctx)


def _subcommands(command: Any) -> list[tuple[str, Any]]:
    commands = getattr(command, "commands", None) or {}
    return [(name, sub) for name, sub in commands.items() if not getattr(sub, "hidden", False)]


# --- roff ---------------------------------------------------------------------------------------

_MARKDOWN_CODE = re.compile(r"`([^`]+)`")
_MARKDOWN_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def esc(text: str) -> str:
    """Text safe inside a roff line (backslashes, hyphens, leading control characters)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def prose(text: str) -> str:
    """Escaped text with Markdown `code` and **bold** turned into roff bold."""
    out = esc(text)
    out = _MARKDOWN_CODE.sub(r"\\fB\1\\fR", out)
    return _MARKDOWN_BOLD.sub(r"\\fB\1\\fR", out)


def _quote(text: str) -> str:
    return '"' + text.replace('"', "\\(dq") + '"'


def help_blocks(text: str) -> list[str]:
    """A docstring as roff paragraphs; ``$ command`` lines become literal example blocks."""
    lines: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        rows = [r.strip() for r in block.strip().splitlines() if r.strip()]
        if not rows:
            continue
        if all(r.startswith("$ ") for r in rows):
            if lines[-2:] == [".fi", ".RE"]:  # consecutive examples share one block
                lines[-2:] = [*(esc(r) for r in rows), ".fi", ".RE"]
            else:
                lines += [".PP", ".RS 4", ".nf", *(esc(r) for r in rows), ".fi", ".RE"]
        else:
            lines += [".PP", prose(" ".join(rows))]
    return lines


# --- JSON fields from the pydantic models --------------------------------------------------------


def describe(annotation: Any) -> str:
    """A short, stable, human name for a field type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(repr(a).replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if origin is typing.Annotated:
        return describe(args[0])
    if origin in (list, tuple, set, frozenset, Sequence):
        inner = [a for a in args if a is not Ellipsis]
        return f"array of {describe(inner[0])}" if inner else "array"
    if origin is dict or annotation is dict:
        return f"object of {describe(args[1])}" if len(args) == 2 else "object"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "object"
        if issubclass(annotation, enum.Enum):
            return " | ".join(f'"{m.value}"' for m in annotation)
        named = {
            bool: "boolean",
            int: "integer",
            float: "number",
            str: "string",
            datetime: "string (ISO-8601 time, UTC)",
            date: "string (ISO-8601 date)",
            timedelta: "string (duration)",
            UUID: "string (UUID)",
        }
        for kind, name in named.items():
            if issubclass(annotation, kind):
                return name
    return "any"


def _nested_models(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """Models reachable inside a field type, with the path suffix they sit at."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    origin = typing.get_origin(annotation)
    found: list[tuple[str, type[BaseModel]]] = []
    for arg in typing.get_args(annotation):
        if origin in (list, tuple, set, frozenset, Sequence):
            found += [("[]" + suffix, m) for suffix, m in _nested_models(arg)]
        elif origin is dict:
            found += [("{}" + suffix, m) for suffix, m in _nested_models(arg)]
        else:
            found += _nested_models(arg)
    return found


def json_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, type, description) for every field of ``model``, nested models expanded."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = prefix + (field.serialization_alias or field.alias or name)
        rows.append((key, describe(field.annotation), " ".join((field.description or "").split())))
        seen: set[type[BaseModel]] = set()
        for suffix, nested in _nested_models(field.annotation):
            if nested in seen or nested is model:
                continue
            seen.add(nested)
            rows += json_fields(nested, f"{key}{suffix}.")
    return rows


# --- one man page -------------------------------------------------------------------------------


def _synopsis(node: Node) -> str:
    pieces = node.command.collect_usage_pieces(node.ctx)
    # Typer writes a required argument as {NAME}; a man page writes NAME.
    return " ".join([node.name, *(re.sub(r"\{([^{}]+)\}", r"\1", p) for p in pieces)])


def _options(node: Node) -> list[str]:
    lines: list[str] = []
    params = [p for p in node.command.params if not getattr(p, "hidden", False)]
    arguments = [p for p in params if p.param_type_name == "argument"]
    options = [p for p in params if p.param_type_name != "argument"]
    if arguments:
        lines.append(".SH ARGUMENTS")
        for p in arguments:
            names, text = p.get_help_record(node.ctx) or (p.name.upper(), p.help or "")
            lines += [".TP", f"\\fI{esc(names)}\\fR", prose(" ".join(text.split()))]
    lines.append(".SH OPTIONS")
    for p in options:
        record = p.get_help_record(node.ctx)
        if record is None:
            continue
        names, text = record
        lines += [".TP", f"\\fB{esc(names)}\\fR", prose(" ".join(text.split()))]
    lines += [".TP", "\\fB\\-h, \\-\\-help\\fR", "Show the help and exit."]
    return lines


def _json_section(node: Node) -> list[str]:
    models = result_models(getattr(node.command, "callback", None))
    if not models:
        return []
    lines = [
        ".SH JSON OUTPUT",
        ".PP",
        "With \\fB\\-\\-format json\\fR, stdout holds one JSON object; messages and progress go "
        "to stderr. A breaking change to these fields increases \\fBschema_version\\fR.",
    ]
    for model in models:
        if len(models) > 1:
            lines += [".PP", f"\\fB{esc(model.__name__)}\\fR:"]
        lines += _field_list(json_fields(model))
    lines += [".PP", "On an expected error (exit status 1 or 2) stdout holds instead:"]
    lines += _field_list(json_fields(ErrorResult))
    return lines


def _field_list(fields: list[tuple[str, str, str]]) -> list[str]:
    lines = [".PD 0"]
    for key, kind, text in fields:
        line = f"\\fB{esc(key)}\\fR ({esc(kind)})"
        lines += [".IP", f"{line} \\(em {prose(text)}" if text else line]
    return [*lines, ".PD"]


def man_page(node: Node, nodes: Sequence[Node] | None = None) -> str:
    """The roff page of one command or group (``nodes``: the whole tree, for SEE ALSO)."""
    command = node.command
    summary = command.get_short_help_str(limit=200).rstrip(".")
    lines = [
        '.\\" Generated by `./dev gen` (python -m powertools_cli.generate); do not edit.',
        f'.TH {_quote(node.page.upper())} {MAN_SECTION} "" '
        f'{_quote(f"powertools {__version__}")} "powertools manual"',
        ".SH NAME",
        f"{esc(node.page)} \\- {prose(summary)}",
        ".SH SYNOPSIS",
        f".B {esc(_synopsis(node))}",
        ".SH DESCRIPTION",
        *help_blocks(command.help or summary),
    ]
    subs = _subcommands(command)
    if subs:
        lines.append(".SH COMMANDS")
        for name, sub in subs:
            lines += [
                ".TP",
                f"\\fB{esc(name)}\\fR",
                f"{prose(sub.get_short_help_str(limit=200))} See \\fB{esc(node.page)}\\-{esc(name)}"
                f"\\fR({MAN_SECTION}).",
            ]
    lines += _options(node)
    lines += _json_section(node)
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", prose(meaning)]
    lines.append(".SH ENVIRONMENT")
    for name, meaning in ENVIRONMENT:
        lines += [".TP", f"\\fB{name}\\fR", prose(meaning)]
    lines.append(".SH FILES")
    for name, meaning in FILES:
        lines += [".TP", f"\\fI{esc(name)}\\fR", prose(meaning)]
    related = sorted(
        {
            n.page
            for n in (nodes if nodes is not None else walk())
            if n.path[:-1] == node.path or n.path == node.path[:-1]
        }
    )
    if related:
        lines += [
            ".SH SEE ALSO",
            ", ".join(f"\\fB{esc(p)}\\fR({MAN_SECTION})" for p in related),
        ]
    return "\n".join(lines) + "\n"


# --- all files ----------------------------------------------------------------------------------


def completion_files() -> dict[str, str]:
    return {
        f"completions/{name}": get_completion_script(
            prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell
        ).rstrip("\n")
        + "\n"
        for shell, name in COMPLETION_FILES.items()
    }


def man_pages() -> dict[str, str]:
    nodes = list(walk())
    return {f"man/{node.page}.{MAN_SECTION}": man_page(node, nodes) for node in nodes}


def generated_files() -> dict[str, str]:
    """Relative path -> content of everything ``./dev gen`` owns."""
    return {**completion_files(), **man_pages()}


def stale_files(root: Path) -> list[str]:
    """Files that differ from what would be generated, are missing, or should not exist."""
    wanted = generated_files()
    stale = [
        path
        for path, text in wanted.items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    ]
    for folder in GENERATED_DIRS:
        if (root / folder).is_dir():
            stale += [
                f"{folder}/{p.name}"
                for p in sorted((root / folder).iterdir())
                if p.is_file() and f"{folder}/{p.name}" not in wanted
            ]
    return sorted(stale)


def write(root: Path) -> list[str]:
    """Bring ``root``'s completions/ and man/ up to date; returns what changed."""
    changed = stale_files(root)
    wanted = generated_files()
    for path in changed:
        target = root / path
        if path in wanted:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(wanted[path], encoding="utf-8")
        else:
            target.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m powertools_cli.generate",
        description="Regenerate completions/ and man/ from the CLI.",
        epilog="Example: python -m powertools_cli.generate --check",
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if any file is stale"
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="project folder holding completions/ and man/ (default: this checkout)",
    )
    args = parser.parse_args(argv)
    root: Path = args.root
    if args.check:
        stale = stale_files(root)
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print("run ./dev gen to regenerate completions/ and man/", file=sys.stderr)
            return 1
        print(f"completions/ and man/ are up to date ({len(generated_files())} files)")
        return 0
    changed = write(root)
    for path in changed:
        print(f"wrote {path}" if (root / path).exists() else f"removed {path}")
    print(f"{len(changed)} file(s) changed, {len(generated_files())} generated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
