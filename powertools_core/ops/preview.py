"""Previews: what a filter selects right now, summarised and pinned by a plan hash.

The preview is stateless. Its token is the start of the plan hash, a SHA-256 over the action, the
canonical filter and, per (state, queue, worker) group of the selection, the count, the sum and
the maximum of the ids. Executing with ``preview_token`` recomputes the hash from the live
selection (in the same snapshot that fixes the ids to act on) and refuses when it differs, so
nothing is written by ``--dry-run`` and nothing needs expiring.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from powertools_core.db.identifiers import qualify
from powertools_core.jobs.model import JOB_COLUMNS, Job
from powertools_core.ops.actions import LEGAL_FROM, Action
from powertools_core.ops.filters import JobFilter, where_clause
from powertools_core.schema.oban import JOB_STATES

TOKEN_LENGTH: Final = 16
PLAN_VERSION: Final = 1

# Jobs a run has already acted on (``resume``) are left out of its selection.
NOT_DONE_IN_RUN_CLAUSE: Final = """NOT EXISTS (
    SELECT 1 FROM {prefix}.powertools_audit_events AS a
    WHERE a.run_id = %(resume_run)s AND a.target_type = 'job' AND a.target_id = j.id::text
)"""

# ``{where}`` is built by filters.where_clause from constant fragments only.
SELECT_GROUPS: Final = """
WITH sel AS (
    SELECT j.id, j.state, j.queue, j.worker FROM {prefix}.oban_jobs AS j
    WHERE {where} ORDER BY j.id LIMIT %(limit)s
)
SELECT state::text, queue, worker, count(*), sum(id)::text, max(id)
FROM sel GROUP BY state, queue, worker ORDER BY state, queue, worker
"""

SELECT_SNAPSHOT: Final = """
SELECT j.id, j.state::text, j.attempt FROM {prefix}.oban_jobs AS j
WHERE {where} ORDER BY j.id LIMIT %(limit)s
"""

SELECT_SAMPLE: Final = """
SELECT {columns} FROM {prefix}.oban_jobs AS j
WHERE {where} ORDER BY j.id LIMIT LEAST(%(sample)s, %(limit)s)
""".replace("{columns}", JOB_COLUMNS)

STATE_CODES: Final = {s: i for i, s in enumerate(JOB_STATES)}


@dataclass(frozen=True, slots=True)
class GroupRow:
    state: str
    queue: str
    worker: str
    count: int
    id_sum: str
    id_max: int


@dataclass(slots=True)
class Snapshot:
    """The ids a run will act on, in id order, with the state and attempt seen at selection."""

    ids: array[int]
    states: bytearray
    attempts: array[int]

    def __len__(self) -> int:
        return len(self.ids)


def plan_hash(action: Action, canonical_filter: dict[str, Any], groups: Sequence[GroupRow]) -> str:
    """Lower-case hex SHA-256 of the plan (pure: same inputs, same hash)."""
    payload = {
        "v": PLAN_VERSION,
        "action": action.value,
        "filter": canonical_filter,
        "groups": [[g.state, g.queue, g.worker, g.count, g.id_sum, g.id_max] for g in groups],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def token_of(hash_hex: str) -> str:
    return hash_hex[:TOKEN_LENGTH]


def token_matches(token: str, hash_hex: str) -> bool:
    cleaned = token.strip().lower()
    return len(cleaned) >= 8 and hash_hex.startswith(cleaned)


def _where(
    prefix: str, job_filter: JobFilter, resume_run: uuid.UUID | None
) -> tuple[str, dict[str, Any]]:
    where, params = where_clause(job_filter)
    if resume_run is not None:
        where = f"{where} AND {qualify(NOT_DONE_IN_RUN_CLAUSE, prefix)}"
        params["resume_run"] = resume_run
    params["limit"] = job_filter.limit
    return where, params


def _sql(template: str, prefix: str, where: str) -> str:
    # ``where`` is assembled only from the constant fragments in filters.py / above.
    return qualify(template.replace("{where}", where), prefix)


def select_groups(
    conn: psycopg.Connection[Any],
    prefix: str,
    job_filter: JobFilter,
    resume_run: uuid.UUID | None = None,
) -> list[GroupRow]:
    where, params = _where(prefix, job_filter, resume_run)
    rows = conn.execute(_sql(SELECT_GROUPS, prefix, where), params).fetchall()
    return [GroupRow(r[0], r[1], r[2], int(r[3]), str(r[4]), int(r[5])) for r in rows]


def select_snapshot(
    conn: psycopg.Connection[Any],
    prefix: str,
    job_filter: JobFilter,
    resume_run: uuid.UUID | None = None,
) -> Snapshot:
    where, params = _where(prefix, job_filter, resume_run)
    snap = Snapshot(array("q"), bytearray(), array("i"))
    with conn.cursor(name=f"powertools_snapshot_{uuid.uuid4().hex[:8]}") as cur:
        cur.itersize = 20_000
        cur.execute(_sql(SELECT_SNAPSHOT, prefix, where), params)
        for job_id, state, attempt in cur:
            snap.ids.append(job_id)
            snap.states.append(STATE_CODES[state])
            snap.attempts.append(attempt)
    return snap


def select_sample(
    conn: psycopg.Connection[Any], prefix: str, job_filter: JobFilter, size: int
) -> list[Job]:
    where, params = _where(prefix, job_filter, None)
    params["sample"] = size
    rows = conn.execute(_sql(SELECT_SAMPLE, prefix, where), params).fetchall()
    return [Job.from_row(r) for r in rows]


def summarise(action: Action, groups: Sequence[GroupRow]) -> dict[str, Any]:
    """Counts by state/queue/worker and how many the action would act on or skip (pure)."""
    by_state: dict[str, int] = {}
    by_queue: dict[str, int] = {}
    by_worker: dict[str, int] = {}
    would_act = 0
    for g in groups:
        by_state[g.state] = by_state.get(g.state, 0) + g.count
        by_queue[g.queue] = by_queue.get(g.queue, 0) + g.count
        by_worker[g.worker] = by_worker.get(g.worker, 0) + g.count
        if g.state in LEGAL_FROM[action]:
            would_act += g.count
    total = sum(by_state.values())
    return {
        "total": total,
        "would_act": would_act,
        "would_skip": total - would_act,
        "by_state": {s: by_state[s] for s in JOB_STATES if s in by_state},
        "by_queue": dict(sorted(by_queue.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_worker": dict(sorted(by_worker.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
