"""Fixtures every test shares: a real PostgreSQL, an isolated schema or database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg import sql

from powertools_core.config import Settings, load_settings
from powertools_core.migrate import install
from tests.support.database import TestServer

hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    server = TestServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def database_url(pg_server: TestServer) -> str:
    """The shared test database (tests isolate themselves by schema on it)."""
    assert pg_server.url
    return pg_server.url


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A fresh, empty schema name, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def settings(database_url: str, schema: str) -> Settings:
    """Settings pointing at this test's own schema (not yet installed)."""
    return load_settings(database_url=database_url, prefix=schema, env={})


@pytest.fixture
def installed(settings: Settings) -> Settings:
    """Settings for a schema that ``powertools install`` has set up."""
    install(settings)
    return settings


@pytest.fixture
def fresh_database(pg_server: TestServer) -> Iterator[str]:
    """A URL to a brand-new empty database (for tests about the default ``public`` schema)."""
    name = pg_server.create_database()
    yield pg_server.url_for(name)
    pg_server.drop_database(name)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c
