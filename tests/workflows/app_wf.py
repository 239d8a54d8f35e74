"""Workers used by the workflow tests."""

from __future__ import annotations

from typing import Any

from powertools_core import Worker


class Step(Worker):
    queue = "wf"
    max_attempts = 3

    def perform(self, job: Any) -> None:
        return None


class Boom(Worker):
    queue = "wf"
    max_attempts = 1

    def perform(self, job: Any) -> None:
        raise RuntimeError("boom")
