"""Workers used by the workflow tests."""

from __future__ import annotations

from typing import Any

from powertools_core import Worker
from powertools_core.workflows import added_by


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


class Split(Worker):
    """Adds one ``Part`` step per file (fan-out); with ``merge`` also a merge step that waits
    for every other step it added; fails its first attempt after adding when ``flaky``."""

    queue = "wf"
    max_attempts = 3

    def perform(self, job: Any) -> Any:
        args = job.args.model_dump()
        for name in args["files"]:
            job.workflow.add(f"part-{name}", Part.new({"file": name}))
        if args.get("merge"):
            job.workflow.add("merge", Merge.new({}), deps=[added_by(job.workflow.step)])
        if args.get("clash"):
            job.workflow.add(args["clash"], Part.new({"file": "x"}))
        if args.get("flaky") and job.attempt == 1:
            raise RuntimeError("failed after adding")
        return {"files": len(args["files"])}


class Part(Worker):
    queue = "wf"
    max_attempts = 1

    def perform(self, job: Any) -> Any:
        name = job.args.model_dump()["file"]
        if name.startswith("bad"):
            raise RuntimeError(f"cannot read {name}")
        return {"file": name, "size": len(name)}


class Merge(Worker):
    """Fan-in: sums the sizes the parts returned (what ``added_by`` gives it)."""

    queue = "wf"
    max_attempts = 1

    def perform(self, job: Any) -> Any:
        parts = job.workflow.added_by("split")
        return {"total": sum(p["size"] for p in parts.values()), "parts": sorted(parts)}


class Summarise(Worker):
    """A batch callback: returns what ``job.workflow.batch`` says (recorded as its result)."""

    queue = "wf"
    max_attempts = 3

    def backoff(self, attempt: int) -> float:
        return 0.05

    def perform(self, job: Any) -> Any:
        if job.args.model_dump().get("fail_once") and job.attempt == 1:
            raise RuntimeError("callback failed once")
        b = job.workflow.batch
        return {"callback": b.callback, "total": b.total, "counts": dict(b.counts)}
