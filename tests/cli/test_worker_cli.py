"""``powertools worker run`` startup errors: one line on stderr, exit 2, before any job runs."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from typer.testing import CliRunner

from powertools_cli.app import app
from powertools_core.config import Settings
from tests.runtime.process import POWERTOOLS, ROOT, worker_env


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POWERTOOLS), "worker", "run", *args],
        cwd=ROOT,
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--app", "no_such_module_xyz"], "cannot import app module 'no_such_module_xyz'"),
        (["--app", "tests.support.apps.empty"], "no workers registered"),
        (["--app", "tests.support.apps.recorder", "--queues", "default=ten"], "malformed queue"),
        (["--app", "tests.support.apps.recorder", "--queues", "=3"], "malformed queue"),
        (["--app", "tests.support.apps.recorder", "--grace", "soon"], "invalid --grace"),
    ],
)
def test_bad_input_exits_2_with_one_line(installed: Settings, args: list[str], needle: str) -> None:
    result = _run(installed, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert result.stdout == ""


def test_schema_not_installed(settings: Settings) -> None:
    result = _run(settings, "--app", "tests.support.apps.recorder")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "run `powertools install`" in line and settings.prefix in line


def test_unreachable_database(settings: Settings) -> None:
    env_settings = settings.model_copy(
        update={"database_url": "postgresql://nobody@127.0.0.1:1/nothing"}
    )
    result = _run(env_settings, "--app", "tests.support.apps.recorder")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "cannot reach the database" in line


def test_json_format_reports_the_error_object(installed: Settings) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "worker",
            "run",
            "--app",
            f"missing_{uuid.uuid4().hex}",
            "--database-url",
            installed.database_url or "",
            "--prefix",
            installed.prefix,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 2
    assert '"code": "invalid_input"' in result.stdout


def test_help_has_examples() -> None:
    result = CliRunner().invoke(app, ["worker", "run", "--help"])
    assert result.exit_code == 0
    assert "$ powertools worker run --app myapp.workers" in result.stdout
