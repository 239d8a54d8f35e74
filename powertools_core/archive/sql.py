"""Every statement the archive runs. ``{prefix}`` is the quoted schema (``db.identifiers.qualify``);
``{ts}`` is a terminal-timestamp column from ``policy.TERMINAL_TIMESTAMP`` put in by
``sql.job_sql`` through ``quote_ident``; ``{filter}`` is built from the constant fragments in
``FILTER_CLAUSES``. Values are always bound parameters.

A chunk is one short transaction: at most ``limit`` rows are picked through an index (``FOR
UPDATE SKIP LOCKED``: rows a worker or another run holds are left alone) and one ``DELETE ...
RETURNING`` feeds an ``INSERT`` into the other table, so a row is in exactly one table at every
commit. Archiving and restoring jobs copy the picked rows by physical address and delete the
same rows in one statement; prune and the audit archive select ids first, then move them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from powertools_core.archive.policy import TERMINAL_TIMESTAMP
from powertools_core.db.identifiers import qualify, quote_ident

# Both the oban_jobs and the archive column list, in this order (a test checks it against
# schema.oban.OBAN_JOBS_COLUMNS so a new Oban column cannot be dropped silently).
JOB_COLUMNS: Final = (
    "id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at, "
    "attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta, cancelled_at"
)
AUDIT_COLUMNS: Final = (
    "id, at, actor, action, target_type, target_id, reason, result, run_id, before, after, meta"
)

# Advisory lock class for "this archive run is alive" (key 2 is hashtext(run id)).
RUN_LOCK_CLASS: Final = 0x50574152

SELECT_NOW: Final = "SELECT timezone('UTC', now())"

# -- runs -------------------------------------------------------------------------------------
INSERT_RUN: Final = """
INSERT INTO {prefix}.powertools_archive_runs
    (id, kind, status, actor, reason, filter, counts, started_at)
VALUES (%(id)s, %(kind)s, 'running', %(actor)s, %(reason)s, %(filter)s, %(counts)s,
        timezone('UTC', now()))
RETURNING started_at
"""
LOCK_RUN: Final = "SELECT pg_advisory_lock(%(cls)s, hashtext(%(id)s::text))"
UNLOCK_RUN: Final = "SELECT pg_advisory_unlock(%(cls)s, hashtext(%(id)s::text))"
UPDATE_RUN_COUNTS: Final = """
UPDATE {prefix}.powertools_archive_runs SET counts = %(counts)s WHERE id = %(id)s
"""
FINISH_RUN: Final = """
UPDATE {prefix}.powertools_archive_runs
SET status = %(status)s, counts = %(counts)s, finished_at = timezone('UTC', now())
WHERE id = %(id)s
RETURNING finished_at
"""
# A run still 'running' whose owner no longer holds its lock was killed: say so.
MARK_ORPHANED_RUNS: Final = """
UPDATE {prefix}.powertools_archive_runs
SET status = 'interrupted', finished_at = timezone('UTC', now())
WHERE status = 'running' AND pg_try_advisory_xact_lock(%(cls)s, hashtext(id::text))
RETURNING id
"""
# Reading runs shows a dead 'running' run as 'interrupted' without writing anything.
SELECT_RUN: Final = """
SELECT id, kind,
    CASE WHEN status = 'running' AND pg_try_advisory_xact_lock(%(cls)s, hashtext(id::text))
         THEN 'interrupted' ELSE status END,
    actor, reason, filter, counts, started_at, finished_at
FROM {prefix}.powertools_archive_runs WHERE id = %(id)s
"""
SELECT_RUNS: Final = """
SELECT id, kind,
    CASE WHEN status = 'running' AND pg_try_advisory_xact_lock(%(cls)s, hashtext(id::text))
         THEN 'interrupted' ELSE status END,
    actor, reason, filter, counts, started_at, finished_at
