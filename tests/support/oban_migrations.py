"""Build ``oban_jobs`` the way Elixir Oban's own migrations do, one version at a time.

This is deliberately *not* powertools' DDL (``powertools_core.schema.oban``): it replays what
Oban's ``V01`` .. ``V14`` migrations emit through Ecto, in order, including the steps that later
versions undo (the notify trigger, ``oban_wrap_id``, the ``priority_range`` check, the
``attempted_at`` index), recording each version in the table comment the way Oban does.
Tests use it to stand in for a database that Oban set up, so that ``powertools install`` can be
checked against it.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

_Step = tuple[str, ...]

# Each entry is one Oban migration version: the statements it runs, with ``{s}`` for the quoted
# schema and ``{e}`` for the schema as a string literal body (used in function bodies).
_VERSIONS: dict[int, _Step] = {
    1: (
        """DO $$
BEGIN
IF NOT EXISTS (SELECT 1 FROM pg_type
               WHERE typname = 'oban_job_state' AND typnamespace = '{e}'::regnamespace::oid) THEN
  CREATE TYPE {s}.oban_job_state AS ENUM
    ('available', 'scheduled', 'executing', 'retryable', 'completed', 'discarded');
END IF;
END$$""",
        """CREATE TABLE IF NOT EXISTS {s}."oban_jobs" (
  "id" bigserial,
  "state" {s}.oban_job_state DEFAULT 'available' NOT NULL,
  "queue" text DEFAULT 'default' NOT NULL,
  "worker" text NOT NULL,
  "args" jsonb NOT NULL,
  "errors" jsonb[] DEFAULT ARRAY[]::jsonb[] NOT NULL,
  "attempt" integer DEFAULT 0 NOT NULL,
  "max_attempts" integer DEFAULT 20 NOT NULL,
  "inserted_at" timestamp DEFAULT timezone('UTC', now()) NOT NULL,
  "scheduled_at" timestamp DEFAULT timezone('UTC', now()) NOT NULL,
  "attempted_at" timestamp,
  "completed_at" timestamp,
  PRIMARY KEY ("id")
)""",
        'CREATE INDEX IF NOT EXISTS "oban_jobs_queue_index" ON {s}."oban_jobs" ("queue")',
        'CREATE INDEX IF NOT EXISTS "oban_jobs_state_index" ON {s}."oban_jobs" ("state")',
        'CREATE INDEX IF NOT EXISTS "oban_jobs_scheduled_at_index" ON {s}."oban_jobs" '
        '("scheduled_at")',
        """CREATE OR REPLACE FUNCTION {s}.oban_jobs_notify() RETURNS trigger AS $$
DECLARE
  channel text;
  notice json;
BEGIN
  IF (TG_OP = 'INSERT') THEN
    channel = '{e}.oban_insert';
    notice = json_build_object('queue', NEW.queue, 'state', NEW.state);
    IF NEW.scheduled_at IS NOT NULL AND NEW.scheduled_at > now() AT TIME ZONE 'utc' THEN
      RETURN null;
    END IF;
  ELSE
    channel = '{e}.oban_update';
    notice = json_build_object('queue', NEW.queue, 'new_state', NEW.state,
                               'old_state', OLD.state);
  END IF;
  PERFORM pg_notify(channel, notice::text);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql""",
        "DROP TRIGGER IF EXISTS oban_notify ON {s}.oban_jobs",
        "CREATE TRIGGER oban_notify AFTER INSERT OR UPDATE OF state ON {s}.oban_jobs "
        "FOR EACH ROW EXECUTE PROCEDURE {s}.oban_jobs_notify()",
    ),
    2: (
        'DROP INDEX IF EXISTS {s}."oban_jobs_scheduled_at_index"',
        'CREATE INDEX "oban_jobs_scheduled_at_index" ON {s}."oban_jobs" ("scheduled_at") '
        "WHERE state in ('available'::{s}.oban_job_state, 'scheduled'::{s}.oban_job_state)",
        'ALTER TABLE {s}."oban_jobs" ADD CONSTRAINT "worker_length" '
        "CHECK (char_length(worker) > 0 AND char_length(worker) < 128)",
        'ALTER TABLE {s}."oban_jobs" ADD CONSTRAINT "queue_length" '
        "CHECK (char_length(queue) > 0 AND char_length(queue) < 128)",
        """CREATE OR REPLACE FUNCTION {s}.oban_wrap_id(value bigint) RETURNS int AS $$
