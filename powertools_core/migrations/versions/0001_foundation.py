"""Foundation: audit, idempotency, producers, limits, lifeline, repair previews, archive.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from powertools_core.migrations.helpers import jsonb, q, schema, ts

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    s = schema()

    # Append-only record of every operator and system action.
    op.create_table(
        "powertools_audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        ts("at", nullable=False, default_now=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=False, server_default="ok"),
        sa.Column("run_id", UUID(as_uuid=True), nullable=True),
        jsonb("before", nullable=True, default="null"),
        jsonb("after", nullable=True, default="null"),
        jsonb("meta"),
        schema=s,
    )
    op.create_index("powertools_audit_events_at_index", "powertools_audit_events", ["at"], schema=s)
    op.create_index(
        "powertools_audit_events_actor_index", "powertools_audit_events", ["actor", "at"], schema=s
    )
    op.create_index(
        "powertools_audit_events_target_index",
        "powertools_audit_events",
        ["target_type", "target_id"],
        schema=s,
    )
    op.create_index(
        "powertools_audit_events_run_index", "powertools_audit_events", ["run_id"], schema=s
    )

    # One row per (worker, unique key): the arbiter that makes unique enqueue race-free.
    op.create_table(
        "powertools_idempotency_receipts",
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        ts("inserted_at", nullable=False, default_now=True),
        ts("expires_at"),
        sa.PrimaryKeyConstraint("worker", "key", name="powertools_idempotency_receipts_pkey"),
        schema=s,
    )
    op.create_index(
        "powertools_idempotency_receipts_job_index",
        "powertools_idempotency_receipts",
        ["job_id"],
        schema=s,
    )

    # Live producers (one per queue per worker process) and their heartbeat.
    op.create_table(
        "powertools_producers",
        sa.Column("uuid", UUID(as_uuid=True), primary_key=True),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        ts("started_at", nullable=False, default_now=True),
        ts("beat_at", nullable=False, default_now=True),
        jsonb("meta"),
        schema=s,
    )
    op.create_index(
        "powertools_producers_queue_index", "powertools_producers", ["queue", "beat_at"], schema=s
    )

    # Limits: configured limits (declared in code, synced at worker start; operator cooldowns
    # live here), one lockable row per gate (limit and partition: a token bucket's exact level,
    # or the serialisation point of a concurrency counter), and the concurrency holds (which
    # job holds a slot; a hold counts only while its job is executing that attempt).
    op.create_table(
        "powertools_rate_limits",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False, server_default="rate"),
        sa.Column("scope", sa.Text(), nullable=False, server_default="global"),
        sa.Column("partition_by", sa.Text(), nullable=True),
        sa.Column("bucket_capacity", sa.Integer(), nullable=True),
        sa.Column("bucket_span_ms", sa.BigInteger(), nullable=True),
        sa.Column("global_limit", sa.Integer(), nullable=True),
        sa.Column("partition_limit", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("weight_by", sa.Text(), nullable=True),
        sa.Column("workers", ARRAY(sa.Text()), nullable=False, server_default="{}"),
        sa.Column("source", sa.Text(), nullable=False, server_default="code"),
        ts("cooldown_until"),
        sa.Column("cooldown_actor", sa.Text(), nullable=True),
        sa.Column("cooldown_reason", sa.Text(), nullable=True),
        ts("updated_at", nullable=False, default_now=True),
        sa.CheckConstraint("kind IN ('rate', 'concurrency')", name="powertools_rate_limits_kind"),
        sa.CheckConstraint(
            "bucket_capacity IS NULL OR bucket_capacity > 0",
            name="powertools_rate_limits_capacity_check",
        ),
        sa.CheckConstraint(
            "bucket_span_ms IS NULL OR bucket_span_ms > 0", name="powertools_rate_limits_span_check"
        ),
        sa.CheckConstraint("weight > 0", name="powertools_rate_limits_weight_check"),
        schema=s,
    )
    op.create_table(
        "powertools_rate_buckets",
        sa.Column("limit_name", sa.Text(), nullable=False),
        sa.Column("partition_key", sa.Text(), nullable=False, server_default=""),
        sa.Column("kind", sa.Text(), nullable=False, server_default="rate"),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("span_us", sa.BigInteger(), nullable=False, server_default="0"),
        # Token buckets: tokens * span_us, exact (integer ticks); concurrency gates: unused (0).
        sa.Column("level", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "tokens",
            sa.Float(),
            sa.Computed("CASE WHEN span_us > 0 THEN level::float8 / span_us END", persisted=True),
        ),
        ts("refilled_at", nullable=False, default_now=True),
        ts("cooldown_until"),
        sa.Column("cooldown_actor", sa.Text(), nullable=True),
        sa.Column("cooldown_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("limit_name", "partition_key", name="powertools_rate_buckets_pkey"),
        # The referee: a debit that would take more tokens than the bucket holds cannot commit.
        sa.CheckConstraint(
            "level >= 0 AND level <= capacity::bigint * span_us",
            name="powertools_rate_buckets_level_check",
        ),
        sa.CheckConstraint("capacity > 0", name="powertools_rate_buckets_capacity_check"),
        schema=s,
    )
    op.create_table(
        "powertools_limit_holds",
        sa.Column("limit_name", sa.Text(), nullable=False),
        sa.Column("partition_key", sa.Text(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        ts("held_at", nullable=False, default_now=True),
        sa.PrimaryKeyConstraint(
            "limit_name", "partition_key", "job_id", name="powertools_limit_holds_pkey"
        ),
        schema=s,
    )
    op.execute(q(_LIMITS_ADMIT_FUNCTION))

    # Jobs the lifeline rescued (or discarded) because their producer died.
    op.create_table(
        "powertools_lifeline_incidents",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        ts("at", nullable=False, default_now=True),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("producer_uuid", sa.Text(), nullable=True),
        sa.Column("node", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("detected_by", sa.Text(), nullable=True),
        schema=s,
    )
    op.create_index(
        "powertools_lifeline_incidents_at_index", "powertools_lifeline_incidents", ["at"], schema=s
    )
    op.create_index(
        "powertools_lifeline_incidents_job_index",
        "powertools_lifeline_incidents",
        ["job_id"],
        schema=s,
    )

    # Previews of operator actions: a token binds an execution to what was previewed.
    op.create_table(
        "powertools_repair_previews",
        sa.Column("token", sa.Text(), primary_key=True),
        sa.Column("action", sa.Text(), nullable=False),
        jsonb("filter"),
        sa.Column("plan_hash", sa.Text(), nullable=False),
        jsonb("counts"),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("actor", sa.Text(), nullable=True),
        ts("created_at", nullable=False, default_now=True),
        ts("expires_at", nullable=False),
        ts("executed_at"),
        schema=s,
    )

    # Archive runs (archive, restore, prune) and the archived jobs themselves.
    op.create_table(
        "powertools_archive_runs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="running"),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        jsonb("filter"),
        jsonb("counts"),
        ts("started_at", nullable=False, default_now=True),
        ts("finished_at"),
        schema=s,
    )
    op.create_table(
        "powertools_job_archive",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        jsonb("args"),
        sa.Column(
            "errors", ARRAY(sa.dialects.postgresql.JSONB()), nullable=False, server_default="{}"
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        ts("inserted_at", nullable=False),
        ts("scheduled_at", nullable=False),
        ts("attempted_at"),
        ts("completed_at"),
        sa.Column("attempted_by", ARRAY(sa.Text()), nullable=True),
        ts("discarded_at"),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("tags", ARRAY(sa.Text()), nullable=True),
        jsonb("meta", nullable=True),
        ts("cancelled_at"),
        ts("archived_at", nullable=False, default_now=True),
        sa.Column("archive_run_id", UUID(as_uuid=True), nullable=True),
        schema=s,
    )
    # Few, cheap indexes: every one is paid on each archived row (bench/archive.py). archived_at
    # grows with the heap, so a BRIN range index serves prune; (run, id) serves restore --run.
    op.create_index(
        "powertools_job_archive_archived_at_index",
        "powertools_job_archive",
        ["archived_at"],
        schema=s,
        postgresql_using="brin",
        postgresql_with={"autosummarize": "on"},
    )
    op.create_index(
        "powertools_job_archive_run_index",
        "powertools_job_archive",
        ["archive_run_id", "id"],
        schema=s,
    )

    # Audit events moved out of powertools_audit_events by `archive run --audit` (never dropped).
    op.create_table(
        "powertools_audit_archive",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        ts("at", nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("run_id", UUID(as_uuid=True), nullable=True),
        jsonb("before", nullable=True, default="null"),
        jsonb("after", nullable=True, default="null"),
        jsonb("meta", nullable=True),
        ts("archived_at", nullable=False, default_now=True),
        sa.Column("archive_run_id", UUID(as_uuid=True), nullable=True),
        schema=s,
    )
    op.create_index(
        "powertools_audit_archive_archived_at_index",
        "powertools_audit_archive",
        ["archived_at"],
        schema=s,
    )
    op.create_index(
        "powertools_audit_archive_at_index", "powertools_audit_archive", ["at"], schema=s
    )

    # Cron: entries (code-managed or runtime), one slot per entry and fire time (the claim that
    # makes a fire happen at most once), and the minutes a scheduler was alive (coverage).
    op.create_table(
        "powertools_cron_entries",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        jsonb("args"),
        sa.Column("queue", sa.Text(), nullable=True),
        sa.Column("overlap", sa.Text(), nullable=False),
        sa.Column("catch_up", sa.Text(), nullable=False),
        sa.Column("max_catch_up", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        ts("paused_at"),
        sa.Column("paused_by", sa.Text(), nullable=True),
        ts("planned_until"),
        ts("inserted_at", nullable=False, default_now=True),
        ts("updated_at", nullable=False, default_now=True),
        sa.CheckConstraint("source IN ('code', 'runtime')", name="powertools_cron_source"),
        schema=s,
    )
    op.create_table(
        "powertools_cron_slots",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("entry_name", sa.Text(), nullable=False),
        ts("slot_at", nullable=False),
        ts("claimed_at", nullable=False, default_now=True),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("manual", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("node", sa.Text(), nullable=True),
        jsonb("details"),
        sa.UniqueConstraint("entry_name", "slot_at", name="powertools_cron_slots_entry_slot"),
        schema=s,
    )
    op.create_table(
        "powertools_cron_coverage",
        ts("minute", nullable=False),
        sa.Column("node", sa.Text(), nullable=True),
        ts("seen_at", nullable=False, default_now=True),
        sa.PrimaryKeyConstraint("minute", name="powertools_cron_coverage_pkey"),
        schema=s,
    )

    # Workflows: one row per DAG, a step per job (its name, result) and the dependency edges
    # with their failure policy; signals are kept until consumed (dedupe per target).
    op.create_table(
        "powertools_workflows",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        ts("inserted_at", nullable=False, default_now=True),
        ts("cancelled_at"),
        sa.Column("cancelled_by", sa.Text(), nullable=True),
        schema=s,
    )
    op.create_table(
        "powertools_workflow_steps",
        sa.Column("workflow_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("added_by", sa.Text(), nullable=True),
        jsonb("result", nullable=True, default="null"),
        ts("result_at"),
        sa.PrimaryKeyConstraint("workflow_id", "name", name="powertools_workflow_steps_pkey"),
        sa.UniqueConstraint("job_id", name="powertools_workflow_steps_job"),
        schema=s,
    )
    op.create_table(
        "powertools_workflow_edges",
        sa.Column("workflow_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("dep", sa.Text(), nullable=False),
        sa.Column("on_failure", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workflow_id", "step", "dep", name="powertools_workflow_edges_pkey"
        ),
        sa.CheckConstraint(
            "on_failure IN ('cascade', 'continue')", name="powertools_workflow_edges_policy"
        ),
        schema=s,
    )
    op.execute(
        q(
            "CREATE INDEX IF NOT EXISTS powertools_workflow_edges_dep_index "
            "ON {prefix}.powertools_workflow_edges (workflow_id, dep)"
        )
    )
    op.create_table(
        "powertools_signals",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        jsonb("payload"),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        ts("inserted_at", nullable=False, default_now=True),
        ts("consumed_at"),
        sa.UniqueConstraint("target", "dedupe_key", name="powertools_signals_dedupe"),
        schema=s,
    )

    # Indexes powertools needs on Oban's table: the hot fetch and the stager.
    op.execute(
        q(
            "CREATE INDEX IF NOT EXISTS powertools_oban_jobs_fetch_index "
            "ON {prefix}.oban_jobs (queue, priority, scheduled_at, id) WHERE state = 'available'"
        )
    )
    op.execute(
        q(
            "CREATE INDEX IF NOT EXISTS powertools_oban_jobs_staging_index "
            "ON {prefix}.oban_jobs (scheduled_at, id) WHERE state IN ('scheduled', 'retryable')"
        )
    )
    # Archive selects completed jobs by age (Oban indexes cancelled_at/discarded_at already).
    op.execute(
        q(
            "CREATE INDEX IF NOT EXISTS powertools_oban_jobs_completed_at_index "
            "ON {prefix}.oban_jobs (completed_at) WHERE state = 'completed'"
        )
    )


def downgrade() -> None:
    s = schema()
    op.execute(q("DROP FUNCTION IF EXISTS {prefix}.powertools_limits_admit"))
    op.execute(q("DROP INDEX IF EXISTS {prefix}.powertools_oban_jobs_completed_at_index"))
    op.execute(q("DROP INDEX IF EXISTS {prefix}.powertools_oban_jobs_staging_index"))
    op.execute(q("DROP INDEX IF EXISTS {prefix}.powertools_oban_jobs_fetch_index"))
    for table in (
        "powertools_signals",
        "powertools_workflow_edges",
        "powertools_workflow_steps",
        "powertools_workflows",
        "powertools_cron_coverage",
        "powertools_cron_slots",
        "powertools_cron_entries",
        "powertools_audit_archive",
        "powertools_job_archive",
        "powertools_archive_runs",
        "powertools_repair_previews",
        "powertools_lifeline_incidents",
        "powertools_limit_holds",
        "powertools_rate_buckets",
        "powertools_rate_limits",
        "powertools_producers",
        "powertools_idempotency_receipts",
        "powertools_audit_events",
    ):
        op.drop_table(table, schema=s)


# Admission of a claimed batch, in one autocommit round trip. Gates arrive sorted and are locked
# in that order (upsert), then read with a fresh snapshot (so holds committed by whoever held the
# lock before us are counted), then the batch is decided in priority order with exactly the rule
# of powertools_core.limits.reservation (strict prefix per gate; cooldown first; integer ticks),
# and the new levels and holds are written back. The level CHECK makes an over-debit uncommittable.
# The body names tables unqualified (the pinned search_path resolves them) so it is the same text
# in every schema. Holds are matched to their job by primary key; ``state::text`` keeps the planner
# from walking every executing job through a state index for each hold instead.
_LIMITS_ADMIT_FUNCTION = """
CREATE OR REPLACE FUNCTION {prefix}.powertools_limits_admit(
    p_now timestamp,
    p_g_name text[], p_g_partition text[], p_g_kind text[], p_g_capacity integer[],
    p_g_span_us bigint[],
    p_jobs bigint[], p_attempts integer[],
    p_d_job integer[], p_d_gate integer[], p_d_weight integer[]
) RETURNS TABLE (o_job integer, o_admitted boolean, o_code text, o_gate integer,
                 o_retry_at timestamp)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, {prefix}, pg_temp
