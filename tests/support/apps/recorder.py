"""Workers that record every execution in ``<schema>.pt_test_runs`` so tests can assert on them.

The database URL comes from ``PT_RECORD_URL`` (set by the tests, inherited by subprocesses); the
schema is the job's ``args["schema"]``. A row is committed before ``perform`` returns, so "this
attempt ran" is durable even if the worker is killed right after.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from powertools_core.jobs.model import Job
from powertools_core.workers import Cancel, Discard, Snooze, Worker

_local = threading.local()

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS {}.pt_test_runs (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    worker text NOT NULL,
    at timestamp without time zone NOT NULL DEFAULT timezone('UTC', clock_timestamp())
)
"""


def _conn() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["PT_RECORD_URL"], autocommit=True)
        _local.conn = conn
    return conn


def record(job: Job) -> None:
    schema = job.raw_args["schema"]
    _conn().execute(
        sql.SQL(
            "INSERT INTO {}.pt_test_runs (job_id, attempt, pid, worker) VALUES (%s, %s, %s, %s)"
        ).format(sql.Identifier(schema)),
        (job.id, job.attempt, os.getpid(), job.worker),
    )


class Record(Worker):
    """Records, sleeps ``sleep`` seconds, fails while ``attempt <= fail_times``."""

    queue = "default"
    max_attempts = 5

    def backoff(self, attempt: int) -> float:
        return 0.0

    async def perform(self, job: Job) -> Any:
        record(job)
        args = job.raw_args
        if args.get("sleep"):
            await asyncio.sleep(float(args["sleep"]))
        if job.attempt <= int(args.get("fail_times", 0)):
            raise RuntimeError(f"planned failure on attempt {job.attempt}")
        return None


class RecordSync(Worker):
    queue = "default"
    max_attempts = 5

    def backoff(self, attempt: int) -> float:
        return 0.0

    def perform(self, job: Job) -> Any:
        record(job)
        if job.raw_args.get("sleep") and job.attempt <= int(job.raw_args.get("sleep_attempts", 99)):
            time.sleep(float(job.raw_args["sleep"]))
        if job.attempt <= int(job.raw_args.get("fail_times", 0)):
            raise ValueError(f"planned failure on attempt {job.attempt}")
        return None


class FailSlowBackoff(Worker):
    """Always fails; retries 30 s out."""

    max_attempts = 3

    def backoff(self, attempt: int) -> float:
        return 30.0

    def perform(self, job: Job) -> Any:
        record(job)
        raise RuntimeError("always fails")


class Snoozer(Worker):
    def perform(self, job: Job) -> Any:
        record(job)
        return Snooze(60)


class Canceller(Worker):
    def perform(self, job: Job) -> Any:
        record(job)
        return Cancel("not needed any more")


class Discarder(Worker):
    def perform(self, job: Job) -> Any:
        record(job)
        return Discard("malformed payload")


class SlowAsync(Worker):
    timeout = 0.2
    max_attempts = 1

    async def perform(self, job: Job) -> Any:
        record(job)
        await asyncio.sleep(float(job.raw_args.get("sleep", 30)))


class SlowSync(Worker):
    timeout = 0.2
    max_attempts = 2

    def perform(self, job: Job) -> Any:
        record(job)
        time.sleep(float(job.raw_args.get("sleep", 1)))