BEGIN
  RETURN (CASE WHEN value > 2147483647 THEN mod(value, 2147483647) ELSE value END)::int;
END;
$$ LANGUAGE plpgsql IMMUTABLE""",
    ),
    3: ('ALTER TABLE {s}."oban_jobs" ADD COLUMN IF NOT EXISTS "attempted_by" text[]',),
    4: ("DROP FUNCTION IF EXISTS {s}.oban_wrap_id(value bigint)",),
    5: (
        'DROP INDEX IF EXISTS {s}."oban_jobs_scheduled_at_index"',
        'DROP INDEX IF EXISTS {s}."oban_jobs_queue_index"',
        'DROP INDEX IF EXISTS {s}."oban_jobs_state_index"',
        'CREATE INDEX IF NOT EXISTS "oban_jobs_queue_state_scheduled_at_id_index" '
        'ON {s}."oban_jobs" ("queue", "state", "scheduled_at", "id")',
    ),
    6: (),  # Oban's V06 only touched oban_beats, which Oban no longer creates.
    7: (
        'CREATE INDEX IF NOT EXISTS "oban_jobs_attempted_at_id_index" '
        'ON {s}."oban_jobs" (attempted_at desc, "id") '
        "WHERE state in ('completed', 'discarded')",
    ),
    8: (
        'ALTER TABLE {s}."oban_jobs" ADD COLUMN IF NOT EXISTS "discarded_at" timestamp, '
        'ADD COLUMN IF NOT EXISTS "priority" integer, ADD COLUMN IF NOT EXISTS "tags" text[]',
        'ALTER TABLE {s}."oban_jobs" ALTER COLUMN "priority" TYPE integer, '
        'ALTER COLUMN "priority" SET DEFAULT 0, ALTER COLUMN "tags" TYPE text[], '
        'ALTER COLUMN "tags" SET DEFAULT ARRAY[]::text[]',
        'DROP INDEX IF EXISTS {s}."oban_jobs_queue_state_scheduled_at_id_index"',
        'CREATE INDEX IF NOT EXISTS "oban_jobs_state_queue_priority_scheduled_at_id_index" '
        'ON {s}."oban_jobs" ("state", "queue", "priority", "scheduled_at", "id")',
        """CREATE OR REPLACE FUNCTION {s}.oban_jobs_notify() RETURNS trigger AS $$
DECLARE
  channel text;
  notice json;
