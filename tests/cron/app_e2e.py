"""The app the cron process tests run: one every-minute entry that catches up to 3 fires."""

from __future__ import annotations

from typing import Any

from powertools_core import Cron, Worker


class E2eTick(Worker):
    queue = "cron_e2e"

    def perform(self, job: Any) -> None:
        return None


Cron("* * * * *", E2eTick, name="e2e-minute", overlap="allow", catch_up="all", max_catch_up=3)


GATE_KEY = 7_420_001
"""The test holds this advisory lock; a ``Gated`` job cannot finish until the test lets go."""


class Gated(Worker):
    queue = "cron_gated"

    def perform(self, job: Any) -> None:
        import os

        import psycopg

        with psycopg.connect(os.environ["POWERTOOLS_DATABASE_URL"]) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (GATE_KEY,))


Cron("* * * * *", Gated, name="e2e-gated", overlap="queue_one", catch_up="none")
