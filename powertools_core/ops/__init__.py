"""Operator actions on jobs: find, preview, then retry / cancel / discard, audited.

The Python API the ``powertools ops`` commands call, returning the same result models::

    from powertools_core import load_settings, ops

    settings = load_settings()
    f = ops.build_filter(states=["discarded"], queue="mailers")
    print(ops.preview(settings, "retry", f).preview.preview_token)
    result = ops.execute(settings, "retry", f, actor="alice", reason="provider outage fixed")

Every execution goes preview -> reason -> execute -> audit: ``actor`` and a ``reason`` of at
least 8 characters are required, an optional ``preview_token`` pins the previewed plan, and each
changed job gets an audit event in the same transaction as its change (bulk runs add one summary
event). Jobs in states the action does not apply to are skipped with the reason, never errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

from powertools_core import workers
from powertools_core.audit import list_events
from powertools_core.config import Settings
from powertools_core.db.connection import connect, resolve_url, translated
from powertools_core.durations import format_duration, parse_duration
from powertools_core.errors import InvalidInput, NotFound
from powertools_core.jobs import query
from powertools_core.ops.actions import (
    DEFAULT_STATES,
    LEGAL_FROM,
    Action,
    explain_skip,
    is_legal,
    skip_reason,
)
from powertools_core.ops.bulk import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    MAX_BATCH_SIZE,
    MAX_CONCURRENCY,
    ChunkReport,
    OnChunk,
    ProgressFactory,
    execute_selection,
    select,
)
from powertools_core.ops.errors import PreviewDrifted, check_intent
from powertools_core.ops.filters import JobFilter, build_filter, describe, where_clause
from powertools_core.ops.preview import plan_hash as compute_plan_hash
from powertools_core.ops.preview import select_groups, select_sample, summarise, token_of
from powertools_core.ops.results import (
    ActionResult,
    AuditListResult,
    Group,
    JobListResult,
    JobShowResult,
    Preview,
    PreviewResult,
)
from powertools_core.ops.views import audit_entry, job_detail, job_summary
from powertools_core.redaction import DenyList
from powertools_core.schema.oban import JOB_STATES

DEFAULT_PAGE: Final = 20
SAMPLE_SIZE: Final = 5
AUDIT_ON_SHOW: Final = 50

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "LEGAL_FROM",
    "Action",
    "ActionResult",
    "AuditListResult",
    "ChunkReport",
    "JobFilter",
    "JobListResult",
    "JobShowResult",
    "PreviewDrifted",
    "PreviewResult",
    "act_on_job",
    "audit_list",
    "build_filter",
    "bulk_filter",
    "cancel_job",
    "discard_job",
    "execute",
    "explain_skip",
    "is_legal",
    "list_jobs",
    "preview",
    "preview_job",
    "retry_job",
    "show_job",
    "skip_reason",
]


def _action(action: Action | str) -> Action:
    try:
        return Action(action)
    except ValueError:
        raise InvalidInput(
            f"unknown action {action!r}", hint="use retry, cancel or discard"
        ) from None


@contextmanager
def _connection(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection (transactions are explicit); driver errors become one line."""
    url = resolve_url(settings)
    with translated(url):
        if settings.app:
            workers.load_app(settings.app)
        conn = connect(url, autocommit=True)
        try:
            yield conn
        finally:
            conn.close()


def _deny(settings: Settings) -> DenyList:
    return DenyList(settings.redact_keys)


def bulk_filter(action: Action | str, job_filter: JobFilter) -> JobFilter:
    """The filter a bulk action runs with: the worker name resolved and, when neither states
    nor ids were given, the action's default states (``actions.DEFAULT_STATES``)."""
    act = _action(action)
    resolved = job_filter.resolved()
    if not resolved.states and not resolved.ids:
        resolved = resolved.with_states(DEFAULT_STATES[act])
    return resolved


# Reading ----------------------------------------------------------------------------------------