BEGIN
  IF NEW.state = 'available' THEN
    channel = '{e}.oban_insert';
    notice = json_build_object('queue', NEW.queue);
    PERFORM pg_notify(channel, notice::text);
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql""",
        "DROP TRIGGER IF EXISTS oban_notify ON {s}.oban_jobs",
        "CREATE TRIGGER oban_notify AFTER INSERT ON {s}.oban_jobs "
        "FOR EACH ROW EXECUTE PROCEDURE {s}.oban_jobs_notify()",
    ),
    9: (
        'ALTER TABLE {s}."oban_jobs" ADD COLUMN IF NOT EXISTS "meta" jsonb DEFAULT \'{{}}\', '
        'ADD COLUMN IF NOT EXISTS "cancelled_at" timestamp',
        # PostgreSQL >= 12 branch of Oban's V09 (every server the tests run on).
        "ALTER TYPE {s}.oban_job_state ADD VALUE IF NOT EXISTS 'cancelled'",
        'CREATE INDEX IF NOT EXISTS "oban_jobs_state_queue_priority_scheduled_at_id_index" '
        'ON {s}."oban_jobs" ("state", "queue", "priority", "scheduled_at", "id")',
    ),
    10: (
        'ALTER TABLE {s}."oban_jobs" ALTER COLUMN "args" TYPE jsonb, '
        "ALTER COLUMN \"args\" SET DEFAULT '{{}}', "
        'ALTER COLUMN "priority" TYPE integer, ALTER COLUMN "priority" SET NOT NULL',
        'ALTER TABLE {s}."oban_jobs" ADD CONSTRAINT "priority_range" '
        "CHECK (priority between 0 and 3)",
        'ALTER TABLE {s}."oban_jobs" ADD CONSTRAINT "positive_max_attempts" '
        "CHECK (max_attempts > 0)",
        'ALTER TABLE {s}."oban_jobs" ADD CONSTRAINT "attempt_range" '
        "CHECK (attempt between 0 and max_attempts)",
        'DROP INDEX IF EXISTS {s}."oban_jobs_args_vector"',
        'DROP INDEX IF EXISTS {s}."oban_jobs_worker_gist"',
        'DROP INDEX IF EXISTS {s}."oban_jobs_attempted_at_id_index"',
        'CREATE INDEX IF NOT EXISTS "oban_jobs_args_index" ON {s}."oban_jobs" USING gin ("args")',
        'CREATE INDEX IF NOT EXISTS "oban_jobs_meta_index" ON {s}."oban_jobs" USING gin ("meta")',
    ),
    11: (
        """CREATE TABLE IF NOT EXISTS {s}."oban_peers" (
  "name" text NOT NULL,
  "node" text NOT NULL,
  "started_at" timestamp NOT NULL,
  "expires_at" timestamp NOT NULL,
  PRIMARY KEY ("name")
)""",
        "ALTER TABLE {s}.oban_peers SET UNLOGGED",
    ),
    12: (
        'ALTER TABLE {s}."oban_jobs" DROP CONSTRAINT "priority_range"',
        'ALTER TABLE {s}."oban_jobs" ADD CONSTRAINT "non_negative_priority" '
        "CHECK (priority >= 0) NOT VALID",
        "DROP TRIGGER IF EXISTS oban_notify ON {s}.oban_jobs",
        "DROP FUNCTION IF EXISTS {s}.oban_jobs_notify()",
    ),
    13: (
        'CREATE INDEX IF NOT EXISTS "oban_jobs_state_cancelled_at_index" '
        'ON {s}."oban_jobs" ("state", "cancelled_at")',
        'CREATE INDEX IF NOT EXISTS "oban_jobs_state_discarded_at_index" '
        'ON {s}."oban_jobs" ("state", "discarded_at")',
    ),
    14: (
        """DO $$
BEGIN
  IF NOT ('{{suspended}}' <@ enum_range(NULL::{s}.oban_job_state)::text[]) THEN
    ALTER TYPE {s}.oban_job_state ADD VALUE 'suspended' BEFORE 'scheduled';
  END IF;
END$$""",
    ),
}

LATEST = max(_VERSIONS)


def oban_migration_steps(schema: str, version: int = LATEST) -> list[list[str]]:
    """Per Oban version 1..``version``: the statements it runs, then its version comment."""
    if not 1 <= version <= LATEST:
        raise ValueError(f"Oban migration version must be 1..{LATEST}, got {version}")
    quoted = '"' + schema.replace('"', '""') + '"'
    literal = schema.replace("'", "''")
    steps: list[list[str]] = []
    for v in range(1, version + 1):
        stmts = [stmt.format(s=quoted, e=literal) for stmt in _VERSIONS[v]]
        if v == 1 and schema != "public":
            stmts.insert(0, f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        stmts.append(f"COMMENT ON TABLE {quoted}.oban_jobs IS '{v}'")
        steps.append(stmts)
    return steps


def migrate_like_oban(url: str, schema: str, version: int = LATEST, *, jobs: int = 3) -> None:
    """Upgrade ``schema`` through Oban's versions one release at a time (one transaction each,
    as an app that followed Oban's upgrades would have), then insert ``jobs`` rows so that a
    table rewrite or a changed default would show in the data too.

    One transaction per version also keeps PostgreSQL's rule that a new enum value (V09's
    ``cancelled``) is committed before the next statement that reads the enum (V14).
    """
    table = sql.Identifier(schema, "oban_jobs")
    with psycopg.connect(url, autocommit=True) as conn:
        for stmts in oban_migration_steps(schema, version):
            with conn.transaction():
                for stmt in stmts:
                    conn.execute(stmt)
        for i in range(jobs):
            conn.execute(
                sql.SQL("INSERT INTO {} (queue, worker, args) VALUES (%s, %s, %s)").format(table),
                ("default", "MyApp.Worker", f'{{"n": {i}}}'),
            )