FROM {prefix}.powertools_archive_runs
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
ORDER BY started_at DESC, id
LIMIT %(limit)s
"""

# -- archive run: oban_jobs -> powertools_job_archive ------------------------------------------
# A finished step of a workflow that is still running stays in oban_jobs: its dependents and the
# reconciler read their dependencies' states there. Only jobs whose meta names a workflow pay
# the probe (by job id, so a foreign workflow_id, Oban Pro's uuid, is never cast); the workflow's
# steps are archivable once every one of them has ended.
_LIVE_WORKFLOW_STEP: Final = """
  AND NOT ({row}.meta ? 'workflow_id' AND EXISTS (
      SELECT 1 FROM {prefix}.powertools_workflow_steps me
      JOIN {prefix}.powertools_workflow_steps ws ON ws.workflow_id = me.workflow_id
      JOIN {prefix}.oban_jobs wj ON wj.id = ws.job_id
      WHERE me.job_id = {row}.id AND wj.state NOT IN ('completed', 'discarded', 'cancelled')))"""
# Previews: per group the count, the oldest row, and the sum and range of the ids (the plan a
# preview token pins, see plan.py); then a sample of the first rows the run would take.
COUNT_ARCHIVABLE: Final = """
SELECT j.queue, j.worker, count(*), min(j.{ts}), sum(j.id)::text, min(j.id), max(j.id)
FROM {prefix}.oban_jobs j
WHERE j.state = %(state)s AND j.{ts} < %(cutoff)s
  AND (%(any_queue)s OR j.queue = ANY(%(queues)s))
  {not_live_step_j}
GROUP BY j.queue, j.worker
ORDER BY j.queue, j.worker
"""
# The first rows the chunks take (oldest finish first over every state), ids in conflict left
# out like the run leaves them; {branches} is SAMPLE_BRANCH per state joined with UNION ALL.
SAMPLE_BRANCH: Final = """(
        SELECT p.id, p.state::text AS state, p.queue, p.worker, p.args, p.attempt,
            p.max_attempts, p.tags, p.{ts} AS finished_at
        FROM {prefix}.oban_jobs p
        WHERE p.state = %(state_{state})s AND p.{ts} < %(cutoff_{state})s
          AND (%(any_queue)s OR p.queue = ANY(%(queues)s))
          AND NOT EXISTS (SELECT 1 FROM {prefix}.powertools_job_archive a WHERE a.id = p.id)
          {not_live_step_p}
        ORDER BY p.{ts}, p.id
        LIMIT %(sample)s
    )"""
SAMPLE_ARCHIVABLE: Final = """
SELECT s.id, s.state, s.queue, s.worker, s.args, s.attempt, s.max_attempts, s.tags,
    s.finished_at, NULL::timestamp AS archived_at
FROM ({branches}) s
ORDER BY s.finished_at, s.id
LIMIT %(sample)s
"""
# "Is anything due in this state?" (the leader's duty records nothing when nothing is).
SELECT_ARCHIVABLE_IDS: Final = """
SELECT p.id
FROM {prefix}.oban_jobs p
WHERE p.state = %(state)s AND p.{ts} < %(cutoff)s
  AND (%(any_queue)s OR p.queue = ANY(%(queues)s))
  AND NOT EXISTS (SELECT 1 FROM {prefix}.powertools_job_archive a WHERE a.id = p.id)
  {not_live_step_p}
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
# Ids archived earlier and back in oban_jobs under the same id (never overwritten: skipped).
SELECT_ARCHIVE_CONFLICTS: Final = """
SELECT j.id
FROM {prefix}.oban_jobs j
WHERE j.state = %(state)s AND j.{ts} < %(cutoff)s
  AND (%(any_queue)s OR j.queue = ANY(%(queues)s))
  AND EXISTS (SELECT 1 FROM {prefix}.powertools_job_archive a WHERE a.id = j.id)
ORDER BY j.id
LIMIT %(limit)s
"""
# -- the archive chunk: one statement (the hot path, see bench/archive.py) ----------------------
# 1. candidates: the ``limit`` oldest archivable rows over every state of the run, by their own
#    finish time: one ordered index scan per state merged (Merge Append), so a chunk takes
#    neighbouring rows and each heap page is visited once for all its terminal jobs, not once per
#    state. {branches} is ARCHIVE_BRANCH per state joined with UNION ALL.
# 2. picked: those rows locked, SKIP LOCKED. The state/age test is repeated here ({conditions}:
#    ARCHIVE_CONDITION per state, OR-ed) because a row updated since the candidates were read
#    (say retried to `available`) is re-checked on its new version by these quals only.
# 3. archived/deleted: the INSERT copies the picked rows into the archive and the DELETE removes
#    the same rows; both read one snapshot, the rows are ours (locked) so their addresses cannot
#    change, and either both commit or neither does. Deleting by address saves an index descent.
#
# The result is one row per (state, queue) moved, with the candidate count in every row (fewer
# candidates than ``limit`` means nothing is left) and the latest finish time moved: the next
# chunk starts each state's scan there (``after_<state>``), so it does not walk again over the
# index entries of rows already moved (dead until vacuum, and revisited in the heap while an
# older snapshot anywhere keeps them from being marked dead in the index).
#
# Without {guard} a row whose id is already archived (an id reused by a later job) fails the
# chunk on the archive's primary key, which rolls it back; the run then repeats the chunk with
# GUARD_REUSED_IDS, which leaves such rows in oban_jobs (reported as conflicts). The guard costs
# one archive probe per row, so it is used only once a conflict is known.
ARCHIVE_BRANCH: Final = """(
        SELECT p.ctid, p.{ts} AS finished_at
        FROM {prefix}.oban_jobs p
        WHERE p.state = %(state_{state})s
          AND p.{ts} >= %(after_{state})s AND p.{ts} < %(cutoff_{state})s
          AND (%(any_queue)s OR p.queue = ANY(%(queues)s))
          {guard}
          {not_live_step_p}
        ORDER BY p.{ts}
        LIMIT %(limit)s
    )"""
