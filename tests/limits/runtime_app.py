"""Workers for the limiter's end-to-end tests with real ``powertools worker run`` processes.

Each execution records (job, attempted_at, started_at, finished_at, tenant, cost) in
``<schema>.lim_runs``, committed around ``perform``'s sleep, so tests can compute overlaps and
windows in SQL. The database comes from ``PT_RECORD_URL``; the schema is ``args["schema"]``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from powertools_core import ConcurrencyLimit, RateLimit
from powertools_core.jobs.model import Job
from powertools_core.workers import Worker

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS {}.lim_runs (
    job_id bigint NOT NULL,
    worker text NOT NULL,
    tenant text,
    cost integer,
    attempted_at timestamp NOT NULL,
    started_at timestamp NOT NULL,
    finished_at timestamp
)
"""

_local = threading.local()


def _conn() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["PT_RECORD_URL"], autocommit=True)
        _local.conn = conn
    return conn


def _run(job: Job) -> None:
    args = job.raw_args
    table = sql.Identifier(args["schema"], "lim_runs")
    conn = _conn()
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (job_id, worker, tenant, cost, attempted_at, started_at) "
            "VALUES (%s, %s, %s, %s, %s, timezone('UTC', clock_timestamp()))"
        ).format(table),
        (job.id, job.worker, args.get("tenant"), args.get("cost"), job.attempted_at),
    )
    time.sleep(float(args.get("sleep", 0)))
    conn.execute(
        sql.SQL(
            "UPDATE {} SET finished_at = timezone('UTC', clock_timestamp()) WHERE job_id = %s"
        ).format(table),
        (job.id,),
    )


class ItConc(Worker):
    queue = "it_conc"
    limits = (ConcurrencyLimit("it-conc", global_limit=3),)

    def perform(self, job: Job) -> None:
        _run(job)


class ItTenant(Worker):
    queue = "it_tenant"
    limits = (ConcurrencyLimit("it-tenant", partition_limit=1, partition_by="tenant"),)

    def perform(self, job: Job) -> None:
        _run(job)


class ItRate(Worker):
    queue = "it_rate"
    limits = (RateLimit("it-rate", bucket_capacity=5, bucket_span="1s", weight_by="cost"),)

    def perform(self, job: Job) -> None:
        _run(job)


class ItHeld(Worker):
    queue = "it_held"
    limits = (RateLimit("it-held", bucket_capacity=100, bucket_span="1s"),)

    def perform(self, job: Job) -> None:
        _run(job)
