"""The app the cron process tests run: one every-minute entry that catches up to 3 fires."""

from __future__ import annotations

from typing import Any

from powertools_core import Cron, Worker


class E2eTick(Worker):
    queue = "cron_e2e"

    def perform(self, job: Any) -> None:
        return None


Cron("* * * * *", E2eTick, name="e2e-minute", overlap="allow", catch_up="all", max_catch_up=3)