ARCHIVE_CONDITION: Final = "(l.state = %(state_{state})s AND l.{ts} < %(cutoff_{state})s)"
GUARD_REUSED_IDS: Final = (
    "AND NOT EXISTS (SELECT 1 FROM {prefix}.powertools_job_archive a WHERE a.id = p.id)"
)
MOVE_JOBS_TO_ARCHIVE: Final = """
WITH candidates AS MATERIALIZED (
    SELECT ARRAY(
        SELECT u.ctid FROM ({branches}) u ORDER BY u.finished_at LIMIT %(limit)s
    ) AS ctids
), picked AS MATERIALIZED (
    SELECT ARRAY(
        SELECT l.ctid FROM {prefix}.oban_jobs l
        WHERE l.ctid = ANY((SELECT ctids FROM candidates)::tid[])
          AND ({conditions})
          AND (%(any_queue)s OR l.queue = ANY(%(queues)s))
        FOR UPDATE SKIP LOCKED
    ) AS ctids
), deleted AS (
    DELETE FROM {prefix}.oban_jobs j WHERE j.ctid = ANY((SELECT ctids FROM picked)::tid[])
    RETURNING j.id, j.state, j.queue, j.worker, j.args, j.errors, j.attempt, j.max_attempts,
        j.inserted_at, j.scheduled_at, j.attempted_at, j.completed_at, j.attempted_by,
        j.discarded_at, j.priority, j.tags, j.meta, j.cancelled_at
), archived AS (
    INSERT INTO {prefix}.powertools_job_archive
        (id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at,
         attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta,
         cancelled_at, archived_at, archive_run_id)
    SELECT d.id, d.state::text, d.queue, d.worker, d.args, d.errors, d.attempt, d.max_attempts,
        d.inserted_at, d.scheduled_at, d.attempted_at, d.completed_at, d.attempted_by,
        d.discarded_at, d.priority, d.tags, d.meta, d.cancelled_at, timezone('UTC', now()),
        %(run_id)s
    FROM deleted d
    RETURNING id, state, queue,
        CASE state WHEN 'completed' THEN completed_at WHEN 'discarded' THEN discarded_at
                   ELSE cancelled_at END AS finished_at
)
SELECT state, queue, count(*), min(id), max(id), (SELECT cardinality(ctids) FROM candidates),
    max(finished_at)
FROM archived
GROUP BY state, queue
"""


def archive_move_sql(prefix: str, states: Sequence[str], *, guard: bool) -> str:
    """MOVE_JOBS_TO_ARCHIVE for these terminal states (params ``state_<s>``/``cutoff_<s>``)."""

    def fill(fragment: str, state: str) -> str:
        ts = quote_ident(TERMINAL_TIMESTAMP[state])
        return fragment.replace("{state}", state).replace("{ts}", ts)

    branches = " UNION ALL ".join(fill(ARCHIVE_BRANCH, s) for s in states)
    conditions = " OR ".join(fill(ARCHIVE_CONDITION, s) for s in states)
    text = (
        MOVE_JOBS_TO_ARCHIVE.replace("{branches}", branches)
        .replace("{conditions}", conditions)
        .replace("{guard}", GUARD_REUSED_IDS if guard else "")
    )
    return qualify(not_live_step(text), prefix)


