"""Opening connections, with every driver failure turned into a one-line, actionable error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors

from powertools_core.db.urls import check_url, mask_url
from powertools_core.errors import (
    DatabaseError,
    DatabaseUnavailable,
    PermissionDenied,
    PowertoolsError,
    SchemaNotInstalled,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from powertools_core.config import Settings

APPLICATION_NAME = "powertools"
CONNECT_TIMEOUT_S = 10


def resolve_url(settings: Settings) -> str:
    """The URL to use: the configured one, or the embedded server (started on demand)."""
    if settings.database_url:
        return check_url(settings.database_url)
    from powertools_core.db import embedded

    url = embedded.ensure_running().url
    assert url is not None
    return url


def _connect_kwargs(url: str, overrides: dict[str, Any]) -> dict[str, Any]:
    info = psycopg.conninfo.conninfo_to_dict(url)
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in info:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in info:
        kwargs["application_name"] = APPLICATION_NAME
    kwargs.update(overrides)
    return kwargs


def connect(url: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """A psycopg connection, or a ``DatabaseUnavailable``/``PermissionDenied`` naming the URL."""
    url = check_url(url)
    try:
        return psycopg.Connection.connect(
            url, autocommit=autocommit, **_connect_kwargs(url, kwargs)
        )
    except psycopg.Error as exc:
        raise translate_error(exc, url) from None


async def connect_async(
    url: str, *, autocommit: bool = False, **kwargs: Any
) -> psycopg.AsyncConnection[Any]:
    url = check_url(url)
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=autocommit, **_connect_kwargs(url, kwargs)
        )
    except psycopg.Error as exc:
        raise translate_error(exc, url) from None


def sqlalchemy_engine(url: str) -> Engine:
    """A SQLAlchemy engine whose connections come from :func:`connect` (one code path)."""
    from sqlalchemy import create_engine, pool

    url = check_url(url)
    return create_engine(
        "postgresql+psycopg://", creator=lambda: connect(url), poolclass=pool.NullPool
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # libpq puts the useful part ("Connection refused", "password authentication failed") last
    # on multi-host attempts; keep the first and last line.
    if len(lines) > 1 and not lines[-1].lower().startswith(("is the server", "hint")):
        return f"{lines[0]} {lines[-1]}" if lines[-1] not in lines[0] else lines[0]
    return lines[0]


def _is_connection_failure(exc: BaseException) -> bool:
    """Client-side connection failures (no SQLSTATE), class 08, and server shutdowns."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith("08") or state in {"57P01", "57P02", "57P03"}


def translate_error(exc: BaseException, url: str | None = None) -> PowertoolsError:
    """Map a driver exception to the error the user sees."""
    where = f" at {mask_url(url)}" if url else ""
    if isinstance(exc, PowertoolsError):
        return exc
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return PermissionDenied(
            f"permission denied{where}: {_first_line(exc)}",
            hint="connect as a role that owns the schema, or GRANT the missing privilege",
        )
    if isinstance(exc, pg_errors.UndefinedTable):
        return SchemaNotInstalled(
            f"powertools tables are missing{where}: {_first_line(exc)}",
            hint="run `powertools install` (with the same --prefix)",
        )
    if isinstance(exc, pg_errors.InvalidSchemaName):
        return SchemaNotInstalled(
            f"schema does not exist{where}: {_first_line(exc)}",
            hint="check --prefix, or run `powertools install --prefix ...` first",
        )
    if isinstance(exc, pg_errors.InvalidCatalogName):
        return DatabaseUnavailable(
            f"database does not exist{where}",
            hint="create it (createdb) or fix the database name in the URL",
        )
    if isinstance(exc, pg_errors.QueryCanceled):
        return DatabaseError(
            f"statement cancelled{where}: {_first_line(exc)}",
            hint="it ran past statement_timeout or was cancelled by an operator",
        )
    if isinstance(exc, pg_errors.LockNotAvailable):
        return DatabaseError(
            f"could not take a lock in time{where}: {_first_line(exc)}",
            hint="another session holds it; retry, or find it with `powertools doctor`",
        )
    if _is_connection_failure(exc):
        return DatabaseUnavailable(
            f"cannot reach the database{where}: {_first_line(exc)}",
            hint="check --database-url / POWERTOOLS_DATABASE_URL, or omit them to use the "
            "embedded server",
        )
    if isinstance(exc, psycopg.Error):
        return DatabaseError(f"database error{where}: {_first_line(exc)}")
    return PowertoolsError(_first_line(exc))


@contextmanager
def translated(url: str | None = None) -> Iterator[None]:
    """Run a block and re-raise driver errors as ``PowertoolsError`` (no tracebacks reach users)."""
    try:
        yield
    except PowertoolsError:
        raise
    except psycopg.Error as exc:
        raise translate_error(exc, url) from None
    except Exception as exc:
        from sqlalchemy.exc import DBAPIError

        if isinstance(exc, DBAPIError) and isinstance(exc.orig, psycopg.Error):
            raise translate_error(exc.orig, url) from None
        raise
