"""Read queries operators use on ``oban_jobs``: a filtered page (newest first) and one job.

``where`` bodies come from ``ops.filters.where_clause`` (constant fragments, bound values).
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

from powertools_core.db.identifiers import qualify
from powertools_core.jobs.model import JOB_COLUMNS, Job

MAX_PAGE: Final = 1_000

LIST_JOBS: Final = """
SELECT {columns} FROM {prefix}.oban_jobs AS j
WHERE {where} ORDER BY j.id DESC LIMIT %(page_limit)s
""".replace("{columns}", JOB_COLUMNS)
BEFORE_ID_CLAUSE: Final = "j.id < %(before_id)s"

COUNT_BY_STATE: Final = """
SELECT j.state::text, count(*) FROM {prefix}.oban_jobs AS j WHERE {where} GROUP BY j.state
"""

GET_JOB: Final = """
SELECT {columns} FROM {prefix}.oban_jobs AS j WHERE j.id = %(id)s
""".replace("{columns}", JOB_COLUMNS)


def _sql(template: str, prefix: str, where: str) -> str:
    return qualify(template.replace("{where}", where), prefix)


def list_page(
    conn: psycopg.Connection[Any],
    prefix: str,
    where: str,
    params: dict[str, Any],
    *,
    before_id: int | None,
    limit: int,
) -> list[Job]:
    """Up to ``limit`` jobs matching ``where``, newest (highest id) first, below ``before_id``."""
    params = dict(params, page_limit=limit)
    if before_id is not None:
        where = f"{where} AND {BEFORE_ID_CLAUSE}"
        params["before_id"] = before_id
    rows = conn.execute(_sql(LIST_JOBS, prefix, where), params).fetchall()
    return [Job.from_row(r) for r in rows]


def count_by_state(
    conn: psycopg.Connection[Any], prefix: str, where: str, params: dict[str, Any]
) -> dict[str, int]:
    rows = conn.execute(_sql(COUNT_BY_STATE, prefix, where), params).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def get_job(conn: psycopg.Connection[Any], prefix: str, job_id: int) -> Job | None:
    row = conn.execute(qualify(GET_JOB, prefix), {"id": job_id}).fetchone()
    return Job.from_row(row) if row is not None else None
