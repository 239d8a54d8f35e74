"""Writing jobs: one at a time, in bulk (COPY or unnest), and unique jobs through receipts.

Where the rows go and in which transaction:

- ``conn`` given (psycopg ``Connection``/``AsyncConnection``, SQLAlchemy ``Connection``/
  ``Session`` or their asyncio twins): the jobs are written in the caller's transaction, so a
  rollback leaves no job and the NOTIFY (which rides the same transaction) is never sent. An
  autocommit connection gets one short transaction per call.
- no ``conn``: the configured database (``load_settings`` + ``resolve_url``) through a small
  per-process pool of autocommit connections (async callers get a short-lived connection).

Unique jobs are race-free because every inserter first claims the (worker, key) row of
``powertools_idempotency_receipts`` (``INSERT … ON CONFLICT DO UPDATE`` locks it, in key order so
two batches cannot deadlock), and only then — in a new statement, hence a fresh snapshot that sees
whatever the previous holder committed — decides whether the job the receipt points to still
blocks (state in ``unique.states`` and inside ``unique.period``) or the key is taken over.

``insert_all`` returns counts by default (COPY cannot read rows back); ``returning=True``
switches plain jobs to ``INSERT … SELECT FROM unnest(…) RETURNING`` and gives one result per
spec, in input order.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import errors as pg_errors

from powertools_core.db.connection import (
    APPLICATION_NAME,
    CONNECT_TIMEOUT_S,
    connect,
    connect_async,
    resolve_url,
    translated,
)
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput, SchemaNotInstalled
from powertools_core.jobs.model import Job
from powertools_core.jobs.notify import DEBOUNCER, NOTIFY_QUEUES, insert_channel
from powertools_core.jobs.spec import BulkInsertResult, InsertResult, JobSpec

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from powertools_core.config import Settings

CHUNK: Final = 5_000
"""Rows per unnest statement: big enough to amortise the round trip, small enough to stream."""

INSERT_ONE: Final = """
INSERT INTO {prefix}.oban_jobs
    (state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
VALUES (%s::{prefix}.oban_job_state, %s, %s, %s::jsonb, %s::jsonb, %s::text[], %s, %s,
        COALESCE(%s::timestamp, timezone('UTC', now())))
RETURNING id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at,
          scheduled_at, attempted_at, completed_at, attempted_by, discarded_at, priority, tags,
          meta, cancelled_at
"""

# The same insert announcing the job in the same statement (one round trip, same transaction).
INSERT_ONE_NOTIFY: Final = """
WITH ins AS (
INSERT INTO {prefix}.oban_jobs
    (state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
VALUES (%s::{prefix}.oban_job_state, %s, %s, %s::jsonb, %s::jsonb, %s::text[], %s, %s,
        COALESCE(%s::timestamp, timezone('UTC', now())))
RETURNING id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at,
          scheduled_at, attempted_at, completed_at, attempted_by, discarded_at, priority, tags,
          meta, cancelled_at)
SELECT ins.*, pg_notify(%s, ins.queue) FROM ins
"""

# Plain bulk insert with ids back. Ids come from the column default in ``ord`` order (one
# statement, rows inserted in the order the sorted SELECT yields them), so sorting the returned
# rows by id restores input order. Only what the server decided comes back (the rest of the Job
# is the spec); arrays travel in binary (no per-element escaping on either side).
INSERT_UNNEST: Final = """
INSERT INTO {prefix}.oban_jobs
    (state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
SELECT i.state::{prefix}.oban_job_state, i.queue, i.worker, i.args::jsonb, i.meta::jsonb,
       CASE WHEN i.tags IS NULL THEN ARRAY[]::text[]
            ELSE ARRAY(SELECT jsonb_array_elements_text(i.tags::jsonb)) END,
       i.priority, i.max_attempts, COALESCE(i.scheduled_at, timezone('UTC', now()))
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int[],
            %b::int[], %b::timestamp[])
     WITH ORDINALITY AS i(state, queue, worker, args, meta, tags, priority, max_attempts,
                          scheduled_at, ord)
ORDER BY i.ord
RETURNING id, inserted_at, scheduled_at
"""

COPY_JOBS: Final = (
    "COPY {prefix}.oban_jobs"
    " (state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)"
    " FROM STDIN"
)

SELECT_NOW: Final = "SELECT timezone('UTC', now())"

# COPY that must hand ids back (a workflow's steps, which its step rows reference): the ids are
# drawn from the sequence that owns oban_jobs.id (serial or identity: COPY writes given values
# even into a GENERATED ALWAYS column), then written by COPY, about a third faster than
# INSERT ... unnest ... RETURNING for 10,000 steps. An id whose default is not an owned sequence
# takes the unnest path instead.
ID_SEQUENCE: Final = "SELECT pg_get_serial_sequence(%(table)s, 'id')"
RESERVE_IDS: Final = "SELECT nextval(%(seq)s::regclass) FROM generate_series(1, %(n)s)"
COPY_JOBS_WITH_IDS: Final = (
    "COPY {prefix}.oban_jobs"
    " (id, state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)"
    " FROM STDIN"
)

# Step 1 of a unique insert: claim (and lock) each receipt, creating it with a placeholder job
# id when new. Sorted (byte order, the same as the Python sort of the chunks) so concurrent
# batches lock keys in the same order and cannot deadlock.
CLAIM_RECEIPTS: Final = """
INSERT INTO {prefix}.powertools_idempotency_receipts AS r (worker, key, job_id)
SELECT i.worker, i.key, 0
FROM unnest(%b::text[], %b::text[]) AS i(worker, key)
ORDER BY i.worker COLLATE "C", i.key COLLATE "C"
ON CONFLICT (worker, key) DO UPDATE SET worker = EXCLUDED.worker
"""

# Step 2, a new statement (so its snapshot sees what earlier holders of the locks committed):
# keep the receipt's job when it still blocks, else insert a job and point the receipt at it.
INSERT_UNIQUE: Final = """
WITH input AS (
    SELECT *
    FROM unnest(%b::int[], %b::text[], %b::text[], %b::text[], %b::float8[], %b::text[],
                %b::text[], %b::text[], %b::text[], %b::text[], %b::int[], %b::int[],
                %b::timestamp[])
         AS i(ord, worker, rkey, states, period, state, queue, args, meta, tags, priority,
              max_attempts, scheduled_at)
),
decided AS MATERIALIZED (
    SELECT i.*, j.id AS existing_id,
           (j.id IS NOT NULL
            AND j.state::text = ANY (string_to_array(i.states, ','))
            AND (i.period IS NULL
                 OR j.inserted_at > timezone('UTC', now()) - make_interval(secs => i.period))
           ) AS occupied
    FROM input AS i
    JOIN {prefix}.powertools_idempotency_receipts AS r
      ON r.worker = i.worker AND r.key = i.rkey
    LEFT JOIN {prefix}.oban_jobs AS j ON j.id = r.job_id
),
fresh AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('{prefix}.oban_jobs', 'id')) AS new_id, d.*
    FROM decided AS d
    WHERE NOT d.occupied
    ORDER BY d.rkey
),
inserted AS (
    INSERT INTO {prefix}.oban_jobs
        (id, state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
    SELECT i.new_id, i.state::{prefix}.oban_job_state, i.queue, i.worker, i.args::jsonb,
           i.meta::jsonb,
           CASE WHEN i.tags IS NULL THEN ARRAY[]::text[]
                ELSE ARRAY(SELECT jsonb_array_elements_text(i.tags::jsonb)) END,
           i.priority, i.max_attempts, COALESCE(i.scheduled_at, timezone('UTC', now()))
    FROM fresh AS i
    ORDER BY i.new_id
    RETURNING id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at,
          scheduled_at, attempted_at, completed_at, attempted_by, discarded_at, priority, tags,
          meta, cancelled_at
),
pointed AS (
    UPDATE {prefix}.powertools_idempotency_receipts AS r
    SET job_id = f.new_id,
        inserted_at = timezone('UTC', now()),
        expires_at = CASE WHEN f.period IS NULL THEN NULL
                          ELSE timezone('UTC', now()) + make_interval(secs => f.period) END
    FROM fresh AS f
    WHERE r.worker = f.worker AND r.key = f.rkey
)
SELECT f.ord, false AS conflict, ins.*
FROM inserted AS ins JOIN fresh AS f ON f.new_id = ins.id
UNION ALL
SELECT d.ord, true AS conflict,
       j.id, j.state, j.queue, j.worker, j.args, j.errors, j.attempt, j.max_attempts,
       j.inserted_at, j.scheduled_at, j.attempted_at, j.completed_at, j.attempted_by,
       j.discarded_at, j.priority, j.tags, j.meta, j.cancelled_at
FROM decided AS d JOIN {prefix}.oban_jobs AS j ON j.id = d.existing_id
WHERE d.occupied
"""

# Receipts that can no longer block anything: past their period, or whose job is gone.
PRUNE_RECEIPTS: Final = """
WITH doomed AS (
    SELECT r.worker, r.key
    FROM {prefix}.powertools_idempotency_receipts AS r
    LEFT JOIN {prefix}.oban_jobs AS j ON j.id = r.job_id
    WHERE (r.expires_at IS NOT NULL AND r.expires_at < timezone('UTC', now())) OR j.id IS NULL
    LIMIT %s
    FOR UPDATE OF r SKIP LOCKED
)
DELETE FROM {prefix}.powertools_idempotency_receipts AS r
USING doomed AS d
WHERE r.worker = d.worker AND r.key = d.key
"""


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(value: Any) -> str:
    """Compact JSON (one encoder instance: ``json.dumps`` with options builds one per call)."""
    return "{}" if value == {} else _ENCODE(value)


@functools.lru_cache(maxsize=256)
def _sql(template: str, prefix: str) -> str:
    """``qualify`` once per (statement, schema): enqueue is hot and the text never changes."""
    return qualify(template, prefix)


# Connections ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Default:
    url: str
    prefix: str


_SETTINGS_CACHE: dict[tuple[str | None, ...], Settings] = {}
_POOLS: dict[tuple[int, str], ConnectionPool[Any]] = {}
_POOLS_LOCK = threading.Lock()


def _default_settings() -> Settings:
    """``load_settings()`` once per environment (it reads config files; enqueue is hot)."""
    from powertools_core.config import load_settings

    key = (
        os.environ.get("POWERTOOLS_DATABASE_URL"),
        os.environ.get("DATABASE_URL"),
        os.environ.get("POWERTOOLS_PREFIX"),
        os.getcwd(),
    )
    cached = _SETTINGS_CACHE.get(key)
    if cached is None:
        cached = _SETTINGS_CACHE[key] = load_settings()
    return cached


def default_prefix(prefix: str | None) -> str:
    return prefix if prefix is not None else _default_settings().prefix


_URLS: dict[int, str] = {}


def _default_target(prefix: str | None) -> _Default:
    """Where conn-less enqueues go. The URL is resolved once per settings (for the embedded
    server that means one "is it running" check per process, not one per enqueue)."""
    settings = _default_settings()
    url = _URLS.get(id(settings))
    if url is None:
        url = _URLS[id(settings)] = resolve_url(settings)
    return _Default(url=url, prefix=default_prefix(prefix))


def _pool(url: str) -> ConnectionPool[Any]:
    """A small autocommit pool per (process, URL): forked children never share a socket."""
    from psycopg_pool import ConnectionPool

    key = (os.getpid(), url)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            connect(url).close()  # fail fast with the one-line error, not a pool timeout
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=4,
                kwargs={
                    "autocommit": True,
                    "application_name": APPLICATION_NAME,
                    "connect_timeout": CONNECT_TIMEOUT_S,
                },
                timeout=CONNECT_TIMEOUT_S,
                name="powertools-enqueue",
                open=True,
            )
            _POOLS[key] = pool
            if len(_POOLS) == 1:
                atexit.register(close_pools)
    return pool


def close_pools() -> None:
    """Close this process's enqueue pools (also run at exit)."""
    with _POOLS_LOCK:
        mine = [k for k in _POOLS if k[0] == os.getpid()]
        pools = [_POOLS.pop(k) for k in mine]
    for pool in pools:
        pool.close()


def _sqlalchemy_sync(conn: Any) -> psycopg.Connection[Any] | None:
    """The psycopg connection under a SQLAlchemy ``Connection``/``Session``, in its transaction.

    The SQLAlchemy transaction is begun first if needed: otherwise a later ``commit()`` on a
    connection that never "began" would be a no-op and the job would vanish with the
    connection's reset-on-return.
    """
    try:
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.orm import Session, scoped_session
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return None
    if isinstance(conn, scoped_session):
        conn = conn()
    if isinstance(conn, Session):
        conn = conn.connection()
    if isinstance(conn, SAConnection):
        if not conn.in_transaction():
            conn.begin()
        raw = conn.connection.dbapi_connection
        if isinstance(raw, psycopg.Connection):
            return raw
        raise InvalidInput("the SQLAlchemy connection must use the psycopg (v3) driver")
    return None


async def _sqlalchemy_async(conn: Any) -> psycopg.AsyncConnection[Any] | None:
    try:
        from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
        from sqlalchemy.ext.asyncio import AsyncSession
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return None
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    if isinstance(conn, SAAsyncConnection):
        if not conn.in_transaction():
            await conn.begin()
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        if isinstance(driver, psycopg.AsyncConnection):
            return driver
        raise InvalidInput("the SQLAlchemy connection must use the psycopg (v3) async driver")
    return None


def sync_connection(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg connection to write through for a caller-supplied ``conn``."""
    if isinstance(conn, psycopg.Connection):
        return conn
    if isinstance(conn, psycopg.AsyncConnection):
        raise InvalidInput(
            "an async connection needs the async API (enqueue_async/insert_all_async)"
        )
    raw = _sqlalchemy_sync(conn)
    if raw is None:
        raise InvalidInput(
            f"conn must be a psycopg Connection or a SQLAlchemy Connection/Session, "
            f"not {type(conn).__name__}"
        )
    return raw


async def async_connection(conn: Any) -> psycopg.AsyncConnection[Any]:
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    if isinstance(conn, psycopg.Connection):
        raise InvalidInput("a sync connection needs the sync API (enqueue/insert_all)")
    raw = await _sqlalchemy_async(conn)
    if raw is None:
        raise InvalidInput(
            f"conn must be a psycopg AsyncConnection or a SQLAlchemy AsyncConnection/"
            f"AsyncSession, not {type(conn).__name__}"
        )
    return raw


@contextmanager
def caller_errors() -> Iterator[None]:
    """Errors on a caller's connection stay driver errors (a serialization failure must reach
    the caller's retry loop as itself), except a missing table, which means "not installed".

    On our own connections (no ``conn``) every driver error becomes a one-line
    ``PowertoolsError`` instead (``translated``).
    """
    try:
        yield
    except (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName) as exc:
        raise SchemaNotInstalled(
            f"powertools tables are missing: {str(exc).strip().splitlines()[0]}",
            hint="run `powertools install` (with the same --prefix)",
        ) from exc


def _own_tx(pg: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
    """A transaction for several statements on an autocommit connection; none otherwise (we
    are inside the caller's transaction, which the caller commits or rolls back)."""
    return pg.transaction() if pg.autocommit else nullcontext()


# Parameters (pure) ----------------------------------------------------------------------------


def _one_params(spec: JobSpec) -> list[Any]:
    return [
        spec.state,
        spec.queue,
        spec.worker,
        _dumps(spec.args),
        _dumps(spec.meta),
        list(spec.tags),
        spec.priority,
        spec.max_attempts,
        spec.scheduled_at,
    ]


def _unnest_params(specs: Sequence[JobSpec]) -> list[Any]:
    return [
        [s.state for s in specs],
        [s.queue for s in specs],
        [s.worker for s in specs],
        [_dumps(s.args) for s in specs],
        [_dumps(s.meta) for s in specs],
        [_dumps(list(s.tags)) if s.tags else None for s in specs],
        [s.priority for s in specs],
        [s.max_attempts for s in specs],
        [s.scheduled_at for s in specs],
    ]


@dataclass(slots=True)
class _UniquePlan:
    """Unique specs deduplicated within the batch: the first of each (worker, key) is sent,
    later ones share its outcome as conflicts."""

    sent: list[tuple[int, JobSpec]]
    duplicate_of: dict[int, int]  # input position -> position of the spec actually sent

    def claim_params(self) -> list[Any]:
        return [[s.worker for _, s in self.sent], [s.receipt_key for _, s in self.sent]]

    def insert_params(self) -> list[Any]:
        specs = [s for _, s in self.sent]
        base = _unnest_params(specs)
        return [
            [pos for pos, _ in self.sent],
            [s.worker for s in specs],
            [s.receipt_key for s in specs],
            [",".join(s.unique.states) if s.unique else "" for s in specs],
            [s.unique.period if s.unique else None for s in specs],
            base[0],
            base[1],
            base[3],
            base[4],
            base[5],
            base[6],
            base[7],
            base[8],
        ]


def _plan_unique(indexed: Sequence[tuple[int, JobSpec]]) -> _UniquePlan:
    first: dict[tuple[str, str], int] = {}
    sent: list[tuple[int, JobSpec]] = []
    duplicate_of: dict[int, int] = {}
    for pos, spec in indexed:
        assert spec.receipt_key is not None
        key = (spec.worker, spec.receipt_key)
        if key in first:
            duplicate_of[pos] = first[key]
        else:
            first[key] = pos
            sent.append((pos, spec))
    # One global key order across chunks too, so two big batches cannot deadlock.
    sent.sort(key=lambda item: (item[1].worker, item[1].receipt_key or ""))
    return _UniquePlan(sent=sent, duplicate_of=duplicate_of)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    size = CHUNK
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_specs(specs: Sequence[JobSpec]) -> None:
    for spec in specs:
        if not isinstance(spec, JobSpec):
            raise InvalidInput(
                f"insert_all takes JobSpec values (from Worker.new), got {type(spec).__name__}"
            )


class _Collector:
    """Gathers outcomes of one insert_all call into results in input order."""

    def __init__(self, size: int, keep: bool) -> None:
        self.keep = keep
        self.results: list[InsertResult | None] = [None] * size if keep else []
        self.inserted = 0
        self.conflicts = 0
        self.notify: dict[str, None] = {}

    def add_rows(
        self, chunk: Sequence[tuple[int, JobSpec]], rows: Sequence[tuple[int, Any, Any]]
    ) -> None:
        """Rows are (id, inserted_at, scheduled_at) of a plain unnest insert of ``chunk``."""
        ordered = sorted(rows, key=lambda r: r[0])
        self.inserted += len(ordered)
        for (pos, spec), (job_id, inserted_at, scheduled_at) in zip(chunk, ordered, strict=True):
            if spec.state == "available":
                self.notify[spec.queue] = None
            if self.keep:
                job = Job(
                    id=job_id,
                    state=spec.state,
                    queue=spec.queue,
                    worker=spec.worker,
                    args=dict(spec.args),
                    max_attempts=spec.max_attempts,
                    inserted_at=inserted_at,
                    scheduled_at=scheduled_at,
                    priority=spec.priority,
                    tags=list(spec.tags),
                    meta=dict(spec.meta),
                )
                job.raw_args = job.args
                self.results[pos] = InsertResult(job=job, conflict=False)

    def add_unique(self, plan: _UniquePlan, rows: Sequence[Any]) -> None:
        for row in rows:
            pos, conflict = row[0], row[1]
            job = Job.from_row(row[2:])
            if conflict:
                self.conflicts += 1
            else:
                self.inserted += 1
                if job.state == "available":
                    self.notify[job.queue] = None
            if self.keep:
                self.results[pos] = InsertResult(job=job, conflict=bool(conflict))
        self.conflicts += len(plan.duplicate_of)
        if self.keep:
            for pos, original in plan.duplicate_of.items():
                first = self.results[original]
                assert first is not None
                self.results[pos] = InsertResult(job=first.job, conflict=True)

    def add_copied(self, specs: Sequence[JobSpec]) -> None:
        self.inserted += len(specs)
        for spec in specs:
            if spec.state == "available":
                self.notify[spec.queue] = None

    def result(self) -> BulkInsertResult:
        results = None
        if self.keep:
            assert all(r is not None for r in self.results)
            results = tuple(r for r in self.results if r is not None)
        return BulkInsertResult(inserted=self.inserted, conflicts=self.conflicts, results=results)


def _split(
    specs: Sequence[JobSpec],
) -> tuple[list[tuple[int, JobSpec]], list[tuple[int, JobSpec]]]:
    plain: list[tuple[int, JobSpec]] = []
    unique: list[tuple[int, JobSpec]] = []
    for pos, spec in enumerate(specs):
        (unique if spec.receipt_key is not None else plain).append((pos, spec))
    return plain, unique


_COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
COPY_ROWS_PER_WRITE: Final = 2_000


def copy_escape(text: str) -> str:
    """A value as a field of COPY's text format (backslash, tab, newline, CR escaped)."""
    return text.translate(_COPY_ESCAPES)


def array_literal(items: Sequence[str]) -> str:
    """A ``text[]`` literal with every element quoted (so commas, braces, NULL stay text)."""
    quoted = ('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items)
    return "{" + ",".join(quoted) + "}"


def copy_text(
    specs: Sequence[JobSpec], now: datetime, ids: Sequence[int] | None = None
) -> Iterator[str]:
    """COPY text-format blocks for the specs, ``COPY_ROWS_PER_WRITE`` rows per block; with
    ``ids``, each row starts with its id (``COPY_JOBS_WITH_IDS``).

    Formatting the rows here instead of ``write_row`` halves the client cost of the COPY path:
    JSON text only needs its backslashes doubled (``json`` escapes every control character),
    and queue/worker/tags strings repeat, so their escaped forms are cached per call.
    """
    now_text = now.isoformat()
    names: dict[str, str] = {}
    tag_cache: dict[tuple[str, ...], str] = {(): "{}"}
    block: list[str] = []
    for i, s in enumerate(specs):
        queue = names.get(s.queue)
        if queue is None:
            queue = names[s.queue] = copy_escape(s.queue)
        worker = names.get(s.worker)
        if worker is None:
            worker = names[s.worker] = copy_escape(s.worker)
        tags = tag_cache.get(s.tags)
        if tags is None:
            tags = tag_cache[s.tags] = copy_escape(array_literal(s.tags))
        args = _dumps(s.args).replace("\\", "\\\\")
        meta = _dumps(s.meta).replace("\\", "\\\\")
        at = now_text if s.scheduled_at is None else s.scheduled_at.isoformat()
        row = (
            f"{s.state}\t{queue}\t{worker}\t{args}\t{meta}\t{tags}\t"
            f"{s.priority}\t{s.max_attempts}\t{at}\n"
        )
        block.append(row if ids is None else f"{int(ids[i])}\t{row}")
        if len(block) >= COPY_ROWS_PER_WRITE:
            yield "".join(block)
            block = []
    if block:
        yield "".join(block)


# Sync -----------------------------------------------------------------------------------------


def insert_job(spec: JobSpec, *, conn: Any = None, prefix: str | None = None) -> InsertResult:
    """Insert one spec (``Worker.enqueue`` calls this after validating)."""
    if conn is None:
        target = _default_target(prefix)
        with translated(target.url), _pool(target.url).connection() as pg:
            return _insert_one(pg, spec, target.prefix)
    pg = sync_connection(conn)
    with caller_errors():
        return _insert_one(pg, spec, default_prefix(prefix))


def _insert_one(pg: psycopg.Connection[Any], spec: JobSpec, prefix: str) -> InsertResult:
    if spec.receipt_key is not None:
        bulk = _insert_many(pg, [spec], prefix, returning=True)
        assert bulk.results is not None
        return bulk.results[0]
    params = _one_params(spec)
    notify = spec.state == "available" and bool(DEBOUNCER.allow(prefix, [spec.queue]))
    if notify:
        row = pg.execute(_sql(INSERT_ONE_NOTIFY, prefix), [*params, insert_channel(prefix)])
    else:
        row = pg.execute(_sql(INSERT_ONE, prefix), params)
    fetched = row.fetchone()
    assert fetched is not None
    return InsertResult(job=Job.from_row(fetched[:18]), conflict=False)


def insert_all(
    specs: Sequence[JobSpec],
    *,
    conn: Any = None,
    prefix: str | None = None,
    returning: bool = False,
) -> BulkInsertResult:
    """Insert many specs in one transaction, never row by row.

    Plain specs go through COPY (fastest; counts only) unless ``returning=True``, which uses
    ``INSERT … SELECT FROM unnest`` and yields one ``InsertResult`` per spec in input order.
    Unique specs always take the receipts path (ids come back for them internally).
    """
    specs = list(specs)
    _check_specs(specs)
    if not specs:
        return BulkInsertResult(inserted=0, results=() if returning else None)
    if conn is None:
        target = _default_target(prefix)
        with translated(target.url), _pool(target.url).connection() as pg:
            return _insert_many(pg, specs, target.prefix, returning=returning)
    pg = sync_connection(conn)
    with caller_errors():
        return _insert_many(pg, specs, default_prefix(prefix), returning=returning)


def _insert_many(
    pg: psycopg.Connection[Any], specs: Sequence[JobSpec], prefix: str, *, returning: bool
) -> BulkInsertResult:
    plain, unique = _split(specs)
    out = _Collector(len(specs), keep=returning)
    with _own_tx(pg), pg.cursor() as cur:
        if plain and not returning:
            only = [s for _, s in plain]
            _copy(cur, only, prefix)
            out.add_copied(only)
        elif plain:
            sql = _sql(INSERT_UNNEST, prefix)
            for chunk in _chunks(plain):
                cur.execute(sql, _unnest_params([s for _, s in chunk]))
                out.add_rows(chunk, cur.fetchall())
        if unique:
            plan = _plan_unique(unique)
            for part in _chunks(plan.sent):
                sub = _UniquePlan(sent=list(part), duplicate_of={})
                cur.execute(_sql(CLAIM_RECEIPTS, prefix), sub.claim_params())
                cur.execute(_sql(INSERT_UNIQUE, prefix), sub.insert_params())
                out.add_unique(sub, cur.fetchall())
            out.add_unique(_UniquePlan(sent=[], duplicate_of=plan.duplicate_of), [])
        _notify(cur, prefix, out)
    return out.result()


def _copy(
    cur: psycopg.Cursor[Any],
    specs: Sequence[JobSpec],
    prefix: str,
    ids: Sequence[int] | None = None,
) -> None:
    """COPY ``specs`` into oban_jobs (with ``ids``: into their id column too)."""
    now = cur.execute(SELECT_NOW).fetchone()
    assert now is not None
    with cur.copy(_sql(COPY_JOBS if ids is None else COPY_JOBS_WITH_IDS, prefix)) as copy:
        for text in copy_text(specs, now[0], ids):
            copy.write(text)


def _notify(cur: psycopg.Cursor[Any], prefix: str, out: _Collector) -> None:
    """Wake the queues that got available jobs (debounced; delivered at commit)."""
    queues = DEBOUNCER.allow(prefix, out.notify)
    if queues:
        cur.execute(NOTIFY_QUEUES, [insert_channel(prefix), queues])


def _copyable_sequence(row: Any) -> str | None:
    """The id sequence from ``ID_SEQUENCE``'s row (None: there is none to draw ids from)."""
    return None if row is None or row[0] is None else str(row[0])


def insert_ids(pg: psycopg.Connection[Any], specs: Sequence[JobSpec], prefix: str) -> list[int]:
    """Insert ``specs`` in ``pg``'s transaction (its own on an autocommit connection) and return
    their ids in input order: COPY with ids reserved first (see ``ID_SEQUENCE``). Unique specs,
    or an id no sequence owns, take ``insert_all(returning=True)``'s path."""
    specs = list(specs)
    _check_specs(specs)
    if not specs:
        return []
    if all(s.receipt_key is None for s in specs):
        with _own_tx(pg), pg.cursor() as cur:
            table = qualify("{prefix}.oban_jobs", prefix)
            seq = _copyable_sequence(cur.execute(ID_SEQUENCE, {"table": table}).fetchone())
            if seq is not None:
                ids = [r[0] for r in cur.execute(RESERVE_IDS, {"seq": seq, "n": len(specs)})]
                _copy(cur, specs, prefix, ids)
                out = _Collector(len(specs), keep=False)
                out.add_copied(specs)
                _notify(cur, prefix, out)
                return ids
    return _insert_many(pg, specs, prefix, returning=True).ids


def prune_receipts(conn: Any, *, prefix: str | None = None, limit: int = 10_000) -> int:
    """Delete receipts that can no longer block an insert (expired, or their job is gone).

    Meant for the pruner duty; safe to run concurrently with inserts (locked rows are skipped).
    """
    pg = sync_connection(conn)
    with caller_errors(), _own_tx(pg):
        cur = pg.execute(_sql(PRUNE_RECEIPTS, default_prefix(prefix)), [limit])
        return cur.rowcount


# Async ----------------------------------------------------------------------------------------


async def insert_job_async(
    spec: JobSpec, *, conn: Any = None, prefix: str | None = None
) -> InsertResult:
    """Async twin of :func:`insert_job`; without ``conn`` it uses a short-lived connection."""
    if conn is None:
        target = _default_target(prefix)
        with translated(target.url):
            async with await connect_async(target.url, autocommit=True) as pg:
                return await _insert_one_async(pg, spec, target.prefix)
    pg = await async_connection(conn)
    with caller_errors():
        return await _insert_one_async(pg, spec, default_prefix(prefix))


async def _insert_one_async(
    pg: psycopg.AsyncConnection[Any], spec: JobSpec, prefix: str
) -> InsertResult:
    if spec.receipt_key is not None:
        bulk = await _insert_many_async(pg, [spec], prefix, returning=True)
        assert bulk.results is not None
        return bulk.results[0]
    params = _one_params(spec)
    notify = spec.state == "available" and bool(DEBOUNCER.allow(prefix, [spec.queue]))
    if notify:
        cur = await pg.execute(_sql(INSERT_ONE_NOTIFY, prefix), [*params, insert_channel(prefix)])
    else:
        cur = await pg.execute(_sql(INSERT_ONE, prefix), params)
    fetched = await cur.fetchone()
    assert fetched is not None
    return InsertResult(job=Job.from_row(fetched[:18]), conflict=False)


async def insert_all_async(
    specs: Sequence[JobSpec],
    *,
    conn: Any = None,
    prefix: str | None = None,
    returning: bool = False,
) -> BulkInsertResult:
    """Async twin of :func:`insert_all` (same paths, same transaction rules)."""
    specs = list(specs)
    _check_specs(specs)
    if not specs:
        return BulkInsertResult(inserted=0, results=() if returning else None)
    if conn is None:
        target = _default_target(prefix)
        with translated(target.url):
            async with await connect_async(target.url, autocommit=True) as pg:
                return await _insert_many_async(pg, specs, target.prefix, returning=returning)
    pg = await async_connection(conn)
    with caller_errors():
        return await _insert_many_async(pg, specs, default_prefix(prefix), returning=returning)


async def _insert_many_async(
    pg: psycopg.AsyncConnection[Any], specs: Sequence[JobSpec], prefix: str, *, returning: bool
) -> BulkInsertResult:
    plain, unique = _split(specs)
    out = _Collector(len(specs), keep=returning)
    tx = pg.transaction() if pg.autocommit else _AsyncNull()
    async with tx, pg.cursor() as cur:
        if plain and not returning:
            only = [s for _, s in plain]
            await _copy_async(cur, only, prefix)
            out.add_copied(only)
        elif plain:
            sql = _sql(INSERT_UNNEST, prefix)
            for chunk in _chunks(plain):
                await cur.execute(sql, _unnest_params([s for _, s in chunk]))
                out.add_rows(chunk, await cur.fetchall())
        if unique:
            plan = _plan_unique(unique)
            for part in _chunks(plan.sent):
                sub = _UniquePlan(sent=list(part), duplicate_of={})
                await cur.execute(_sql(CLAIM_RECEIPTS, prefix), sub.claim_params())
                await cur.execute(_sql(INSERT_UNIQUE, prefix), sub.insert_params())
                out.add_unique(sub, await cur.fetchall())
            out.add_unique(_UniquePlan(sent=[], duplicate_of=plan.duplicate_of), [])
        await _notify_async(cur, prefix, out)
    return out.result()


async def _copy_async(
    cur: psycopg.AsyncCursor[Any],
    specs: Sequence[JobSpec],
    prefix: str,
    ids: Sequence[int] | None = None,
) -> None:
    """Async twin of :func:`_copy`."""
    await cur.execute(SELECT_NOW)
    now = await cur.fetchone()
    assert now is not None
    async with cur.copy(_sql(COPY_JOBS if ids is None else COPY_JOBS_WITH_IDS, prefix)) as copy:
        for text in copy_text(specs, now[0], ids):
            await copy.write(text)


async def _notify_async(cur: psycopg.AsyncCursor[Any], prefix: str, out: _Collector) -> None:
    """Async twin of :func:`_notify`."""
    queues = DEBOUNCER.allow(prefix, out.notify)
    if queues:
        await cur.execute(NOTIFY_QUEUES, [insert_channel(prefix), queues])


async def insert_ids_async(
    pg: psycopg.AsyncConnection[Any], specs: Sequence[JobSpec], prefix: str
) -> list[int]:
    """Async twin of :func:`insert_ids`."""
    specs = list(specs)
    _check_specs(specs)
    if not specs:
        return []
    if all(s.receipt_key is None for s in specs):
        tx = pg.transaction() if pg.autocommit else _AsyncNull()
        async with tx, pg.cursor() as cur:
            table = qualify("{prefix}.oban_jobs", prefix)
            await cur.execute(ID_SEQUENCE, {"table": table})
            seq = _copyable_sequence(await cur.fetchone())
            if seq is not None:
                await cur.execute(RESERVE_IDS, {"seq": seq, "n": len(specs)})
                ids = [r[0] for r in await cur.fetchall()]
                await _copy_async(cur, specs, prefix, ids)
                out = _Collector(len(specs), keep=False)
                out.add_copied(specs)
                await _notify_async(cur, prefix, out)
                return ids
    return (await _insert_many_async(pg, specs, prefix, returning=True)).ids


class _AsyncNull:
    """``async with`` that does nothing (we are inside the caller's transaction)."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None
