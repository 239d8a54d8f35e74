"""Running the CLI in tests: in-process through Typer's CliRunner, or as a real process.

Both use a stable environment (no colour, a wide terminal, no database variables leaking in from
the developer's shell) so output can be compared with snapshots.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from powertools_cli.app import app

# Variables that would change which database or schema a command uses.
CONFIG_VARS = (
    "POWERTOOLS_DATABASE_URL",
    "DATABASE_URL",
    "POWERTOOLS_PREFIX",
    "POWERTOOLS_APP",
    "POWERTOOLS_ACTOR",
    "POWERTOOLS_NODE",
    "NO_COLOR",
    "FORCE_COLOR",
)
STABLE_ENV = {"COLUMNS": "120", "TERM": "dumb", "NO_COLOR": "1"}


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(args: Sequence[str], env: Mapping[str, str | None] | None = None) -> Run:
    """``powertools ARGS`` in-process. Config variables are unset unless ``env`` sets them."""
    merged: dict[str, str | None] = {name: None for name in CONFIG_VARS}
    merged.update(STABLE_ENV)
    merged.update(env or {})
    result = CliRunner().invoke(app, list(args), env=merged, prog_name="powertools")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def console_script() -> Path:
    """The installed ``powertools`` executable of the interpreter running the tests."""
    path = Path(sysconfig.get_path("scripts")) / "powertools"
    assert path.is_file(), f"console script not installed at {path} (pip install -e .)"
    return path


def process_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env.update(STABLE_ENV)
    env.update(extra or {})
    return env


def run_process(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    module: bool = False,
) -> Run:
    """Run the console script (or ``python -m powertools_cli`` with ``module``) as a process."""
    argv = [sys.executable, "-m", "powertools_cli"] if module else [str(console_script())]
    proc = subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        env=process_env(env),
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def one_line_error(run: Run) -> str:
    """The single ``error: ...`` line a failed command prints on stderr (asserts it is one)."""
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{run.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in run.output
    return lines[0]


_TRAILING = re.compile(r"[ \t]+$", re.M)


def normalise(text: str, replacements: Mapping[str, str]) -> str:
    """Replace volatile values (URLs, schema names) and drop the padding they leave behind."""
    for old, new in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        if old:
            text = text.replace(old, new)
    return _TRAILING.sub("", text)
