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


class Fetch(Worker):
    """Returns the rows it was given (its result is what dependents read)."""

    queue = "wf"
    max_attempts = 3

    def perform(self, job: Any) -> Any:
        return {"rows": job.args.model_dump().get("rows", [1, 2, 3])}


class Sum(Worker):
    """Reads the result of its dependency ``fetch`` and returns the sum."""

    queue = "wf"
    max_attempts = 1

    def perform(self, job: Any) -> Any:
        return sum(job.workflow.result("fetch")["rows"])


class AsyncSum(Worker):
    queue = "wf"
    max_attempts = 1

    async def perform(self, job: Any) -> Any:
        return {"total": sum(job.workflow.result("fetch")["rows"]), "deps": job.workflow.results()}


class NaNResult(Worker):
    """Returns a value that json.dumps accepts but PostgreSQL's jsonb does not."""

    queue = "wf"
    max_attempts = 1

    def perform(self, job: Any) -> Any:
        return {"ratio": float("nan")}
