from __future__ import annotations

import psycopg

from powertools_core.config import Settings
from tests.runtime.helpers import config_for, running, runs, seed, states, wait_for


def test_jobs_run_and_complete(rt_settings: Settings, conn: psycopg.Connection) -> None:
    s = rt_settings.prefix
    ids = seed(conn, s, "Record", 30) + seed(conn, s, "RecordSync", 30)
    with running(config_for(rt_settings)):
        wait_for(lambda: states(conn, s).get("completed") == 60, message="60 completed")
    assert sorted(r[0] for r in runs(conn, s)) == sorted(ids)
