"""`powertools db ...` against a real embedded server in a private POWERTOOLS_HOME."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from powertools_core.db import embedded
from tests.support.cli import invoke, normalise

pytestmark = pytest.mark.slow


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="powertools-home-")).resolve()
    monkeypatch.setenv("POWERTOOLS_HOME", str(path))
    try:
        yield path
    finally:
        embedded.stop()
        shutil.rmtree(path, ignore_errors=True)


def _env(home: Path) -> dict[str, str | None]:
    return {"POWERTOOLS_HOME": str(home)}


def test_db_lifecycle_through_the_cli(home: Path, snapshot: SnapshotAssertion) -> None:
    env = _env(home)
    pgdata = str(home / "pgdata")

    status = invoke(["db", "status"], env=env)
    assert status.exit_code == 0
    assert normalise(status.stdout, {pgdata: "<pgdata>"}) == snapshot(name="not_created")

    path = invoke(["db", "path"], env=env)
    assert path.stdout == pgdata + "\n"

    started = invoke(["db", "start", "-f", "json"], env=env)
    assert started.exit_code == 0, started.output
    data = json.loads(started.stdout)
    assert (data["command"], data["running"], data["initialised"]) == ("db start", True, True)

    url = invoke(["db", "url"], env=env)
    assert url.exit_code == 0
    with psycopg.connect(url.stdout.strip()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    running = invoke(["db", "status"], env=env)
    replacements = {pgdata: "<pgdata>", url.stdout.strip(): "<url>", str(data["pid"]): "<pid>"}
    assert normalise(running.stdout, replacements) == snapshot(name="running")

    # With nothing configured, install goes to the embedded server.
    installed = invoke(["install", "-f", "json"], env=env)
    assert installed.exit_code == 0, installed.output
    assert json.loads(installed.stdout)["database"] == url.stdout.strip()

    stopped = invoke(["db", "stop"], env=env)
    assert stopped.exit_code == 0
    assert normalise(stopped.stdout, {pgdata: "<pgdata>"}) == snapshot(name="stopped")
    after = json.loads(invoke(["db", "status", "--format", "json"], env=env).stdout)
    assert (after["initialised"], after["running"], after["pid"]) == (True, False, None)


def test_db_status_json_snapshot(home: Path, snapshot: SnapshotAssertion) -> None:
    run = invoke(["db", "status", "--format", "json"], env=_env(home))
    data = json.loads(run.stdout)
    assert data["path"] == str(home / "pgdata")
    data["path"] = "<pgdata>"
    assert data == snapshot.use_extension(JSONSnapshotExtension)


def test_db_status_notes_a_configured_database(home: Path) -> None:
    env = {**_env(home), "DATABASE_URL": "postgresql://app:hunter2@db/app"}
    run = invoke(["db", "status"], env=env)
    assert run.exit_code == 0
    assert "note: commands here use DATABASE_URL (postgresql://app:***@db/app)" in run.stdout
    assert "hunter2" not in run.output


def test_db_group_without_a_command_shows_help() -> None:
    run = invoke(["db"])
    assert "status" in run.output and "stop" in run.output
