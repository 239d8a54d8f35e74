"""The chunked engine behind every executed action, single or bulk.

1. **Select** (one ``REPEATABLE READ READ ONLY`` transaction): the plan groups (for the hash and
   the run's counts) and the snapshot of ids, states and attempts, in id order. With a preview
   token the live plan hash must still match, else nothing happens (``PreviewDrifted``).
2. **Act** chunk by chunk (keyset over the snapshot's ids), each chunk one short transaction:
   one statement locks the chunk's rows ``FOR UPDATE SKIP LOCKED``, acts only on rows whose state
   and attempt are still what the selection saw, and writes one audit event per changed job.
   Rows it left alone are classified after the commit: ``changed_since_preview`` (moved on, or
   gone) or ``locked`` (another transaction, e.g. a worker's ack, held it; run again). A chunk
   that errors is retried job by job so one bad row fails alone (``failed`` + error).
3. **Report**: a run summary audit event (bulk runs) and the ``ActionResult``.

Up to ``concurrency`` chunks are in flight at once, each on its own connection (chunks hold
disjoint ids, so they never wait on each other); results are reported in id order.

Ctrl-C (SIGINT, when running on the main thread) asks the engine to stop once the chunks in
flight have committed; a ``KeyboardInterrupt`` raised by ``on_chunk`` does the same. Running
the same action again finishes the rest: jobs already acted on have left the states the action
selects, and ``resume_run`` additionally excludes every job the given run already audited,
keeping its id.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final

import psycopg

from powertools_core.audit import AuditEvent, record
from powertools_core.db.identifiers import qualify
from powertools_core.jobs.notify import NOTIFY_QUEUES, insert_channel
from powertools_core.ops.actions import (
    CHANGED_SINCE_PREVIEW,
    CHUNK_SQL,
    CURRENT_STATES,
    ILLEGAL_STATE,
    LEGAL_FROM,
    LOCKED,
    NOTIFY_SIGNALS,
    Action,
    signal_channel,
)
from powertools_core.ops.errors import PreviewDrifted
from powertools_core.ops.filters import JobFilter
from powertools_core.ops.preview import (
    GroupRow,
    Snapshot,
    plan_hash,
    select_groups,
    select_snapshot,
    summarise,
    token_matches,
    token_of,
)
from powertools_core.ops.results import ActionResult, FailedJob, SkippedJob, Summary
from powertools_core.schema.oban import JOB_STATES

DEFAULT_BATCH_SIZE: Final = 2_000
MAX_BATCH_SIZE: Final = 50_000
DEFAULT_CONCURRENCY: Final = 2
MAX_CONCURRENCY: Final = 8

BEGIN_SNAPSHOT: Final = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"

Advance = Callable[[int], None]
ProgressFactory = Callable[[int], AbstractContextManager[Advance]]


@dataclass(frozen=True, slots=True)
class ChunkReport:
    """Passed to ``on_chunk`` after each chunk committed (0-based ``index``)."""

    index: int
    ids: tuple[int, ...]
    done: int
    skipped: int
    failed: int
    seconds: float
    processed: int
    total: int


OnChunk = Callable[[ChunkReport], None]


class _StopRequest:
    """First SIGINT: stop after the current chunk. A second one interrupts at once."""

    def __init__(self, enabled: bool) -> None:
        self.requested = False
        self._enabled = enabled and threading.current_thread() is threading.main_thread()
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopRequest:
        if self._enabled:
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            signal.signal(signal.SIGINT, self._previous)


@dataclass(slots=True)
class _Tally:
    done: list[int]
    skipped: list[SkippedJob]
    failed: list[FailedJob]
    chunks: int = 0
    longest: float = 0.0


@dataclass(slots=True)
class _ChunkOutcome:
    start: int
    stop: int
    done: list[int]
    skipped: list[SkippedJob]
    failed: list[FailedJob]
    seconds: float


@dataclass(frozen=True, slots=True)
class Selection:
    groups: list[GroupRow]
    snapshot: Snapshot
    plan_hash: str


def select(
    conn: psycopg.Connection[Any],
    prefix: str,
    action: Action,
    job_filter: JobFilter,
    *,
    preview_token: str | None = None,
    resume_run: uuid.UUID | None = None,
) -> Selection:
    """Groups, hash and snapshot from one consistent read (``conn`` in autocommit mode)."""
    with conn.transaction():
        conn.execute(BEGIN_SNAPSHOT)
        groups = select_groups(conn, prefix, job_filter, resume_run)
        hashed = plan_hash(action, job_filter.canonical(), groups)
        if preview_token is not None and not token_matches(preview_token, hashed):
            total = sum(g.count for g in groups)
            raise PreviewDrifted(
                f"the selection changed since preview {preview_token.strip()} "
                f"(it now matches {total} jobs, token {token_of(hashed)}); nothing was changed",
                hint="run the same command with --dry-run again, review, then execute",
            )
        snapshot = select_snapshot(conn, prefix, job_filter, resume_run)
    return Selection(groups, snapshot, hashed)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class BulkRun:
    """One execution of an action over a selection (see the module docstring).

    With ``concurrency`` > 1, that many chunks are in flight at once, each on its own
    connection (``connect`` opens the extra ones); chunks hold disjoint ids, so they never wait
    on each other. Results are reported in id order whatever order chunks finish in.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        prefix: str,
        action: Action,
        *,
        actor: str,
        reason: str,
        run_id: uuid.UUID,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_chunk: OnChunk | None = None,
        handle_sigint: bool = True,
        concurrency: int = 1,
        connect: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self.conn = conn
        self.prefix = prefix
        self.action = action
        self.actor = actor
        self.reason = reason
        self.run_id = run_id
        self.batch_size = batch_size
        self.on_chunk = on_chunk
        self.handle_sigint = handle_sigint
        self.concurrency = concurrency if connect is not None else 1
        self.connect = connect
        self._chunk_sql = qualify(CHUNK_SQL[action], prefix)
        self._current_sql = qualify(CURRENT_STATES, prefix)
        self._signal_channel = signal_channel(prefix)
        self._insert_channel = insert_channel(prefix)

    # one chunk (runs on any connection; touches no shared state) ------------------------------
    def _params(self, ids: list[int], states: list[str], attempts: list[int]) -> dict[str, Any]:
        return {
            "ids": ids,
            "low": ids[0],
            "high": ids[-1],
            "states": states,
            "attempts": attempts,
            "actor": self.actor,
            "audit_action": self.action.audit_action,
            "reason": self.reason,
            "run_id": self.run_id,
        }

    def _act(
        self,
        conn: psycopg.Connection[Any],
        ids: list[int],
        states: list[str],
        attempts: list[int],
    ) -> list[Any]:
        """One transaction: the guarded change, its audit events, and its notifications."""
        with conn.transaction():
            rows = conn.execute(self._chunk_sql, self._params(ids, states, attempts))
            changed = rows.fetchall()
            if self.action is Action.cancel:
                stops = [
                    json.dumps({"action": "cancel", "job_id": r[0]})
                    for r in changed
                    if r[1] == "executing"
                ]
                if stops:
                    conn.execute(NOTIFY_SIGNALS, (self._signal_channel, stops))
            elif self.action is Action.retry and changed:
                queues = sorted({r[2] for r in changed})
                conn.execute(NOTIFY_QUEUES, (self._insert_channel, queues))
        return changed

    def _act_isolating_failures(
        self,
        conn: psycopg.Connection[Any],
        ids: list[int],
        states: list[str],
        attempts: list[int],
        failed: list[FailedJob],
    ) -> set[int]:
        try:
            return {r[0] for r in self._act(conn, ids, states, attempts)}
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            if len(ids) == 1:
                failed.append(FailedJob(id=ids[0], error=_first_line(exc), state=states[0]))
                return set()
        # The chunk failed as a whole: retry its jobs one by one so only the bad ones fail.
        acted: set[int] = set()
        for one in zip(ids, states, attempts, strict=True):
            try:
                acted |= {r[0] for r in self._act(conn, [one[0]], [one[1]], [one[2]])}
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                failed.append(FailedJob(id=one[0], error=_first_line(exc), state=one[1]))
        return acted

    def _classify_untouched(
        self, conn: psycopg.Connection[Any], untouched: list[tuple[int, str, int]]
    ) -> list[SkippedJob]:
        if not untouched:
            return []
        rows = conn.execute(self._current_sql, {"ids": [u[0] for u in untouched]})
        now = {r[0]: (r[1], r[2]) for r in rows.fetchall()}
        skipped = []
        for job_id, state, attempt in untouched:
            current = now.get(job_id)
            if current == (state, attempt):
                skipped.append(SkippedJob(id=job_id, reason=LOCKED, state=state, now_state=state))
            else:
                skipped.append(
                    SkippedJob(
                        id=job_id,
                        reason=CHANGED_SINCE_PREVIEW,
                        state=state,
                        now_state=current[0] if current else None,
                    )
                )
        return skipped

    def _chunk(
        self, conn: psycopg.Connection[Any], snap: Snapshot, start: int, stop: int
    ) -> _ChunkOutcome:
        legal = LEGAL_FROM[self.action]
        ids: list[int] = []
        states: list[str] = []
        attempts: list[int] = []
        outcome = _ChunkOutcome(start, stop, [], [], [], 0.0)
        for i in range(start, stop):
            state = JOB_STATES[snap.states[i]]
            if state in legal:
                ids.append(snap.ids[i])
                states.append(state)
                attempts.append(snap.attempts[i])
            else:
                outcome.skipped.append(
                    SkippedJob(id=snap.ids[i], reason=ILLEGAL_STATE, state=state)
                )
        if not ids:
            return outcome
        began = time.perf_counter()
        acted = self._act_isolating_failures(conn, ids, states, attempts, outcome.failed)
        outcome.seconds = time.perf_counter() - began
        failed_ids = {f.id for f in outcome.failed}
        outcome.done = [i for i in ids if i in acted]
        untouched = [
            (i, s, a)
            for i, s, a in zip(ids, states, attempts, strict=True)
            if i not in acted and i not in failed_ids
        ]
        outcome.skipped.extend(self._classify_untouched(conn, untouched))
        outcome.skipped.sort(key=lambda j: j.id)
        return outcome

    # the whole run (main thread: reporting, callbacks, interruption) ------------------------
    def run(
        self, snap: Snapshot, progress: ProgressFactory | None = None
    ) -> tuple[_Tally, int, bool, float]:
        """Act on the snapshot; returns the tally, how many were not attempted, whether it was
        interrupted, and the wall time."""
        total = len(snap)
        bounds = [(a, min(a + self.batch_size, total)) for a in range(0, total, self.batch_size)]
        began = time.perf_counter()
        outcomes: list[_ChunkOutcome] = []
        bar: AbstractContextManager[Advance] = (
            progress(total) if progress is not None else nullcontext(lambda n: None)
        )
        with _StopRequest(self.handle_sigint) as stop, bar as advance:
            if self.concurrency > 1 and len(bounds) > 1:
                interrupted = self._run_concurrently(snap, bounds, outcomes, advance, stop)
            else:
                interrupted = self._run_in_order(snap, bounds, outcomes, advance, stop)
        if interrupted:
            self._idle(self.conn)
        outcomes.sort(key=lambda o: o.start)
        tally = _Tally([], [], [])
        for o in outcomes:
            tally.done.extend(o.done)
            tally.skipped.extend(o.skipped)
            tally.failed.extend(o.failed)
            tally.longest = max(tally.longest, o.seconds)
        tally.chunks = len(outcomes)
        not_attempted = total - sum(o.stop - o.start for o in outcomes)
        return tally, not_attempted, interrupted and not_attempted > 0, time.perf_counter() - began

    def _report(self, outcome: _ChunkOutcome, snap: Snapshot, processed: int) -> bool:
        """Call ``on_chunk``; True when it asked to stop (KeyboardInterrupt)."""
        if self.on_chunk is None:
            return False
        report = ChunkReport(
            index=outcome.start // self.batch_size,
            ids=tuple(snap.ids[outcome.start : outcome.stop]),
            done=len(outcome.done),
            skipped=len(outcome.skipped),
            failed=len(outcome.failed),
            seconds=outcome.seconds,
            processed=processed,
            total=len(snap),
        )
        try:
            self.on_chunk(report)
        except KeyboardInterrupt:
            return True
        return False

    def _run_in_order(
        self,
        snap: Snapshot,
        bounds: list[tuple[int, int]],
        outcomes: list[_ChunkOutcome],
        advance: Advance,
        stop: _StopRequest,
    ) -> bool:
        processed = 0
        for start, end in bounds:
            try:
                outcome = self._chunk(self.conn, snap, start, end)
            except KeyboardInterrupt:
                return True
            outcomes.append(outcome)
            processed += end - start
            advance(end - start)
            if self._report(outcome, snap, processed) or stop.requested:
                return True
        return False

    def _run_concurrently(
        self,
        snap: Snapshot,
        bounds: list[tuple[int, int]],
        outcomes: list[_ChunkOutcome],
        advance: Advance,
        stop: _StopRequest,
    ) -> bool:
        assert self.connect is not None
        extra = [self.connect() for _ in range(self.concurrency - 1)]
        free = [self.conn, *extra]
        interrupted = False
        processed = 0
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="powertools-bulk") as pool:
                pending: dict[Future[_ChunkOutcome], psycopg.Connection[Any]] = {}
                queue = iter(bounds)
                while True:
                    while not interrupted and free:
                        nxt = next(queue, None)
                        if nxt is None:
                            break
                        conn = free.pop()
                        pending[pool.submit(self._chunk, conn, snap, *nxt)] = conn
                    if not pending:
                        break
                    try:
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    except KeyboardInterrupt:
                        interrupted = True
                        continue
                    results = []
                    for future in finished:
                        free.append(pending.pop(future))
                        results.append(future.result())
                    for outcome in sorted(results, key=lambda o: o.start):
                        outcomes.append(outcome)
                        processed += outcome.stop - outcome.start
                        advance(outcome.stop - outcome.start)
                        if self._report(outcome, snap, processed):
                            interrupted = True
                    if stop.requested:
                        interrupted = True
        finally:
            for conn in extra:
                conn.close()
        return interrupted

    @staticmethod
    def _idle(conn: psycopg.Connection[Any]) -> None:
        # A KeyboardInterrupt inside a chunk leaves its transaction block rolled back already;
        # make sure the session is idle before the summary event is written.
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()


