from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from powertools_core.config import Settings
from tests.runtime.helpers import make_runs_table


@pytest.fixture
def rt_settings(
    installed: Settings, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """An installed schema with the recorder's runs table; recorder writes go to this database."""
    assert installed.database_url
    monkeypatch.setenv("PT_RECORD_URL", installed.database_url)
    make_runs_table(conn, installed.prefix)
    yield installed
