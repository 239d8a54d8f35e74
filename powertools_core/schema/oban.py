"""Oban's core schema, exactly as Oban's own migrations leave it at version 14.

powertools creates these objects only when ``oban_jobs`` is absent; on a database that Elixir
Oban or oban-py already set up, it never touches them. The statements below are equivalent to
running Oban's ``v01``..``v14`` migrations in order (the intermediate steps that were later
undone are folded away), and ``doctor`` uses the same names to check what is there.
"""

from __future__ import annotations

from typing import Final

OBAN_VERSION: Final = 14

JOB_STATES: Final = (
    "available",
    "suspended",
    "scheduled",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
)
TERMINAL_STATES: Final = ("completed", "discarded", "cancelled")

OBAN_JOBS_COLUMNS: Final = (
    "id",
    "state",
    "queue",
    "worker",
    "args",
    "errors",
    "attempt",
    "max_attempts",
    "inserted_at",
    "scheduled_at",
    "attempted_at",
    "completed_at",
    "attempted_by",
    "discarded_at",
    "priority",
    "tags",
    "meta",
    "cancelled_at",
)

# Non-primary-key indexes Oban v14 leaves on oban_jobs: name -> definition fragment.
OBAN_INDEXES: Final = {
    "oban_jobs_state_queue_priority_scheduled_at_id_index": (
        "(state, queue, priority, scheduled_at, id)"
    ),
    "oban_jobs_args_index": "USING gin (args)",
    "oban_jobs_meta_index": "USING gin (meta)",
    "oban_jobs_state_cancelled_at_index": "(state, cancelled_at)",
    "oban_jobs_state_discarded_at_index": "(state, discarded_at)",
}

OBAN_CHECKS: Final = (
    "worker_length",
    "queue_length",
    "positive_max_attempts",
    "attempt_range",
    "non_negative_priority",
)

# ``{prefix}`` is replaced by the quoted schema (see db.identifiers.qualify).
CREATE_OBAN_CORE: Final = (
    "CREATE SCHEMA IF NOT EXISTS {prefix}",
    """CREATE TYPE {prefix}.oban_job_state AS ENUM (
    'available', 'suspended', 'scheduled', 'executing',
    'retryable', 'completed', 'discarded', 'cancelled'
)""",
    """CREATE TABLE {prefix}.oban_jobs (
    id bigserial PRIMARY KEY,
    state {prefix}.oban_job_state NOT NULL DEFAULT 'available',
    queue text NOT NULL DEFAULT 'default',
    worker text NOT NULL,
    args jsonb NOT NULL DEFAULT '{}'::jsonb,
    errors jsonb[] NOT NULL DEFAULT ARRAY[]::jsonb[],
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 20,
    inserted_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
    scheduled_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
    attempted_at timestamp without time zone,
    completed_at timestamp without time zone,
    attempted_by text[],
    discarded_at timestamp without time zone,
    priority integer NOT NULL DEFAULT 0,
    tags text[] DEFAULT ARRAY[]::text[],
    meta jsonb DEFAULT '{}'::jsonb,
    cancelled_at timestamp without time zone,
    CONSTRAINT worker_length CHECK (char_length(worker) > 0 AND char_length(worker) < 128),
    CONSTRAINT queue_length CHECK (char_length(queue) > 0 AND char_length(queue) < 128),
    CONSTRAINT positive_max_attempts CHECK (max_attempts > 0),
    CONSTRAINT attempt_range CHECK (attempt >= 0 AND attempt <= max_attempts)
)""",
    "ALTER TABLE {prefix}.oban_jobs "
    "ADD CONSTRAINT non_negative_priority CHECK (priority >= 0) NOT VALID",
    "CREATE INDEX oban_jobs_state_queue_priority_scheduled_at_id_index "
    "ON {prefix}.oban_jobs (state, queue, priority, scheduled_at, id)",
    "CREATE INDEX oban_jobs_args_index ON {prefix}.oban_jobs USING gin (args)",
    "CREATE INDEX oban_jobs_meta_index ON {prefix}.oban_jobs USING gin (meta)",
    "CREATE INDEX oban_jobs_state_cancelled_at_index ON {prefix}.oban_jobs (state, cancelled_at)",
    "CREATE INDEX oban_jobs_state_discarded_at_index ON {prefix}.oban_jobs (state, discarded_at)",
    """CREATE UNLOGGED TABLE IF NOT EXISTS {prefix}.oban_peers (
    name text PRIMARY KEY,
    node text NOT NULL,
    started_at timestamp without time zone NOT NULL,
    expires_at timestamp without time zone NOT NULL
)""",
    """CREATE UNLOGGED TABLE IF NOT EXISTS {prefix}.oban_producers (
    uuid uuid PRIMARY KEY,
    name text NOT NULL DEFAULT 'oban',
    node text NOT NULL,
    queue text NOT NULL,
    meta jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
    updated_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now())
)""",
    f"COMMENT ON TABLE {{prefix}}.oban_jobs IS '{OBAN_VERSION}'",
)

# Read Oban's version marker the way Oban does (absent table or comment -> no version).
SELECT_OBAN_VERSION: Final = """
SELECT c.oid IS NOT NULL AS present, pg_catalog.obj_description(c.oid, 'pg_class') AS version
FROM pg_catalog.pg_namespace n
LEFT JOIN pg_catalog.pg_class c
  ON c.relnamespace = n.oid AND c.relname = 'oban_jobs' AND c.relkind IN ('r', 'p')
WHERE n.nspname = %(schema)s
"""

# The columns of oban_jobs and the labels of its state enum, to recognise the v14 shape.
SELECT_V14_SHAPE: Final = """
SELECT
  (SELECT array_agg(a.attname::text)
     FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT array_agg(e.enumlabel::text)
     FROM pg_catalog.pg_attribute a
     JOIN pg_catalog.pg_enum e ON e.enumtypid = a.atttypid
    WHERE a.attrelid = c.oid AND a.attname = 'state')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = 'oban_jobs'
"""

SELECT_TABLES_PRESENT: Final = """
SELECT c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'u') AND c.relname = ANY(%(names)s)
"""


def parse_version(comment: str | None) -> int | None:
    """Oban's comment is the version number; ``∞`` means 'newer than anything'."""
    if comment is None:
        return None
    text = comment.strip()
    if text == "∞":
        return 10**6
    return int(text) if text.isdigit() else None
