"""Workers and cron entries for the cron tests (imported as an app by subprocess tests)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from powertools_core import Cron, Worker


class CronTick(Worker):
    queue = "cron_q"

    class Args(BaseModel):
        n: int = 0

    def perform(self, job: Any) -> None:
        return None


class CronOther(Worker):
    queue = "cron_other"

    def perform(self, job: Any) -> None:
        return None


Cron("* * * * *", CronTick, args={"n": 1}, name="tick-every-minute", overlap="allow")
