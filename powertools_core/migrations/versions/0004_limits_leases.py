"""Limits: concurrency leases, so a process admits from slots it already holds.

Revision ID: 0004
Revises: 0003

An unsaturated partitioned limit used to cost one gate-row write per partition in every batch
(plus a hold row per job): about 1 ms per batch of 100 jobs over 100 partitions. A lease lets
a worker process reserve slots of a concurrency gate once and then admit and free jobs in
memory (``powertools_core.limits.leases``); the database only sees the lease grow, shrink, or
be renewed.

- ``powertools_limit_leases``: per gate and owner (one per worker process), the slots it holds
  and when the lease lapses. A lease is renewed while its owner lives; one that lapsed counts
  for nothing (its owner is gone, like a producer whose heartbeat is stale).
- ``powertools_limits_lease``: grows (``need`` slots, then at most half of what is left as
  headroom), shrinks (negative ``need``) and renews an owner's leases, under the same sorted gate
  row locks as admission. ``held`` counts the slots of every lease as well as the holds, so the
  counter still never counts fewer than what is taken.
- ``powertools_limits_admit`` (0003) counts live lease slots when it recounts a gate.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

from powertools_core.migrations.helpers import q, schema, ts

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PREVIOUS = importlib.import_module(
    "powertools_core.migrations.versions.0003_limits_admission_fast_path"
)


def upgrade() -> None:
    s = schema()
    op.create_table(
        "powertools_limit_leases",
        sa.Column("limit_name", sa.Text(), nullable=False),
        sa.Column("partition_key", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        ts("leased_at", nullable=False, default_now=True),
        ts("expires_at", nullable=False),
        sa.PrimaryKeyConstraint(
            "limit_name", "partition_key", "owner", name="powertools_limit_leases_pkey"
        ),
        sa.CheckConstraint("slots > 0", name="powertools_limit_leases_slots_check"),
        schema=s,
    )
    op.execute(q("DROP FUNCTION IF EXISTS {prefix}.powertools_limits_admit"))
    op.execute(q(admit_function()))
    op.execute(q(_LEASE_FUNCTION))


def downgrade() -> None:
    op.execute(q("DROP FUNCTION IF EXISTS {prefix}.powertools_limits_lease"))
    op.execute(q("DROP FUNCTION IF EXISTS {prefix}.powertools_limits_admit"))
    op.execute(q(_PREVIOUS._LIMITS_ADMIT_FUNCTION))
    op.drop_table("powertools_limit_leases", schema=schema())


# 0003's admission, with live lease slots added to a recounted gate (they are taken slots of
# other processes: the rule counts them among "others", and the counter written back counts
# them too).
_DECLARE_ANCHOR = "    live_all bigint[];\n"
_RECOUNT_ANCHOR = "    cl_code := array_fill(0::smallint, ARRAY[n_gates]);\n"
_LEASED = """    SELECT array_agg(coalesce(s.slots, 0) ORDER BY g.i)
    INTO leased
    FROM unnest(p_g_name, p_g_partition) WITH ORDINALITY AS g(name, part, i)
    LEFT JOIN LATERAL (
        SELECT sum(l.slots)::bigint AS slots
        FROM powertools_limit_leases l
        WHERE l.limit_name = g.name AND l.partition_key = g.part AND l.expires_at > now_ts
    ) s ON true;
    FOR gi IN 1..n_gates LOOP
        IF kind[gi] <> 0 THEN
            lvl[gi] := lvl[gi] + leased[gi];
            live_all[gi] := live_all[gi] + leased[gi];
        END IF;
    END LOOP;

"""


def admit_function() -> str:
    """0003's function text with the lease count spliced into its recount."""
    text: str = _PREVIOUS._LIMITS_ADMIT_FUNCTION
    if text.count(_DECLARE_ANCHOR) != 1 or text.count(_RECOUNT_ANCHOR) != 1:
        raise RuntimeError("migration 0004: 0003's admission function changed; update anchors")
    text = text.replace(_DECLARE_ANCHOR, _DECLARE_ANCHOR + "    leased bigint[];\n")
    return text.replace(_RECOUNT_ANCHOR, _LEASED + _RECOUNT_ANCHOR)