def archive_sample_sql(prefix: str, states: Sequence[str]) -> str:
    """SAMPLE_ARCHIVABLE for these terminal states (the params of ``archive_move_sql``)."""
    branches = " UNION ALL ".join(
        SAMPLE_BRANCH.replace("{state}", s).replace("{ts}", quote_ident(TERMINAL_TIMESTAMP[s]))
        for s in states
    )
    return qualify(not_live_step(SAMPLE_ARCHIVABLE.replace("{branches}", branches)), prefix)


# -- archive run --audit: powertools_audit_events -> powertools_audit_archive -----------------
COUNT_AUDIT_ARCHIVABLE: Final = """
SELECT e.action, count(*), min(e.at), sum(e.id)::text, min(e.id), max(e.id)
FROM {prefix}.powertools_audit_events e
WHERE e.at < %(cutoff)s
GROUP BY e.action
ORDER BY e.action
"""
SAMPLE_AUDIT_ARCHIVABLE: Final = """
SELECT e.id, e.at, e.actor, e.action, e.target_type, e.target_id, NULL::timestamp
FROM {prefix}.powertools_audit_events e
WHERE e.at < %(cutoff)s
ORDER BY e.at, e.id
LIMIT %(sample)s
"""
SELECT_AUDIT_IDS: Final = """
SELECT e.id
FROM {prefix}.powertools_audit_events e
WHERE e.at < %(cutoff)s
ORDER BY e.at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
MOVE_AUDIT_TO_ARCHIVE: Final = """
WITH moved AS (
    DELETE FROM {prefix}.powertools_audit_events e
    WHERE e.id = ANY(%(ids)s)
    RETURNING e.id, e.at, e.actor, e.action, e.target_type, e.target_id, e.reason, e.result,
        e.run_id, e.before, e.after, e.meta
), archived AS (
    INSERT INTO {prefix}.powertools_audit_archive
        (id, at, actor, action, target_type, target_id, reason, result, run_id, before, after,
         meta, archived_at, archive_run_id)
    SELECT id, at, actor, action, target_type, target_id, reason, result, run_id, before, after,
        meta, timezone('UTC', now()), %(run_id)s
    FROM moved
    RETURNING id, action
)
SELECT action, NULL::text, count(*), min(id), max(id) FROM archived GROUP BY action
"""

# -- restore: powertools_job_archive -> oban_jobs ---------------------------------------------
# ``{filter}`` is the AND of the fragments a selection uses (``filter_sql``), so every plan sees
# only real conditions (no "$1 IS NULL OR ..." a generic plan could not use an index for).
FILTER_CLAUSES: Final = {
    "ids": "a.id = ANY(%(ids)s)",
    "run_id": "a.archive_run_id = %(run_id)s",
    "states": "a.state = ANY(%(states)s)",
    "queues": "a.queue = ANY(%(queues)s)",
    "workers": "a.worker = ANY(%(workers)s)",
}
COUNT_RESTORABLE: Final = """
SELECT a.state, a.queue, a.worker, count(*), min(a.archived_at), sum(a.id)::text, min(a.id),
    max(a.id)
FROM {prefix}.powertools_job_archive a
WHERE {filter}
  AND NOT EXISTS (SELECT 1 FROM {prefix}.oban_jobs j WHERE j.id = a.id)
GROUP BY a.state, a.queue, a.worker
ORDER BY a.state, a.queue, a.worker
"""
# The archived row's finish time, whatever its state.
ARCHIVED_FINISHED_AT: Final = (
    "CASE a.state WHEN 'completed' THEN a.completed_at WHEN 'discarded' THEN a.discarded_at "
    "ELSE a.cancelled_at END"
)
# A restore takes ids in order (its keyset), ids back in oban_jobs left out.
SAMPLE_RESTORABLE: Final = """
SELECT a.id, a.state, a.queue, a.worker, a.args, a.attempt, a.max_attempts, a.tags,
    {finished}, a.archived_at
FROM {prefix}.powertools_job_archive a
WHERE {filter}
  AND NOT EXISTS (SELECT 1 FROM {prefix}.oban_jobs j WHERE j.id = a.id)
ORDER BY a.id
LIMIT %(sample)s
""".replace("{finished}", ARCHIVED_FINISHED_AT)
SELECT_RESTORE_CONFLICTS: Final = """
SELECT a.id
FROM {prefix}.powertools_job_archive a
WHERE {filter}
  AND EXISTS (SELECT 1 FROM {prefix}.oban_jobs j WHERE j.id = a.id)
