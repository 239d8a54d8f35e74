"""Durable workers used by the tests: an order that is charged, then waits for approval."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from powertools_core import Await, Done, Next, Stop, Worker


class Order(Worker):
    """start -> charge -> (await approved | rejected, optional timeout) -> decide."""

    queue = "durable"
    max_attempts = 3

    class Args(BaseModel):
        amount: int
        timeout: str | None = None
        fail_decide_once: bool = False

    def backoff(self, attempt: int) -> float:
        return 0.05

    def perform(self, job: Any) -> Any:
        d = job.durable
        if d.step == "start":
            return Next("charge", {"amount": job.args.amount})
        if d.step == "charge":
            return Await(
                ["approved", "rejected"],
                timeout=job.args.timeout,
                step="decide",
                state={**d.state, "charged": True},
            )
        if d.step == "decide":
            if job.args.fail_decide_once and job.attempt == 3:
                raise RuntimeError("decide failed once")
            if d.timed_out:
                return Stop("no answer before the timeout")
            assert d.signal is not None, "woken without a signal or a timeout"
            if d.signal.name == "rejected":
                return Stop(f"rejected: {d.signal.payload}")
            return Done({**d.state, "approved_by": d.signal.payload["by"]})
        raise AssertionError(f"unknown step {d.step}")