def run_event(
    action: Action,
    *,
    actor: str,
    reason: str,
    run_id: uuid.UUID,
    job_filter: JobFilter,
    hashed: str,
    groups: list[GroupRow],
    summary: Summary,
    interrupted: bool,
    batch_size: int,
) -> AuditEvent:
    """The one audit event summarising a bulk run: filter, plan counts, outcome counts."""
    outcome = "interrupted" if interrupted else ("partial" if summary.failed else "ok")
    plan = summarise(action, groups)
    return AuditEvent(
        actor=actor,
        action=action.run_audit_action,
        target_type="job_selection",
        target_id=str(run_id),
        reason=reason,
        result=outcome,
        run_id=run_id,
        meta={
            "filter": job_filter.canonical(),
            "plan_hash": hashed,
            "selected": {"total": plan["total"], "by_state": plan["by_state"]},
            "outcome": {
                "done": summary.done,
                "skipped": summary.skipped,
                "failed": summary.failed,
                "not_attempted": summary.not_attempted,
                "skipped_by_reason": summary.skipped_by_reason,
            },
            "batch_size": batch_size,
        },
    )


def execute_selection(
    conn: psycopg.Connection[Any],
    prefix: str,
    action: Action,
    job_filter: JobFilter,
    selection: Selection,
    *,
    actor: str,
    reason: str,
    run_id: uuid.UUID,
    command: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_chunk: OnChunk | None = None,
    progress: ProgressFactory | None = None,
    handle_sigint: bool = True,
    record_run: bool = True,
    concurrency: int = 1,
    connect: Callable[[], psycopg.Connection[Any]] | None = None,
) -> ActionResult:
    engine = BulkRun(
        conn,
        prefix,
        action,
        actor=actor,
        reason=reason,
        run_id=run_id,
        batch_size=batch_size,
        on_chunk=on_chunk,
        handle_sigint=handle_sigint,
        concurrency=concurrency,
        connect=connect,
    )
    tally, not_attempted, interrupted, seconds = engine.run(selection.snapshot, progress)
    by_reason: dict[str, int] = {}
    for s in tally.skipped:
        by_reason[s.reason] = by_reason.get(s.reason, 0) + 1
    summary = Summary(
        selected=len(selection.snapshot),
        done=len(tally.done),
        skipped=len(tally.skipped),
        failed=len(tally.failed),
        not_attempted=not_attempted,
        skipped_by_reason=dict(sorted(by_reason.items())),
        chunks=tally.chunks,
        seconds=round(seconds, 3),
        longest_chunk_seconds=round(tally.longest, 3),
    )
    warnings: list[str] = []
    if record_run:
        event = run_event(
            action,
            actor=actor,
            reason=reason,
            run_id=run_id,
            job_filter=job_filter,
            hashed=selection.plan_hash,
            groups=selection.groups,
            summary=summary,
            interrupted=interrupted,
            batch_size=batch_size,
        )
        try:
            with conn.transaction():
                record(conn, prefix, [event])
        except psycopg.Error as exc:
            warnings.append(f"the run summary audit event was not written: {_first_line(exc)}")
    return ActionResult(
        command=command,
        action=action.value,
        run_id=run_id,
        actor=actor,
        reason=reason,
        filter=job_filter.canonical(),
        plan_hash=selection.plan_hash,
        interrupted=interrupted,
        summary=summary,
        done=tally.done,
        skipped=tally.skipped,
        failed=tally.failed,
        warnings=warnings,
    )
