"""Limits: a counter per concurrency gate, so an unsaturated batch is admitted without probing.

Revision ID: 0003
Revises: 0002

``powertools_limits_admit`` keeps its rule (powertools_core.limits.reservation: strict prefix per
gate, cooldown first, integer ticks), its locking (gate rows upserted in one sorted order) and the
holds (one row per job and concurrency gate, counted only while the job is executing that
attempt). What changes is the work per batch:

- ``powertools_rate_buckets.held``: per concurrency gate, the live holds counted at the last
  recount plus every hold granted since. Holds only stop being live (when their job leaves
  executing) and are only created by admission under the gate's row lock, so ``held`` never
  counts fewer than the live holds. NULL means unknown (a gate just minted, by admission or by a
  cooldown, or whose configuration changed) and forces a recount.
- Fast path: when every gate of the batch can take its whole demand (no cooldown; a bucket
  holding the batch's total weight and no weight above its capacity; ``held`` plus the batch's
  jobs within the limit), the sequential rule admits every job and debits the sums, so the
  function writes exactly that: the bucket levels, ``held + n``, and the holds. Nothing is
  probed.
- Otherwise (slow path) it recounts every concurrency gate of the batch from its holds, forgets
  the dead ones, sets ``held`` to the truth, and decides job by job as before.
- It returns one row per refused job (admitted ones are implied).
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

from powertools_core.migrations.helpers import q, schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    s = schema()
    op.add_column(
        "powertools_rate_buckets", sa.Column("held", sa.Integer(), nullable=True), schema=s
    )
    op.create_check_constraint(
        "powertools_rate_buckets_held_check", "powertools_rate_buckets", "held >= 0", schema=s
    )
    op.execute(q("DROP FUNCTION IF EXISTS {prefix}.powertools_limits_admit"))
    op.execute(q(_LIMITS_ADMIT_FUNCTION))


def downgrade() -> None:
    s = schema()
    foundation = importlib.import_module("powertools_core.migrations.versions.0001_foundation")
    op.execute(q("DROP FUNCTION IF EXISTS {prefix}.powertools_limits_admit"))
    op.execute(q(foundation._LIMITS_ADMIT_FUNCTION))
    op.drop_column("powertools_rate_buckets", "held", schema=s)


# The body names tables unqualified (the pinned search_path resolves them) so it is the same text
# in every schema. Holds are read per gate (a LATERAL probe of the primary key, whatever the
# statistics of a holds table that grows between sweeps say) and matched to their job by primary
# key; ``state::text`` keeps the planner from walking every executing job through a state index
# for each hold instead.
#
# Parameters: the distinct gates (name, partition, kind, capacity, span) with what the batch asks
# of each (jobs, total weight, heaviest weight), then the jobs (id, attempt in priority order),
# then one row per (job, gate) demand (job index, gate index, weight). The common case travels
# light: ``p_d_job`` NULL means one demand per job in job order, ``p_d_weight`` NULL means every
# weight is 1 (and then ``p_g_weight`` = ``p_g_jobs``, ``p_g_heaviest`` = 1).
_LIMITS_ADMIT_FUNCTION = """
CREATE FUNCTION {prefix}.powertools_limits_admit(
    p_now timestamp,
    p_g_name text[], p_g_partition text[], p_g_kind text[], p_g_capacity integer[],
    p_g_span_us bigint[], p_g_jobs integer[], p_g_weight bigint[], p_g_heaviest integer[],
    p_jobs bigint[], p_attempts integer[],
    p_d_job integer[], p_d_gate integer[], p_d_weight integer[], p_replace boolean
) RETURNS TABLE (o_job integer, o_code text, o_gate integer, o_retry_at timestamp)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, {prefix}, pg_temp
AS $fn$
DECLARE
    now_ts timestamp := coalesce(p_now, timezone('UTC', clock_timestamp()));
    n_gates integer := coalesce(cardinality(p_g_name), 0);
    n_jobs integer := coalesce(cardinality(p_jobs), 0);
    n_dem integer := coalesce(cardinality(p_d_gate), 0);
    all_fit boolean;
    solo boolean;
    debited integer;
    keys text[];
    c_names text[];
    c_until timestamp[];
    fit_lvl bigint[];
    kind smallint[];
    lvl bigint[];
    ref timestamp[];
    cool timestamp[];
    live_all bigint[];
    granted integer[];
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

    -- Limits cooling down as a whole (one probe for the batch).
    SELECT coalesce(array_agg(l.name ORDER BY l.name), '{}'),
           coalesce(array_agg(l.cooldown_until ORDER BY l.name), '{}')
    INTO c_names, c_until
    FROM powertools_rate_limits l
    WHERE l.name = ANY(p_g_name) AND l.cooldown_until > now_ts;

    -- Lock every gate of the batch in one sorted order (minting missing ones), so concurrent
    -- pickers serialise per gate and never deadlock. A minted gate, or one whose configuration
    -- changed, has no trusted counter (held NULL) until the recount below.
    --
    -- When every job needs exactly one concurrency gate (no bucket), each gate decides its own
    -- jobs: the same statement that locks a gate also grants it its whole share of the batch
    -- when its counter has room (and it is not cooling down), so nothing else is read or
    -- written for it. A gate that cannot is only locked, and the slow path decides the batch
    -- (its recount overwrites every concurrency counter of the batch, so a grant made here for
    -- a batch that goes the slow way is not counted twice).
    solo := p_d_job IS NULL AND NOT ('rate' = ANY(p_g_kind));
    IF solo THEN
        keys := ARRAY(SELECT u.n || E'\\x1f' || u.p
                      FROM unnest(p_g_name, p_g_partition) AS u(n, p));
        WITH up AS (
            INSERT INTO powertools_rate_buckets AS b
                (limit_name, partition_key, kind, capacity, span_us, level, refilled_at)
            SELECT g.name, g.part, g.kind, g.cap, g.span, 0, now_ts
            FROM unnest(p_g_name, p_g_partition, p_g_kind, p_g_capacity, p_g_span_us)
                AS g(name, part, kind, cap, span)
            ORDER BY g.name COLLATE "C", g.part COLLATE "C"
            ON CONFLICT (limit_name, partition_key) DO UPDATE
            SET kind = EXCLUDED.kind, capacity = EXCLUDED.capacity, span_us = EXCLUDED.span_us,
                level = 0,
                held = CASE
                    WHEN (b.kind, b.capacity, b.span_us)
                         IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.capacity, EXCLUDED.span_us)
                    THEN NULL
                    ELSE b.held + p_g_jobs[array_position(
                        keys, EXCLUDED.limit_name || E'\\x1f' || EXCLUDED.partition_key)] END
            WHERE (b.kind, b.capacity, b.span_us)
                  IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.capacity, EXCLUDED.span_us)
               OR (b.held IS NOT NULL
                   AND b.held + p_g_jobs[array_position(
                       keys, EXCLUDED.limit_name || E'\\x1f' || EXCLUDED.partition_key)]
                       <= b.capacity
                   AND (b.cooldown_until IS NULL OR b.cooldown_until <= now_ts)
                   AND NOT (b.limit_name = ANY(c_names)))
            RETURNING b.held
        )
        SELECT count(*) FILTER (WHERE up.held IS NOT NULL) INTO debited FROM up;

        IF debited = n_gates THEN
            IF p_replace THEN
                INSERT INTO powertools_limit_holds AS h
                    (limit_name, partition_key, job_id, attempt, held_at)
                SELECT p_g_name[x.gate], p_g_partition[x.gate], p_jobs[x.k], p_attempts[x.k],
                       now_ts
                FROM unnest(p_d_gate) WITH ORDINALITY AS x(gate, k)
                ON CONFLICT (limit_name, partition_key, job_id) DO UPDATE
                SET attempt = EXCLUDED.attempt, held_at = EXCLUDED.held_at;
            ELSE
                INSERT INTO powertools_limit_holds
                    (limit_name, partition_key, job_id, attempt, held_at)
                SELECT p_g_name[x.gate], p_g_partition[x.gate], p_jobs[x.k], p_attempts[x.k],
                       now_ts
                FROM unnest(p_d_gate) WITH ORDINALITY AS x(gate, k);
            END IF;
            RETURN;
        END IF;
    ELSE
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
                ELSE EXCLUDED.level END,
            held = NULL
        WHERE (b.kind, b.capacity, b.span_us)
              IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.capacity, EXCLUDED.span_us);
    END IF;

    -- The locked gates as of now (a fresh snapshot, so whatever the previous lock holders
    -- committed is seen), and whether each can take the batch's whole demand on it. Loop arrays
    -- are fixed-width without NULLs (sentinels instead), so subscripts are O(1).
    SELECT array_agg(x.level ORDER BY x.i),
           array_agg(x.refilled_at ORDER BY x.i),
           array_agg(x.cool ORDER BY x.i),
           array_agg(CASE x.kind WHEN 'rate' THEN 0 WHEN 'concurrency' THEN 1 ELSE 2 END
               ::smallint ORDER BY x.i),
           array_agg(CASE WHEN NOT x.fits THEN 0
                          WHEN x.kind = 'rate' THEN x.cur - x.total * x.span
                          ELSE x.held + x.n END ORDER BY x.i),
           bool_and(x.fits)
    INTO lvl, ref, cool, kind, fit_lvl, all_fit
    FROM (
        SELECT y.*, y.cool <= now_ts AND CASE
                   WHEN y.kind = 'rate' THEN y.span > 0 AND y.heaviest <= y.cap
                                             AND y.total <= y.cur / y.span
                   ELSE y.held IS NOT NULL AND y.held + y.n <= y.cap END AS fits
        FROM (
            SELECT z.*,
                   CASE WHEN z.kind <> 'rate' THEN 0
                        WHEN now_ts <= z.refilled_at THEN least(z.level, z.cap * z.span)
                        WHEN round(extract(epoch FROM (now_ts - z.refilled_at)) * 1000000)
                             ::bigint >= z.span THEN z.cap * z.span
                        ELSE least(z.cap * z.span, z.level
                             + round(extract(epoch FROM (now_ts - z.refilled_at)) * 1000000)
                               ::bigint * z.cap) END AS cur
            FROM (
                SELECT g.i::integer AS i, b.kind, b.level, b.refilled_at, b.held,
                       coalesce(greatest(
                           CASE WHEN b.cooldown_until > now_ts THEN b.cooldown_until END,
                           c_until[array_position(c_names, g.name)]), '-infinity') AS cool,
                       g.cap::bigint AS cap, g.span, g.n, coalesce(g.total, g.n) AS total,
                       coalesce(g.heaviest, 1) AS heaviest
                FROM unnest(p_g_name, p_g_partition, p_g_capacity, p_g_span_us, p_g_jobs,
                            p_g_weight, p_g_heaviest)
                    WITH ORDINALITY AS g(name, part, cap, span, n, total, heaviest, i)
                JOIN powertools_rate_buckets b
                  ON b.limit_name = g.name AND b.partition_key = g.part
            ) z
        ) y
    ) x;

    IF all_fit AND NOT solo THEN
        -- Every gate takes the whole batch: the sequential rule admits every job and debits
        -- each gate by its total, which is exactly what is written here.
        UPDATE powertools_rate_buckets b
        SET level = CASE WHEN u.kind = 'rate' THEN u.lvl ELSE b.level END,
            refilled_at = CASE WHEN u.kind = 'rate' THEN greatest(now_ts, b.refilled_at)
                               ELSE b.refilled_at END,
            held = CASE WHEN u.kind = 'rate' THEN b.held ELSE u.lvl END
        FROM unnest(p_g_name, p_g_partition, p_g_kind, fit_lvl) AS u(name, part, kind, lvl)
        WHERE b.limit_name = u.name AND b.partition_key = u.part;

        IF p_replace THEN
            INSERT INTO powertools_limit_holds AS h
                (limit_name, partition_key, job_id, attempt, held_at)
            SELECT p_g_name[x.gate], p_g_partition[x.gate],
                   p_jobs[coalesce(p_d_job[x.k], x.k)],
                   p_attempts[coalesce(p_d_job[x.k], x.k)], now_ts
            FROM unnest(p_d_gate) WITH ORDINALITY AS x(gate, k)
            WHERE p_g_kind[x.gate] <> 'rate'
            ON CONFLICT (limit_name, partition_key, job_id) DO UPDATE
            SET attempt = EXCLUDED.attempt, held_at = EXCLUDED.held_at;
        ELSE
            INSERT INTO powertools_limit_holds
                (limit_name, partition_key, job_id, attempt, held_at)
            SELECT p_g_name[x.gate], p_g_partition[x.gate],
                   p_jobs[coalesce(p_d_job[x.k], x.k)],
                   p_attempts[coalesce(p_d_job[x.k], x.k)], now_ts
            FROM unnest(p_d_gate) WITH ORDINALITY AS x(gate, k)
            WHERE p_g_kind[x.gate] <> 'rate';
        END IF;
        RETURN;
    END IF;

    -- Slow path. Recount every concurrency gate of the batch from its holds and forget the
    -- dead ones (one pass). The rule counts the live holds of other jobs (a job of this batch
    -- never blocks itself); the counter written back counts every live hold.
    WITH held AS (
        SELECT g.i::integer AS i, h.limit_name, h.partition_key, h.job_id, h.live
        FROM unnest(p_g_name, p_g_partition, p_g_kind) WITH ORDINALITY AS g(name, part, kind, i)
        CROSS JOIN LATERAL (
            SELECT h.limit_name, h.partition_key, h.job_id, (j.id IS NOT NULL) AS live
            FROM powertools_limit_holds h
            LEFT JOIN oban_jobs j
              ON j.id = h.job_id AND j.state::text = 'executing' AND j.attempt = h.attempt
            WHERE h.limit_name = g.name AND h.partition_key = g.part
        ) h
        WHERE g.kind <> 'rate'
    ), gone AS (
        DELETE FROM powertools_limit_holds x
        USING held
        WHERE NOT held.live AND x.limit_name = held.limit_name
          AND x.partition_key = held.partition_key AND x.job_id = held.job_id
    ), counts AS (
        SELECT held.i,
               count(*) FILTER (WHERE NOT (held.job_id = ANY(p_jobs))) AS others,
               count(*) AS everyone
        FROM held
        WHERE held.live
        GROUP BY held.i
    )
    SELECT array_agg(CASE WHEN kind[g.i] = 0 THEN lvl[g.i] ELSE coalesce(c.others, 0) END
               ORDER BY g.i),
           array_agg(coalesce(c.everyone, 0) ORDER BY g.i)
    INTO lvl, live_all
    FROM generate_series(1, n_gates) AS g(i)
    LEFT JOIN counts c ON c.i = g.i;

    cl_code := array_fill(0::smallint, ARRAY[n_gates]);
    cl_retry := array_fill('infinity'::timestamp, ARRAY[n_gates]);
    chg := array_fill(false, ARRAY[n_gates]);
    granted := array_fill(0, ARRAY[n_gates]);
    t_level := array_fill(0::bigint, ARRAY[greatest(n_dem, 1)]);
    t_ref := array_fill('-infinity'::timestamp, ARRAY[greatest(n_dem, 1)]);

    FOR ji IN 1..n_jobs LOOP
        d0 := d;
        WHILE d <= n_dem AND coalesce(p_d_job[d], d) = ji LOOP
            d := d + 1;
        END LOOP;
        blocked := false;
        FOR k IN d0..d - 1 LOOP
            gi := p_d_gate[k];
            w := coalesce(p_d_weight[k], 1);
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
            o_job := ji; o_gate := b_gate;
            o_code := (ARRAY['limit_reached', 'cooldown', 'concurrency_reached',
                             'partition_concurrency_reached'])[b_code];
            o_retry_at := CASE WHEN b_retry = 'infinity' THEN NULL ELSE b_retry END;
            RETURN NEXT;
        ELSE
            FOR k IN d0..d - 1 LOOP
                gi := p_d_gate[k];
                lvl[gi] := t_level[k];
                ref[gi] := t_ref[k];
                chg[gi] := true;
                IF kind[gi] <> 0 THEN
                    granted[gi] := granted[gi] + 1;
                    h_job := h_job || p_jobs[ji];
                    h_attempt := h_attempt || p_attempts[ji];
                    h_gate := h_gate || gi;
                END IF;
            END LOOP;
        END IF;
    END LOOP;

    -- Buckets that admitted something take their new level; every concurrency gate of the
    -- batch takes its recounted counter plus what it just granted.
    UPDATE powertools_rate_buckets b
    SET level = CASE WHEN u.kind = 'rate' THEN u.lvl ELSE b.level END,
        refilled_at = CASE WHEN u.kind = 'rate' THEN u.ref ELSE b.refilled_at END,
        held = CASE WHEN u.kind = 'rate' THEN b.held ELSE u.live + u.granted END
    FROM unnest(p_g_name, p_g_partition, p_g_kind, lvl, ref, chg, live_all, granted)
        AS u(name, part, kind, lvl, ref, chg, live, granted)
    WHERE (u.chg OR u.kind <> 'rate') AND b.limit_name = u.name AND b.partition_key = u.part;

    IF cardinality(h_job) > 0 THEN
        INSERT INTO powertools_limit_holds AS h
            (limit_name, partition_key, job_id, attempt, held_at)
        SELECT p_g_name[x.gate], p_g_partition[x.gate], x.job, x.attempt, now_ts
        FROM unnest(h_gate, h_job, h_attempt) AS x(gate, job, attempt)
        ON CONFLICT (limit_name, partition_key, job_id) DO UPDATE
        SET attempt = EXCLUDED.attempt, held_at = EXCLUDED.held_at;
    END IF;
END
$fn$
"""
