"""A login role that may connect to a database but create nothing in it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@contextmanager
def unprivileged_url(admin_url: str) -> Iterator[str]:
    """A URL for a fresh LOGIN role with no CREATE privilege on the database or on ``public``.

    ``admin_url`` must point at a database the test owns (e.g. ``fresh_database``); the role is
    dropped afterwards. It has a password, so the URL works on servers that require one.
    """
    role = f"pt_noperm_{secrets.token_hex(5)}"
    password = secrets.token_hex(12)
    dbname = conninfo_to_dict(admin_url).get("dbname") or "postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        # PostgreSQL >= 15 already withholds these from PUBLIC; be explicit for older servers.
        conn.execute(
            sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname))
        )
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        yield make_conninfo(admin_url, user=role, password=password)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def as_url(conninfo: str) -> str:
    """A ``postgresql://`` URL for any conninfo (so URL masking is what gets exercised)."""
    from urllib.parse import quote, urlencode

    parts = conninfo_to_dict(conninfo)
    user = quote(str(parts.pop("user", "")), safe="")
    password = parts.pop("password", None)
    host = str(parts.pop("host", ""))
    port = parts.pop("port", None)
    dbname = quote(str(parts.pop("dbname", "")), safe="")
    auth = f"{user}:{quote(str(password), safe='')}@" if password else (f"{user}@" if user else "")
    netloc = host if host and not host.startswith("/") else ""
    if netloc and port:
        netloc += f":{port}"
    query = {k: str(v) for k, v in parts.items()}
    if host.startswith("/"):
        query["host"] = host
        if port:
            query["port"] = str(port)
    tail = f"?{urlencode(query, safe='/')}" if query else ""
    return f"postgresql://{auth}{netloc}/{dbname}{tail}"
