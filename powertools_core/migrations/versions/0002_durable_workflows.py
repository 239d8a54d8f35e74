"""Durable workflows: fan-in edges, batch callbacks, correlation keys, await deadlines.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from powertools_core.migrations.helpers import q, schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Both indexes need Oban v14's 'suspended' state, so they are built only when oban_jobs.state
# has it (read from the column's own enum).
V14_INDEXES = """
DO $$ BEGIN
IF EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_enum e ON e.enumtypid = a.atttypid
           WHERE a.attrelid = '{prefix}.oban_jobs'::regclass AND a.attname = 'state'
             AND e.enumlabel = 'suspended') THEN
    CREATE UNIQUE INDEX IF NOT EXISTS powertools_oban_jobs_correlation_index
        ON {prefix}.oban_jobs ((meta ->> 'correlation_key'))
        WHERE meta ? 'correlation_key'
          AND state IN ('available', 'scheduled', 'executing', 'retryable', 'suspended');
    CREATE INDEX IF NOT EXISTS powertools_oban_jobs_await_deadline_index
        ON {prefix}.oban_jobs (scheduled_at, id)
        WHERE state = 'suspended' AND (meta -> 'durable' -> 'await') ? 'timeout';
END IF;
END $$
"""


def upgrade() -> None:
    s = schema()

    # An edge is declared on a step ('step'), declared on "the steps X adds" ('added_by': the
    # dependent waits for X and everything X adds at run time), or materialised from such an
    # edge when X completes ('added').
    op.add_column(
        "powertools_workflow_edges",
        sa.Column("kind", sa.Text(), nullable=False, server_default="step"),
        schema=s,
    )
    op.create_check_constraint(
        "powertools_workflow_edges_kind",
        "powertools_workflow_edges",
        "kind IN ('step', 'added_by', 'added')",
        schema=s,
    )
    # A step that runs only under a condition on its deps (a batch's on_discard callback).
    op.add_column(
        "powertools_workflow_steps", sa.Column("run_if", sa.Text(), nullable=True), schema=s
    )
    op.create_check_constraint(
        "powertools_workflow_steps_run_if",
        "powertools_workflow_steps",
        "run_if IN ('any_discarded')",
        schema=s,
    )
    op.execute(
        q(
            "CREATE INDEX IF NOT EXISTS powertools_workflow_steps_added_by_index "
            "ON {prefix}.powertools_workflow_steps (workflow_id, added_by) "
            "WHERE added_by IS NOT NULL"
        )
    )
    op.add_column(
        "powertools_workflows",
        sa.Column("kind", sa.Text(), nullable=False, server_default="workflow"),
        schema=s,
    )
    op.create_check_constraint(
        "powertools_workflows_kind",
        "powertools_workflows",
        "kind IN ('workflow', 'batch')",
        schema=s,
    )

    # A correlation key names one live durable job (signals address it by key), and parked
    # jobs with a timeout are found by deadline (scheduled_at) by the expiry duty. Both need
    # Oban v14's 'suspended' state: on an older oban_jobs (which install reports and never
    # alters) they are skipped, and so are durable jobs.
    op.execute(q(V14_INDEXES))


def downgrade() -> None:
    s = schema()
    op.execute(q("DROP INDEX IF EXISTS {prefix}.powertools_oban_jobs_await_deadline_index"))
    op.execute(q("DROP INDEX IF EXISTS {prefix}.powertools_oban_jobs_correlation_index"))
    op.drop_constraint("powertools_workflows_kind", "powertools_workflows", schema=s)
    op.drop_column("powertools_workflows", "kind", schema=s)
    op.execute(q("DROP INDEX IF EXISTS {prefix}.powertools_workflow_steps_added_by_index"))
    op.drop_constraint("powertools_workflow_steps_run_if", "powertools_workflow_steps", schema=s)
    op.drop_column("powertools_workflow_steps", "run_if", schema=s)
    op.drop_constraint("powertools_workflow_edges_kind", "powertools_workflow_edges", schema=s)
    op.drop_column("powertools_workflow_edges", "kind", schema=s)