def list_jobs(
    settings: Settings,
    job_filter: JobFilter,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> JobListResult:
    """A page of matching jobs, newest first; ``next_cursor`` continues after the last one.
    ``counts`` gives the filter's jobs by state (ignoring its ``states``)."""
    if not 1 <= limit <= query.MAX_PAGE:
        raise InvalidInput(f"--limit must be between 1 and {query.MAX_PAGE}")
    before_id = _parse_cursor(cursor)
    with _connection(settings) as conn:
        resolved = job_filter.resolved()
        where, params = where_clause(resolved)
        all_where, all_params = where_clause(resolved, with_states=False)
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            counts = query.count_by_state(conn, settings.prefix, all_where, all_params)
            jobs = query.list_page(
                conn, settings.prefix, where, params, before_id=before_id, limit=limit
            )
    deny = _deny(settings)
    chosen = resolved.states or JOB_STATES
    return JobListResult(
        filter=resolved.canonical(),
        counts={s: counts.get(s, 0) for s in JOB_STATES},
        total=sum(counts.get(s, 0) for s in chosen),
        jobs=[job_summary(j, deny) for j in jobs],
        next_cursor=str(jobs[-1].id) if len(jobs) == limit else None,
    )


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit():
        raise InvalidInput(
            f"invalid cursor {cursor!r}", hint="pass the next_cursor printed by the last page"
        )
    return int(cursor)


def show_job(settings: Settings, job_id: int) -> JobShowResult:
    """One job in full (args/meta redacted) with its audit history, newest first."""
    with _connection(settings) as conn:
        job = query.get_job(conn, settings.prefix, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found in schema {settings.prefix}")
        events = list_events(
            conn, settings.prefix, target_type="job", target_id=str(job_id), limit=AUDIT_ON_SHOW
        )
    deny = _deny(settings)
    return JobShowResult(job=job_detail(job, deny), audit=[audit_entry(e, deny) for e in events])


def audit_list(
    settings: Settings,
    *,
    actor: str | None = None,
    action: str | None = None,
    job_id: int | None = None,
    since: str | timedelta | datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> AuditListResult:
    """Audit events newest first (before/after/meta redacted). ``since`` is an age (``2h``) or
    an ISO-8601 UTC time; ``action`` ending in ``*`` matches a prefix (``ops.*``)."""
    when = _since(since)
    before_id = _parse_cursor(cursor)
    with _connection(settings) as conn:
        events = list_events(
            conn,
            settings.prefix,
            actor=actor,
            action=action,
            target_type="job" if job_id is not None else None,
            target_id=str(job_id) if job_id is not None else None,
            since=when,
            before_id=before_id,
            limit=limit,
        )
    deny = _deny(settings)
    shown: dict[str, Any] = {}
    for key, value in (("actor", actor), ("action", action), ("job", job_id)):
        if value is not None:
            shown[key] = value
    if isinstance(when, timedelta):
        shown["since"] = format_duration(when)
    elif when is not None:
        shown["since"] = when.isoformat()
    return AuditListResult(
        filter=shown,
        events=[audit_entry(e, deny) for e in events],
        next_cursor=str(events[-1].id) if len(events) == limit and events else None,
    )


def _since(value: str | timedelta | datetime | None) -> timedelta | datetime | None:
    if value is None or isinstance(value, timedelta | datetime):
        return value
    text = value.strip()
    if text[:4].isdigit() and "-" in text:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"invalid --since {value!r}", hint="an age like 2h or 7d, or an ISO-8601 time"
            ) from None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed
    return parse_duration(text)


# Preview ----------------------------------------------------------------------------------------


def _preview(
    conn: psycopg.Connection[Any],
    settings: Settings,
    act: Action,
    job_filter: JobFilter,
    sample_size: int,
) -> Preview:
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        groups = select_groups(conn, settings.prefix, job_filter)
        sample = select_sample(conn, settings.prefix, job_filter, sample_size)
    hashed = compute_plan_hash(act, job_filter.canonical(), groups)
    counts = summarise(act, groups)
    deny = _deny(settings)
    return Preview(
        action=act.value,
        filter=job_filter.canonical(),
        groups=[
            Group(
                state=g.state,
                queue=g.queue,
                worker=g.worker,
                count=g.count,
                legal=g.state in LEGAL_FROM[act],
            )
            for g in groups
        ],
        sample=[job_summary(j, deny) for j in sample],
        plan_hash=hashed,
        preview_token=token_of(hashed),
        **counts,
    )


def preview(
    settings: Settings,
    action: Action | str,
    job_filter: JobFilter,
    *,
    sample_size: int = SAMPLE_SIZE,
    command: str | None = None,
) -> PreviewResult:
    """What a bulk action would do now. Reads only: nothing is written, not even the token
    (it is derived from the plan; ``execute(preview_token=...)`` re-derives and compares)."""
    act = _action(action)
    chosen = bulk_filter(act, job_filter)
    with _connection(settings) as conn:
        result = _preview(conn, settings, act, chosen, sample_size)
    return PreviewResult(command=command or f"ops {act.value}-all", preview=result)


def preview_job(
    settings: Settings, action: Action | str, job_id: int, *, command: str | None = None
) -> PreviewResult:
    act = _action(action)
    with _connection(settings) as conn:
        result = _preview(conn, settings, act, JobFilter(ids=(job_id,)), 1)
    if result.total == 0:
        raise NotFound(f"job {job_id} not found in schema {settings.prefix}")
    return PreviewResult(command=command or f"ops {act.value}", preview=result)


# Execute ----------------------------------------------------------------------------------------


def execute(
    settings: Settings,
    action: Action | str,
    job_filter: JobFilter,
    *,
    actor: str | None,
    reason: str | None,
    preview_token: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_chunk: OnChunk | None = None,
    progress: ProgressFactory | None = None,
    resume_run: uuid.UUID | str | None = None,
    handle_sigint: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    command: str | None = None,
) -> ActionResult:
    """Run a bulk action over the filter in chunks of ``batch_size`` (see ``ops.bulk``).

    ``progress(total)`` is a context manager yielding ``advance(n)``; ``on_chunk`` is called
    after every committed chunk. ``resume_run`` continues an interrupted run under its id,
    leaving out every job it already changed. ``concurrency`` chunks are in flight at once (each
    on its own connection); an interruption stops after those.
    """
    act = _action(action)
    who, why = check_intent(actor or settings.actor, reason)
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInput(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InvalidInput(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    run = _run_id(resume_run)
    url = resolve_url(settings)
    chosen = bulk_filter(act, job_filter)
    with _connection(settings) as conn:
        if resume_run is not None:
            _check_resumable(conn, settings.prefix, act, run, chosen)
        selection = select(
            conn,
            settings.prefix,
            act,
            chosen,
            preview_token=preview_token,
            resume_run=run if resume_run is not None else None,
        )
        return execute_selection(
            conn,
            settings.prefix,
            act,
            chosen,
            selection,
            actor=who,
            reason=why,
            run_id=run,
            command=command or f"ops {act.value}-all",
            batch_size=batch_size,
            on_chunk=on_chunk,
            progress=progress,
            handle_sigint=handle_sigint,
            record_run=True,
            concurrency=concurrency,
            connect=lambda: connect(url, autocommit=True),
        )


def _check_resumable(
    conn: psycopg.Connection[Any], prefix: str, act: Action, run: uuid.UUID, chosen: JobFilter
) -> None:
    """A run to resume must be in the audit trail, for this action and with the same filter."""
    events = list_events(conn, prefix, run_id=run, limit=1)
    if not events:
        raise InvalidInput(
            f"no run {run} in the audit trail", hint="pass the run_id an interrupted run printed"
        )
    summaries = list_events(conn, prefix, run_id=run, target_type="job_selection", limit=1)
    if events[0].action not in (act.audit_action, act.run_audit_action):
        raise InvalidInput(f"run {run} was not a {act.value} run ({events[0].action})")
    if summaries and summaries[0].meta.get("filter") != chosen.canonical():
        raise InvalidInput(
            f"run {run} used different filters ({describe(summaries[0].meta['filter'] or {})})",
            hint="resume with exactly the filters of the run",
        )


def _run_id(value: uuid.UUID | str | None) -> uuid.UUID:
    if value is None:
        return uuid.uuid4()
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(
            f"invalid run id {value!r}", hint="pass the run_id an earlier run printed"
        ) from None


def act_on_job(
    settings: Settings,
    action: Action | str,
    job_id: int,
    *,
    actor: str | None,
    reason: str | None,
    preview_token: str | None = None,
    command: str | None = None,
) -> ActionResult:
    """One job: done, or skipped with the reason (``illegal_state``, ``changed_since_preview``,
    ``locked``); a missing job is ``NotFound``. Audited like a bulk run, without the summary."""
    act = _action(action)
    who, why = check_intent(actor or settings.actor, reason)
    job_filter = JobFilter(ids=(job_id,))
    with _connection(settings) as conn:
        selection = select(conn, settings.prefix, act, job_filter, preview_token=preview_token)
        if len(selection.snapshot) == 0:
            raise NotFound(f"job {job_id} not found in schema {settings.prefix}")
        return execute_selection(
            conn,
            settings.prefix,
            act,
            job_filter,
            selection,
            actor=who,
            reason=why,
            run_id=uuid.uuid4(),
            command=command or f"ops {act.value}",
            batch_size=1,
            handle_sigint=False,
            record_run=False,
        )


def retry_job(settings: Settings, job_id: int, *, actor: str | None, reason: str) -> ActionResult:
    return act_on_job(settings, Action.retry, job_id, actor=actor, reason=reason)


def cancel_job(settings: Settings, job_id: int, *, actor: str | None, reason: str) -> ActionResult:
    return act_on_job(settings, Action.cancel, job_id, actor=actor, reason=reason)


def discard_job(settings: Settings, job_id: int, *, actor: str | None, reason: str) -> ActionResult:
    return act_on_job(settings, Action.discard, job_id, actor=actor, reason=reason)