AS $fn$
DECLARE
    now_ts timestamp := coalesce(p_now, timezone('UTC', clock_timestamp()));
    n_gates integer := coalesce(cardinality(p_g_name), 0);
    n_jobs integer := coalesce(cardinality(p_jobs), 0);
    n_dem integer := coalesce(cardinality(p_d_job), 0);
    kind smallint[];
    lvl bigint[];
    ref timestamp[];
    cool timestamp[];
    cl_code smallint[];
    cl_retry timestamp[];
    t_level bigint[];
    t_ref timestamp[];
    chg boolean[];
    h_job bigint[] := '{}';
    h_attempt integer[] := '{}';
    h_gate integer[] := '{}';
    ji integer;
    d integer := 1;
    d0 integer;
    k integer;
    gi integer;
    w integer;
    cap bigint;
    span bigint;
    cur bigint;
    need bigint;
    base timestamp;
    elapsed bigint;
    blocked boolean;
    b_code smallint;
    b_retry timestamp;
    b_gate integer;
BEGIN
    IF n_gates = 0 THEN
        RETURN;
    END IF;

    INSERT INTO powertools_rate_buckets AS b
        (limit_name, partition_key, kind, capacity, span_us, level, refilled_at)
    SELECT g.name, g.part, g.kind, g.cap, g.span,
           CASE WHEN g.kind = 'rate' THEN g.cap::bigint * g.span ELSE 0 END, now_ts
    FROM unnest(p_g_name, p_g_partition, p_g_kind, p_g_capacity, p_g_span_us)
        AS g(name, part, kind, cap, span)
    ORDER BY g.name COLLATE "C", g.part COLLATE "C"
    ON CONFLICT (limit_name, partition_key) DO UPDATE
    SET kind = EXCLUDED.kind, capacity = EXCLUDED.capacity, span_us = EXCLUDED.span_us,
        level = CASE
            WHEN EXCLUDED.kind <> 'rate' THEN 0
            WHEN b.span_us = EXCLUDED.span_us THEN least(b.level, EXCLUDED.level)
            WHEN b.span_us > 0 THEN least(EXCLUDED.level,
                floor(b.level::numeric * EXCLUDED.span_us / b.span_us)::bigint)
            ELSE EXCLUDED.level END
    WHERE (b.kind, b.capacity, b.span_us)
          IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.capacity, EXCLUDED.span_us);

    -- Loop arrays are fixed-width without NULLs (sentinels instead), so subscripts are O(1).
    SELECT array_agg(CASE WHEN b.kind = 'rate' THEN b.level ELSE live.cnt END ORDER BY g.i),
           array_agg(b.refilled_at ORDER BY g.i),
           array_agg(coalesce(greatest(
               CASE WHEN b.cooldown_until > now_ts THEN b.cooldown_until END,
               CASE WHEN l.cooldown_until > now_ts THEN l.cooldown_until END), '-infinity')
               ORDER BY g.i),
           array_agg(CASE b.kind WHEN 'rate' THEN 0 WHEN 'concurrency' THEN 1 ELSE 2 END
               ::smallint ORDER BY g.i)
    INTO lvl, ref, cool, kind
    FROM unnest(p_g_name, p_g_partition) WITH ORDINALITY AS g(name, part, i)
    JOIN powertools_rate_buckets b
      ON b.limit_name = g.name AND b.partition_key = g.part
    LEFT JOIN powertools_rate_limits l ON l.name = g.name
    LEFT JOIN LATERAL (
        SELECT count(*)::bigint AS cnt
        FROM powertools_limit_holds h
        JOIN oban_jobs j
          ON j.id = h.job_id AND j.state::text = 'executing' AND j.attempt = h.attempt
        WHERE h.limit_name = g.name AND h.partition_key = g.part
          AND b.kind <> 'rate' AND NOT (h.job_id = ANY(p_jobs))
    ) live ON true;

    cl_code := array_fill(0::smallint, ARRAY[n_gates]);
    cl_retry := array_fill('infinity'::timestamp, ARRAY[n_gates]);
    chg := array_fill(false, ARRAY[n_gates]);
    t_level := array_fill(0::bigint, ARRAY[greatest(n_dem, 1)]);
    t_ref := array_fill('-infinity'::timestamp, ARRAY[greatest(n_dem, 1)]);

    FOR ji IN 1..n_jobs LOOP
        d0 := d;
        WHILE d <= n_dem AND p_d_job[d] = ji LOOP
            d := d + 1;
        END LOOP;
        blocked := false;
        FOR k IN d0..d - 1 LOOP
            gi := p_d_gate[k];
            w := p_d_weight[k];
            IF cl_code[gi] <> 0 THEN
                blocked := true; b_code := cl_code[gi]; b_retry := cl_retry[gi]; b_gate := gi;
                EXIT;
            END IF;
            IF cool[gi] > now_ts THEN
                blocked := true; b_code := 2; b_retry := cool[gi]; b_gate := gi;
            ELSIF kind[gi] = 0 THEN
                cap := p_g_capacity[gi];
                span := p_g_span_us[gi];
                base := greatest(now_ts, ref[gi]);
                IF now_ts > ref[gi] THEN
                    elapsed := round(extract(epoch FROM (now_ts - ref[gi])) * 1000000)::bigint;
                    IF elapsed >= span THEN
                        cur := cap * span;
                    ELSE
                        cur := least(cap * span, lvl[gi] + elapsed * cap);
                    END IF;
                ELSE
                    cur := least(lvl[gi], cap * span);
                END IF;
                need := w::bigint * span;
                IF w > cap THEN
                    blocked := true; b_code := 1; b_retry := 'infinity'; b_gate := gi;
                ELSIF cur >= need THEN
                    t_level[k] := cur - need;
                    t_ref[k] := base;
                ELSE
                    blocked := true; b_code := 1; b_gate := gi;
                    b_retry := base + ((need - cur + cap - 1) / cap) * interval '1 microsecond';
                END IF;
            ELSIF lvl[gi] + 1 <= p_g_capacity[gi] THEN
                t_level[k] := lvl[gi] + 1;
                t_ref[k] := ref[gi];
            ELSE
                blocked := true; b_gate := gi; b_retry := 'infinity';
                b_code := CASE WHEN kind[gi] = 1 THEN 3 ELSE 4 END;
            END IF;
            IF blocked THEN
                cl_code[gi] := b_code;
                cl_retry[gi] := b_retry;
                EXIT;
            END IF;
        END LOOP;
        IF blocked THEN
            o_job := ji; o_admitted := false; o_gate := b_gate;
            o_code := (ARRAY['limit_reached', 'cooldown', 'concurrency_reached',
                             'partition_concurrency_reached'])[b_code];
            o_retry_at := CASE WHEN b_retry = 'infinity' THEN NULL ELSE b_retry END;
        ELSE
            FOR k IN d0..d - 1 LOOP
                gi := p_d_gate[k];
                lvl[gi] := t_level[k];
                ref[gi] := t_ref[k];
                chg[gi] := true;
                IF kind[gi] <> 0 THEN
                    h_job := h_job || p_jobs[ji];
                    h_attempt := h_attempt || p_attempts[ji];
                    h_gate := h_gate || gi;
                END IF;
            END LOOP;
            o_job := ji; o_admitted := true; o_code := NULL; o_gate := NULL; o_retry_at := NULL;
        END IF;
        RETURN NEXT;
    END LOOP;

    UPDATE powertools_rate_buckets b
    SET level = u.lvl, refilled_at = u.ref
    FROM unnest(p_g_name, p_g_partition, p_g_kind, lvl, ref, chg)
        AS u(name, part, kind, lvl, ref, chg)
    WHERE u.chg AND u.kind = 'rate' AND b.limit_name = u.name AND b.partition_key = u.part;

    IF NOT ('concurrency' = ANY(p_g_kind) OR 'partition_concurrency' = ANY(p_g_kind)) THEN
        RETURN;
    END IF;

    IF cardinality(h_job) > 0 THEN
        INSERT INTO powertools_limit_holds AS h
            (limit_name, partition_key, job_id, attempt, held_at)
        SELECT p_g_name[x.gate], p_g_partition[x.gate], x.job, x.attempt, now_ts
        FROM unnest(h_gate, h_job, h_attempt) AS x(gate, job, attempt)
        ON CONFLICT (limit_name, partition_key, job_id) DO UPDATE
        SET attempt = EXCLUDED.attempt, held_at = EXCLUDED.held_at;
    END IF;

    DELETE FROM powertools_limit_holds h
    USING unnest(p_g_name, p_g_partition, p_g_kind) AS g(name, part, kind)
    WHERE g.kind <> 'rate' AND h.limit_name = g.name AND h.partition_key = g.part
      AND NOT EXISTS (
          SELECT 1 FROM oban_jobs j
          WHERE j.id = h.job_id AND j.state::text = 'executing' AND j.attempt = h.attempt);
END
$fn$
"""