# One owner's leases on some concurrency gates, changed in one call. Per gate: ``p_need`` > 0
# asks for that many slots (granted as far as the limit allows) and ``p_extra`` more as headroom
# (granted only out of half the room left, so a tight limit is leased nearly exactly);
# ``p_need`` < 0 gives slots back; 0 just renews. Every lease of the call is renewed until
# ``now + p_ttl_us``. Gates are locked in one sorted order (as admission locks them), so
# pickers never deadlock. A gate whose counter cannot take the request is recounted from its
# live holds and live leases first (forgetting dead holds and lapsed leases). An owner whose own
# lease lapsed starts again from nothing (others may already have been given its slots).
#
# One row per gate: slots granted (negative: given back), the owner's slots now, and a
# blocker code (and when it clears) when fewer than ``p_need`` were granted.
_LEASE_FUNCTION = """
CREATE FUNCTION {prefix}.powertools_limits_lease(
    p_now timestamp, p_owner text, p_ttl_us bigint,
    p_g_name text[], p_g_partition text[], p_g_kind text[], p_g_capacity integer[],
    p_need integer[], p_extra integer[]
) RETURNS TABLE (o_gate integer, o_granted integer, o_slots integer, o_code text,
                 o_retry_at timestamp)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, {prefix}, pg_temp
AS $fn$
DECLARE
    now_ts timestamp := coalesce(p_now, timezone('UTC', clock_timestamp()));
    expires timestamp;
    n_gates integer := coalesce(cardinality(p_g_name), 0);
    c_names text[];
    c_until timestamp[];
    i integer;
    g_name text;
    g_part text;
    g_held integer;
    g_cool timestamp;
    mine integer;
    mine_until timestamp;
    cap integer;
    room integer;
    grant_n integer;
    extra_n integer;
BEGIN
    IF n_gates = 0 THEN
        RETURN;
    END IF;
    expires := now_ts + p_ttl_us * interval '1 microsecond';

    SELECT coalesce(array_agg(l.name ORDER BY l.name), '{}'),
           coalesce(array_agg(l.cooldown_until ORDER BY l.name), '{}')
    INTO c_names, c_until
    FROM powertools_rate_limits l
    WHERE l.name = ANY(p_g_name) AND l.cooldown_until > now_ts;

    -- Lock (minting missing gates, whose counter is unknown until recounted).
    INSERT INTO powertools_rate_buckets AS b
        (limit_name, partition_key, kind, capacity, span_us, level, refilled_at)
    SELECT g.name, g.part, g.kind, g.cap, 0, 0, now_ts
    FROM unnest(p_g_name, p_g_partition, p_g_kind, p_g_capacity) AS g(name, part, kind, cap)
    ORDER BY g.name COLLATE "C", g.part COLLATE "C"
    ON CONFLICT (limit_name, partition_key) DO UPDATE
    SET kind = EXCLUDED.kind, capacity = EXCLUDED.capacity, span_us = 0, level = 0,
        held = NULL
    WHERE (b.kind, b.capacity, b.span_us)
          IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.capacity, EXCLUDED.span_us);

    FOR i IN 1..n_gates LOOP
        g_name := p_g_name[i];
        g_part := p_g_partition[i];
        cap := p_g_capacity[i];
        SELECT b.held, greatest(b.cooldown_until, c_until[array_position(c_names, g_name)])
        INTO g_held, g_cool
        FROM powertools_rate_buckets b
        WHERE b.limit_name = g_name AND b.partition_key = g_part;
        SELECT l.slots, l.expires_at INTO mine, mine_until
        FROM powertools_limit_leases l
        WHERE l.limit_name = g_name AND l.partition_key = g_part AND l.owner = p_owner;
        IF mine IS NULL OR mine_until <= now_ts THEN
            -- No lease, or a lapsed one: it counts for nothing (a recount may already have
            -- dropped it), so the counter is recounted before anything is granted.
            IF mine IS NOT NULL THEN
                g_held := NULL;
            END IF;
            mine := 0;
        END IF;
        o_gate := i;
        o_granted := 0;
        o_code := NULL;
        o_retry_at := NULL;

        IF p_need[i] < 0 THEN
            grant_n := least(-p_need[i], mine);
            mine := mine - grant_n;
            IF g_held IS NOT NULL THEN
                g_held := greatest(g_held - grant_n, 0);
            END IF;
            o_granted := -grant_n;
        ELSIF g_cool > now_ts THEN
            o_code := 'cooldown';
            o_retry_at := g_cool;
        ELSIF p_need[i] > 0 OR p_extra[i] > 0 THEN
            IF g_held IS NULL OR g_held + p_need[i] > cap THEN
                WITH h AS (
                    SELECT h.job_id, (j.id IS NOT NULL) AS live
                    FROM powertools_limit_holds h
                    LEFT JOIN oban_jobs j
                      ON j.id = h.job_id AND j.state::text = 'executing'
                     AND j.attempt = h.attempt
                    WHERE h.limit_name = g_name AND h.partition_key = g_part
                ), gone AS (
                    DELETE FROM powertools_limit_holds x
                    USING h
                    WHERE NOT h.live AND x.limit_name = g_name AND x.partition_key = g_part
                      AND x.job_id = h.job_id
                ), lapsed AS (
                    DELETE FROM powertools_limit_leases l
                    WHERE l.limit_name = g_name AND l.partition_key = g_part
                      AND l.expires_at <= now_ts
                )
                SELECT (SELECT count(*) FROM h WHERE h.live)::integer
                       + coalesce((SELECT sum(l.slots)
                                   FROM powertools_limit_leases l
                                   WHERE l.limit_name = g_name AND l.partition_key = g_part
                                     AND l.owner <> p_owner AND l.expires_at > now_ts), 0)::integer
                       + mine
                INTO g_held;
            END IF;
            room := greatest(cap - g_held, 0);
            grant_n := least(p_need[i], room);
            extra_n := least(p_extra[i], (room - grant_n) / 2);
            o_granted := grant_n + extra_n;
            mine := mine + o_granted;
            g_held := g_held + o_granted;
            IF grant_n < p_need[i] THEN
                o_code := CASE WHEN p_g_kind[i] = 'concurrency' THEN 'concurrency_reached'
                               ELSE 'partition_concurrency_reached' END;
            END IF;
        END IF;

        UPDATE powertools_rate_buckets b SET held = g_held
        WHERE b.limit_name = g_name AND b.partition_key = g_part
          AND b.held IS DISTINCT FROM g_held;
        IF mine > 0 THEN
            INSERT INTO powertools_limit_leases AS l
                (limit_name, partition_key, owner, slots, leased_at, expires_at)
            VALUES (g_name, g_part, p_owner, mine, now_ts, expires)
            ON CONFLICT (limit_name, partition_key, owner) DO UPDATE
            SET slots = EXCLUDED.slots, expires_at = EXCLUDED.expires_at;
        ELSE
            DELETE FROM powertools_limit_leases l
            WHERE l.limit_name = g_name AND l.partition_key = g_part AND l.owner = p_owner;
        END IF;
        o_slots := mine;
        RETURN NEXT;
    END LOOP;
END
$fn$
"""
