"""The acker's hook: promote the dependents of workflow steps it has just acked.

The ack statement commits on its own (autocommit, group commit); promotion follows at once on
the same connection in its own short transaction. Plain jobs cost nothing (the ack statement
says which rows are steps). A crash or error between the two is repaired by the leader's
reconciler (``workflows.duty``), so it is logged, never raised into the ack loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from powertools_core.workflows.store import promote_async

log = logging.getLogger("powertools.workflows")


async def workflow_steps_acked(
    conn: psycopg.AsyncConnection[Any], prefix: str, job_ids: Sequence[int]
) -> None:
    try:
        await promote_async(conn, prefix, job_ids)
    except psycopg.Error as exc:
        log.warning(
            "workflows: promotion after ack of %d step(s) failed (%s); the reconciler repairs it",
            len(job_ids),
            exc,
        )