ORDER BY a.id
LIMIT %(limit)s
"""
SELECT_ARCHIVED_PRESENT: Final = """
SELECT a.id FROM {prefix}.powertools_job_archive a WHERE a.id = ANY(%(ids)s)
"""
# Keyset on id (the run index is (archive_run_id, id)); ids back in oban_jobs are left out by
# RESTORE_JOBS, not here, so a chunk of conflicts still advances the keyset.
SELECT_RESTORABLE_IDS: Final = """
SELECT a.id
FROM {prefix}.powertools_job_archive a
WHERE {filter}
  AND a.id > %(after)s
ORDER BY a.id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
# Ids back in oban_jobs are found by probing its primary key with the chunk's ids (an anti-join
# may be planned as a merge over the whole index, dead entries of archived rows included).
RESTORE_JOBS: Final = """
WITH picked AS MATERIALIZED (
    SELECT ARRAY(
        SELECT a.ctid FROM {prefix}.powertools_job_archive a
        WHERE a.id = ANY(%(ids)s)
          AND a.id <> ALL(ARRAY(SELECT j.id FROM {prefix}.oban_jobs j WHERE j.id = ANY(%(ids)s)))
    ) AS ctids
), restored AS (
    INSERT INTO {prefix}.oban_jobs
        (id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at,
         attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta,
         cancelled_at)
    SELECT a.id, a.state::{prefix}.oban_job_state, a.queue, a.worker, a.args, a.errors, a.attempt,
        a.max_attempts, a.inserted_at, a.scheduled_at, a.attempted_at, a.completed_at,
        a.attempted_by, a.discarded_at, a.priority, a.tags, a.meta, a.cancelled_at
    FROM {prefix}.powertools_job_archive a
    WHERE a.ctid = ANY((SELECT ctids FROM picked)::tid[])
    RETURNING id, state, queue
), deleted AS (
    DELETE FROM {prefix}.powertools_job_archive a
    WHERE a.ctid = ANY((SELECT ctids FROM picked)::tid[])
)
SELECT state::text, queue, count(*), min(id), max(id) FROM restored GROUP BY state, queue
"""

# -- prune: the only permanent delete, from the archive tables ---------------------------------
COUNT_PRUNABLE: Final = """
SELECT a.state, a.queue, a.worker, count(*), min(a.archived_at), sum(a.id)::text, min(a.id),
    max(a.id)
FROM {prefix}.powertools_job_archive a
WHERE a.archived_at < %(cutoff)s
GROUP BY a.state, a.queue, a.worker
ORDER BY a.state, a.queue, a.worker
"""
# Prune deletes in no particular order (BRIN); its sample is the oldest archived rows.
SAMPLE_PRUNABLE: Final = """
SELECT a.id, a.state, a.queue, a.worker, a.args, a.attempt, a.max_attempts, a.tags,
    {finished}, a.archived_at
FROM {prefix}.powertools_job_archive a
WHERE a.archived_at < %(cutoff)s
ORDER BY a.archived_at, a.id
LIMIT %(sample)s
""".replace("{finished}", ARCHIVED_FINISHED_AT)
# No ORDER BY: archived_at has a BRIN index (cheap on every archived row), which finds the old
# block ranges but cannot return rows in order.
SELECT_PRUNABLE_IDS: Final = """
SELECT a.id
FROM {prefix}.powertools_job_archive a
WHERE a.archived_at < %(cutoff)s
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
# What belongs to a job goes with it: the signals sent to it (kept until then as its dedupe
# memory) and, once no job of its workflow is left in oban_jobs or the archive, the workflow's
# rows (steps with their results, edges). Sibling CTEs read the snapshot from before the
# delete, hence the explicit ``<> ALL(ids)``.
PRUNE_JOBS: Final = """
WITH pruned AS (
    DELETE FROM {prefix}.powertools_job_archive a
    WHERE a.id = ANY(%(ids)s)
    RETURNING a.id, a.state, a.queue
), signals AS (
    DELETE FROM {prefix}.powertools_signals s
    WHERE s.target = ANY(ARRAY(SELECT id::text FROM pruned))
), ended AS MATERIALIZED (
    SELECT DISTINCT me.workflow_id
    FROM {prefix}.powertools_workflow_steps me
    WHERE me.job_id = ANY(ARRAY(SELECT id FROM pruned))
      AND NOT EXISTS (
          SELECT 1 FROM {prefix}.powertools_workflow_steps ws
          WHERE ws.workflow_id = me.workflow_id AND ws.job_id <> ALL(%(ids)s)
            AND (EXISTS (SELECT 1 FROM {prefix}.oban_jobs j WHERE j.id = ws.job_id)
                 OR EXISTS (SELECT 1 FROM {prefix}.powertools_job_archive x
                            WHERE x.id = ws.job_id)))
), edges AS (
    DELETE FROM {prefix}.powertools_workflow_edges e
    USING ended WHERE e.workflow_id = ended.workflow_id
), steps AS (
    DELETE FROM {prefix}.powertools_workflow_steps s
    USING ended WHERE s.workflow_id = ended.workflow_id
), workflows AS (
    DELETE FROM {prefix}.powertools_workflows w
    USING ended WHERE w.id = ended.workflow_id
)
SELECT state, queue, count(*), min(id), max(id) FROM pruned GROUP BY state, queue
"""
COUNT_AUDIT_PRUNABLE: Final = """
SELECT a.action, count(*), min(a.archived_at), sum(a.id)::text, min(a.id), max(a.id)
FROM {prefix}.powertools_audit_archive a
WHERE a.archived_at < %(cutoff)s
GROUP BY a.action
ORDER BY a.action
"""
SAMPLE_AUDIT_PRUNABLE: Final = """
SELECT a.id, a.at, a.actor, a.action, a.target_type, a.target_id, a.archived_at
FROM {prefix}.powertools_audit_archive a
WHERE a.archived_at < %(cutoff)s
ORDER BY a.archived_at, a.id
LIMIT %(sample)s
"""
SELECT_AUDIT_PRUNABLE_IDS: Final = """
SELECT a.id
FROM {prefix}.powertools_audit_archive a
WHERE a.archived_at < %(cutoff)s
ORDER BY a.archived_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
PRUNE_AUDIT: Final = """
WITH pruned AS (
    DELETE FROM {prefix}.powertools_audit_archive a
    WHERE a.id = ANY(%(ids)s)
    RETURNING a.id, a.action
)
SELECT action, NULL::text, count(*), min(id), max(id) FROM pruned GROUP BY action
"""

