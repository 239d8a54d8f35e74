"""The root ``powertools`` app: global flags, command registration, the entry point."""

from __future__ import annotations

from typing import Annotated

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer._completion_classes import completion_init

from powertools_cli.commands import (
    archive,
    audit,
    cron,
    db,
    doctor,
    install,
    limiter,
    ops,
    worker,
    workflow,
)
from powertools_core.version import __version__

app = typer.Typer(
    name="powertools",
    help="Operate and run PostgreSQL job queues on the Oban schema.\n\n"
    "Start with `powertools install`, then `powertools worker run --app myapp.workers`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"powertools {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Operate and run PostgreSQL job queues on the Oban schema."""


app.command("install")(install.install_command)
app.command("doctor")(doctor.doctor_command)
app.add_typer(db.app, name="db")
app.add_typer(worker.app, name="worker")
app.add_typer(ops.app, name="ops")
app.add_typer(audit.app, name="audit")
app.add_typer(archive.app, name="archive")
app.add_typer(limiter.app, name="limiter")
app.add_typer(cron.app, name="cron")
app.add_typer(workflow.app, name="workflow")


def main() -> None:
    # add_completion=False keeps --install-completion out of every help page, but Typer then
    # skips registering its shell classes, and `_POWERTOOLS_COMPLETE=complete_bash powertools`
    # (what completions/ call at tab time) would fail with "Shell bash not supported".
    completion_init()
    raise SystemExit(_run(app))


def _run(application: typer.Typer) -> int:
    """Run the app; a usage error is one line on stderr and exit 2, like every other error."""
    try:
        code = application(prog_name="powertools", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()  # `powertools db` alone prints that group's help
        return exc.exit_code
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {' '.join(exc.format_message().split())}{where}", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    return code if isinstance(code, int) else 0