# -- reading the archive -----------------------------------------------------------------------
# Counting stops at a cap so `archive list` stays fast on a 10M-row archive.
COUNT_ARCHIVED: Final = """
SELECT count(*) FROM (
    SELECT 1 FROM {prefix}.powertools_job_archive a WHERE {filter} LIMIT %(count_cap)s
) capped
"""
SELECT_ARCHIVED: Final = """
SELECT a.id, a.state, a.queue, a.worker, a.args, a.errors, a.attempt, a.max_attempts,
    a.inserted_at, a.scheduled_at, a.attempted_at, a.completed_at, a.attempted_by,
    a.discarded_at, a.priority, a.tags, a.meta, a.cancelled_at, a.archived_at, a.archive_run_id
FROM {prefix}.powertools_job_archive a
WHERE a.id = %(id)s
"""
LIST_ARCHIVED: Final = """
SELECT a.id, a.state, a.queue, a.worker, a.args, a.errors, a.attempt, a.max_attempts,
    a.inserted_at, a.scheduled_at, a.attempted_at, a.completed_at, a.attempted_by,
    a.discarded_at, a.priority, a.tags, a.meta, a.cancelled_at, a.archived_at, a.archive_run_id
FROM {prefix}.powertools_job_archive a
WHERE {filter}
ORDER BY a.id DESC
LIMIT %(limit)s
"""


def filter_sql(active: Iterable[str]) -> str:
    """The WHERE fragment for the filters a selection uses (names from ``FILTER_CLAUSES``)."""
    return " AND ".join(FILTER_CLAUSES[name] for name in active) or "TRUE"


def not_live_step(text: str) -> str:
    """Put in the live-workflow-step exclusion (``{not_live_step_<alias>}``) of a job template."""
    for alias in ("p", "j"):
        text = text.replace(
            f"{{not_live_step_{alias}}}", _LIVE_WORKFLOW_STEP.replace("{row}", alias)
        )
    return text


def job_sql(
    template: str,
    prefix: str,
    *,
    state: str | None = None,
    where: str = "TRUE",
) -> str:
    """Fill a template: the state's timestamp column, the selection's ``{filter}``, then the
    quoted schema."""
    text = not_live_step(template.replace("{filter}", where))
    if state is not None:
        text = text.replace("{ts}", quote_ident(TERMINAL_TIMESTAMP[state]))
    return qualify(text, prefix)
